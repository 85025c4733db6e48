"""Pure planning: from a validated session to the container name, labels and launch argv.

Nothing here touches files or Docker, so every rule about names and labels is unit-tested in
milliseconds and the effects layer only carries out a plan it is handed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import __version__

if TYPE_CHECKING:
    from orchestrator.manifest import SessionSpec

LABEL_PREFIX = "filare."
SESSION_LABEL = "filare.session"
ROLE_LABEL = "filare.role"
OWNER_LABEL = "filare.owner"
REGISTRY_LABEL = "filare.registry"
WORKSPACE_LABEL = "filare.workspace"
SHARED_WORKSPACE_LABEL = "filare.shared-workspace"
CONTAINER_PREFIX = "filare"
CONTAINER_HOME = "/home/agent"
CONTAINER_WORKSPACE = f"{CONTAINER_HOME}/workspace"
CONTAINER_SSH = f"{CONTAINER_HOME}/.ssh"


def container_name(role: str, session_id: str) -> str:
    """`filare-<role>-<id>`; unique because ids are unique per registry and roles partition them."""
    return f"{CONTAINER_PREFIX}-{role}-{session_id}"


def session_labels(session: SessionSpec, registry_root: Path) -> dict[str, str]:
    """Labels that let any later command find exactly this session's container again.

    `filare.registry` ties the container to the state folder that records it, so two checkouts
    (or two test runs) sharing one engine never list, stop or prune each other's sessions.
    """
    labels = {
        SESSION_LABEL: session.id,
        ROLE_LABEL: session.role,
        OWNER_LABEL: session.owner,
        "filare.branch": session.branch,
        WORKSPACE_LABEL: str(session.workspace),
        "filare.manifest": str(session.manifest_path or ""),
        REGISTRY_LABEL: str(registry_root),
        "filare.version": __version__,
    }
    if session.tags:
        labels["filare.tags"] = ",".join(session.tags)
    if session.shared_workspace:
        labels[SHARED_WORKSPACE_LABEL] = "true"
    return labels


def session_filters(registry_root: Path, **labels: str) -> list[str]:
    """`docker ps --filter` values that select this registry's containers, narrowed by labels."""
    filters = [f"label={REGISTRY_LABEL}={registry_root}"]
    filters += [f"label={LABEL_PREFIX}{key}={value}" for key, value in labels.items()]
    return filters


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a start will do, decided before it does any of it."""

    session: SessionSpec
    name: str
    labels: dict[str, str]
    state_dir: Path
    ssh_dir: Path
    argv: list[str]


def plan_launch(
    session: SessionSpec,
    *,
    registry_root: Path,
    script: Path,
    seed_from: Path | None = None,
    dry_run: bool = False,
) -> LaunchPlan:
    """The launch script's argv for one detached session; the script spells `docker run`."""
    state_dir = registry_root / session.role / session.id
    ssh_dir = state_dir / "ssh"
    name = container_name(session.role, session.id)
    labels = session_labels(session, registry_root)
    argv = [
        "bash",
        str(script),
        "--detach",
        "--name",
        name,
        "--image",
        session.image,
        "--workspace",
        str(session.workspace),
        "--branch",
        session.branch,
        "--env-file",
        str(session.env_file),
        "--ssh-key",
        str(session.ssh_key),
        "--ssh-dir",
        str(ssh_dir),
        "--codex-dir",
        str(session.codex_dir.expanduser()),
    ]
    if seed_from is not None:
        argv += ["--seed-from", str(seed_from)]
    if session.env_mode == "mount":
        argv.append("--env-mount")
    if session.resources.cpus is not None:
        argv += ["--cpus", f"{session.resources.cpus:g}"]
    if session.resources.memory is not None:
        argv += ["--memory", session.resources.memory]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    if dry_run:
        argv.append("--dry-run")
    return LaunchPlan(session, name, labels, state_dir, ssh_dir, argv)


def find_repository(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds a `.git`, found without running git."""
    for folder in (start, *start.parents):
        if os.path.lexists(folder / ".git"):
            return folder
    return None
