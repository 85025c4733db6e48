"""Plain-text renderings of results for the command line; pure, so their shape is unit-tested."""

from __future__ import annotations

import json
from collections.abc import Sequence

from orchestrator.runtime import PruneAction, SessionView, StartOutcome, StopOutcome


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, str(row[-1])]).rstrip())
    return "\n".join(lines)


def start_line(outcome: StartOutcome) -> str:
    session = outcome.session
    if outcome.error is not None:
        return f"{session.id}  error  {outcome.error}"
    assert outcome.state is not None
    status = "already running" if outcome.already_running else "started"
    cid = (outcome.state.container_id or "")[:12]
    return f"{session.id}  {status}  {outcome.state.container_name} ({cid})  {session.workspace}"


def stop_line(outcome: StopOutcome) -> str:
    what = "stopped" if outcome.was_running else "removed" if outcome.container_id else "cleaned"
    return f"{outcome.session_id}  {what}  {outcome.container_name}"


def prune_line(action: PruneAction, *, dry_run: bool) -> str:
    verb = "would remove" if dry_run else "removed"
    return f"{action.role}/{action.session_id}  {verb} {action.what}  ({action.reason})"


def sessions_table(views: Sequence[SessionView]) -> str:
    if not views:
        return "no sessions"
    header = ("SESSION", "ROLE", "STATUS", "CONTAINER", "IMAGE", "AGE", "WORKSPACE")
    rows = [
        (
            v.session_id,
            v.role,
            v.status,
            v.container_name,
            v.image,
            human_age(v.age_seconds()),
            v.workspace,
        )
        for v in views
    ]
    return table(header, rows)


def sessions_json(views: Sequence[SessionView]) -> str:
    return json.dumps([v.as_json() for v in views], indent=2)


def human_age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
