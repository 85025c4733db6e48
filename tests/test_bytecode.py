"""`inv` writes bytecode caches, as Python does elsewhere (Invoke alone turns them off)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from filare_testing.commands import REPOSITORY


def run_inv(cache: Path, **env: str) -> None:
    """`inv --list` with every cache it writes under `cache` (`PYTHONPYCACHEPREFIX`)."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    environment.update(PYTHONPYCACHEPREFIX=str(cache), **env)
    subprocess.run(
        [sys.executable, "-m", "invoke", "--list"],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        check=True,
        timeout=120,
    )


def test_inv_writes_the_task_modules_bytecode(tmp_path: Path) -> None:
    run_inv(tmp_path / "cache")
    written = {path.name.split(".")[0] for path in (tmp_path / "cache").rglob("tasks/*.pyc")}
    assert {"session", "collection", "catalog_task"} <= written


def test_pythondontwritebytecode_still_turns_them_off(tmp_path: Path) -> None:
    run_inv(tmp_path / "cache", PYTHONDONTWRITEBYTECODE="1")
    assert not list((tmp_path / "cache").rglob("tasks/*.pyc"))
