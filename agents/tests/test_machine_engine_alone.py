"""The tests that restart a Docker engine, or start one reached over ssh, leave the machine's
own alone.

Each is run here as a user runs it (`pytest -m agent FILE`), with a container of nobody's
started on the machine's engine before: afterwards the machine's `dockerd` is the same process
(pid and start time) and that container still runs, never restarted.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from agent_helpers import REPOSITORY, docker, inspect

pytestmark = pytest.mark.agent

# Where the machine's engine writes its pid (dockerd's default `--pidfile`).
MACHINE_PIDFILE = Path("/var/run/docker.pid")


def machine_daemon() -> tuple[int, str]:
    """The machine's dockerd: its pid and its start time (a pid alone could be reused)."""
    if not MACHINE_PIDFILE.is_file():
        pytest.fail(f"no {MACHINE_PIDFILE}: cannot tell which dockerd is the machine's")
    pid = int(MACHINE_PIDFILE.read_text().strip())
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return pid, fields[19]


@pytest.mark.parametrize(
    "selection",
    [
        pytest.param(["-m", "agent", "agents/tests/test_daemon_restart.py"], id="daemon-restart"),
        pytest.param(["-m", "agent", "agents/tests/test_ssh_engine.py"], id="ssh-engine"),
        pytest.param(
            [
                "-m",
                "agent and image",
                "agents/tests/test_operator_loop.py",
                "-k",
                "daemon_restart",
            ],
            id="operator-loop-restart",
            marks=pytest.mark.image,
        ),
    ],
)
def test_a_run_of_the_restart_tests_leaves_the_machines_engine_alone(
    smoke_image: str, selection: list[str]
) -> None:
    before = machine_daemon()
    bystander = f"not-filare-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", bystander, smoke_image, "sleep", "1d")
    try:
        started = inspect(bystander)["State"]["StartedAt"]
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
            capture_output=True,
            text=True,
            cwd=REPOSITORY,
            timeout=3600,
            check=False,
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert " passed" in run.stdout and "skipped" not in run.stdout
        assert machine_daemon() == before
        state = inspect(bystander)["State"]
        assert state["Running"] is True
        assert state["StartedAt"] == started
    finally:
        docker("rm", "-f", bystander)
