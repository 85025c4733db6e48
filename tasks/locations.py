"""Where this checkout keeps things, shared by the namespaces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrator.registry import Registry

REPOSITORY = Path(__file__).resolve().parents[1]


def session_registry() -> Registry:
    """`$FILARE_STATE_DIR`, else this checkout's `outputs/agents`, whatever the current folder."""
    from orchestrator.registry import STATE_ROOT_ENV, Registry

    return Registry(os.environ.get(STATE_ROOT_ENV) or REPOSITORY / "outputs" / "agents")


def repository_path(text: str) -> Path:
    """A path as typed, or, when it does not exist from here, relative to the checkout."""
    path = Path(text)
    if not path.is_absolute() and not path.exists():
        return REPOSITORY / path
    return path


def manifest_path(text: str) -> Path:
    """`--manifest` as every task reads it: from the current folder, else from the checkout (so
    `agents/manifests/demo.yml` works from any folder of it, and a hint that names it too).

    A manifest found in neither place is the one-line error `session.start` gives, exit code 2.
    """
    from orchestrator.errors import ManifestError

    typed = Path(text).expanduser()
    path = repository_path(str(typed))
    if path.exists():
        return path
    here = typed.resolve()
    where = "" if here == path.resolve() else f" (nor {path})"
    raise ManifestError(f"{here}: manifest not found{where}")


def shown(path: Path) -> str:
    """A path relative to the checkout when it is inside it, for shorter output."""
    return str(path.relative_to(REPOSITORY)) if path.is_relative_to(REPOSITORY) else str(path)
