"""The session's agent daemon (`filare-agentd`) in the real image, with the real Codex.

Sessions start with `session.start` on the image the `codex_image` fixture builds; their Codex
talks to a scripted model on this machine. Each test waits for the daemon's ready file, so its
turns go through the daemon (no `docker exec`), and checks what only the daemon does: a turn is
files in the inbox, the app-server stays between turns and stops when idle, and a daemon or an
app-server that dies never leaves a turn working.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import docker, wait_until

from conftest import BuiltCodexImage
from filare_testing.commands import inv
from filare_testing.fake_model import API_KEY_ENV, FakeModel, message, shell, slow
from filare_testing.fake_model import write_codex_home as write_fake_codex_home
from orchestrator.registry import Registry

pytestmark = [pytest.mark.agent, pytest.mark.image]

ROLE = "warm"
StartSession = Callable[..., str]


@pytest.fixture
def start_session(
    project: Path, registry: Registry, codex_image: BuiltCodexImage, fake: FakeModel
) -> Iterator[StartSession]:
    """Start one session on the real image and wait until its agent daemon takes turns; the
    container's name comes back. `fields` are more of the session's manifest fields."""
    codex_dir = project / "outputs" / "codex-home"
    write_fake_codex_home(codex_dir, fake.container_url)
    manifests: list[Path] = []

    def start(
        session_id: str, *, env: str = "", health_interval: str = "", **fields: object
    ) -> str:
        env_file = project / "outputs" / f"{session_id}.env"
        env_file.write_text(f"{API_KEY_ENV}=not-a-real-key\n{env}")
        manifest = project / f"{session_id}.yml"
        session = {
            "id": session_id,
            "role": ROLE,
            "branch": f"agent/{session_id}",
            "workspace": f"outputs/ws/{session_id}",
            "image": codex_image.tag,
            "ssh_key": "outputs/keys/id_test",
            "env_file": f"outputs/{session_id}.env",
            "codex_dir": "outputs/codex-home",
            **fields,
        }
        manifest.write_text(yaml.safe_dump({"sessions": [session]}))
        manifests.append(manifest)
        args = ("session.start", "--manifest", str(manifest))
        if health_interval:
            started = inv(*args, state=registry.root, FILARE_HEALTH_INTERVAL=health_interval)
        else:
            started = inv(*args, state=registry.root)
        assert started.returncode == 0, started.stdout + started.stderr
        name = f"filare-{ROLE}-{session_id}"
        container = docker("inspect", "--format", "{{.Id}}", name).strip()
        wait_until(
            lambda: (ready(registry, session_id) or {}).get("container") == container[:12],
            "the agent daemon's ready file",
            60,
        )
        return name

    yield start
    for manifest in manifests:
        inv("session.stop", "--manifest", str(manifest), "--timeout", "1", state=registry.root)


def ready(registry: Registry, session_id: str) -> dict[str, Any] | None:
    path = registry.session_dir(ROLE, session_id) / "agent" / "agentd.json"
    try:
        found: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return found


def task(registry: Registry, *args: str) -> tuple[int, str, str]:
    result = inv(*args, state=registry.root)
    return result.returncode, result.stdout, result.stderr


def send(registry: Registry, session_id: str, text: str, *, wait: bool = True) -> dict[str, Any]:
    args = ["session.send", "--session", session_id, "--message", text, "--json"]
    code, out, err = task(registry, *args, *(["--wait"] if wait else []))
    assert code in {0, 1}, out + err
    (row,) = json.loads(out)
    assert isinstance(row, dict)
    return row


def exec_ids(name: str) -> list[str]:
    """The `docker exec` sessions the engine has made in the container."""
    found = json.loads(docker("inspect", "--format", "{{json .ExecIDs}}", name))
    return list(found or [])


def processes(name: str) -> str:
    """The container's command lines, from the host (`docker top` runs no command inside)."""
    return docker("top", name, "-eo", "pid,args")


