"""Helpers for the agent tests: what a registry owns on the engine, and the shared commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
    "sh",
]

SMOKE_TAG = "filare-codex:smoke"
# The real Codex image as the image tests build it (a tag of its own: never the user's image).
CODEX_TEST_IMAGE = "filare-codex:image-test"
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
