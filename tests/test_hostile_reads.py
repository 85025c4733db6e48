"""What the host reads of a session, when the session is the adversary: its transcripts, turn
ends, questions, role file and conversation id (issue 18, items 1, 2, 3, 7 and 9).

Every test writes the hostile file as a session could and checks what the operator would see:
no byte that drives a terminal, no crash, only that session's line saying so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator import (
    conversation,
    dashboard,
    feedback,
    limits,
    listing,
    report,
    transcript,
    untrusted,
)
from orchestrator.registry import Registry, SessionState
from tests.test_registry import state
from tests.test_transcript import CODEX_EVENTS, add_turn, view, write_turn

ESCAPES = "\x1b]52;c;aGVsbG8=\x07\x1b]0;title\x07\x1b[31mred\x1b[0m"
THREAD = "01a221a3-9a18-7441-8def-ae59aaf342ed"
ENDED: dict[str, object] = {"exit_code": 0, "interrupted": False}


def assert_inert(text: str) -> None:
    """Nothing in `text` drives a terminal, and it can be printed."""
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    text.encode("utf-8")


def hostile_events() -> list[dict[str, object]]:
    return [
        {"type": "thread.started", "thread_id": THREAD},
        {"type": "item.completed", "item": {"type": "agent_message", "text": f"hi {ESCAPES}"}},
        {"type": "item.completed", "item": {"type": "reasoning", "text": ESCAPES}},
        {
            "type": "item.completed",
            "item": {
                "type": "command_execution",
                "command": f"echo {ESCAPES}",
                "aggregated_output": ESCAPES,
                "exit_code": 0,
                "status": ESCAPES,
            },
        },
        {
            "type": "item.completed",
            "item": {"type": "file_change", "changes": [{"path": ESCAPES, "kind": ESCAPES}]},
        },
        {
            "type": "item.completed",
            "item": {"type": "mcp_tool_call", "server": ESCAPES, "tool": "t", "status": ESCAPES},
        },
        {"type": "item.completed", "item": {"type": "todo_list", "items": [{"text": ESCAPES}]}},
        {"type": "item.completed", "item": {"type": "error", "message": ESCAPES}},
        {"type": "error", "message": "\ud800" + ESCAPES},
        {"type": "turn.failed", "error": {"message": ESCAPES}},
    ]


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Registry, SessionState]:
    registry = Registry(tmp_path / "state")
    record = registry.write(state("a").replace(container_id="c1", workspace=tmp_path / "ws"))
    surveyed = listing.Fleet([view(registry, record)], [])
    monkeypatch.setattr(conversation, "survey", lambda _: surveyed)
    return registry, record


def folder_of(registry: Registry, record: SessionState) -> Path:
    return conversation.transcript_folder(registry, record)


# --- item 1: terminal escapes --------------------------------------------------------------------


def test_every_transcript_event_renders_without_terminal_controls(
    session: tuple[Registry, SessionState],
) -> None:
    registry, record = session
    add_turn(registry, record, "0001")
    write_turn(folder_of(registry, record), "0001", hostile_events(), {"exit_code": 1})
    shown = list(conversation.log(registry, "a"))
    assert {e.type for e in shown} >= {"command", "tool_call", "file_change", "error", "todo"}
    for event in shown:
        assert_inert(transcript.render(event))
        text = untrusted.json_text(event.as_json())
        assert_inert(text)
        assert json.loads(text) == json.loads(json.dumps(event.as_json()))
    tool = next(e for e in shown if e.type == "tool_call")
    assert transcript.render(tool) == f"[0001] tool {untrusted.printable(ESCAPES)}.t (" + (
        untrusted.printable(ESCAPES) + ")"
    )
    # --json keeps what the session wrote, escaped by JSON.
    assert "\\u001b]52;c;" in untrusted.json_text(tool.as_json())


def test_tables_show_cells_as_text(session: tuple[Registry, SessionState]) -> None:
    text = report.table(("A", "B"), [(ESCAPES, "x\ud800"), ("ok", "multi\nline")])
    assert_inert(text)
    assert len(text.splitlines()) == 3


def test_the_fleet_shows_a_hostile_session_inertly(session: tuple[Registry, SessionState]) -> None:
    registry, record = session
    add_turn(registry, record, "0001")
    write_turn(folder_of(registry, record), "0001", hostile_events(), {"exit_code": 1})
    questions = registry.session_dir("coder", "a") / "agent" / "questions"
    questions.mkdir(parents=True)
    (questions / "q1.json").write_text(
        json.dumps({"reason": ESCAPES, "severity": "block", "requested_action": ESCAPES})
    )
    fleet = dashboard.fleet(registry)
    for text in (
        dashboard.render(fleet),
        dashboard.render_json(fleet),
        report.sessions_table(fleet.sessions),
        report.sessions_json(fleet.sessions),
    ):
        assert_inert(text)
    (question,) = json.loads(dashboard.render_json(fleet))["questions"]
    assert question["reason"] == ESCAPES


def test_send_and_wait_results_are_inert() -> None:
    status = conversation.TurnStatus(
        conversation.TurnRecord("a", "coder", "0001", "message", datetime.now(UTC), "c", None),
        "failed",
        ESCAPES,
        None,
    )
    sent = [conversation.Sent("a", "0001", status=status, final_message=ESCAPES)]
    assert_inert(report.sent_table(sent))
    text = report.sent_json(sent)
    assert_inert(text)
    assert json.loads(text)[0]["final_message"] == ESCAPES


# --- item 2: transcripts that crashed every fleet command ----------------------------------------


def test_deep_brackets_and_overflowing_numbers_break_only_their_own_session(
    session: tuple[Registry, SessionState],
) -> None:
    registry, record = session
    folder = folder_of(registry, record)
    add_turn(registry, record, "0001")
    folder.mkdir(parents=True)
    (folder / "0001.jsonl").write_bytes(b"[" * 100_000 + b"\n" + b"{}\n" * 3)
    (folder / "0001.exit").write_bytes(b'{"exit_code": 1e999}')
    agent = conversation.agent_json(registry, view(registry, record))
    assert agent["agent"] == "failed"
    assert agent["agent_reason"] == "0001.exit is not a well-formed end record"
    assert agent["transcript_skipped"] == 4
    assert report.agent_cell(agent) == "failed (bad transcript)"
    shown = [(e.type, e.fields) for e in conversation.log(registry, "a")]
    assert [kind for kind, _ in shown] == ["turn_started", "lines_skipped", "turn_failed"]
    assert shown[1][1] == {"lines": 4, "file": "0001.jsonl"}
    fleet = dashboard.fleet(registry)
    assert {"session": "a", "what": "transcript"}.items() <= fleet.failures[-1].items()


def test_a_line_that_is_no_event_is_skipped_and_counted(tmp_path: Path) -> None:
    lines = [
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": 3}',
        '{"type": "x", "n": NaN}',
        '{"type": "x", "n": ' + "9" * 100 + "}",
        "",
        *(json.dumps(e) for e in CODEX_EVENTS),
    ]
    write_turn(tmp_path, "0001", lines, None)
    reader = transcript.EventReader(tmp_path, "0001")
    assert list(reader.read()) == CODEX_EVENTS
    assert reader.skipped == 7  # the empty line too: no event


def test_a_line_longer_than_the_bound_is_skipped_without_being_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(untrusted, "READ_CHUNK", 7)
    monkeypatch.setattr(transcript, "MAX_EVENT_BYTES", 30)
    first = json.dumps({"type": "a"})
    long = json.dumps({"type": "b", "text": "x" * 100})
    write_turn(tmp_path, "0001", [first, long, first], None)
    reader = transcript.EventReader(tmp_path, "0001")
    assert list(reader.read()) == [{"type": "a"}, {"type": "a"}]
    assert reader.skipped == 1


def test_a_turn_being_written_is_read_on_from_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(untrusted, "READ_CHUNK", 5)
    path = tmp_path / "0001.jsonl"
    path.write_text('{"type": "a"}\n{"type": "b"')
    reader = transcript.EventReader(tmp_path, "0001")
    assert list(reader.read(final=False)) == [{"type": "a"}]
    with path.open("a") as out:
        out.write(', "n": 1}\n{"type": "c"}\n')
    assert list(reader.read(final=False)) == [{"type": "b", "n": 1}, {"type": "c"}]
    assert list(reader.read()) == [] and reader.skipped == 0


def test_read_lines_gives_whole_lines_and_offsets_after_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(untrusted, "READ_CHUNK", 4)
    path = tmp_path / "f"
    path.write_bytes(b"ab\ncdefgh\n\nijklmnop\nq")
    got = list(untrusted.read_lines(path, limit=100, max_line=5, partial=False))
    assert b"".join(chunk.data for chunk in got) == b"ab\n\n"
    assert sum(chunk.dropped for chunk in got) == 2
    assert got[-1].end == len(b"ab\ncdefgh\n\nijklmnop\n")
    whole = list(untrusted.read_lines(path, limit=100, max_line=5))
    assert whole[-1] == (b"q\n", 0, 21, False)
    assert list(untrusted.read_lines(path, limit=3, max_line=5)) == [(b"ab\n", 0, 3, False)]
    assert list(untrusted.read_lines(path, offset=14, limit=100, max_line=5)) == [
        (b"lmnop\n", 0, 20, False),
        (b"q\n", 0, 21, False),
    ]


def test_a_long_line_being_written_is_counted_once_and_never_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(untrusted, "READ_CHUNK", 4)
    monkeypatch.setattr(transcript, "MAX_EVENT_BYTES", 20)
    path = tmp_path / "0001.jsonl"
    path.write_bytes(b'{"type":"a"}\n' + b"x" * 30)
    reader = transcript.EventReader(tmp_path, "0001")
    assert list(reader.read(final=False)) == [{"type": "a"}]
    assert (reader.skipped, reader.offset, reader.in_long_line) == (1, 43, True)
    with path.open("ab") as out:
        out.write(b"y" * 30)
    assert list(reader.read(final=False)) == []
    assert (reader.skipped, reader.offset) == (1, 73)
    with path.open("ab") as out:
        out.write(b'zz\n{"type":"b"}\n')
    assert list(reader.read()) == [{"type": "b"}]
    assert (reader.skipped, reader.in_long_line) == (1, False)


# --- item 7: bounded reads -----------------------------------------------------------------------


@pytest.fixture
def bytes_read(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    counted: list[int] = []
    real = untrusted.read_limited

    def counting(path: Path, limit: int, offset: int = 0) -> bytes:
        data = real(path, limit, offset)
        counted.append(len(data))
        return data

    monkeypatch.setattr(untrusted, "read_limited", counting)
    monkeypatch.setattr(transcript, "read_limited", counting)
    monkeypatch.setattr(conversation, "read_limited", counting)
    monkeypatch.setattr(limits, "read_limited", counting)
    yield counted


def test_a_sessions_line_reads_the_end_of_its_newest_turn_only(
    session: tuple[Registry, SessionState], bytes_read: list[int]
) -> None:
    registry, record = session
    folder = folder_of(registry, record)
    add_turn(registry, record, "0001")
    big = [json.dumps(e) for e in CODEX_EVENTS] + ["{}"] * 2_000_000
    write_turn(folder, "0001", big, ENDED)
    agent = conversation.agent_json(registry, view(registry, record))
    # The end of the newest turn for its last message, the end record, the usage at its end.
    bound = transcript.MAX_TAIL_BYTES + limits.USAGE_TAIL_BYTES + 2 * transcript.MAX_EXIT_BYTES
    assert sum(bytes_read) <= bound
    # The agent message is at the start, outside what the line reads: not shown, not searched.
    assert (agent["agent"], agent["last_message"]) == ("idle", None)
    assert agent["transcript_skipped"] == transcript.MAX_TAIL_BYTES // len(b"{}\n")


def test_the_log_streams_a_big_transcript_in_bounded_chunks(
    session: tuple[Registry, SessionState], bytes_read: list[int]
) -> None:
    registry, record = session
    add_turn(registry, record, "0001")
    lines = ["{}"] * 1_000_000 + [json.dumps(e) for e in CODEX_EVENTS]
    write_turn(folder_of(registry, record), "0001", lines, ENDED)
    shown = [e.type for e in conversation.log(registry, "a")]
    assert shown[-2:] == ["turn_completed", "lines_skipped"]
    assert max(bytes_read) <= untrusted.READ_CHUNK


# --- item 3: question files ----------------------------------------------------------------------


def write_question(registry: Registry, name: str, text: str) -> Path:
    folder = registry.session_dir("coder", "a") / "agent" / "questions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def test_questions_that_would_crash_a_reader_are_left_alone_with_a_warning(
    session: tuple[Registry, SessionState],
) -> None:
    registry, _ = session
    surrogate = write_question(registry, "s.json", '{"reason": "a\\ud800b"}')
    naive = write_question(
        registry, "n.json", json.dumps({"reason": "r", "created_at": "2026-01-01T00:00:00"})
    )
    write_question(registry, "ok.json", json.dumps({"reason": "fine", "severity": "block"}))
    prompts, problems = feedback.gather(registry)
    assert [p.reason for p in prompts] == ["fine"]
    assert surrogate.exists() and naive.exists()
    assert len(problems) == 2
    assert any("s.json: left alone" in line and "lone surrogates" in line for line in problems)
    assert any("n.json: left alone" in line and "time zone" in line for line in problems)
    queue = (registry.root / "prompts.json").read_bytes()
    assert b"ud800" not in queue
    assert [p.reason for p in feedback.pending_questions(registry)] == ["fine"]
    assert_inert(dashboard.render(dashboard.fleet(registry)))
    assert (registry.root / "prompts.json").read_bytes() == queue


def test_a_bad_entry_already_in_the_queue_does_not_crash_its_readers(
    session: tuple[Registry, SessionState],
) -> None:
    registry, _ = session
    entry = {
        "id": "a-old",
        "session_id": "a",
        "role": "coder",
        "workspace": "/ws",
        "branch": "b",
        "reason": "x\ud800" + ESCAPES,
        "requested_action": 5,
        "severity": "block",
        "created_at": "2026-01-01T00:00:00",
        "decision": None,
    }
    registry.root.mkdir(parents=True, exist_ok=True)
    (registry.root / "prompts.json").write_text(json.dumps([entry]))
    (prompt,) = feedback.pending_questions(registry)
    assert prompt.reason == "x\ufffd" + ESCAPES and prompt.requested_action == "5"
    fleet = dashboard.fleet(registry)
    assert_inert(dashboard.render(fleet))
    assert_inert(dashboard.render_json(fleet))
    assert fleet.sessions[0].agent["agent"] == "waiting"


def test_the_queue_file_holds_control_characters_escaped(
    session: tuple[Registry, SessionState],
) -> None:
    registry, record = session
    feedback.add(registry, record, reason=ESCAPES)
    text = (registry.root / "prompts.json").read_text()
    assert_inert(text)
    assert feedback.load_queue(registry)[0].reason == ESCAPES


# --- item 9: role file, conversation id ----------------------------------------------------------


def test_a_fifo_for_a_role_file_is_no_role_file(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "agents").mkdir(parents=True)
    os.mkfifo(workspace / "agents" / "AGENT.FEATURE.md")
    record = state("a").replace(role="FEATURE", workspace=workspace)
    assert conversation.role_instructions(record) is None


def test_a_conversation_id_of_another_shape_is_never_recorded(
    session: tuple[Registry, SessionState],
) -> None:
    registry, record = session
    folder = folder_of(registry, record)
    add_turn(registry, record, "0001")
    started = {"type": "thread.started", "thread_id": "--help-me-please"}
    write_turn(folder, "0001", [started], ENDED)
    with registry.lock("coder", "a"):
        assert conversation.conversation_of(registry, record) is None
    assert registry.read("coder", "a").thread_id is None  # type: ignore[union-attr]
    assert transcript.thread_id(folder, "0001") is None
    # A record that holds one (written by hand, or by an earlier version) is read without it.
    path = registry.state_path("coder", "a")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "thread_id": "--help-x-yz"}))
    assert registry.read("coder", "a").thread_id is None  # type: ignore[union-attr]
    path.write_text(json.dumps({**data, "thread_id": THREAD}))
    assert registry.read("coder", "a").thread_id == THREAD  # type: ignore[union-attr]


def test_an_error_quoting_what_a_session_wrote_is_shown_as_text() -> None:
    from invoke.context import Context
    from invoke.exceptions import Exit

    from orchestrator.errors import InputError
    from tasks.catalog_task import CatalogTask

    def body(c: object) -> None:
        raise InputError(f"turn failed: {ESCAPES}\ud800")

    task = CatalogTask(body, category="x", safe_for_agents=True, runs_in="anywhere")
    with pytest.raises(Exit) as raised:
        task(Context())
    assert raised.value.code == 2
    assert_inert(str(raised.value.message))
    assert str(raised.value.message).startswith("error: turn failed: ?]52;c;aGVsbG8=?")
