"""A scripted stand-in for the model, speaking the OpenAI Responses API as Codex 0.171.0 reads it.

Tests that run the real Codex CLI need a model that is offline, predictable and inspectable, and
so does a newcomer who wants to see an agent work without an account (`inv demo --codex`, whose
answers come from `orchestrator.demo_model`). It lives in the library, not with the tests, so
that the installed tool has it; the tests import it as `filare_testing.fake_model`.
Codex (`wire_api = "responses"`) POSTs each model request to `{base_url}/responses` and reads
the answer as server-sent events; this server answers each such request with the next reply a
test queued, and records every request so the test can assert on what Codex sent.

    with FakeModel() as fake:
        write_codex_home(codex_home, fake.container_url)
        fake.enqueue(shell("touch made.txt"), message("done"))
        ...run `codex exec --json ... "make a file"` in the image...
        first, after_shell = fake.model_requests
        assert first.texts("user")[-1] == "make a file"
        assert "Process exited with code 0" in after_shell.tool_outputs()[0]["output"]

What Codex 0.171.0 does with each reply kind (checked by agents/tests/test_codex_fake_model.py):
`message` ends the turn with that agent message; `shell` makes it run the command through its
`exec_command` tool and post the result back in the next request; `http_error` with a 4xx, and
`failed` with a non-retryable code (the default), fail the turn at once whatever the retry
settings; a 5xx or a retryable `failed` code is retried (30 requests over ~26 s for a 500 with
Codex's defaults) unless the retries are 0, as `codex_config` sets them.

Standard library only: it runs inside pytest and in the tool, and must not add dependencies.
"""

from __future__ import annotations

import gzip
import itertools
import json
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "API_KEY_ENV",
    "CATALOG_FILE",
    "CONTAINER_CODEX_HOME",
    "CONTAINER_HOST",
    "CONTAINER_WORKSPACE",
    "DEFAULT_MODEL",
    "PROVIDER_ID",
    "FakeModel",
    "Recorded",
    "Reply",
    "apply_patch",
    "codex_config",
    "custom_tool_call",
    "failed",
    "function_call",
    "http_error",
    "mcp_tool_call",
    "message",
    "model_catalog",
    "parse_sse",
    "reasoning",
    "shell",
    "slow",
    "sse",
    "tokens",
    "write_codex_home",
]

JSON = dict[str, Any]

PROVIDER_ID = "fake"
API_KEY_ENV = "FAKE_MODEL_API_KEY"
DEFAULT_MODEL = "fake-model"
# Containers reach the server through the Docker bridge, not loopback.
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
# Containers reach the host by this name when started with `--add-host ...:host-gateway`.
CONTAINER_HOST = "host.docker.internal"
CATALOG_FILE = "fake-model-catalog.json"
CONTAINER_CODEX_HOME = "/home/agent/.codex"
CONTAINER_WORKSPACE = "/home/agent/workspace"

_ids = itertools.count(1)


def _next_id(prefix: str) -> str:
    """Ids unique within the process, so replies queued in any order never collide."""
    return f"{prefix}_{next(_ids):06d}"


# --- replies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One scripted answer to one model request.

    `events` go out as SSE in order. A held reply (`delay` > 0 or a `release` event) sends the
    first `hold_after` events, then waits until `delay` seconds pass, the test sets `release`,
    or the server closes, whichever comes first. A `status` other than 200 answers with
    `error_body` as JSON instead of a stream (after the hold, if any).
    """

    events: tuple[JSON, ...] = ()
    status: int = 200
    error_body: JSON | None = None
    delay: float = 0.0
    release: threading.Event | None = None
    hold_after: int = 0

    @property
    def holds(self) -> bool:
        return self.delay > 0 or self.release is not None


def _usage(input_tokens: int = 10, output_tokens: int = 5) -> JSON:
    """Token counts of one response (15 unless scripted with `tokens`): Codex adds them up per
    thread in `turn.completed.usage` and the app-server's `thread/tokenUsage/updated`."""
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def _created(response_id: str) -> JSON:
    return {
        "type": "response.created",
        "response": {"id": response_id, "object": "response", "status": "in_progress"},
    }


