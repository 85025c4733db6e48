"""What the operator sees when an agent writes to mislead, crash or stall the host's commands.

Each test reproduces an item of issue 18 from inside a real session on a real engine: the
hostile files are written by the session's own user (`docker exec`, uid 10001 under a root
orchestrator) into its transcript and question folders, after a turn the host really started.
Then the operator's commands run as a person runs them, and the test checks what they print:
no byte 0x1b or 0x07 (text and --json), exit 0 for list, dashboard, log and feedback, the other
session still shown, `prompts.json` unchanged. The rows of docs/faults.md, "A session's output
as hostile input", name these tests.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import MakeManifest, docker, inv, wait_until

from orchestrator.registry import Registry

pytestmark = pytest.mark.agent

TRANSCRIPT = "/home/agent/.filare/transcript"
QUESTIONS = "/home/agent/.filare/questions"
OSC52 = "\x1b]52;c;aGVsbG8=\x07"
ESCAPES = f"{OSC52}\x1b]0;owned\x07\x1b[31mred\x1b[0m"
FLEET = ("victim", "bystander")


def run(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    return inv(*args, state=registry.root)


def plant(container: str, path: str, data: bytes, *, append: bool = False) -> None:
    """Write `data` at `path` in the session, as its agent (the container's user) would."""
    script = 'mkdir -p "${1%/*}" && cat ' + (">>" if append else ">") + ' "$1"'
    subprocess.run(
        ["docker", "exec", "-i", container, "sh", "-c", script, "sh", path],
        input=data,
        check=True,
        timeout=120,
        capture_output=True,
    )


def agent(container: str, script: str) -> str:
    return docker("exec", container, "sh", "-c", script)


def inert(result: subprocess.CompletedProcess[str]) -> str:
    """The command's output, checked to hold nothing that drives a terminal."""
    both = result.stdout + result.stderr
    assert "\x1b" not in both and "\x07" not in both, both
    assert "Traceback" not in both, both
    return both


def shown_ok(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    result = run(registry, *args)
    inert(result)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture
def fleet(registry: Registry, make_manifest: MakeManifest, turn_smoke_image: str) -> Path:
    """Two running sessions, each with one turn the host started (it fails at once on the smoke
    image, which has no Codex: what matters is the turn's record and transcript folder)."""
    manifest = make_manifest(ids=FLEET, name="hostile.yml", image=turn_smoke_image)
    started = run(registry, "session.start", "--manifest", str(manifest))
    assert started.returncode == 0, started.stdout + started.stderr
    sent = run(registry, "session.send", *session_args(FLEET), "--message", "hello")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    for session_id in FLEET:
        end = transcript_folder(registry, session_id) / "0001.exit"
        wait_until(end.is_file, f"turn 0001 of {session_id} to end")
    return manifest


def session_args(ids: tuple[str, ...]) -> list[str]:
    return [arg for session_id in ids for arg in ("--session", session_id)]


def transcript_folder(registry: Registry, session_id: str) -> Path:
    return registry.session_dir("coder", session_id) / "agent" / "transcript"


def rows(registry: Registry) -> dict[str, dict[str, Any]]:
    listed = shown_ok(registry, "session.list", "--json")
    return {row["session"]: row for row in json.loads(listed.stdout)}


def holds(value: object, text: str) -> bool:
    """Whether a string inside the parsed JSON `value` holds `text`."""
    if isinstance(value, str):
        return text in value
    if isinstance(value, dict):
        return any(holds(item, text) for item in value.values())
    if isinstance(value, list):
        return any(holds(item, text) for item in value)
    return False


def line(value: object) -> bytes:
    return json.dumps(value).encode() + b"\n"


def event(kind: str, **item: Any) -> bytes:
    return line({"type": "item.completed", "item": {"type": kind, **item}})


def test_terminal_escapes_an_agent_writes_never_reach_the_operators_terminal(
    registry: Registry, fleet: Path
) -> None:
    """Item 1: OSC 52 (clipboard), OSC 0 (title) and colours in a question, an agent message,
    a command, a tool call's status and an error, through every command that shows them."""
    victim = "filare-coder-victim"
    turn = (
        line({"type": "thread.started", "thread_id": "01a221a3-9a18-7441-8def-ae59aaf342ed"})
        + event("command_execution", command=f"echo {ESCAPES}", exit_code=0, status=ESCAPES)
        + event("mcp_tool_call", server=ESCAPES, tool="t", status=ESCAPES)
        + event("file_change", changes=[{"path": ESCAPES, "kind": "add"}])
        + event("error", message=ESCAPES)
        + event("agent_message", text=f"done {ESCAPES}")
    )
    plant(victim, f"{TRANSCRIPT}/0001.jsonl", turn)
    plant(victim, f"{TRANSCRIPT}/0001.exit", b'{"exit_code": 0, "interrupted": false}\n')
    question = {"reason": f"May I? {ESCAPES}", "requested_action": ESCAPES, "severity": "block"}
    plant(victim, f"{QUESTIONS}/q1.json", json.dumps(question).encode())
    # The next turns' transcripts, planted before the host starts them (the runner appends).
    for number in ("0002", "0003"):
        plant(
            victim, f"{TRANSCRIPT}/{number}.jsonl", event("agent_message", text=f"next {ESCAPES}")
        )

    for args in (
        ["session.list"],
        ["session.dashboard"],
        ["feedback.list"],
        ["session.log", "--session", "victim"],
        ["session.wait", "--session", "victim", "--timeout", "10"],
    ):
        shown_ok(registry, *args)
        with_json = shown_ok(registry, *args, "--json")
        if args[0] == "session.log":
            lines = [json.loads(line) for line in with_json.stdout.splitlines()]
            assert any(line.get("status") == ESCAPES for line in lines)
        else:
            # Escaped by JSON, not removed: a program reading it sees what the agent wrote.
            assert holds(json.loads(with_json.stdout), ESCAPES), with_json.stdout
    board = shown_ok(registry, "session.dashboard").stdout
    assert "bystander" in board and "May I? ?]52;c;aGVsbG8=?" in board
    assert "done ?]52" in board

    sent = run(registry, "session.send", "--session", "victim", "--message", "go", "--wait")
    inert(sent)
    assert "next ?]52;c;aGVsbG8=?" in sent.stdout
    sent = run(
        registry, "session.send", "--session", "victim", "--message", "on", "--wait", "--json"
    )
    inert(sent)
    assert json.loads(sent.stdout)[0]["final_message"] == f"next {ESCAPES}"
    queue = registry.root / "prompts.json"
    assert "\x1b" not in queue.read_text() and "\\u001b]52" in queue.read_text()


def test_one_sessions_transcript_breaks_only_its_own_line(registry: Registry, fleet: Path) -> None:
    """Item 2: 100,000 `[` in 0001.jsonl (RecursionError) and an exit code of 1e999
    (OverflowError) made list, dashboard and log die for every session."""
    victim = "filare-coder-victim"
    plant(victim, f"{TRANSCRIPT}/0001.jsonl", b"[" * 100_000 + b"\n" + b"not json\n")
    plant(victim, f"{TRANSCRIPT}/0001.exit", b'{"exit_code": 1e999}')
    listed = rows(registry)
    assert listed["bystander"]["agent"] == "failed"  # no Codex on the smoke image
    assert listed["bystander"]["transcript_skipped"] == 0
    assert listed["victim"]["agent"] == "failed"
    assert listed["victim"]["agent_reason"] == "0001.exit is not a well-formed end record"
    assert listed["victim"]["transcript_skipped"] == 2
    table = shown_ok(registry, "session.list").stdout
    assert "failed (bad transcript)" in table and "bystander" in table
    board = shown_ok(registry, "session.dashboard").stdout
    assert re.search(r"victim +transcript +2 line", board) and "bystander" in board
    shown_ok(registry, "session.dashboard", "--json")
    log = shown_ok(registry, "session.log", "--session", "victim").stdout
    assert "2 line(s) of 0001.jsonl skipped" in log
    assert "turn failed: 0001.exit is not a well-formed end record" in log
    assert log.count("skipped") == 1
    shown_ok(registry, "session.log", "--session", "bystander")
    shown_ok(registry, "session.log", "--session", "victim", "--json")


def test_question_files_that_crashed_feedback_are_left_alone(
    registry: Registry, fleet: Path
) -> None:
    """Item 3: a lone surrogate and a created_at without time zone crashed feedback.list,
    feedback.answer (of another session's question), the dashboard and session.wait."""
    docker("exec", "filare-coder-bystander", "agent-entrypoint", "filare-ask", "--reason", "ok?")
    first = shown_ok(registry, "feedback.list", "--json")
    (theirs,) = json.loads(first.stdout)
    queue = registry.root / "prompts.json"
    before = queue.read_bytes()
    victim = "filare-coder-victim"
    plant(victim, f"{QUESTIONS}/surrogate.json", b'{"reason": "a\\ud800b", "severity": "block"}')
    plant(
        victim, f"{QUESTIONS}/naive.json", b'{"reason": "r", "created_at": "2026-01-01T00:00:00"}'
    )

    listed = shown_ok(registry, "feedback.list")
    assert "surrogate.json: left alone" in listed.stderr and "lone surrogates" in listed.stderr
    assert "naive.json: left alone" in listed.stderr and "time zone" in listed.stderr
    shown_ok(registry, "feedback.list", "--json")
    board = shown_ok(registry, "session.dashboard")
    assert "bystander" in board.stdout and "ok?" in board.stdout
    shown_ok(registry, "session.dashboard", "--json")
    waited = run(registry, "session.wait", *session_args(FLEET), "--timeout", "10")
    inert(waited)
    assert waited.returncode == 1  # the turns failed (no Codex), and nothing crashed
    assert queue.read_bytes() == before
    answered = run(registry, "feedback.answer", "--id", theirs["id"], "--decision", "approved")
    inert(answered)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    assert "delivered as turn 0002 of bystander" in answered.stdout
    after = json.loads(queue.read_text())
    assert [q["session_id"] for q in after] == ["bystander"]
    folder = registry.session_dir("coder", "victim") / "agent" / "questions"
    assert sorted(p.name for p in folder.iterdir()) == ["naive.json", "surrogate.json"]

    # A bad entry an earlier version gathered: the readers show it instead of crashing.
    old = {**theirs, "id": "victim-old", "session_id": "victim", "decision": None}
    old.update(reason="x\ud800", created_at="2026-01-01T00:00:00")
    queue.write_text(json.dumps([*after, old]))
    shown_ok(registry, "session.dashboard")
    shown_ok(registry, "feedback.list", "--pending")
    shown_ok(registry, "feedback.list", "--json")
    assert rows(registry)["victim"]["questions_waiting"] == 1


def test_a_huge_transcript_is_read_in_bounded_amounts(registry: Registry, fleet: Path) -> None:
    """Item 7: 64 MB of `{}` lines (the commands took 90 s and 1.3 GB); no timing asserted here:
    docs/benchmark.md has the figures."""
    victim = "filare-coder-victim"
    # 64 MB and a line more, in whole lines: then the agent's last message.
    agent(victim, f"yes '{{}}' | head -c 67108866 > {TRANSCRIPT}/0001.jsonl")
    plant(victim, f"{TRANSCRIPT}/0001.jsonl", event("agent_message", text="end"), append=True)
    assert (transcript_folder(registry, "victim") / "0001.jsonl").stat().st_size > 64 << 20
    listed = rows(registry)
    assert listed["victim"]["transcript_skipped"] > 0 and "bystander" in listed
    assert listed["victim"]["last_message"] == "end"
    assert "bystander" in shown_ok(registry, "session.dashboard").stdout
    log = shown_ok(registry, "session.log", "--session", "victim", "--tail", "3").stdout
    assert "skipped: not well-formed events" in log


def test_a_fifo_role_file_and_an_option_for_a_conversation_id_are_ignored(
    registry: Registry, fleet: Path
) -> None:
    """Item 9: a FIFO at agents/AGENT.<ROLE>.md raised BlockingIOError; a thread id of
    `--help-…` was recorded, and would have become an option of `codex resume`."""
    victim = "filare-coder-victim"
    agent(victim, "mkdir -p agents && mkfifo agents/AGENT.coder.md")
    started = {"type": "thread.started", "thread_id": "--help-me-please-now"}
    plant(victim, f"{TRANSCRIPT}/0001.jsonl", json.dumps(started).encode() + b"\n")
    sent = run(registry, "session.send", "--session", "victim", "--message", "again")
    inert(sent)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    record = json.loads((registry.session_dir("coder", "victim") / "state.json").read_text())
    assert record["thread_id"] is None
    inbox = registry.session_dir("coder", "victim") / "inbox"
    assert (inbox / "0002.message").is_file() and not (inbox / "0002.instructions").exists()
