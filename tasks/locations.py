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


def shown(path: Path) -> str:
    """A path relative to the checkout when it is inside it, for shorter output."""
    return str(path.relative_to(REPOSITORY)) if path.is_relative_to(REPOSITORY) else str(path)
