"""The session lifecycle in one import: start, list, stop and prune.

Each verb lives in a module of its own (`launch`, `listing`, `stopping`); this module keeps the
names the README and earlier releases document.
"""

from __future__ import annotations

from orchestrator.launch import (
    LAUNCH_TIMEOUT,
    MAX_PARALLEL_STARTS,
    StartOutcome,
    dry_run,
    launch_container,
    start_sessions,
)
from orchestrator.listing import SessionView, list_sessions, reconcile, survey
from orchestrator.plan import SCRIPT_ENV, launch_script
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
    "dry_run",
    "launch_container",
    "launch_script",
    "list_sessions",
    "prune",
    "reconcile",
    "start_sessions",
    "stop_report",
    "stop_sessions",
    "survey",
]
