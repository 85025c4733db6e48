"""Helpers for the agent tests: what a registry owns on the engine, and the shared commands."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from filare_testing.commands import REPOSITORY, docker, inspect, inv, sh
from orchestrator.registry import Registry

__all__ = [
    "CODEX_TEST_IMAGE",
    "REPOSITORY",
    "SMOKE_TAG",
    "MakeManifest",
    "docker",
    "inspect",
    "inv",
    "our_containers",
    "restart_daemon",
    "sh",
    "wait_until",
]

SMOKE_TAG = "filare-codex:smoke"
# The real Codex image as the image tests build it (a tag of its own: never the user's image).
# Checkouts that test image changes side by side on one engine give each run a tag of its own.
CODEX_TEST_IMAGE = os.environ.get("FILARE_CODEX_TEST_IMAGE", "filare-codex:image-test")
# The `make_manifest` fixture: session ids in, the manifest's path out.
MakeManifest = Callable[..., Path]


def our_containers(registry: Registry, *, all_states: bool = True) -> list[str]:
    """Names of containers carrying this registry's label, as `docker ps` reports them."""
    args = [
        "ps",
        "--filter",
        "label=filare.session",
        "--filter",
        f"label=filare.registry={registry.root}",
        "--format",
        "{{.Names}}",
    ]
    if all_states:
        args.insert(1, "--all")
    return sorted(docker(*args).split())


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
