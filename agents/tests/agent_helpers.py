"""Helpers for the agent tests: run docker, the tasks and inspect what a registry owns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.registry import Registry

REPOSITORY = Path(__file__).resolve().parents[2]
SMOKE_TAG = "filare-codex:smoke"
# The `make_manifest` fixture: session ids in, the manifest's path out.
MakeManifest = Callable[..., Path]


def sh(*argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)


def docker(*args: str, check: bool = True) -> str:
    return sh("docker", *args, check=check).stdout.strip()


def inspect(container: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(docker("inspect", container))
    return data[0]


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


def inv(*args: str, state: Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPOSITORY,
        check=check,
        env={**os.environ, "FILARE_STATE_DIR": str(state)},
    )
