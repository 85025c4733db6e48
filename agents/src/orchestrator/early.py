"""What a command asks the engine before it loads the modules that use the answer.

A docker call takes 15 ms or so, most of it the CLI starting; loading the modules that read the
records and plan a start takes about as long. Asked first, the engine answers while they load:
`session.list` and `session.stop` ask for the sessions' containers, `session.start` for its
images. Only light modules are imported here. Each query is a context manager: a command that
fails before reading the answer ends the call with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.engine import ContainerQuery, ImageQuery
from orchestrator.plan import session_filters

if TYPE_CHECKING:
    from orchestrator.spec import SessionSpec


def ask_sessions(registry_root: Path) -> ContainerQuery:
    """The current engine's containers of this registry, as `listing.survey` asks for them."""
    return ContainerQuery(session_filters(registry_root))


def ask_images(sessions: Sequence[SessionSpec]) -> ImageQuery:
    """Which images of the sessions the current engine runs (no engine named, no pool) are
    missing, as `launch.start_sessions` checks them."""
    return ImageQuery(sorted({s.image for s in sessions if not (s.engine or s.engines)}))
