"""The session lifecycle in one import: start, list, stop and prune.

Each verb lives in a module of its own (`launch`, `listing`, `stopping`); this module keeps the
names the README and earlier releases document.
"""

from __future__ import annotations

from orchestrator.launch import (
    LAUNCH_TIMEOUT,
    MAX_PARALLEL_STARTS,
    StartOutcome,
    check_start,
    dry_run,
    launch_container,
    load_checked,
    running_container,
    start_sessions,
)
from orchestrator.listing import SessionView, list_sessions, reconcile, survey
from orchestrator.plan import SCRIPT_ENV, launch_script
from orchestrator.plan import resolved_session as _resolved
from orchestrator.registry import Registry
from orchestrator.spec import SessionSpec
from orchestrator.stopping import (
    DEFAULT_STOP_TIMEOUT,
    PruneAction,
    StopOutcome,
    prune,
    stop_report,
    stop_sessions,
)

__all__ = [
    "DEFAULT_STOP_TIMEOUT",
    "LAUNCH_TIMEOUT",
    "MAX_PARALLEL_STARTS",
    "SCRIPT_ENV",
    "PruneAction",
    "SessionView",
    "StartOutcome",
    "StopOutcome",
    "check_start",
    "dry_run",
    "launch_container",
    "launch_script",
    "list_sessions",
    "load_checked",
    "prune",
    "reconcile",
    "resolved_session",
    "running_container",
    "start_sessions",
    "stop_report",
    "stop_sessions",
    "survey",
]


def resolved_session(session: SessionSpec, registry: Registry) -> SessionSpec:
    """The session with the defaults a start in `registry` would use filled in."""
    return _resolved(session, registry.root)
