"""The session lifecycle on a real engine: start, inspect, list, stop, restart-safety."""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest
from agent_helpers import MakeManifest, docker, inspect, inv, our_containers

from filare_testing.commands import inv_into_closed_pipe, results
from orchestrator.manifest import load_manifest
from orchestrator.registry import Registry, now
from orchestrator.runtime import launch_container, list_sessions, start_sessions, stop_sessions
from tasks.catalog_task import EXIT_BROKEN_PIPE

pytestmark = pytest.mark.agent


def test_two_sessions_run_isolated_and_stop_cleanly(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    manifest = make_manifest()
    sessions = load_manifest(manifest)
    outcomes = start_sessions(sessions, registry)
    assert [o.error for o in outcomes] == [None, None]
    assert our_containers(registry, all_states=False) == [
        "filare-coder-alpha",
        "filare-reviewer-beta",
    ]
    listed = docker("ps", "--filter", "label=filare.session", "--format", "{{.Names}}").split()
    assert {"filare-coder-alpha", "filare-reviewer-beta"} <= set(listed)

    for session, outcome in zip(sessions, outcomes, strict=True):
        assert outcome.state is not None
        info = inspect(outcome.state.container_name)
        assert info["Id"] == outcome.state.container_id
        labels = info["Config"]["Labels"]
        assert labels["filare.session"] == session.id
        assert labels["filare.role"] == session.role
        assert labels["filare.owner"] == session.owner
        assert labels["filare.branch"] == session.branch
        assert labels["filare.workspace"] == str(session.workspace)
        assert labels["filare.manifest"] == str(manifest)
        assert labels["filare.registry"] == str(registry.root)
        own = f"{os.getuid()}:{os.getgid()}"
        assert info["Config"]["User"] == (own if os.getuid() else "10001:10001")
        assert info["Config"]["WorkingDir"] == "/home/agent/workspace"
        assert "HOME=/home/agent" in info["Config"]["Env"]
        mounts = {m["Destination"]: m for m in info["Mounts"]}
        assert mounts["/home/agent/workspace"]["Source"] == str(session.workspace)
        assert mounts["/home/agent/workspace"]["RW"] is True
        ssh_dir = registry.session_dir(session.role, session.id) / "ssh"
        assert mounts["/home/agent/.ssh"]["Source"] == str(ssh_dir)
        assert mounts["/home/agent/.ssh"]["RW"] is False
        # Each session has a Codex home of its own, under its record; the user's is not mounted.
        codex_home = registry.session_dir(session.role, session.id) / "codex"
        assert mounts["/home/agent/.codex"]["Source"] == str(codex_home)
        assert str(session.codex_dir) not in {m["Source"] for m in info["Mounts"]}
        assert stat.S_IMODE(ssh_dir.stat().st_mode) == 0o700
        assert not ssh_dir.is_relative_to(session.workspace)

        name = outcome.state.container_name
        key_mode = docker("exec", name, "stat", "-c", "%a", "/home/agent/.ssh/id_rsa")
        assert key_mode == "600"
        assert docker("exec", name, "cat", "/home/agent/.ssh/id_rsa") == (
            session.ssh_key.read_text().strip()
        )
        assert docker("exec", name, "sh", "-c", "echo $SESSION_NAME") == session.id
        other = "BETA" if session.id == "alpha" else "ALPHA"
        assert docker("exec", name, "sh", "-c", f"echo ${{ONLY_{session.id.upper()}}}") == "yes"
        assert docker("exec", name, "sh", "-c", f"echo ${{ONLY_{other}:-absent}}") == "absent"
        assert (session.workspace / "src" / "main.py").exists()

        record = registry.read(session.role, session.id)
        assert record is not None and record.status == "running"
        assert record.container_id == info["Id"]

    stopped = stop_sessions(registry, manifest=manifest, timeout=5)
    assert sorted(s.session_id for s in stopped) == ["alpha", "beta"]
    assert our_containers(registry) == []
    assert registry.ssh_dirs() == []
    assert [s.status for s in registry.states()] == ["stopped", "stopped"]


def test_read_only_ssh_mount_refuses_writes(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    (session,) = load_manifest(make_manifest(ids=("solo",)))
    state = launch_container(session, registry)
    result = docker(
        "exec", state.container_name, "sh", "-c", "touch /home/agent/.ssh/x 2>&1 || true"
    )
    assert "Read-only file system" in result
    stop_sessions(registry, session_ids=["solo"])


def test_starting_a_running_session_again_starts_nothing(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    manifest = make_manifest(ids=("alpha",))
    first = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert first.returncode == 0, first.stderr
    assert results(first.stdout).get("alpha") == "started"
    second = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert second.returncode == 0, second.stderr
    assert results(second.stdout).get("alpha") == "already running"
    assert our_containers(registry) == ["filare-coder-alpha"]

    listed = inv("session.list", "--json", state=registry.root)
    (entry,) = json.loads(listed.stdout)
    assert entry["session"] == "alpha"
    assert entry["status"] == "running"
    assert entry["container"] == "filare-coder-alpha"

    stop = inv("session.stop", "--session", "alpha", state=registry.root)
    assert stop.returncode == 0, stop.stderr
    assert results(stop.stdout).get("alpha") == "stopped"
    assert our_containers(registry) == []


def test_stop_by_role_and_all(registry: Registry, make_manifest: MakeManifest) -> None:
    manifest = make_manifest(ids=("alpha", "beta", "gamma"))
    assert all(o.error is None for o in start_sessions(load_manifest(manifest), registry))
    by_role = stop_sessions(registry, role="reviewer")
    assert [s.session_id for s in by_role] == ["beta"]
    assert our_containers(registry) == ["filare-coder-alpha", "filare-coder-gamma"]
    result = inv("session.stop", "--all", state=registry.root)
    assert result.returncode == 0, result.stderr
    assert our_containers(registry) == []
    assert {v.status for v in list_sessions(registry)} == {"stopped"}


def test_missing_image_names_the_task_that_builds_it(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    manifest = make_manifest(ids=("alpha",), image="filare-codex:absent")
    hint = (
        "image 'filare-codex:absent' not found: build it with 'uv run inv codex.build --tag "
        "filare-codex:absent'"
    )
    # session.start and demo give one answer: bad input, exit code 2, the tag in the hint.
    for command in ("session.start", "demo"):
        result = inv(command, "--manifest", str(manifest), state=registry.root)
        assert result.returncode == 2, result.stdout + result.stderr
        assert hint in result.stdout, result.stdout
    assert our_containers(registry) == []
    assert registry.ssh_dirs() == []
    record = registry.read("coder", "alpha")
    assert record is not None and record.status == "error"
    # The dashboard lists the failed start, in its rows and in what needs attention.
    board = json.loads(inv("session.dashboard", "--json", state=registry.root).stdout)
    assert [row["session"] for row in board["sessions"]] == ["alpha"]
    assert [(f["session"], f["what"]) for f in board["failures"]] == [("alpha", "error")]
    assert hint in board["failures"][0]["why"]
    text = inv("session.dashboard", state=registry.root).stdout
    assert "NEEDS ATTENTION" in text and "filare-codex:absent" in text


def test_session_list_into_a_reader_that_went_away_ends_quietly(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    (session,) = load_manifest(make_manifest(ids=("piped",)))
    state = launch_container(session, registry)
    for n in range(100):
        registry.write(
            dataclasses.replace(state, session_id=f"old-{n}", status="stopped", stopped_at=now())
        )
    for args in (("session.list", "--all"), ("session.list", "--all", "--json")):
        result = inv_into_closed_pipe(*args, state=registry.root)
        assert result.returncode == EXIT_BROKEN_PIPE, result.stderr
        assert result.stderr == ""
    stop_sessions(registry, session_ids=["piped"])


def test_a_turn_on_the_smoke_image_is_refused_up_front(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    """The smoke image has no Codex: a send would end as `codex: not found`, exit 127."""
    manifest = make_manifest(ids=("busy",))
    assert inv("session.start", "--manifest", str(manifest), state=registry.root).returncode == 0
    try:
        result = inv("session.send", "--session", "busy", "--message", "hello", state=registry.root)
        assert result.returncode == 2, result.stdout + result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: session 'busy' runs the smoke image filare-codex:")
        assert "has no Codex" in line
        inbox = registry.session_dir("coder", "busy") / "inbox"
        # Nothing sent: the inbox holds only the limits every start writes.
        assert not inbox.exists() or [p.name for p in inbox.iterdir()] in ([], ["limits.json"])
        # No turn yet: the log says so. A dry run of a running session says it runs.
        log = inv("session.log", "--session", "busy", state=registry.root)
        assert log.returncode == 0 and log.stdout.startswith("busy: no turns yet;"), log.stdout
        dry = inv("session.start", "--manifest", str(manifest), "--dry-run", state=registry.root)
        assert dry.returncode == 0, dry.stderr
        assert dry.stdout == (
            "# busy: already running (filare-coder-busy): a start keeps it, runs nothing\n"
        )
    finally:
        inv("session.stop", "--session", "busy", "--timeout", "1", state=registry.root)