def test_a_turn_through_the_daemon_is_files_in_the_inbox_and_codex_stays_up(
    start_session: StartSession, registry: Registry, fake: FakeModel
) -> None:
    name = start_session("inbox")
    fake.enqueue(shell("echo made > made.txt"), message("made it"), message("still here"))
    row = send(registry, "inbox", "make a file")
    assert (row["status"], row["final_message"]) == ("completed", "made it"), row
    row = send(registry, "inbox", "and now?")
    assert (row["status"], row["final_message"]) == ("completed", "still here"), row
    assert "make a file" in fake.model_requests[-1].texts("user")  # the same conversation
    assert exec_ids(name) == []  # neither turn ran a command in the container
    assert "codex app-server" in processes(name)
    # The transcript is what `codex exec --json` prints.
    folder = registry.session_dir(ROLE, "inbox") / "agent" / "transcript"
    events = [json.loads(line) for line in (folder / "0001.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events] == [
        "thread.started",
        "turn.started",
        "item.started",
        "item.completed",
        "item.completed",
        "turn.completed",
    ]
    assert events[2]["item"]["type"] == "command_execution"
    assert json.loads((folder / "0001.exit").read_text())["exit_code"] == 0
    record = registry.read(ROLE, "inbox")
    assert record is not None and record.thread_id == events[0]["thread_id"]


def test_the_app_server_is_codex_itself_with_no_node_process_in_the_session(
    start_session: StartSession, registry: Registry, fake: FakeModel
) -> None:
    """The daemon's Codex is the native binary, its own child: the image's `codex` is no Node
    wrapper, which would stay alive as the binary's parent (about 50 MB a session). The commands
    Codex runs still find ripgrep and see the variables that wrapper set."""
    name = start_session("native")
    fake.enqueue(shell("command -v rg; echo managed=$CODEX_MANAGED_BY_NPM"), message("seen"))
    row = send(registry, "native", "look")
    assert (row["status"], row["final_message"]) == ("completed", "seen"), row
    pid = (ready(registry, "native") or {}).get("codex")
    assert isinstance(pid, int), ready(registry, "native")
    exe = docker("exec", name, "readlink", f"/proc/{pid}/exe").strip()
    assert exe.endswith("-unknown-linux-musl/bin/codex"), exe
    listed = [line.split()[-1] for line in docker("top", name, "-eo", "pid,comm").splitlines()[1:]]
    assert "node" not in listed and "codex" in listed, listed
    output = json.dumps(fake.model_requests[-1].tool_outputs())
    assert "/rg" in output and "managed=1" in output, output


def test_an_idle_app_server_stops_and_the_next_turn_starts_it(
    start_session: StartSession, registry: Registry, fake: FakeModel
) -> None:
    name = start_session("idle", env="FILARE_AGENTD_IDLE_SECONDS=2\n")
    fake.enqueue(message("first"), message("second"))
    assert send(registry, "idle", "one")["status"] == "completed"
    # The daemon writes its ready file once the app-server has exited: waited for in that order,
    # the process list is never read between the two.
    wait_until(
        lambda: (ready(registry, "idle") or {}).get("codex") is None,
        "the ready file to say the app-server stopped",
        30,
    )
    assert "codex app-server" not in processes(name)
    row = send(registry, "idle", "two")
    assert (row["status"], row["final_message"]) == ("completed", "second"), row
    assert "one" in fake.model_requests[-1].texts("user")


def test_attach_takes_the_conversation_from_the_daemon(
    start_session: StartSession, registry: Registry, fake: FakeModel
) -> None:
    name = start_session("attach")
    fake.enqueue(message("first"), message("second"))
    assert send(registry, "attach", "one")["status"] == "completed"
    code, out, err = task(registry, "session.attach", "--session", "attach")
    assert code == 2 and "needs a terminal" in err, out + err
    record = registry.read(ROLE, "attach")
    assert record is not None and record.thread_id
    # What session.attach runs, without a terminal: the daemon lets go of the conversation,
    # then Codex's terminal refuses to start on a pipe.
    ran = subprocess.run(
        ["docker", "exec", name, "agent-entrypoint", "filare-agentd", "--attach", record.thread_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 1 and "stdin is not a terminal" in ran.stderr, ran.stderr
    assert "codex app-server" not in processes(name)
    row = send(registry, "attach", "two")
    assert (row["status"], row["final_message"]) == ("completed", "second"), row


def test_an_interrupted_turn_ends_its_commands_and_the_next_turn_knows(
    start_session: StartSession, registry: Registry, fake: FakeModel, project: Path
) -> None:
    name = start_session("halt")
    fake.enqueue(shell("sleep 47 && echo late > late.txt", yield_time_ms=60_000), message("never"))
    assert send(registry, "halt", "wait a while", wait=False)["status"] == "started"
    wait_until(lambda: "sleep 47" in processes(name), "the command to run", 60)
    code, out, err = task(registry, "session.interrupt", "--session", "halt")
    assert code == 0 and "interrupted" in out, out + err
    assert "sleep 47" not in processes(name)
    assert exec_ids(name) == []
    fake.enqueue(message("back"))
    row = send(registry, "halt", "go on")
    assert row["status"] == "completed", row
    assert any("<turn_aborted>" in text for text in fake.model_requests[-1].texts("user"))
    assert not (project / "outputs" / "ws" / "halt" / "late.txt").exists()


def test_an_app_server_that_dies_mid_turn_fails_it_and_the_next_turn_starts_another(
    start_session: StartSession, registry: Registry, fake: FakeModel
) -> None:
    name = start_session("crash")
    release = threading.Event()
    fake.enqueue(slow(message("too late"), release=release))
    try:
        assert send(registry, "crash", "think", wait=False)["status"] == "started"
        fake.wait_for_requests(1, timeout=60)
        # What the kernel's out-of-memory killer would pick: Codex (`codex app-server`).
        docker("exec", name, "pkill", "-KILL", "-x", "codex")
        code, out, _ = task(registry, "session.wait", "--session", "crash", "--json")
    finally:
        release.set()
    (row,) = json.loads(out)
    assert code == 1 and row["status"] == "failed", out
    assert "app-server ended during the turn" in row["reason"]
    fake.enqueue(message("recovered"))
    row = send(registry, "crash", "again")
    assert (row["status"], row["final_message"]) == ("completed", "recovered"), row


def test_a_killed_daemon_stops_its_container_and_the_turn_is_not_left_working(
    start_session: StartSession, registry: Registry, fake: FakeModel
) -> None:
    name = start_session("gone")
    release = threading.Event()
    fake.enqueue(slow(message("too late"), release=release))
    try:
        assert send(registry, "gone", "think", wait=False)["status"] == "started"
        fake.wait_for_requests(1, timeout=60)
        pid = (ready(registry, "gone") or {})["pid"]
        docker("exec", name, "kill", "-KILL", str(pid))
        wait_until(
            lambda: docker("inspect", "--format", "{{.State.Running}}", name).strip() == "false",
            "the container to stop",
            30,
        )
        code, out, _ = task(registry, "session.wait", "--session", "gone", "--json")
    finally:
        release.set()
    (row,) = json.loads(out)
    assert code == 1 and row["status"] == "interrupted", out
    assert row["reason"] == "the container stopped before the turn ended"
    listed = {r["session"]: r for r in json.loads(task(registry, "session.list", "--json")[1])}
    assert listed["gone"]["status"] == "exited" and listed["gone"]["agent"] == "interrupted"


def test_a_daemon_that_stops_answering_makes_its_session_unhealthy(
    start_session: StartSession, registry: Registry
) -> None:
    name = start_session("hung", health_interval="1")

    def status() -> str:
        rows = json.loads(task(registry, "session.list", "--json")[1])
        return str({r["session"]: r for r in rows}["hung"]["status"])

    wait_until(lambda: status() == "running" and health(name) == "healthy", "healthy", 60)
    pid = (ready(registry, "hung") or {})["pid"]
    docker("exec", name, "kill", "-STOP", str(pid))
    try:
        # Its ready file, refreshed every minute while it runs, is ten minutes old.
        path = registry.session_dir(ROLE, "hung") / "agent" / "agentd.json"
        old = time.time() - 600
        os.utime(path, (old, old))
        wait_until(lambda: status() == "unhealthy", "the session to show unhealthy", 60)
    finally:
        docker("exec", name, "kill", "-CONT", str(pid))


def health(name: str) -> str:
    return docker("inspect", "--format", "{{.State.Health.Status}}", name).strip()


def test_a_stopped_daemon_never_wedges_the_sessions_turns(
    start_session: StartSession, registry: Registry, fake: FakeModel
) -> None:
    """The agent stops its own daemon (same user): a turn sent to it is never taken.
    `session.interrupt` withdraws it at once, the next turn goes through `filare-turn`, and the
    daemon, once it runs again, never takes the withdrawn turn."""
    name = start_session("stopped")
    pid = (ready(registry, "stopped") or {})["pid"]
    docker("exec", name, "kill", "-STOP", str(pid))
    try:
        assert send(registry, "stopped", "never taken", wait=False)["status"] == "started"
        code, out, err = task(registry, "session.interrupt", "--session", "stopped")
        assert code == 0, out + err
        assert out.split() == ["stopped", "turn", "0001", "interrupted"]
        fake.enqueue(message("through filare-turn"))
        row = send(registry, "stopped", "second")
        assert (row["status"], row["final_message"]) == ("completed", "through filare-turn")
        record = registry.session_dir(ROLE, "stopped") / "turns" / "0002.json"
        assert json.loads(record.read_text())["agentd"] is None
    finally:
        docker("exec", name, "kill", "-CONT", str(pid))
    fake.enqueue(message("through the daemon again"))
    row = send(registry, "stopped", "third")
    assert (row["status"], row["final_message"]) == ("completed", "through the daemon again")
    transcripts = registry.session_dir(ROLE, "stopped") / "agent" / "transcript"
    assert not list(transcripts.glob("0001.*"))
