"""send-1, send-8 and send-8-par: real Codex turns in running sessions,
tool against `docker exec codex exec`."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from scripts.benchmark.common import Bench, Record, pair, session_containers
from scripts.benchmark.figures import Measurement
from scripts.benchmark.process import BenchError, Completed, run
from scripts.benchmark.settings import CODEX_TAG, CONTAINER_WORKSPACE, REPOSITORY, ROLE

# The send group: the message of every turn, what the scripted model answers, how many sessions.
SEND_MESSAGE = "Answer in one word."


SEND_REPLY = "ok"  # FakeModel's default reply, given to every turn


SEND_SESSIONS = 8


# The flags docker/filare-turn gives `codex exec`; the baseline types the same ones.
CODEX_EXEC_FLAGS = ("--json", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check")


FAKE_MODEL_PATH = REPOSITORY / "agents" / "testing"


def codex_turn_argv(container: str, thread: str | None) -> list[str]:
    """One Codex turn as a person types it: `docker exec` into the session's container, in its
    workspace, `codex exec` with the flags `filare-turn` gives it and the prompt on stdin;
    `thread` continues that conversation (`codex exec resume`), as `filare-turn` does."""
    resume = ["resume"] if thread else []
    conversation = [thread] if thread else []
    return [
        *("docker", "exec", "-i", "-w", CONTAINER_WORKSPACE, container),
        *("codex", "exec", *resume, *CODEX_EXEC_FLAGS, *conversation, "-"),
    ]


@dataclass(frozen=True)
class CodexTurn:
    """What `codex exec --json` printed of one turn."""

    thread_id: str | None
    final_message: str | None
    completed: bool


def parse_codex_events(output: str) -> CodexTurn:
    """The conversation, the last agent message and whether the turn completed, from the JSON
    lines `codex exec --json` prints (anything else on stdout is skipped)."""
    thread = message = None
    completed = False
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        kind, item = event.get("type"), event.get("item")
        if kind == "thread.started" and isinstance(event.get("thread_id"), str):
            thread = event["thread_id"]
        elif kind == "item.completed" and isinstance(item, dict):
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                message = item["text"]
        elif kind in {"turn.completed", "turn.failed"}:
            completed = kind == "turn.completed"
    return CodexTurn(thread, message, completed)


def sent_results(output: str) -> dict[str, tuple[str, str]]:
    """Session id → (RESULT, MESSAGE), from the table `session.send` prints."""
    found: dict[str, tuple[str, str]] = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip(), maxsplit=3)
        if len(cells) >= 3 and cells[0] != "SESSION":
            found[cells[0]] = (cells[2], cells[3] if len(cells) > 3 else "")
    return found


def missing_codex_image(tag: str) -> str:
    build = "uv run inv codex.build" + ("" if tag == CODEX_TAG else f" --tag {tag}")
    return (
        f"the send, collect and memory groups need the real Codex image {tag!r}, which the "
        f"engine does not have: build it with '{build}' ('uv run inv codex.base' first when "
        "there is no registry), or name another with --codex-image"
    )


def send_manifest_text(
    session_ids: Sequence[str],
    image: str,
    codex_dir: str = "outputs/codex-send",
    extra: Mapping[str, str] | None = None,
) -> str:
    """Sessions on the real image whose Codex talks to the scripted model (its Codex home is
    `codex_dir`, which names that model's address), with `egress: open` (the send group
    measures the tool, not containment); `extra` adds fields to a session (`egress: ...`,
    `runtime: runsc`) by id."""
    lines = [
        "defaults:",
        f"  image: {image}",
        "  ssh_key: outputs/id",
        "  env_file: outputs/model.env",
        f"  codex_dir: {codex_dir}",
        "  egress: open",
        "sessions:",
    ]
    lines += [
        f"  - {{id: {sid}, role: {ROLE}, branch: bench/{sid}, workspace: outputs/ws/{sid}"
        f"{(', ' + extra[sid]) if extra and sid in extra else ''}}}"
        for sid in session_ids
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Talk:
    """The send group's sessions, running on the real image, each with two conversations of the
    same length: the tool's (in its record) and the baseline's own (`threads`), which resumes it
    by hand in the same container."""

    registry: Path
    solo: str
    chorus: tuple[str, ...]
    containers: Mapping[str, str]  # session id → container name
    threads: Mapping[str, str]  # session id → the baseline's conversation in that container
    parallel_threads: Mapping[str, str]  # the same, for the turns typed all at once
    prompt: Path  # SEND_MESSAGE, the baseline's stdin


def prepare_send(bench: Bench, image: str, stack: contextlib.ExitStack) -> Talk:
    """Serve the scripted model, start the sessions (untimed), and give each side's first turn
    in each session, untimed too: the tool's starts the session's conversation, the baseline's
    starts its own, so both sides resume a conversation from then on."""
    if str(FAKE_MODEL_PATH) not in sys.path:
        sys.path.insert(0, str(FAKE_MODEL_PATH))
    from filare_testing.fake_model import API_KEY_ENV, FakeModel, write_codex_home

    # Every request gets its default reply, a plain "ok"; bodies are not kept, so the benchmark
    # (whose memory a child starts with, see `run`) does not grow with every turn.
    fake = stack.enter_context(FakeModel(keep_bodies=False))
    outputs = bench.project / "outputs"
    write_codex_home(outputs / "codex-send", fake.container_url)
    (outputs / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    prompt = bench.root / "prompt.txt"
    prompt.write_text(SEND_MESSAGE)
    # Ids of this run only: container names are global to the engine.
    tag = bench.run_id[:6]
    solo = f"send-{tag}-solo"
    chorus = tuple(f"send-{tag}-{n:02d}" for n in range(1, SEND_SESSIONS + 1))
    manifest = bench.project / "send.yml"
    manifest.write_text(send_manifest_text([solo, *chorus], image))
    registry = bench.root / "state-send"
    started = bench.inv_run("session.start", "--manifest", str(manifest), state=registry)
    count = sum("  started  " in line for line in started.stdout.splitlines())
    containers = session_containers(registry)
    if count != 1 + SEND_SESSIONS or sorted(containers) != sorted([solo, *chorus]):
        raise BenchError(f"session.start of the send group: {count} started, {len(containers)} run")
    tool_send(bench, registry, [solo, *chorus])

    def conversation(sid: str) -> str:
        result = run(codex_turn_argv(containers[sid], None), stdin=prompt)
        turn = parse_codex_events(result.stdout)
        if not (turn.completed and turn.final_message == SEND_REPLY and turn.thread_id):
            raise BenchError(f"codex exec in {containers[sid]}: {turn} ({result.stderr[-200:]})")
        return turn.thread_id

    threads = {sid: conversation(sid) for sid in [solo, *chorus]}
    parallel = {sid: conversation(sid) for sid in chorus}
    return Talk(registry, solo, chorus, containers, threads, parallel, prompt)


def tool_send(bench: Bench, registry: Path, session_ids: Sequence[str]) -> Measurement:
    """One `inv session.send --wait` of a turn in each session; each must complete with the
    scripted reply."""
    sessions = [arg for sid in session_ids for arg in ("--session", sid)]
    result = bench.inv_run(
        "session.send", *sessions, "--message", SEND_MESSAGE, "--wait", state=registry
    )
    got = sent_results(result.stdout)
    if got != {sid: ("completed", SEND_REPLY) for sid in session_ids}:
        raise BenchError(
            f"session.send --wait did not complete every turn with {SEND_REPLY!r}: {got}"
        )
    return result.measurement


def baseline_send(talk: Talk, session_ids: Sequence[str], *, at_once: bool = False) -> Measurement:
    """The same turns typed by hand, each resuming a conversation of the baseline's own in the
    session's container: one after another, or `at_once` (each in a thread, resuming a third
    conversation kept for that); checked once all have run."""
    threads = talk.parallel_threads if at_once else talk.threads

    def turn(sid: str) -> Completed:
        return run(codex_turn_argv(talk.containers[sid], threads[sid]), stdin=talk.prompt)

    started = time.perf_counter()
    if at_once:
        with ThreadPoolExecutor(max_workers=len(session_ids)) as pool:
            results = list(pool.map(turn, session_ids))
    else:
        results = [turn(sid) for sid in session_ids]
    seconds = time.perf_counter() - started
    for sid, result in zip(session_ids, results, strict=True):
        got = parse_codex_events(result.stdout)
        expected = CodexTurn(threads[sid], SEND_REPLY, completed=True)
        if got != expected:
            raise BenchError(f"codex exec resume in {talk.containers[sid]}: {got}, not {expected}")
    return Measurement(seconds, max(r.measurement.max_rss_kb for r in results))


def round_send(bench: Bench, talk: Talk, tool_first: bool, record: Record) -> None:
    """send-1 in the solo session, then send-8 in the eight others; each pair adds one turn to
    each side's conversation in every session it uses."""
    pair(
        "send-1",
        partial(tool_send, bench, talk.registry, [talk.solo]),
        partial(baseline_send, talk, [talk.solo]),
        tool_first=tool_first,
        record=record,
    )
    # send-8's tool run is also send-8-par's: the reference row compares it with the same turns
    # typed by hand all at once, which is as fast as this machine runs eight turns.
    sides: list[tuple[str, str, Callable[[], Measurement]]] = [
        ("send-8", "tool", partial(tool_send, bench, talk.registry, talk.chorus)),
        ("send-8", "baseline", partial(baseline_send, talk, talk.chorus)),
        ("send-8-par", "baseline", partial(baseline_send, talk, talk.chorus, at_once=True)),
    ]
    for case, side, action in sides if tool_first else sides[::-1]:
        measured = action()
        record(case, side, measured)
        if side == "tool":
            record("send-8-par", side, measured)