def _completed(response_id: str) -> JSON:
    return {
        "type": "response.completed",
        "response": {
            "id": response_id,
            "object": "response",
            "status": "completed",
            "usage": _usage(),
        },
    }


def _stream(*items: JSON) -> tuple[JSON, ...]:
    """A whole response: created, then each output item added (text streamed) and done."""
    response_id = _next_id("resp")
    events: list[JSON] = [_created(response_id)]
    for index, item in enumerate(items):
        events.append({"type": "response.output_item.added", "output_index": index, "item": item})
        if item.get("type") == "message":
            text = "".join(part.get("text", "") for part in item.get("content", []))
            events.append(
                {
                    "type": "response.output_text.delta",
                    "item_id": item["id"],
                    "output_index": index,
                    "content_index": 0,
                    "delta": text,
                }
            )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append(_completed(response_id))
    return tuple(events)


def _items(reply: Reply) -> list[JSON]:
    return [e["item"] for e in reply.events if e.get("type") == "response.output_item.done"]


def _message_item(text: str) -> JSON:
    return {
        "type": "message",
        "id": _next_id("msg"),
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def message(text: str) -> Reply:
    """The model answers with plain text and ends the turn (Codex: `agent_message`)."""
    return Reply(_stream(_message_item(text)))


def function_call(
    name: str,
    arguments: Mapping[str, Any] | str,
    *,
    namespace: str | None = None,
    call_id: str = "",
) -> Reply:
    """The model calls the function tool `name`; Codex posts its output in the next request.

    A tool Codex offers inside a `namespace` tool (MCP servers: `mcp__<server>`) is called with
    that namespace; Codex 0.171.0 answers the flat `mcp__<server>__<tool>` with "unsupported
    call". The next queued reply answers the follow-up request (usually a `message`).
    """
    item: JSON = {
        "type": "function_call",
        "id": _next_id("fc"),
        "call_id": call_id or _next_id("call"),
        "name": name,
        "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
        "status": "completed",
    }
    if namespace is not None:
        item["namespace"] = namespace
    return Reply(_stream(item))


def mcp_tool_call(server: str, tool: str, arguments: Mapping[str, Any]) -> Reply:
    """The model calls `tool` of the MCP server configured as `[mcp_servers.<server>]`."""
    return function_call(tool, arguments, namespace=f"mcp__{server}")


def shell(command: str, *, workdir: str | None = None, yield_time_ms: int | None = None) -> Reply:
    """The model runs `command` through `exec_command`, the shell tool Codex 0.171.0 offers.

    Codex runs it with the user's login shell (`/bin/sh -lc` in the image) in the turn's working
    folder unless `workdir` says otherwise. A command still running after `yield_time_ms`
    (Codex's default: 10 s) is left in the background and the model gets a session id instead
    of an exit code.
    """
    arguments: JSON = {"cmd": command}
    if workdir is not None:
        arguments["workdir"] = workdir
    if yield_time_ms is not None:
        arguments["yield_time_ms"] = yield_time_ms
    return function_call("exec_command", arguments)


def custom_tool_call(name: str, input_text: str, call_id: str = "") -> Reply:
    """The model calls a freeform (`custom`) tool with raw text rather than JSON arguments."""
    item = {
        "type": "custom_tool_call",
        "id": _next_id("ctc"),
        "call_id": call_id or _next_id("call"),
        "name": name,
        "input": input_text,
        "status": "completed",
    }
    return Reply(_stream(item))


def apply_patch(patch: str) -> Reply:
    """The model edits files with `apply_patch` (Codex: a `file_change` item).

    Codex offers the tool only for a model whose catalog entry has `apply_patch_tool_type`,
    which `model_catalog` sets; with Codex's fallback metadata the call fails as unknown.
    """
    return custom_tool_call("apply_patch", patch)


def reasoning(summary: str, then: Reply | None = None) -> Reply:
    """A reasoning summary (Codex: a `reasoning` item), then `then`'s items in one response."""
    item = {
        "type": "reasoning",
        "id": _next_id("rs"),
        "summary": [{"type": "summary_text", "text": summary}],
        "content": [],
        "encrypted_content": None,
    }
    return Reply(_stream(item, *(_items(then) if then is not None else [])))


def slow(
    reply: Reply | None = None,
    *,
    delay: float = 3600.0,
    release: threading.Event | None = None,
) -> Reply:
    """`reply` (plain "ok" by default) held open after `response.created`.

    The stream stays open until `delay` seconds pass or the test sets `release`, so a test can
    interrupt a turn or time out a wait while Codex is mid-request. Closing the server releases
    it too, so a forgotten hold never blocks teardown.
    """
    base = reply if reply is not None else message("ok")
    return Reply(
        base.events,
        status=base.status,
        error_body=base.error_body,
        delay=delay,
        release=release,
        hold_after=1 if base.status == 200 and base.events else 0,
    )


def tokens(reply: Reply, input_tokens: int, output_tokens: int = 0) -> Reply:
    """`reply` reporting the token counts given in its `response.completed` event (a token
    budget's tests script what each response costs)."""
    events = tuple(
        {**event, "response": {**event["response"], "usage": _usage(input_tokens, output_tokens)}}
        if event.get("type") == "response.completed"
        else event
        for event in reply.events
    )
    return Reply(
        events,
        status=reply.status,
        error_body=reply.error_body,
        delay=reply.delay,
        release=reply.release,
        hold_after=reply.hold_after,
    )


def http_error(status: int = 500, text: str = "fake model error") -> Reply:
    """The request fails with an HTTP status and an OpenAI-style JSON error body.

    Codex retries a 5xx (and 429) up to `request_max_retries` times, each up to
    `stream_max_retries` times; a 400, 401 or 403 fails the turn at once.
    """
    kind = "invalid_request_error" if 400 <= status < 500 else "server_error"
    return Reply(status=status, error_body={"error": {"message": text, "type": kind, "code": None}})


def failed(code: str = "invalid_prompt", text: str = "fake model failure") -> Reply:
    """The stream opens, then ends with `response.failed` carrying `error.code`.

    Codex 0.171.0 gives up at once on `invalid_prompt`, `context_length_exceeded` and
    `insufficient_quota`; it retries others (`server_error`, `rate_limit_exceeded`, ...) up to
    `stream_max_retries` times.
    """
    response_id = _next_id("resp")
    return Reply(
        (
            _created(response_id),
            {
                "type": "response.failed",
                "response": {
                    "id": response_id,
                    "object": "response",
                    "status": "failed",
                    "error": {"code": code, "message": text},
                },
            },
        )
    )


# --- what was received -----------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """One request as received; the Authorization value is replaced, never kept.

    Header names are lower-cased (HTTP's are case-insensitive; Codex sends them lower-case).

    Codex 0.171.0 sends no `instructions` field: its base instructions (or the text of
    `model_instructions_file`) are the first `developer` message of `input`,
    `developer_instructions` and the skills list the second, and AGENTS.md files (global, then
    project) a `user` message headed "# AGENTS.md instructions for <cwd>".
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    scripted: bool
    received: float = field(default_factory=time.monotonic)

    @property
    def input(self) -> list[JSON]:
        items = self.body.get("input", []) if isinstance(self.body, dict) else []
        return [item for item in items if isinstance(item, dict)]

    def texts(self, role: str) -> list[str]:
        """Text of every input message part of `role` (user, developer, assistant), in order."""
        found: list[str] = []
        for item in self.input:
            if item.get("type", "message") != "message" or item.get("role") != role:
                continue
            content = item.get("content", [])
            if isinstance(content, str):
                found.append(content)
                continue
            found.extend(
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        return found

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools offered (a built-in such as `web_search` by its type)."""
        tools = self.body.get("tools", []) if isinstance(self.body, dict) else []
        return [str(t.get("name") or t.get("type")) for t in tools if isinstance(t, dict)]

    def tool_outputs(self) -> list[JSON]:
        """The tool results Codex sent back (`function_call_output`, `custom_tool_call_output`)."""
        return [item for item in self.input if str(item.get("type", "")).endswith("_output")]

    def text(self) -> str:
        """The whole body as JSON text, for `in` checks that do not care where a text is."""
        return json.dumps(self.body) if self.body is not None else ""


# --- the server ------------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeModel


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: every request is recorded, and pytest's output is kept for failures."""

    def do_GET(self) -> None:
        self.server.fake._handle(self)

    def do_POST(self) -> None:
        self.server.fake._handle(self)


def _read_body(handler: _Handler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def _parse_body(raw: bytes, encoding: str) -> Any:
    """JSON body, decompressed when gzip or deflate; anything else is kept as a hex excerpt."""
    if not raw:
        return None
    try:
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        return json.loads(raw)
    except (ValueError, OSError, zlib.error):
        return {"undecoded": raw[:256].hex(), "content_encoding": encoding}


def _is_model_request(method: str, path: str) -> bool:
    return method == "POST" and path.split("?", 1)[0].rstrip("/").endswith("/responses")


class FakeModel:
    """A Responses API server on a free port; replies come from a queue the test fills.

    Only POSTs to a path ending in `/responses` take a reply from the queue, in order. When the
    queue is empty they get `default` (a plain "ok" message unless given) and are recorded with
    `scripted=False`: Codex makes requests of its own at times (the interactive TUI asks for a
    thread title, for one), and a test can assert `fake.unscripted == []` where it matters.
    Other paths (e.g. `GET /v1/models`) get an empty model list. Each request is served on a
    thread of its own; the queue and the record are shared under one lock.

    With `keep_bodies=False` no request's body is parsed or kept (`Recorded.body` is None): a
    long-lived user that never reads them, such as the benchmark, does not grow with every
    request Codex sends (each carries the whole conversation).

    `port` 0 (the default) takes a free port. `answer`, when given, replaces `default`: it picks
    the reply from the request itself (a script that reacts to what Codex sent, for a server
    nobody fills a queue for). Only the newest request is kept then, so a long-lived server
    does not grow.
    """

    def __init__(
        self,
        *,
        host: str = ALL_INTERFACES,
        default: Reply | None = None,
        keep_bodies: bool = True,
        answer: Callable[[Recorded], Reply] | None = None,
        port: int = 0,
    ) -> None:
        self._bind_host = host
        self._bind_port = port
        self.default = default if default is not None else message("ok")
        self.answer = answer
        self._keep_bodies = keep_bodies
        self._queue: deque[Reply] = deque()
        self._requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeModel:
        server = _Server((self._bind_host, self._bind_port), _Handler)
        server.fake = self
        self._server = server
        self._port = int(server.server_address[1])
        # A short poll keeps `close` (which waits for the loop to notice) quick in each test.
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-model", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Release held streams, stop serving and free the port; safe to call twice."""
        self._closing.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FakeModel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- addresses ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port bound at start (kept after close, so a test can point Codex at a dead one)."""
        if not self._port:
            raise RuntimeError("the fake model was never started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL for a process on this host."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def container_url(self) -> str:
        """Base URL for a container started with `--add-host host.docker.internal:host-gateway`."""
        return f"http://{CONTAINER_HOST}:{self.port}/v1"

    # --- script and record -------------------------------------------------------------------

    def enqueue(self, *replies: Reply) -> None:
        """Queue replies, one per model request, answered in this order."""
        with self._lock:
            self._queue.extend(replies)

    @property
    def pending(self) -> int:
        """Replies queued and not yet sent."""
        with self._lock:
            return len(self._queue)

    @property
    def requests(self) -> list[Recorded]:
        """Every request so far, model or not, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def model_requests(self) -> list[Recorded]:
        """The POSTs to `/responses`, the requests answered from the queue."""
        return [r for r in self.requests if _is_model_request(r.method, r.path)]

    @property
    def unscripted(self) -> list[Recorded]:
        """Model requests that found the queue empty and got `default`."""
        return [r for r in self.model_requests if not r.scripted]

    def wait_for_requests(self, count: int, timeout: float = 30.0) -> list[Recorded]:
        """Block until `count` model requests have arrived (e.g. the one a slow reply holds)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [r for r in self._requests if _is_model_request(r.method, r.path)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)} of {count} model requests after {timeout}s")
                self._arrived.wait(left)

    # --- serving -----------------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        raw = _read_body(handler)
        encoding = handler.headers.get("Content-Encoding", "").lower()
        body = _parse_body(raw, encoding) if self._keep_bodies else None
        headers = {
            name.lower(): ("<redacted>" if name.lower() == "authorization" else value)
            for name, value in handler.headers.items()
        }
        model_request = _is_model_request(handler.command, handler.path)
        with self._lock:
            reply = self._queue.popleft() if model_request and self._queue else None
            recorded = Recorded(
                handler.command, handler.path, headers, body, scripted=reply is not None
            )
            if self.answer is not None:
                self._requests.clear()
            self._requests.append(recorded)
            self._arrived.notify_all()
        try:
            if not model_request:
                self._send_json(handler, 200, {"object": "list", "data": [], "models": []})
            elif reply is None and self.answer is not None:
                self._send(handler, self.answer(recorded))
            else:
                self._send(handler, reply if reply is not None else self.default)
        except (BrokenPipeError, ConnectionResetError):
            # Codex hung up first (an interrupted turn): there is no one left to answer.
            handler.close_connection = True

    def _send_json(self, handler: _Handler, status: int, payload: JSON) -> None:
        data = json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _send(self, handler: _Handler, reply: Reply) -> None:
        if reply.status != 200:
            self._hold(reply)
            body = reply.error_body or {"error": {"message": "error", "type": "server_error"}}
            self._send_json(handler, reply.status, body)
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        for index, event in enumerate(reply.events):
            if index == reply.hold_after and reply.holds:
                handler.wfile.flush()
                self._hold(reply)
            handler.wfile.write(sse(event))
            handler.wfile.flush()
        if reply.holds and reply.hold_after >= len(reply.events):
            self._hold(reply)

    def _hold(self, reply: Reply) -> None:
        if not reply.holds:
            return
        deadline = time.monotonic() + reply.delay if reply.delay > 0 else float("inf")
        waiter = reply.release or self._closing
        while not self._closing.is_set() and not (reply.release and reply.release.is_set()):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            waiter.wait(min(left, 0.05))


def sse(event: JSON) -> bytes:
    """One server-sent event, named after its `type` as the Responses API does."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def parse_sse(data: str) -> list[JSON]:
    """The `data` payloads of an SSE stream, for tests of this server (Codex parses its own)."""
    events: list[JSON] = []
    for block in data.replace("\r\n", "\n").split("\n\n"):
        lines = [line[5:].lstrip() for line in block.splitlines() if line.startswith("data:")]
        if lines:
            events.append(json.loads("\n".join(lines)))
    return events


# --- Codex configuration ---------------------------------------------------------------------


def _toml(value: str) -> str:
    """A TOML basic string: JSON's escapes are a subset TOML accepts."""
    return json.dumps(value)


def codex_config(
    base_url: str,
    *,
    model: str = DEFAULT_MODEL,
    provider: str = PROVIDER_ID,
    env_key: str = API_KEY_ENV,
    catalog: str | None = None,
    developer_instructions: str | None = None,
    trusted: tuple[str, ...] = (CONTAINER_WORKSPACE,),
    request_max_retries: int = 0,
    stream_max_retries: int = 0,
    stream_idle_timeout_ms: int = 60_000,
    extra_tables: str = "",
) -> str:
    """The text of a Codex 0.171.0 `config.toml` for an unattended, offline session on a fake model.

    Every key was checked with `codex exec --strict-config`. Why each is there:
    - retries 0 and `features.unbounded_connection_retries = false`: a scripted error, or a
      model that is not listening, fails the turn in about a second; with the defaults a 5xx
      takes 30 requests and ~26 s, and a refused connection is retried forever.
    - `features.plugins = false`: otherwise every start tries github.com, api.github.com and
      chatgpt.com to sync the curated plugins.
    - `analytics.enabled = false`: otherwise it posts to ab.chatgpt.com.
    - `features.daemon_auto_start = false`: otherwise the interactive `codex` copies itself
      (~420 MB) into `$CODEX_HOME/packages` and leaves an app-server daemon running.
    - `check_for_update_on_startup = false`, `feedback`, `otel`: no update check, no uploads.
    - `approval_policy`/`sandbox_mode`: no prompts, and no bubblewrap sandbox, which cannot
      create namespaces in a container and makes every command fail.
    - `projects.<dir>.trust_level`: the interactive `codex` asks to trust the folder otherwise.
    - `catalog`: the container path of `model_catalog`'s file; without it each turn starts with
      an `error` item ("Model metadata for `fake-model` not found") and `apply_patch` is absent.
    `extra_tables` is appended as is (TOML tables only: top-level keys must come first).
    """
    top = [
        f"model = {_toml(model)}",
        f"model_provider = {_toml(provider)}",
        'approval_policy = "never"',
        'sandbox_mode = "danger-full-access"',
        "check_for_update_on_startup = false",
        "suppress_unstable_features_warning = true",
    ]
    if catalog is not None:
        top.append(f"model_catalog_json = {_toml(catalog)}")
    if developer_instructions is not None:
        top.append(f"developer_instructions = {_toml(developer_instructions)}")
    tables = [
        "[analytics]\nenabled = false",
        "[feedback]\nenabled = false",
        '[otel]\nexporter = "none"',
        "[features]\nplugins = false\nunbounded_connection_retries = false\n"
        "daemon_auto_start = false",
        *(f'[projects.{_toml(path)}]\ntrust_level = "trusted"' for path in trusted),
        f"[model_providers.{provider}]\n"
        f'name = "Fake model"\n'
        f"base_url = {_toml(base_url)}\n"
        f'wire_api = "responses"\n'
        f"env_key = {_toml(env_key)}\n"
        f"request_max_retries = {request_max_retries}\n"
        f"stream_max_retries = {stream_max_retries}\n"
        f"stream_idle_timeout_ms = {stream_idle_timeout_ms}",
    ]
    if extra_tables:
        tables.append(extra_tables.strip())
    return "\n".join(top) + "\n\n" + "\n\n".join(tables) + "\n"


def model_catalog(
    model: str = DEFAULT_MODEL,
    *,
    base_instructions: str = "You are a coding agent driven by a scripted test model.",
) -> str:
    """A `model_catalog_json` file naming the fake model, so Codex knows its metadata.

    The fields are the ones Codex 0.171.0 requires, plus `apply_patch_tool_type` so that the
    `apply_patch` tool is offered. `base_instructions` replaces Codex's own (~17 kB) prompt as
    the first developer message, which keeps recorded requests small.
    """
    entry = {
        "slug": model,
        "display_name": "Fake model",
        "supported_reasoning_levels": [],
        "shell_type": "unified_exec",
        "visibility": "list",
        "supported_in_api": True,
        "priority": 1,
        "support_verbosity": False,
        "truncation_policy": {"mode": "tokens", "limit": 10_000},
        "experimental_supported_tools": [],
        "apply_patch_tool_type": "freeform",
        "base_instructions": base_instructions,
    }
    return json.dumps({"models": [entry]}, indent=2) + "\n"


def write_codex_home(
    home: Path,
    base_url: str,
    *,
    container_home: str = CONTAINER_CODEX_HOME,
    **config: Any,
) -> Path:
    """Write `config.toml` and the model catalog into a Codex home; returns the config's path.

    `container_home` is where `home` is mounted in the container (the catalog path in the
    config must be the container's). `config` goes to `codex_config`.
    """
    home.mkdir(parents=True, exist_ok=True)
    (home / CATALOG_FILE).write_text(model_catalog(config.get("model", DEFAULT_MODEL)))
    path = home / "config.toml"
    catalog = f"{container_home.rstrip('/')}/{CATALOG_FILE}"
    path.write_text(codex_config(base_url, catalog=catalog, **config))
    return path
