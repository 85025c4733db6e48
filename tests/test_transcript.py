"""Turns and transcripts as the host reads them: no engine, files the container would write."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orchestrator import conversation, listing, transcript
from orchestrator.engine import Container
from orchestrator.errors import InputError
from orchestrator.listing import SessionView
from orchestrator.registry import Registry, SessionState
from tests.test_registry import state

# Lines `codex exec --json` 0.171.0 printed for a turn with one command.
CODEX_EVENTS: list[dict[str, Any]] = [
    {"type": "thread.started", "thread_id": "01a221a3-9a18-7441-8def-ae59aaf342ed"},
    {"type": "turn.started"},
    {
        "type": "item.started",
        "item": {"id": "item_1", "type": "command_execution", "command": "ls", "exit_code": None},
    },
    {
        "type": "item.completed",
        "item": {
            "id": "item_1",
            "type": "command_execution",
            "command": "/bin/sh -lc 'exit 3'",
            "aggregated_output": "out\n",
            "exit_code": 3,
            "status": "failed",
        },
    },
    {
        "type": "item.completed",
        "item": {
            "id": "item_2",
            "type": "file_change",
            "changes": [{"path": "/home/agent/workspace/a.txt", "kind": "add"}],
            "status": "completed",
        },
    },
    {"type": "item.completed", "item": {"id": "item_3", "type": "agent_message", "text": "done"}},
    {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 5}},
]


def write_turn(
    folder: Path, number: str, events: Sequence[object], end: dict[str, object] | None
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(e) if not isinstance(e, str) else e for e in events]
    (folder / f"{number}.jsonl").write_text("\n".join(lines) + "\n")
    if end is not None:
        (folder / f"{number}.exit").write_text(json.dumps(end))


def test_codex_events_become_the_transcripts_vocabulary() -> None:
    normal = [transcript.normalize("a", "0001", e) for e in CODEX_EVENTS]
    kept = [n for n in normal if n is not None]
    assert [n.type for n in kept] == ["command", "file_change", "agent_message", "turn_completed"]
    command = kept[0].as_json()
    assert command == {
        "session": "a",
        "turn": "0001",
        "type": "command",
        "command": "/bin/sh -lc 'exit 3'",
        "exit_code": 3,
        "status": "failed",
        "output": "out\n",
    }
    assert transcript.render(kept[0]) == "[0001] $ /bin/sh -lc 'exit 3'  (exit 3)"
    assert transcript.render(kept[1]) == "[0001] files: add /home/agent/workspace/a.txt"
    assert transcript.render(kept[2]) == "[0001] agent: done"


def test_a_transcript_is_read_as_untrusted_input(tmp_path: Path) -> None:
    folder = tmp_path / "t"
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps({"type": "thread.started", "thread_id": "stolen-secret"}) + "\n")
    folder.mkdir()
    (folder / "0001.jsonl").symlink_to(secret)
    assert list(transcript.codex_events(folder, "0001")) == []
    write_turn(folder, "0002", ["not json", "[1, 2]", *CODEX_EVENTS], None)
    assert len(list(transcript.codex_events(folder, "0002"))) == len(CODEX_EVENTS)
    (folder / "0002.exit").write_text("{broken")
    end = transcript.turn_end(folder, "0002")
    assert end is not None and end.exit_code == -1
    message = transcript.TranscriptEvent("a", "1", "agent_message", {"text": "hi\x1b[2J there"})
    assert "\x1b" not in transcript.render(message)


def view(registry: Registry, record: SessionState, *, running: bool = True) -> SessionView:
    container = Container(
        record.container_id or "",
        record.container_name,
        "running" if running else "exited",
        record.image,
        datetime.now(UTC),
        {},
    )
    return SessionView(
        session_id=record.session_id,
        role=record.role,
        owner=record.owner,
        status="running" if running else "exited",
        container_id=container.id,
        container_name=record.container_name,
        image=record.image,
        workspace=str(record.workspace),
        state=record,
        container=container,
    )


@pytest.fixture
def session(tmp_path: Path) -> tuple[Registry, SessionState]:
    registry = Registry(tmp_path / "state")
    record = registry.write(state("a").replace(container_id="c1", workspace=tmp_path / "ws"))
    return registry, record


def add_turn(registry: Registry, record: SessionState, number: str, container: str = "c1") -> None:
    turn = conversation.TurnRecord(
        "a", "coder", number, "message", datetime.now(UTC), container, None
    )
    folder = registry.session_dir("coder", "a") / conversation.TURNS
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{number}.json").write_text(turn.to_json())


def test_the_agents_state_follows_its_turns(session: tuple[Registry, SessionState]) -> None:
    registry, record = session
    folder = conversation.transcript_folder(registry, record)
    assert conversation.agent_json(registry, view(registry, record))["agent"] == "none"

    add_turn(registry, record, "0001")
    write_turn(folder, "0001", CODEX_EVENTS, None)
    working = conversation.agent_json(registry, view(registry, record))
    assert (working["agent"], working["turns"]) == ("working", 0)

    (folder / "0001.exit").write_text(json.dumps({"exit_code": 0, "interrupted": False}))
    idle = conversation.agent_json(registry, view(registry, record))
    assert (idle["agent"], idle["turns"], idle["last_message"]) == ("idle", 1, "done")

    add_turn(registry, record, "0002")
    failed = [{"type": "turn.failed", "error": {"message": "quota exceeded"}}]
    write_turn(folder, "0002", failed, {"exit_code": 1, "interrupted": False})
    agent = conversation.agent_json(registry, view(registry, record))
    assert (agent["agent"], agent["agent_reason"], agent["turns"]) == (
        "failed",
        "quota exceeded",
        2,
    )


def test_a_turn_whose_container_is_gone_is_interrupted_not_working(
    session: tuple[Registry, SessionState],
) -> None:
    registry, record = session
    add_turn(registry, record, "0001")
    write_turn(conversation.transcript_folder(registry, record), "0001", CODEX_EVENTS[:2], None)
    status = conversation.latest_status(registry, view(registry, record, running=False))
    assert status is not None and status.status == "interrupted"
    assert status.reason == "the container stopped before the turn ended"
    replaced = view(registry, record.replace(container_id="c2"))
    assert conversation.latest_status(registry, replaced).status == "interrupted"  # type: ignore[union-attr]
    events = list(conversation.events(registry, view(registry, record, running=False)))
    assert events[-1].type == "turn_interrupted"


def test_the_role_file_is_read_without_following_links(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "agents").mkdir(parents=True)
    record = state("a").replace(role="FEATURE", workspace=workspace)
    assert conversation.role_instructions(record) is None
    (workspace / "agents" / "AGENT.FEATURE.md").write_text("Build features.\n")
    assert conversation.role_instructions(record) == "Build features."
    (workspace / "agents" / "AGENT.FEATURE.md").unlink()
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    (workspace / "agents" / "AGENT.FEATURE.md").symlink_to(secret)
    assert conversation.role_instructions(record) is None
    (workspace / "agents" / "AGENT.FEATURE.md").unlink()
    (workspace / "agents").rmdir()
    (workspace / "agents").symlink_to(tmp_path)
    (tmp_path / "AGENT.FEATURE.md").write_text("via a linked folder")
    assert conversation.role_instructions(record) is None


def test_role_instructions_reach_codex_as_one_toml_string() -> None:
    text = 'Quotes " and \\ backslashes,\ttabs\nand lines\x07 and a bell.'
    value = conversation._toml_string(text)
    parsed = tomllib.loads(f"developer_instructions = {value}")
    assert parsed["developer_instructions"] == text.replace("\x07", "?")


def test_a_goal_is_framed_by_the_role() -> None:
    from orchestrator.spec import SessionSpec

    spec = SessionSpec(
        id="alpha",
        role="FEATURE",
        branch="agent/alpha",
        workspace=Path("/w"),
        env_file=Path("/e"),
        ssh_key=Path("/k"),
        owner="me",
        codex_dir=Path("/c"),
        image="img",
        goal="Add the widget",
    )
    message = conversation.goal_message(spec)
    assert "FEATURE agent of session alpha" in message and "agent/alpha" in message
    assert message.rstrip().endswith("Add the widget")


def test_turns_are_in_the_order_of_their_numbers_past_9999(tmp_path: Path) -> None:
    for number in ("9999", "10000", "0002"):
        (tmp_path / f"{number}.jsonl").write_text("")
    assert transcript.turns(tmp_path) == ["0002", "9999", "10000"]


def test_attach_opens_codex_on_the_sessions_conversation_and_nothing_else(
    session: tuple[Registry, SessionState], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, record = session
    surveyed = listing.Fleet([view(registry, record)], [])
    monkeypatch.setattr(conversation, "survey", lambda _: surveyed)
    with pytest.raises(InputError, match=r"has no conversation yet; start one with session\.send"):
        conversation.attach_command(registry, "a")
    add_turn(registry, record, "0001")
    folder = conversation.transcript_folder(registry, record)
    write_turn(folder, "0001", CODEX_EVENTS[:1], None)
    with pytest.raises(InputError, match="is working on turn 0001"):
        conversation.attach_command(registry, "a")
    (folder / "0001.exit").write_text(json.dumps({"exit_code": 0, "interrupted": False}))
    argv = conversation.attach_command(registry, "a")
    assert argv[:4] == ["docker", "exec", "--interactive", "--tty"]
    assert argv[-5:] == [
        "codex",
        "--no-daemon",
        "--dangerously-bypass-approvals-and-sandbox",
        "resume",
        "01a221a3-9a18-7441-8def-ae59aaf342ed",
    ]
    recorded = registry.read("coder", "a")
    assert recorded is not None and recorded.thread_id == "01a221a3-9a18-7441-8def-ae59aaf342ed"


def test_log_tail_keeps_the_last_events(
    session: tuple[Registry, SessionState], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, record = session
    surveyed = listing.Fleet([view(registry, record)], [])
    monkeypatch.setattr(conversation, "survey", lambda _: surveyed)
    add_turn(registry, record, "0001")
    write_turn(
        conversation.transcript_folder(registry, record),
        "0001",
        CODEX_EVENTS,
        {"exit_code": 0, "interrupted": False},
    )
    everything = [e.type for e in conversation.log(registry, "a")]
    assert everything == [
        "turn_started",
        "command",
        "file_change",
        "agent_message",
        "turn_completed",
    ]
    assert [e.type for e in conversation.log(registry, "a", tail=2)] == everything[-2:]


def test_a_turn_the_daemon_never_takes_fails_and_the_hosts_end_wins(
    session: tuple[Registry, SessionState],
) -> None:
    """A ready file the session forged (or a daemon stopped) sends a turn nowhere: it is
    working only for `PICKUP_SECONDS`, then failed with the reason."""
    registry, record = session
    folder = registry.session_dir("coder", "a") / conversation.TURNS
    folder.mkdir(parents=True)
    sent = datetime.now(UTC) - timedelta(seconds=conversation.PICKUP_SECONDS + 1)
    turn = conversation.TurnRecord(
        "a", "coder", "0001", "message", sent, "c1", None, agentd="deadbeefdeadbeef"
    )
    (folder / "0001.json").write_text(turn.to_json())
    status = conversation.latest_status(registry, view(registry, record))
    assert status is not None and status.status == "failed"
    assert "did not take the turn" in (status.reason or "")
    # Once it wrote anything of the turn, the daemon has it: working until it ends it.
    transcripts = conversation.transcript_folder(registry, record)
    transcripts.mkdir(parents=True, exist_ok=True)
    (transcripts / "0001.stderr").write_text("")
    assert conversation.latest_status(registry, view(registry, record)).status == "working"  # type: ignore[union-attr]
    # The host's own end of a turn (session.interrupt) wins over whatever the session writes.
    (folder / "0001.ended").write_text(json.dumps({"reason": "ended by the host", "at": "x"}))
    status = conversation.latest_status(registry, view(registry, record))
    assert status is not None and (status.status, status.reason) == (
        "interrupted",
        "ended by the host",
    )
    assert conversation.TurnRecord.from_json(turn.to_json().encode()).agentd == "deadbeefdeadbeef"


def test_a_wait_wakes_when_the_turn_ends_not_on_its_clock(
    session: tuple[Registry, SessionState], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`N.exit` renamed into the transcript folder ends the wait, with the clock set to 30 s."""
    import threading
    import time

    registry, record = session
    add_turn(registry, record, "0001")
    folder = conversation.transcript_folder(registry, record)
    write_turn(folder, "0001", CODEX_EVENTS, None)
    monkeypatch.setattr(conversation, "POLL_SECONDS", 30.0)

    def end() -> None:
        time.sleep(0.2)
        (folder / "0001.exit.tmp").write_text(json.dumps({"exit_code": 0}))
        (folder / "0001.exit.tmp").replace(folder / "0001.exit")

    ender = threading.Thread(target=end)
    ender.start()
    started = time.monotonic()
    (sent,) = conversation._wait_for(registry, [view(registry, record)], timeout=60)
    waited = time.monotonic() - started
    ender.join()
    assert sent.status is not None and sent.status.done
    assert sent.final_message == "done"
    assert waited < 15, "the wait ran on its clock: the turn's end did not wake it"
