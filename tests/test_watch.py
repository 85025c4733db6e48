"""`session.watch` and the notify command without Docker: events from the sessions' records,
each delivered once and in order, across restarts of the watcher, with a bounded catch-up; a
notify command that fails or hangs stops nothing."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestrator import conversation, feedback, limits, watch
from orchestrator.errors import InputError
from orchestrator.listing import Fleet
from orchestrator.registry import Registry, SessionState
from orchestrator.untrusted import json_text
from tests.test_registry import state
from tests.test_transcript import add_turn, view, write_turn

THREAD = {"type": "thread.started", "thread_id": "01a22205-3385-7810-b62b-3e8143142500"}


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Registry, SessionState, Path]:
    registry = Registry(tmp_path / "state")
    record = registry.write(state("a").replace(container_id="c1", workspace=tmp_path / "ws"))
    monkeypatch.setattr(
        watch, "survey", lambda registry: Fleet([view(registry, record)], foreign=[])
    )
    return registry, record, conversation.transcript_folder(registry, record)


def ended_turn(
    registry: Registry, record: SessionState, folder: Path, number: str, end: dict[str, object]
) -> None:
    add_turn(registry, record, number)
    events: list[object] = [THREAD]
    if end.get("exit_code") == 1 and not end.get("interrupted"):
        events.append({"type": "turn.failed", "error": {"message": "quota \x1b]52;c;eA==\x07"}})
    write_turn(folder, number, events, end)


def run(
    registry: Registry, rounds: int = 1, notify_timeout: float = 10.0
) -> tuple[list[watch.Event], list[str]]:
    seen: list[watch.Event] = []
    logged: list[str] = []
    watch.watch(
        registry,
        interval=0.01,
        emit=seen.append,
        log=logged.append,
        rounds=rounds,
        notify_timeout=notify_timeout,
    )
    return seen, logged


def at(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_each_event_is_delivered_once_in_order_across_restarts(
    fleet: tuple[Registry, SessionState, Path],
) -> None:
    registry, record, folder = fleet
    ended_turn(registry, record, folder, "0001", {"exit_code": 0, "ended_at": at(9)})
    ended_turn(registry, record, folder, "0002", {"exit_code": 1, "ended_at": at(8)})
    ended_turn(registry, record, folder, "0003", {"exit_code": 1, "interrupted": True})
    question = feedback.add(registry, record, reason="may I \x1b[2J?", severity="block")
    seen, logged = run(registry)
    assert [(e.state, e.turn, e.question) for e in seen] == [
        ("idle", "0001", None),
        ("failed", "0002", None),
        ("waiting", None, question.id),
    ]
    assert logged == []
    failed = seen[1]
    assert "\x1b" not in failed.line() and "quota ?]52;c;eA==?" in failed.line()
    assert "\\u001b" in json_text(failed.as_json())
    # Started again: nothing repeats; what happened meanwhile comes, once.
    assert run(registry)[0] == []
    timed_out = {"exit_code": 1, "interrupted": True, "reason": "timed out", "ended_at": at(1)}
    ended_turn(registry, record, folder, "0004", timed_out)
    seen, _ = run(registry, rounds=3)
    assert [(e.state, e.turn) for e in seen] == [("timed out", "0004")]
    assert seen[0].as_json()["event"] == "turn:0004"


def test_a_stall_is_an_event_once_per_silence(fleet: tuple[Registry, SessionState, Path]) -> None:
    registry, record, folder = fleet
    add_turn(registry, record, "0001")
    write_turn(folder, "0001", [THREAD], None)
    assert run(registry)[0] == []
    (folder / "0001.stalled").write_text(json.dumps({"at": at(1), "seconds": 5}))
    seen, _ = run(registry, rounds=3)
    assert [(e.state, e.turn) for e in seen] == [("stalled", "0001")]
    assert run(registry)[0] == []
    (folder / "0001.stalled").write_text(json.dumps({"at": at(0), "seconds": 5}))
    assert [e.state for e in run(registry)[0]] == ["stalled"]
    (folder / "0001.stalled").unlink()
    (folder / "0001.exit").write_text(json.dumps({"exit_code": 1, "interrupted": True,
                                                  "reason": "over budget"}))  # fmt: skip
    assert [e.state for e in run(registry)[0]] == [limits.OVER_BUDGET]


def test_a_catch_up_is_bounded(fleet: tuple[Registry, SessionState, Path]) -> None:
    registry, record, folder = fleet
    ended_turn(registry, record, folder, "0001", {"exit_code": 0, "ended_at": at(60 * 25)})
    for number in range(2, 27):
        ended_turn(registry, record, folder, f"{number:04d}", {"exit_code": 0, "ended_at": at(5)})
    # Interrupted by the operator: no event, and not one of the 20.
    ended_turn(registry, record, folder, "0027", {"exit_code": 1, "interrupted": True})
    seen, logged = run(registry)
    assert [e.turn for e in seen] == [f"{n:04d}" for n in range(7, 27)]
    assert logged == ["session.watch: 6 older events left out of the catch-up"]
    assert run(registry)[0] == []


def test_notify_gets_each_event_on_stdin_and_a_failing_or_hanging_one_stops_nothing(
    fleet: tuple[Registry, SessionState, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    registry, record, folder = fleet
    received = tmp_path / "received.jsonl"
    script = (
        "import sys\n"
        "data = sys.stdin.read()\n"
        f"open({str(received)!r}, 'a').write(data)\n"
        "if '0002' in data: sys.exit('webhook said no')\n"
        "if '0003' in data: __import__('time').sleep(60)\n"
    )
    argv = (sys.executable, "-c", script, "$(touch pwned)")
    monkeypatch.setattr(watch.Notifiers, "argv", lambda self, view: argv)
    for number in ("0001", "0002", "0003", "0004"):
        ended_turn(registry, record, folder, number, {"exit_code": 0, "ended_at": at(1)})
    seen, logged = run(registry, notify_timeout=1.0)
    assert [e.turn for e in seen] == ["0001", "0002", "0003", "0004"]
    lines = [json.loads(line) for line in received.read_text().splitlines()]
    assert [line["turn"] for line in lines] == ["0001", "0002", "0003", "0004"]
    assert set(lines[0]) == {"event", "session", "role", "state", "turn", "question", "reason",
                             "time"}  # fmt: skip
    assert (lines[0]["session"], lines[0]["role"], lines[0]["state"]) == ("a", "coder", "idle")
    assert logged == [
        "notify: " + sys.executable[:80] + " failed (exit 1): webhook said no",
        "notify: " + sys.executable[:80] + " ran past 1 s and was stopped",
    ]
    assert not (Path.cwd() / "pwned").exists()
    assert run(registry)[0] == []  # delivered, failures included: never retried


def test_a_notify_command_that_cannot_start_is_logged(
    fleet: tuple[Registry, SessionState, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, record, folder = fleet
    monkeypatch.setattr(watch.Notifiers, "argv", lambda self, view: ("/nonexistent/notify",))
    ended_turn(registry, record, folder, "0001", {"exit_code": 0, "ended_at": at(1)})
    seen, logged = run(registry)
    assert len(seen) == 1
    assert logged == ["notify: cannot run /nonexistent/notify: No such file or directory"]


def test_one_watcher_per_registry(fleet: tuple[Registry, SessionState, Path]) -> None:
    registry, _, _ = fleet
    with watch._only_watcher(registry), pytest.raises(InputError, match=r"another session\.watch"):
        run(registry)
    for bad in ({"interval": 0}, {"notify_timeout": -1}):
        with pytest.raises(InputError, match="must be more than 0"):
            watch.watch(registry, emit=print, rounds=1, **bad)  # type: ignore[arg-type]
