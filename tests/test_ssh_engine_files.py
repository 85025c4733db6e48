"""The tests' ssh engine (`filare_testing.ssh_engine`): what its cleanup may end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from filare_testing.engines import OwnEngine
from filare_testing.ssh_engine import SshEngine


def test_a_stale_pidfile_never_ends_another_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed halfway leaves sshd's pidfile; by the next `stop` that number may be another
    program's. Only an sshd is ended through it."""
    monkeypatch.setattr(SshEngine, "root", property(lambda _: tmp_path / "ssh"))
    ssh = SshEngine(OwnEngine(29))
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        ssh.server.mkdir(parents=True)
        ssh.pidfile.write_text(f"{bystander.pid}\n")
        assert ssh.sshd_pid() is None
        ssh.stop(timeout=1)
        assert bystander.poll() is None
        assert not ssh.root.exists()
    finally:
        bystander.kill()
        bystander.wait()
