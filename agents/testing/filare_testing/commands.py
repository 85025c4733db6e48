"""Run what a user runs (`inv`, `docker`, any program) from tests, each in a process of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parents[3]
STATE_ENV = "FILARE_STATE_DIR"


def sh(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def docker(*args: str, check: bool = True) -> str:
    return sh("docker", *args, check=check).stdout.strip()


def inspect(container: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("inspect", container))
    return data[0]


def inv(
    *args: str,
    state: Path | None = None,
    cwd: Path = REPOSITORY,
    check: bool = False,
    timeout: float = 300,
    environment: Mapping[str, str] | None = None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run `inv ARGS` as a user would; `state` is the registry folder, `environment` and `env`
    add variables."""
    extra = {STATE_ENV: str(state)} if state is not None else {}
    extra.update(environment or {})
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        check=check,
        env={**os.environ, **extra, **env},
    )


def inv_into_closed_pipe(
    *args: str, state: Path | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `inv ARGS` with its output piped into a reader that has already gone, as `| head`
    does once it has what it wants; stderr is captured."""
    extra = {STATE_ENV: str(state)} if state is not None else {}
    read_end, write_end = os.pipe()
    subprocess.run(["true"], stdin=read_end, check=True, timeout=30)  # reads nothing, exits
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "invoke", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPOSITORY,
            env={**os.environ, **extra, **env},
        )
    finally:
        os.close(write_end)


def results(table: str) -> dict[str, str]:
    """The RESULT (second) column of a task's table output, by its first column (the session)."""
    first_table = table.strip().split("\n\n")[0]
    rows = [re.split(r"\s{2,}", line.strip()) for line in first_table.splitlines()]
    return {row[0]: row[1] for row in rows[1:] if len(row) > 1 and row[0] != "SESSION"}
