"""Talking to sessions: the real Codex in the real image, in real sessions, on a scripted model.

Each test starts sessions with `session.start` on the image the `codex_image` fixture builds,
whose Codex home comes from a `codex_dir` pointing Codex at a fake model server on this machine
(`filare_testing.fake_model`): no network, no key. The tests drive the sessions through the
tasks a user runs (`session.send`, `wait`, `log`, `list`, `interrupt`) and assert on what the
model was sent, what ran in the workspace, and what the transcript on the host says.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import REPOSITORY, sh

from conftest import BuiltCodexImage
from filare_testing.commands import inv, results
from filare_testing.fake_model import API_KEY_ENV, FakeModel, http_error, message, shell, slow
from filare_testing.fake_model import write_codex_home as write_fake_codex_home
from orchestrator.registry import Registry

pytestmark = [pytest.mark.agent, pytest.mark.image]

StartSessions = Callable[..., Path]


@pytest.fixture
def start_sessions(
    project: Path, registry: Registry, codex_image: BuiltCodexImage, fake: FakeModel
) -> Iterator[StartSessions]:
    """Write a manifest of sessions on the real image, talking to `fake`, and start them."""
    codex_dir = project / "outputs" / "codex-home"
    write_fake_codex_home(codex_dir, fake.container_url)
    (project / "outputs" / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    manifests: list[Path] = []

    def start(
        *ids: str, role: str = "talker", goal: str | None = None, options: tuple[str, ...] = ()
    ) -> Path:
        sessions = [
            {
                "id": session_id,
                "role": role,
                "branch": f"agent/{session_id}",
                "workspace": f"outputs/ws/{session_id}",
                **({"goal": goal} if goal else {}),
            }
            for session_id in ids
        ]
        manifest = project / f"sessions-{len(manifests)}.yml"
        manifest.write_text(
            yaml.safe_dump(
                {
                    "defaults": {
                        "image": codex_image.tag,
                        "ssh_key": "outputs/keys/id_test",
                        "env_file": "outputs/model.env",
                        "codex_dir": "outputs/codex-home",
                    },
                    "sessions": sessions,
                },
                sort_keys=False,
            )
        )
        manifests.append(manifest)
        started = inv("session.start", "--manifest", str(manifest), *options, state=registry.root)
        assert started.returncode == 0, started.stdout + started.stderr
        return manifest

    yield start
    for manifest in manifests:
        inv("session.stop", "--manifest", str(manifest), "--timeout", "1", state=registry.root)


def task(registry: Registry, *args: str) -> tuple[int, str, str]:
    result = inv(*args, state=registry.root)
    return result.returncode, result.stdout, result.stderr


def listed(registry: Registry) -> dict[str, dict[str, Any]]:
    code, out, err = task(registry, "session.list", "--json")
    assert code == 0, err
    return {row["session"]: row for row in json.loads(out)}


def log_events(registry: Registry, session: str) -> list[dict[str, Any]]:
    code, out, err = task(registry, "session.log", "--session", session, "--json")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_a_turn_runs_in_the_workspace_and_the_next_one_continues_the_conversation(
    start_sessions: StartSessions, registry: Registry, fake: FakeModel, project: Path
) -> None:
    start_sessions("alpha")
    fake.enqueue(shell("echo made > made-by-agent.txt && id -u; exit 3"), message("made it"))
    code, out, err = task(
        registry, "session.send", "--session", "alpha", "--message", "make a file", "--wait"
    )
    assert code == 0, out + err
    assert results(out) == {"alpha": "0001"}  # SESSION  TURN  RESULT  MESSAGE
    assert "completed" in out and "made it" in out
    made = project / "outputs" / "ws" / "alpha" / "made-by-agent.txt"
    assert made.read_text() == "made\n"
    expected_uid = os.getuid() or 10001
    assert made.stat().st_uid == expected_uid
    first = fake.model_requests[0]
    assert first.texts("user")[-1] == "make a file"

    events = log_events(registry, "alpha")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "turn_started" and events[0]["message"] == "make a file"
    (command,) = [e for e in events if e["type"] == "command"]
    assert command["exit_code"] == 3 and f"{expected_uid}" in command["output"]
    assert [e["text"] for e in events if e["type"] == "agent_message"] == ["made it"]
    assert kinds[-1] == "turn_completed"
    assert all(e["session"] == "alpha" and e["turn"] == "0001" for e in events)
    code, text, _ = task(registry, "session.log", "--session", "alpha")
    assert "(exit 3)" in text and "agent: made it" in text

    fake.enqueue(message("I wrote made-by-agent.txt"))
    code, out, err = task(
        registry, "session.send", "--session", "alpha", "--message", "what did you do?", "--wait"
    )
    assert code == 0, out + err
    resumed = fake.model_requests[-1]
    assert resumed.texts("user")[-2:] == ["make a file", "what did you do?"] or (
        "make a file" in resumed.texts("user") and resumed.texts("user")[-1] == "what did you do?"
    )
    assert "made it" in resumed.texts("assistant")
    row = listed(registry)["alpha"]
    assert (row["agent"], row["turns"], row["last_message"]) == (
        "idle",
        2,
        "I wrote made-by-agent.txt",
    )

    # Stopped and started again, the session continues the same conversation.
    assert task(registry, "session.stop", "--session", "alpha")[0] == 0
    record = registry.read("talker", "alpha")
    assert record is not None and record.thread_id
    manifest = record.manifest
    assert manifest is not None
    assert task(registry, "session.start", "--manifest", str(manifest))[0] == 0
    fake.enqueue(message("still here"))
    code, out, err = task(
        registry, "session.send", "--session", "alpha", "--message", "and now?", "--wait"
    )
    assert code == 0, out + err
    after = fake.model_requests[-1]
    assert {"make a file", "what did you do?", "and now?"} <= set(after.texts("user"))


def test_a_busy_session_refuses_a_turn_until_it_is_interrupted(
    start_sessions: StartSessions, registry: Registry, fake: FakeModel
) -> None:
    start_sessions("alpha")
    release = threading.Event()
    fake.enqueue(slow(message("too late"), release=release))
    code, out, err = task(registry, "session.send", "--session", "alpha", "--message", "think")
    assert code == 0, out + err
    assert results(out) == {"alpha": "0001"}
    fake.wait_for_requests(1)
    try:
        code, out, err = task(registry, "session.send", "--session", "alpha", "--message", "more")
        assert code == 2
        assert "is working on turn 0001" in err and len(err.strip().splitlines()) == 1
        assert listed(registry)["alpha"]["agent"] == "working"
        code, out, _ = task(registry, "session.wait", "--session", "alpha", "--timeout", "1")
        assert code == 1 and "working" in out

        code, out, err = task(registry, "session.interrupt", "--session", "alpha")
        assert code == 0, err
        assert "interrupted" in out
    finally:
        release.set()
    row = listed(registry)["alpha"]
    assert row["status"] == "running" and row["agent"] == "interrupted"
    assert log_events(registry, "alpha")[-1]["type"] == "turn_interrupted"

    fake.enqueue(message("back"))
    code, out, err = task(
        registry, "session.send", "--session", "alpha", "--message", "go on", "--wait"
    )
    assert code == 0, out + err
    texts = fake.model_requests[-1].texts("user")
    assert any("<turn_aborted>" in text for text in texts)


def test_a_model_error_fails_the_turn_with_its_reason(
    start_sessions: StartSessions, registry: Registry, fake: FakeModel
) -> None:
    start_sessions("alpha")
    fake.enqueue(http_error(400, "the model refuses"))
    code, out, _ = task(
        registry, "session.send", "--session", "alpha", "--message", "x", "--wait", "--json"
    )
    assert code == 1
    (row,) = json.loads(out)
    assert row["status"] == "failed" and "the model refuses" in row["reason"]
    agent = listed(registry)["alpha"]
    assert agent["agent"] == "failed" and "the model refuses" in agent["agent_reason"]


def test_the_goal_starts_the_first_turn_under_the_role_file(
    start_sessions: StartSessions, registry: Registry, fake: FakeModel, project: Path
) -> None:
    (project / "agents").mkdir()
    (project / "agents" / "AGENT.FEATURE.md").write_text("ROLE-FILE-MARKER: build features.\n")
    sh("git", "-C", str(project), "add", ".")
    sh("git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "r")
    fake.enqueue(message("on it"))
    start_sessions("featgoal", role="FEATURE", goal="Add the widget", options=("--send-goal",))
    (sent,) = fake.wait_for_requests(1)
    user = sent.texts("user")[-1]
    assert "Add the widget" in user and "FEATURE agent of session featgoal" in user
    assert "ROLE-FILE-MARKER: build features." in sent.texts("developer")[1]
    code, out, err = task(registry, "session.wait", "--session", "featgoal", "--timeout", "60")
    assert code == 0, out + err
    assert "on it" in out


def test_eight_sessions_run_turns_at_once_each_in_its_own_conversation(
    start_sessions: StartSessions, registry: Registry, fake: FakeModel
) -> None:
    ids = tuple(f"many{n}" for n in range(8))
    start_sessions(*ids)
    replies = [f"reply {n}" for n in range(8)]
    fake.enqueue(*(message(text) for text in replies))
    args = [arg for session_id in ids for arg in ("--session", session_id)]
    code, out, err = task(registry, "session.send", *args, "--message", "hello", "--wait")
    assert code == 0, out + err
    rows = listed(registry)
    assert sorted(str(rows[s]["last_message"]) for s in ids) == sorted(replies)
    threads = set()
    for session_id in ids:
        record = registry.read("talker", session_id)
        assert record is not None and record.thread_id
        threads.add(record.thread_id)
        folder = registry.session_dir("talker", session_id) / "agent" / "transcript"
        events = [json.loads(line) for line in (folder / "0001.jsonl").read_text().splitlines()]
        started = [e["thread_id"] for e in events if e["type"] == "thread.started"]
        assert started == [record.thread_id]
        assert "database is locked" not in (folder / "0001.stderr").read_text()
    assert len(threads) == 8


def test_bad_input_sends_nothing(
    start_sessions: StartSessions, registry: Registry, fake: FakeModel, tmp_path: Path
) -> None:
    start_sessions("alpha")
    cases = [
        (["--session", "nobody", "--message", "x"], "no session with id 'nobody'"),
        (["--session", "alpha", "--message", "  "], "the message is empty"),
        (["--session", "alpha", "--message-file", str(tmp_path / "none.txt")], "does not exist"),
        (["--session", "alpha"], "give the turn's text: --message TEXT or --message-file PATH"),
        (["--session", "alpha", "--message", "x", "--timeout", "5"], "give --wait too"),
    ]
    for args, expected in cases:
        code, _, err = task(registry, "session.send", *args)
        assert code == 2, (args, err)
        assert expected in err and len(err.strip().splitlines()) == 1
    assert task(registry, "session.stop", "--session", "alpha")[0] == 0
    code, _, err = task(registry, "session.send", "--session", "alpha", "--message", "x")
    assert code == 2 and "is stopped, not running" in err
    code, _, err = task(registry, "session.attach", "--session", "alpha")
    assert code == 2 and "needs a terminal" in err
    assert fake.requests == []


def test_log_follow_prints_a_turns_events_as_they_come(
    start_sessions: StartSessions, registry: Registry, fake: FakeModel
) -> None:
    start_sessions("follow")
    follower = subprocess.Popen(
        [sys.executable, "-m", "invoke", "session.log", "--session", "follow", "--follow"],
        cwd=REPOSITORY,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "FILARE_STATE_DIR": str(registry.root)},
    )
    try:
        fake.enqueue(shell("echo followed"), message("followed to the end"))
        code, out, err = task(
            registry, "session.send", "--session", "follow", "--message", "go", "--wait"
        )
        assert code == 0, out + err
        assert follower.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "[0001] turn completed" not in seen:
            seen.append(follower.stdout.readline().rstrip("\n"))
        assert seen[0] == "[0001] > go"
        assert "[0001] agent: followed to the end" in seen
        assert "[0001] turn completed" in seen
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
    assert follower.returncode == 0
