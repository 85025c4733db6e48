"""The fake model server over real HTTP from Python: streams, queue, record, holds and config.

No Docker here; agents/tests/test_codex_fake_model.py runs the real Codex against it.
"""

from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from filare_testing.fake_model import (
    API_KEY_ENV,
    CATALOG_FILE,
    FakeModel,
    apply_patch,
    codex_config,
    failed,
    http_error,
    mcp_tool_call,
    message,
    model_catalog,
    parse_sse,
    reasoning,
    shell,
    slow,
    tokens,
    write_codex_home,
)

REQUEST: dict[str, Any] = {
    "model": "fake-model",
    "stream": True,
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "D"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
    ],
    "tools": [{"type": "function", "name": "exec_command"}, {"type": "web_search"}],
}


@pytest.fixture
def fake() -> Iterator[FakeModel]:
    with FakeModel(host="127.0.0.1") as server:
        yield server


def post(
    fake: FakeModel,
    body: dict[str, Any] | None = None,
    *,
    path: str = "/v1/responses",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, dict[str, str], str]:
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    data = raw if raw is not None else json.dumps(body if body is not None else REQUEST).encode()
    connection.request(
        "POST",
        path,
        body=data,
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-secret"}
        | (headers or {}),
    )
    response = connection.getresponse()
    text = response.read().decode()
    connection.close()
    return response.status, dict(response.getheaders()), text


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def done_items(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


# --- each reply kind is a well-formed stream -----------------------------------------------------


def test_message_is_a_complete_sse_stream(fake: FakeModel) -> None:
    fake.enqueue(message("Hello there"))
    status, headers, text = post(fake)
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    events = parse_sse(text)
    assert types(events) == [
        "response.created",
        "response.output_item.added",
        "response.output_text.delta",
        "response.output_item.done",
        "response.completed",
    ]
    # Each block names its event the way the Responses API does, and ends with a blank line.
    for block, event in zip(text.strip().split("\n\n"), events, strict=True):
        assert block.splitlines()[0] == f"event: {event['type']}"
    (item,) = done_items(events)
    assert item["role"] == "assistant"
    assert item["content"][0] == {"type": "output_text", "text": "Hello there", "annotations": []}
    assert events[2]["delta"] == "Hello there"
    assert events[0]["response"]["id"] == events[-1]["response"]["id"]
    assert events[-1]["response"]["usage"]["total_tokens"] == 15


def test_a_reply_reports_the_token_counts_scripted() -> None:
    counted = tokens(slow(message("hi"), delay=1), 900, 100)
    usage = counted.events[-1]["response"]["usage"]
    assert (usage["input_tokens"], usage["output_tokens"], usage["total_tokens"]) == (
        900,
        100,
        1000,
    )
    assert (counted.delay, counted.hold_after) == (1, 1)


def test_shell_calls_codex_exec_command_tool(fake: FakeModel) -> None:
    fake.enqueue(shell("touch made.txt", workdir="/tmp", yield_time_ms=2000))
    _, _, text = post(fake)
    (item,) = done_items(parse_sse(text))
    assert item["type"] == "function_call"
    assert item["name"] == "exec_command"
    assert json.loads(item["arguments"]) == {
        "cmd": "touch made.txt",
        "workdir": "/tmp",
        "yield_time_ms": 2000,
    }
    assert item["call_id"]
    assert types(parse_sse(text))[-1] == "response.completed"


def test_mcp_tool_call_names_the_server_namespace(fake: FakeModel) -> None:
    fake.enqueue(mcp_tool_call("demo", "echo", {"text": "hi"}))
    _, _, text = post(fake)
    (item,) = done_items(parse_sse(text))
    assert (item["name"], item["namespace"]) == ("echo", "mcp__demo")
    assert json.loads(item["arguments"]) == {"text": "hi"}


def test_apply_patch_is_a_freeform_tool_call(fake: FakeModel) -> None:
    patch = "*** Begin Patch\n*** Add File: a.txt\n+a\n*** End Patch\n"
    fake.enqueue(apply_patch(patch))
    _, _, text = post(fake)
    (item,) = done_items(parse_sse(text))
    assert (item["type"], item["name"], item["input"]) == ("custom_tool_call", "apply_patch", patch)


def test_reasoning_precedes_the_items_of_its_follow_up(fake: FakeModel) -> None:
    fake.enqueue(reasoning("thinking", message("answer")))
    _, _, text = post(fake)
    items = done_items(parse_sse(text))
    assert [i["type"] for i in items] == ["reasoning", "message"]
    assert items[0]["summary"] == [{"type": "summary_text", "text": "thinking"}]


def test_http_error_answers_with_status_and_json(fake: FakeModel) -> None:
    fake.enqueue(http_error(500, "boom"), http_error(400, "bad"))
    status, headers, text = post(fake)
    assert status == 500
    assert headers["Content-Type"] == "application/json"
    assert json.loads(text)["error"] == {"message": "boom", "type": "server_error", "code": None}
    status, _, text = post(fake)
    assert (status, json.loads(text)["error"]["type"]) == (400, "invalid_request_error")


def test_failed_ends_the_stream_with_response_failed(fake: FakeModel) -> None:
    fake.enqueue(failed("context_length_exceeded", "too long"))
    status, _, text = post(fake)
    events = parse_sse(text)
    assert status == 200
    assert types(events) == ["response.created", "response.failed"]
    assert events[-1]["response"]["error"] == {
        "code": "context_length_exceeded",
        "message": "too long",
    }


# --- the queue ------------------------------------------------------------------------------------


def first_text(text: str) -> str:
    (item,) = done_items(parse_sse(text))
    return str(item["content"][0]["text"])


def test_replies_are_sent_in_queue_order_then_the_default(fake: FakeModel) -> None:
    fake.enqueue(message("one"), message("two"))
    fake.enqueue(message("three"))
    assert fake.pending == 3
    answers = [first_text(post(fake)[2]) for _ in range(4)]
    assert answers == ["one", "two", "three", "ok"]
    assert fake.pending == 0
    assert [r.scripted for r in fake.model_requests] == [True, True, True, False]
    assert fake.unscripted == fake.model_requests[3:]


def test_default_reply_can_be_an_error() -> None:
    with FakeModel(host="127.0.0.1", default=http_error(503, "nothing scripted")) as fake:
        status, _, text = post(fake)
    assert status == 503
    assert "nothing scripted" in text


def test_other_paths_are_answered_and_recorded_without_taking_a_reply(fake: FakeModel) -> None:
    fake.enqueue(message("kept"))
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    connection.request("GET", "/v1/models")
    response = connection.getresponse()
    assert response.status == 200
    assert json.loads(response.read())["data"] == []
    connection.close()
    assert fake.pending == 1
    assert [(r.method, r.path) for r in fake.requests] == [("GET", "/v1/models")]
    assert fake.model_requests == []
    assert first_text(post(fake)[2]) == "kept"


def test_concurrent_requests_each_get_one_reply(fake: FakeModel) -> None:
    count = 12
    fake.enqueue(*(message(f"r{n}") for n in range(count)))
    answers: list[str] = []
    lock = threading.Lock()

    def ask() -> None:
        text = first_text(post(fake)[2])
        with lock:
            answers.append(text)

    threads = [threading.Thread(target=ask) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(answers) == sorted(f"r{n}" for n in range(count))
    assert len(fake.model_requests) == count


# --- the record -----------------------------------------------------------------------------------


def test_requests_are_recorded_without_the_authorization_value(fake: FakeModel) -> None:
    post(fake, headers={"originator": "codex_exec"})
    (recorded,) = fake.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/responses")
    assert recorded.headers["authorization"] == "<redacted>"
    assert recorded.headers["originator"] == "codex_exec"
    assert "sk-secret" not in json.dumps(recorded.headers)
    assert recorded.body == REQUEST
    assert recorded.texts("user") == ["hello"]
    assert recorded.texts("developer") == ["D"]
    assert recorded.tool_names == ["exec_command", "web_search"]
    assert "hello" in recorded.text()


def test_tool_outputs_are_picked_out_of_the_input(fake: FakeModel) -> None:
    output = {
        "type": "function_call_output",
        "call_id": "c1",
        "output": "Process exited with code 0",
    }
    post(fake, {**REQUEST, "input": [*REQUEST["input"], output]})
    assert fake.model_requests[0].tool_outputs() == [output]


def test_gzip_bodies_are_decoded_and_garbage_is_kept(fake: FakeModel) -> None:
    post(
        fake, raw=gzip.compress(json.dumps(REQUEST).encode()), headers={"Content-Encoding": "gzip"}
    )
    post(fake, raw=b"\x28\xb5\x2f\xfd not json", headers={"Content-Encoding": "zstd"})
    first, second = fake.model_requests
    assert first.body == REQUEST
    assert second.body["content_encoding"] == "zstd"
    assert second.body["undecoded"].startswith("28b52ffd")


# --- holds ---------------------------------------------------------------------------------------


def read_first_event(response: http.client.HTTPResponse) -> dict[str, Any]:
    lines: list[bytes] = []
    while (line := response.readline()) not in (b"\n", b""):
        lines.append(line)
    return parse_sse(b"".join(lines).decode())[0]


def test_slow_reply_holds_after_created_until_released(fake: FakeModel) -> None:
    release = threading.Event()
    fake.enqueue(slow(message("finally"), release=release))
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    connection.request("POST", "/v1/responses", body=json.dumps(REQUEST))
    response = connection.getresponse()
    assert read_first_event(response)["type"] == "response.created"
    assert len(fake.wait_for_requests(1, timeout=5)) == 1
    started = time.monotonic()
    threading.Timer(0.5, release.set).start()
    rest = parse_sse(response.read().decode())
    assert time.monotonic() - started >= 0.4  # nothing more came until the release
    connection.close()
    assert types(rest)[-1] == "response.completed"
    assert done_items(rest)[0]["content"][0]["text"] == "finally"


def test_slow_reply_ends_after_its_delay(fake: FakeModel) -> None:
    fake.enqueue(slow(message("late"), delay=0.5))
    started = time.monotonic()
    _, _, text = post(fake)
    assert time.monotonic() - started >= 0.5
    assert first_text(text) == "late"


def test_slow_error_waits_then_answers(fake: FakeModel) -> None:
    fake.enqueue(slow(http_error(500), delay=0.3))
    started = time.monotonic()
    status, _, _ = post(fake)
    assert status == 500
    assert time.monotonic() - started >= 0.3


def test_close_releases_a_held_stream() -> None:
    fake = FakeModel(host="127.0.0.1").start()
    fake.enqueue(slow())
    connection = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    connection.request("POST", "/v1/responses", body=json.dumps(REQUEST))
    response = connection.getresponse()
    read_first_event(response)
    started = time.monotonic()
    fake.close()
    fake.close()
    assert time.monotonic() - started < 5
    assert types(parse_sse(response.read().decode()))[-1] == "response.completed"
    connection.close()


def test_wait_for_requests_times_out(fake: FakeModel) -> None:
    with pytest.raises(TimeoutError, match="0 of 1 model requests"):
        fake.wait_for_requests(1, timeout=0.2)


def test_urls_name_the_bound_port(fake: FakeModel) -> None:
    assert fake.url == f"http://127.0.0.1:{fake.port}/v1"
    assert fake.container_url == f"http://host.docker.internal:{fake.port}/v1"
    with pytest.raises(RuntimeError):
        _ = FakeModel().port


# --- Codex configuration ---------------------------------------------------------------------


def test_codex_config_points_at_the_fake_and_fails_fast() -> None:
    text = codex_config(
        "http://host.docker.internal:1234/v1",
        catalog="/home/agent/.codex/cat.json",
        developer_instructions='Say "hi"\nthen stop',
        extra_tables='[[skills.config]]\nname = "x"\nenabled = false',
    )
    config = tomllib.loads(text)
    assert config["model"] == "fake-model"
    assert config["model_provider"] == "fake"
    assert config["model_catalog_json"] == "/home/agent/.codex/cat.json"
    assert config["developer_instructions"] == 'Say "hi"\nthen stop'
    provider = config["model_providers"]["fake"]
    assert provider["base_url"] == "http://host.docker.internal:1234/v1"
    assert provider["wire_api"] == "responses"
    assert provider["env_key"] == API_KEY_ENV
    assert (provider["request_max_retries"], provider["stream_max_retries"]) == (0, 0)
    assert config["features"] == {
        "plugins": False,
        "unbounded_connection_retries": False,
        "daemon_auto_start": False,
    }
    assert config["analytics"] == {"enabled": False}
    assert config["check_for_update_on_startup"] is False
    assert config["projects"]["/home/agent/workspace"] == {"trust_level": "trusted"}
    assert config["skills"]["config"] == [{"name": "x", "enabled": False}]


def test_model_catalog_names_the_model() -> None:
    (entry,) = json.loads(model_catalog("m1", base_instructions="B"))["models"]
    assert (entry["slug"], entry["base_instructions"]) == ("m1", "B")
    assert entry["apply_patch_tool_type"] == "freeform"


def test_write_codex_home_uses_the_container_path_of_the_catalog(tmp_path: Path) -> None:
    path = write_codex_home(tmp_path / "home", "http://h:1/v1", model="m2")
    config = tomllib.loads(path.read_text())
    assert config["model_catalog_json"] == f"/home/agent/.codex/{CATALOG_FILE}"
    assert config["model"] == "m2"
    catalog = json.loads((tmp_path / "home" / CATALOG_FILE).read_text())
    assert catalog["models"][0]["slug"] == "m2"


def test_a_fake_that_keeps_no_bodies_still_counts_and_answers() -> None:
    with FakeModel(host="127.0.0.1", keep_bodies=False) as fake:
        fake.enqueue(message("scripted"))
        first = parse_sse(post(fake)[2])
        second = parse_sse(post(fake)[2])
        assert [r.body for r in fake.wait_for_requests(2)] == [None, None]
    texts = [e["delta"] for e in first + second if e["type"] == "response.output_text.delta"]
    assert texts == ["scripted", "ok"]
    assert [r.scripted for r in fake.model_requests] == [True, False]
