"""Helpers for the agent tests: what a registry owns on the engine, and the shared commands."""

from __future__ import annotations

import os
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
    "remove_ours",
    "sh",
    "wait_until",
]

SMOKE_TAG = "filare-codex:smoke"
# The real Codex image as the image tests build it (a tag of its own: never the user's image).
# Checkouts that test image changes side by side on one engine give each run a tag of its own.
CODEX_TEST_IMAGE = os.environ.get("FILARE_CODEX_TEST_IMAGE", "filare-codex:image-test")
# The `make_manifest` fixture: session ids in, the manifest's path out.
MakeManifest = Callable[..., Path]


def our_containers(
    registry: Registry, *, all_states: bool = True, host: str | None = None
) -> list[str]:
    """Names of containers carrying this registry's label, as `docker ps` reports them (on the
    engine at `host`, a `DOCKER_HOST` value, when given)."""
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
    if host is not None:
        args = ["-H", host, *args]
    return sorted(docker(*args).split())


def remove_ours(state: Path) -> None:
    """Whatever a test's registry left on the engine: its containers, its egress proxy (which
    outlives the sessions until `session.prune`) and its networks."""
    leftovers = docker("ps", "-aq", "--filter", f"label=filare.registry={state}")
    proxies = docker("ps", "-aq", "--filter", f"label=filare.egress-registry={state}")
    if leftovers or proxies:
        docker("rm", "-f", *leftovers.split(), *proxies.split())
    networks = docker("network", "ls", "-q", "--filter", f"label=filare.registry={state}")
    if networks:
        docker("network", "rm", *networks.split())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)
