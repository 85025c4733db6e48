"""The session lifecycle in one import: start, list, stop and prune.

Each verb lives in a module of its own (`launch`, `listing`, `stopping`); this module keeps the
names the README and earlier releases document.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from orchestrator.launch import (
    LAUNCH_TIMEOUT,
    MAX_PARALLEL_STARTS,
    StartOutcome,
    check_start,
    dry_run,
    launch_container,
    running_container,
    start_sessions,
)
from orchestrator.listing import SessionView, list_sessions, reconcile, survey
from orchestrator.manifest import load_checked
from orchestrator.plan import SCRIPT_ENV, launch_script
from orchestrator.plan import resolved_session as _resolved
from orchestrator.registry import Registry
from orchestrator.replaced import replaced
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


# The origin's `orchestrator.runtime` planned `docker run` from Python and reattached through tmux;
# its names fail with an ImportError that says what replaces each.
REPLACED = {
    "build_run_command": "scripts/run_codex_container.sh spells `docker run`; "
    "orchestrator.runtime.dry_run(session) returns the command line a start runs "
    "(`inv session.start --manifest PATH --dry-run`)",
    "launch_session": "orchestrator.runtime.launch_container(session) or start_sessions(sessions) "
    "start containers (`inv session.start --manifest PATH`); a dry run writes no record",
    "resume_plan": "orchestrator.launch.resume_sessions() starts recorded sessions again "
    "(`inv session.resume --all`); `inv session.attach --session ID` replaces tmux attach",
    "SessionRegistry": "orchestrator.registry.Registry (records under outputs/agents/<role>/<id>)",
    "SessionState": "orchestrator.registry.SessionState, with other fields (session_id, "
    "container_id, status, timestamps as datetimes)",
    "RegistryError": "orchestrator.errors.OrchestratorError (InputError: bad input, exit 2; "
    "EngineError: engine faults, exit 1)",
    "find_repo_root": "orchestrator.plan.find_repository(start), which returns None outside a "
    "repository",
}

# Hidden from type checkers, which would otherwise accept any name of this module.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> NoReturn:
        raise replaced(__name__, name, REPLACED)
