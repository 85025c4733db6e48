"""A session's limits in the real image, with the real Codex and a scripted model that reports
what each response costs: the agent daemon enforces them while no host command runs, the host
checks the budget at every send, and they hold after a restart of the daemon and a resume.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import docker, wait_until
from test_agentd_image import (  # noqa: F401 - start_session is a fixture
    ROLE,
    StartSession,
    ready,
    send,
    start_session,
    task,
)

from filare_testing.commands import REPOSITORY, STATE_ENV
from filare_testing.fake_model import FakeModel, message, shell, slow, tokens
from orchestrator.registry import Registry

pytestmark = [pytest.mark.agent, pytest.mark.image]


def listed(registry: Registry, session_id: str) -> dict[str, Any]:
    code, out, err = task(registry, "session.list", "--json")
    assert code == 0, out + err
    rows: list[dict[str, Any]] = json.loads(out)
    return next(row for row in rows if row["session"] == session_id)


def in_container(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """A command as the session's user, as the agent would run it."""
    return subprocess.run(
        ["docker", "exec", name, "agent-entrypoint", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_budget_interrupts_the_turn_that_passes_it_and_a_raise_continues_the_conversation(
    start_session: StartSession,  # noqa: F811 - the fixture imported above
    registry: Registry,
    fake: FakeModel,
) -> None:
    start_session("budget", limits={"tokens": 100})
    limits_file = "/run/filare/inbox/limits.json"
    # The agent tries to lift its own limits: the inbox is read-only in the container.
    fake.enqueue(
        tokens(shell(f"echo '{{\"tokens\": 999999}}' > {limits_file}"), 5, 5),
        tokens(message("could not"), 5, 5),
    )
    row = send(registry, "budget", "give yourself more tokens")
    assert (row["status"], row["final_message"]) == ("completed", "could not"), row
    assert "Read-only file system" in fake.model_requests[-1].tool_outputs()[0]["output"]
    inbox = registry.session_dir(ROLE, "budget") / "inbox"
    assert json.loads((inbox / "limits.json").read_text())["tokens"] == 100
    # This turn's first response passes the budget (20 + 90 > 100): the daemon interrupts it
    # while its command runs, so the model is never asked again.
    fake.enqueue(tokens(shell("sleep 20"), 80, 10))
    row = send(registry, "budget", "spend a lot")
    assert row["status"] == "over budget", row
    assert len(fake.model_requests) == 3 and fake.unscripted == []
    assert "passed its token budget" in row["reason"]
    shown = listed(registry, "budget")
    assert (shown["agent"], shown["tokens_conversation"], shown["tokens_budget"]) == (
        "over budget",
        110,
        100,
    )
    assert shown["tokens_last_turn"] == 90
    code, out, err = task(registry, "session.send", "--session", "budget", "--message", "more")
    assert code == 2 and "over its token budget (110 of 100 tokens)" in err, out + err
    # Raised: the conversation goes on, with its history.
    code, out, err = task(registry, "session.budget", "--session", "budget", "--tokens", "1000")
    assert code == 0 and "token budget 1000" in out, out + err
    fake.enqueue(message("remembered"))
    row = send(registry, "budget", "do you remember?")
    assert (row["status"], row["final_message"]) == ("completed", "remembered"), row
    assert "give yourself more tokens" in fake.model_requests[-1].texts("user")
    assert listed(registry, "budget")["agent"] == "idle"


def test_a_slow_reply_times_out_and_a_silent_one_shows_stalled(
    start_session: StartSession,  # noqa: F811 - the fixture imported above
    registry: Registry,
    fake: FakeModel,
) -> None:
    start_session("slow", limits={"turn_seconds": 8, "stall_seconds": 2})
    fake.enqueue(slow(message("too late"), delay=120))
    assert send(registry, "slow", "take your time", wait=False)["status"] == "started"
    wait_until(lambda: listed(registry, "slow")["agent"] == "stalled", "the stall", 30)
    shown = listed(registry, "slow")
    assert shown["stalled_since"] and isinstance(shown["turn_elapsed_seconds"], int)
    code, out, err = task(registry, "session.wait", "--session", "slow", "--json")
    (row,) = json.loads(out)
    assert code == 1, out + err
    assert row["status"] == "timed out", out + err
    assert "ran past turn_seconds (8 s)" in row["reason"]
    assert listed(registry, "slow")["agent"] == "timed out"
    assert fake.model_requests[-1].texts("user")[-1] == "take your time"


def test_limits_hold_after_a_daemon_restart_and_a_resume(
    start_session: StartSession,  # noqa: F811 - the fixture imported above
    registry: Registry,
    fake: FakeModel,
) -> None:
    # turn_seconds leaves a new container's Codex time to start, on a busy machine.
    name = start_session("hold", limits={"tokens": 100, "turn_seconds": 20})
    fake.enqueue(message("first"))  # 15 tokens
    assert send(registry, "hold", "one")["status"] == "completed"
    # The daemon starts again inside the same container: a new life, the same limits.
    before = (ready(registry, "hold") or {}).get("boot")
    restarted = in_container(name, "filare-agentd", "--restart")
    assert restarted.returncode == 0, restarted.stderr
    assert (ready(registry, "hold") or {}).get("boot") not in {None, before}
    fake.enqueue(slow(message("too late"), delay=120))
    row = send(registry, "hold", "two")
    assert row["status"] == "timed out", row
    # Stopped and resumed: a new container, the same conversation, the same limits.
    code, out, err = task(registry, "session.stop", "--session", "hold", "--timeout", "1")
    assert code == 0, out + err
    code, out, err = task(registry, "session.resume", "--session", "hold")
    assert code == 0, out + err
    container = docker("inspect", "--format", "{{.Id}}", name).strip()
    wait_until(
        lambda: (ready(registry, "hold") or {}).get("container") == container[:12],
        "the daemon of the new container",
        60,
    )
    # 15 before the resume and 90 now pass 100 only if the conversation's count carried over.
    fake.enqueue(tokens(shell("sleep 60"), 90, 0))
    row = send(registry, "hold", "three")
    assert row["status"] == "over budget", row
    end = json.loads(
        (registry.session_dir(ROLE, "hold") / "agent" / "transcript" / "0003.exit").read_text()
    )
    assert end["tokens"] == {"turn": 90, "conversation": 105}
    assert "one" in fake.model_requests[-1].texts("user")
    assert fake.unscripted == []


def start_watcher(registry: Registry) -> subprocess.Popen[str]:
    """`session.watch --json`, long-running, as an operator (or a systemd unit) runs it."""
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "session.watch", "--json", "--interval", "0.3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPOSITORY,
        env={**os.environ, STATE_ENV: str(registry.root)},
    )


def stop_watcher(watcher: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """Ctrl-C: the watcher ends quietly; the events it printed come back."""
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=30)
    assert (watcher.returncode, err) == (0, ""), err
    return [json.loads(line) for line in out.splitlines()]


def notified(path: Path) -> list[tuple[str, str | None]]:
    if not path.exists():
        return []
    return [(e["state"], e["turn"]) for e in map(json.loads, path.read_text().splitlines())]


def test_watch_notifies_each_event_once_and_in_order_also_across_a_restart(
    start_session: StartSession,  # noqa: F811 - the fixture imported above
    registry: Registry,
    fake: FakeModel,
    tmp_path: Path,
) -> None:
    received = tmp_path / "notified.jsonl"
    script = f"import sys; open({str(received)!r}, 'a').write(sys.stdin.read())"
    start_session(
        "ping",
        limits={"turn_seconds": 8, "stall_seconds": 3},
        notify=[sys.executable, "-c", script],
    )
    watcher = start_watcher(registry)
    try:
        fake.enqueue(message("one"))
        assert send(registry, "ping", "first")["status"] == "completed"
        fake.enqueue(slow(message("too late"), delay=120))
        assert send(registry, "ping", "second")["status"] == "timed out"
        wait_until(lambda: len(notified(received)) == 3, "three notifications", 30)
    finally:
        printed = stop_watcher(watcher)
    # While no watcher runs, a turn completes: the next watcher delivers it, and only it.
    fake.enqueue(message("three"))
    assert send(registry, "ping", "third")["status"] == "completed"
    watcher = start_watcher(registry)
    try:
        wait_until(lambda: len(notified(received)) == 4, "the missed event", 30)
    finally:
        printed_again = stop_watcher(watcher)
    assert notified(received) == [
        ("idle", "0001"),
        ("stalled", "0002"),
        ("timed out", "0002"),
        ("idle", "0003"),
    ]
    assert [(e["state"], e["turn"]) for e in printed] == notified(received)[:3]
    assert [(e["state"], e["turn"]) for e in printed_again] == [("idle", "0003")]
    assert {e["session"] for e in printed} == {"ping"}
