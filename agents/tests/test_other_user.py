"""A session started by a user other than root: a UID with no name, in the socket's group only.

Everything else runs as root here; this is the check that nothing assumes it. The UID has no
passwd entry (as in many containers and CI runners), so it also owns its sessions as `uid-<n>`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from agent_helpers import REPOSITORY, docker, inspect, remove_ours, sh

from filare_testing.commands import results

pytestmark = pytest.mark.agent

UID = 4242


@pytest.fixture
def stranger_files(project: Path, smoke_image: str) -> Iterator[Path]:
    """A copy of the test project, and room for state and a home, all owned by the UID."""
    base = Path(tempfile.mkdtemp(prefix="filare-uid-"))
    shutil.copytree(project, base / "project")
    (base / "project" / "outputs" / "alpha.env").write_text("SESSION_NAME=alpha\n")
    (base / "project" / "sessions.yml").write_text(
        yaml.safe_dump(
            {
                "image": smoke_image,
                "id": "alpha",
                "role": "coder",
                "branch": "agent/alpha",
                "workspace": "outputs/ws/alpha",
                "env_file": "outputs/alpha.env",
                "ssh_key": "outputs/keys/id_test",
                "codex_dir": "outputs/codex-home",
            }
        )
    )
    (base / "home").mkdir()
    sh("chown", "-R", f"{UID}:{UID}", str(base))
    try:
        yield base
    finally:
        remove_ours(base / "state")
        shutil.rmtree(base, ignore_errors=True)


def inv_as_stranger(base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`inv ARGS` as the UID, with the socket's group and no user name anywhere in its env."""
    docker_gid = Path("/var/run/docker.sock").stat().st_gid
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(base / "home"),
        "FILARE_STATE_DIR": str(base / "state"),
        "XDG_CACHE_HOME": str(base / "home" / ".cache"),
    }
    ids = [f"--reuid={UID}", f"--regid={UID}", f"--groups={docker_gid}"]
    return subprocess.run(
        ["setpriv", *ids, sys.executable, "-m", "invoke", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPOSITORY,
        check=False,
        env=env,
    )


def test_a_uid_without_a_name_starts_lists_and_stops_its_session(stranger_files: Path) -> None:
    manifest = str(stranger_files / "project" / "sessions.yml")
    started = inv_as_stranger(stranger_files, "session.start", "--manifest", manifest)
    assert started.returncode == 0, started.stderr
    assert results(started.stdout).get("alpha") == "started"

    container = inspect("filare-coder-alpha")
    assert container["Config"]["User"] == f"{UID}:{UID}"
    assert container["Config"]["Labels"]["filare.owner"] == f"uid-{UID}"
    ssh_dir = stranger_files / "state" / "coder" / "alpha" / "ssh"
    assert (ssh_dir.stat().st_uid, ssh_dir.stat().st_mode & 0o777) == (UID, 0o700)
    assert ((ssh_dir / "id_rsa").stat().st_mode & 0o777) == 0o600
    docker("exec", "filare-coder-alpha", "touch", "/home/agent/workspace/made-inside")
    made = stranger_files / "project" / "outputs" / "ws" / "alpha" / "made-inside"
    assert (made.stat().st_uid, made.stat().st_gid) == (UID, UID)

    listed = inv_as_stranger(stranger_files, "session.list")
    assert listed.returncode == 0, listed.stderr
    assert "running" in listed.stdout and "filare-coder-alpha" in listed.stdout

    stopped = inv_as_stranger(stranger_files, "session.stop", "--all")
    assert stopped.returncode == 0, stopped.stderr
    assert results(stopped.stdout).get("alpha") == "stopped"
    assert docker("ps", "-aq", "--filter", "name=^filare-coder-alpha$") == ""
    assert not ssh_dir.exists()
