"""Engine faults that need no engine to show: Docker missing, daemon unreachable."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from filare_testing.commands import inv
from orchestrator.engine import describe_failure, docker
from orchestrator.errors import EngineError
from tests.conftest import WriteManifest, session


@pytest.fixture
def path_without_docker(tmp_path: Path) -> str:
    """A PATH with git, rsync and bash but no docker."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "git", "rsync", "id", "mkdir", "cat", "ls", "rm", "install", "chmod"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_docker_not_installed_is_one_line(path_without_docker: str, tmp_path: Path) -> None:
    result = inv("session.list", PATH=path_without_docker, FILARE_STATE_DIR=str(tmp_path / "s"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: docker CLI not found: install a Docker engine (Debian: apt-get install docker.io)"
    ]


def test_start_without_docker_is_one_line_and_writes_nothing(
    path_without_docker: str, write_manifest: WriteManifest, tmp_path: Path
) -> None:
    manifest = write_manifest([session("a"), session("b")])
    state = tmp_path / "state"
    result = inv(
        "session.start",
        "--manifest",
        str(manifest),
        PATH=path_without_docker,
        FILARE_STATE_DIR=str(state),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: docker CLI not found: install a Docker engine (Debian: apt-get install docker.io)"
    ]
    assert not state.exists()
    assert not (tmp_path / "ws").exists()


def test_daemon_not_running_is_one_line(tmp_path: Path) -> None:
    result = inv(
        "session.list",
        DOCKER_HOST=f"unix://{tmp_path}/no-daemon.sock",
        FILARE_STATE_DIR=str(tmp_path / "s"),
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert "Docker daemon is not running" in line


def test_failures_are_described_on_one_line() -> None:
    assert describe_failure(
        "ps",
        "permission denied while trying to connect to the Docker "
        "daemon socket at unix:///var/run/docker.sock",
    ).startswith("no permission")
    assert describe_failure("rm", "Error: No such container:\n  abc\n") == (
        "docker rm failed: Error: No such container: abc"
    )


def test_a_hanging_docker_call_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(EngineError, match=r"^'docker ps' did not answer within 0.5 s$"):
        docker("ps", timeout=0.5)


def test_start_with_the_daemon_unreachable_is_one_line_and_writes_nothing(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    manifest = write_manifest([session("a"), session("b")])
    state = tmp_path / "state"
    result = inv(
        "session.start",
        "--manifest",
        str(manifest),
        DOCKER_HOST="unix:///nonexistent.sock",
        FILARE_STATE_DIR=str(state),
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the Docker daemon is not running")
    assert result.stdout == ""
    assert not state.exists()
    assert not (tmp_path / "ws").exists()
