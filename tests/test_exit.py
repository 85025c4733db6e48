"""`inv` ends without Python's last collections walking every object it made (`gc.freeze` at
exit): 20 to 30 ms of every command, after its output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from filare_testing.commands import REPOSITORY

# Registered before Invoke loads `tasks.py`, so it runs after the project's own exit handlers.
HARNESS = """
import atexit, gc, os, sys
atexit.register(lambda: os.write(2, f"frozen {gc.get_freeze_count()}\\n".encode()))
sys.argv = ["inv", *sys.argv[1:]]
from invoke.main import program
program.run()
"""


def run_inv(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", HARNESS, *args],
        cwd=REPOSITORY,
        env={**os.environ, "FILARE_STATE_DIR": str(state)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_inv_freezes_what_it_made_before_python_finalizes(tmp_path: Path) -> None:
    result = run_inv(tmp_path, "--list")
    assert result.returncode == 0, result.stderr
    assert "session.start" in result.stdout
    frozen = int(result.stderr.split("frozen ")[1].split()[0])
    assert frozen > 10_000


def test_a_failing_command_freezes_too_and_keeps_its_error(tmp_path: Path) -> None:
    result = run_inv(tmp_path, "session.stop")
    assert result.returncode == 2
    assert "say which sessions to stop" in result.stderr
    assert int(result.stderr.split("frozen ")[1].split()[0]) > 10_000
