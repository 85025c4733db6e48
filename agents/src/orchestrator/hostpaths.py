"""Which host folders a session may be given: the rules for workspaces and extra mounts.

A session's agent can write anything in what it is given. A workspace of `/`, of `~`, of
`/var/run` (where the Docker socket is) or of the registry (where every session's SSH key is)
would hand it the host. Paths are compared after resolving links, since a link to `/etc` is
`/etc` to the container.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Folders of the operating system no session may be given, nor anything inside them.
SYSTEM_FOLDERS = tuple(
    Path(p)
    for p in (
        "/bin",
        "/boot",
        "/dev",
        "/etc",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/proc",
        "/run",
        "/sbin",
        "/sys",
        "/usr",
        "/var/run",
        "/var/lib/docker",
        "/var/lib/containerd",
    )
)


# Folders every user or service shares: a session's folder may lie inside one, never be one (a
# root orchestrator gives a session's transcript folder to the session's user).
SHARED_FOLDERS = tuple(
    Path(p)
    for p in (
        "/home",
        "/root",
        "/tmp",  # noqa: S108 - a folder refused, not one used
        "/var",
        "/var/tmp",  # noqa: S108 - a folder refused, not one used
        "/mnt",
        "/media",
        "/opt",
        "/srv",
        "/dev/shm",  # noqa: S108 - a folder refused, not one used
    )
)
# Inside a system folder, but a folder for everyone's temporary files, as /tmp is.
TEMPORARY_IN_SYSTEM = Path("/dev/shm")  # noqa: S108 - a folder checked, not one used


def resolved(path: Path) -> Path:
    """The path with every link resolved, as far as it exists (the rest is taken as written)."""
    return Path(os.path.realpath(path))


def unsafe_reason(
    path: Path, *, not_covered: Mapping[Path, str], private: Mapping[Path, str]
) -> str | None:
    """Why a session must not be given `path` (already resolved), or None when it may.

    `not_covered`: folders a session's path may lie inside but never be nor contain (the home
    folder, the checkout). `private`: paths it may not touch at all, inside included (the
    registry, the user's Codex home, `~/.ssh`).
    """
    if path == Path("/"):
        return "it is the root of the file system"
    if path in SHARED_FOLDERS:
        return f"it is {path}, which every user shares"
    temporary = TEMPORARY_IN_SYSTEM in path.parents
    for folder in SYSTEM_FOLDERS:
        if (path == folder or folder in path.parents) and not temporary:
            return f"it is inside the system folder {folder}"
        if path in folder.parents:
            return f"it contains the system folder {folder}"
    for other, what in {**not_covered, **private}.items():
        if path == other:
            return f"it is {what}"
        if path in other.parents:
            return f"it contains {what} ({other})"
    for other, what in private.items():
        if other in path.parents:
            return f"it is inside {what} ({other})"
    return None


def overlap(one: Path, other: Path) -> bool:
    """Whether two folders are one, or one lies inside the other."""
    return one == other or one in other.parents or other in one.parents


def home_folder() -> Path | None:
    try:
        return resolved(Path.home())
    except RuntimeError:
        return None
