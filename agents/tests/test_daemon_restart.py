"""A real restart of the Docker daemon under running sessions.

Ours come back as `exited` and a start brings them up again; a container that is not ours is
neither restarted nor removed. The test restarts the daemon the way it runs here: through
systemd when systemd manages it, else by stopping the process and starting it again with its
own command line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from agent_helpers import MakeManifest, docker, inspect, inv, our_containers, sh

from filare_testing.commands import results
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent

DOCKER_PID = Path("/var/run/docker.pid")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


def engine_answers() -> bool:
    return sh("docker", "info", check=False, timeout=30).returncode == 0


def restart_daemon() -> None:
    systemd = (
        shutil.which("systemctl")
        and subprocess.run(
            ["systemctl", "is-active", "--quiet", "docker"], check=False, timeout=30
        ).returncode
        == 0
    )
    if systemd:
        sh("systemctl", "restart", "docker", timeout=180)
    else:
        if not DOCKER_PID.is_file():
            pytest.fail(f"cannot restart the daemon: no systemd unit and no {DOCKER_PID}")
        pid = int(DOCKER_PID.read_text())
        argv = [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
        argv = [part for part in argv if part]
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), "the daemon to stop")
        log = Path("/tmp/dockerd-restarted-by-tests.log").open("ab")  # noqa: SIM115
        subprocess.Popen(  # the daemon outlives the test, as the one it replaces did
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
    wait_until(engine_answers, "the daemon to answer again")


def test_daemon_restart_under_running_sessions(
    registry: Registry, make_manifest: MakeManifest, smoke_image: str
) -> None:
    manifest = make_manifest(ids=("alpha", "beta"))
    assert inv("session.start", "--manifest", str(manifest), state=registry.root).returncode == 0
    foreign = f"not-filare-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", foreign, smoke_image, "sleep", "infinity")
    live_restore = docker("info", "--format", "{{.LiveRestoreEnabled}}") == "true"
    try:
        restart_daemon()
        listed = json.loads(inv("session.list", "--json", state=registry.root).stdout)
        expected = "running" if live_restore else "exited"
        assert [(v["session"], v["status"]) for v in listed] == [
            ("alpha", expected),
            ("beta", expected),
        ]
        again = inv("session.start", "--manifest", str(manifest), state=registry.root)
        assert again.returncode == 0, again.stderr
        verb = "already running" if live_restore else "started"
        assert results(again.stdout) == {"alpha": verb, "beta": verb}
        assert our_containers(registry, all_states=False) == [
            "filare-coder-alpha",
            "filare-reviewer-beta",
        ]
        assert inv("session.prune", state=registry.root).returncode == 0
        assert inspect(foreign)["State"]["Running"] is live_restore
    finally:
        docker("rm", "-f", foreign)
    assert inv("session.stop", "--all", state=registry.root).returncode == 0
    assert our_containers(registry) == []
