"""One screen for the fleet: every session with what its agent does, the questions that wait,
and what failed.

It reads only local records (the registry, the turns, the transcripts' ends, the question
queue) and makes one batched engine call (`docker ps`) per refresh, so it stays cheap with fifty
sessions. `session.list` shows the same rows; `session.dashboard --json` is one object holding
what `session.list --json` and `feedback.list --pending --json` print.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import conversation, feedback
from orchestrator.denials import denial_count
from orchestrator.engine import ContainerQuery
from orchestrator.errors import InputError
from orchestrator.feedback import Prompt
from orchestrator.listing import ENDED, SessionView, survey
from orchestrator.registry import STATE_ROOT_ENV, Registry, now
from orchestrator.report import agent_cell, human_age, table
from orchestrator.untrusted import json_text

# Session statuses and agent states that need a person's eyes.
FAILED_STATUSES = frozenset({"error", "stale", "orphan", "exited", "unhealthy", "unreachable"})
FAILED_AGENT = frozenset({"failed", "interrupted", "timed out", "over budget", "stalled"})


@dataclass(frozen=True)
class Fleet:
    """Sessions with their agents' state, the questions waiting, and what was left alone."""

    sessions: list[SessionView]
    hidden: int
    questions: list[Prompt]
    foreign: list[str]
    hidden_what: str = "stopped or failed"
    # Engines that did not answer (context -> what they answered with).
    unreachable: dict[str, str] = field(default_factory=dict)

    @property
    def failures(self) -> list[dict[str, str]]:
        found = []
        for view in self.sessions:
            agent = str(view.agent.get("agent") or "")
            if view.status in FAILED_STATUSES:
                why = view.state.error if view.state and view.state.error else view.status
                found.append({"session": view.session_id, "what": view.status, "why": why or ""})
            elif agent in FAILED_AGENT:
                why = str(view.agent.get("agent_reason") or agent)
                found.append({"session": view.session_id, "what": f"turn {agent}", "why": why})
            skipped = view.agent.get("transcript_skipped")
            if skipped:
                why = f"{skipped} line(s) of its newest transcripts are not well-formed events"
                found.append({"session": view.session_id, "what": "transcript", "why": why})
        found += [{"session": "", "what": "left alone", "why": line} for line in self.foreign]
        found += [
            {"session": "", "what": "engine unreachable", "why": why}
            for why in self.unreachable.values()
        ]
        return found

    def as_json(self) -> dict[str, object]:
        return {
            "sessions": [view.as_json() for view in self.sessions],
            "questions": [prompt.to_dict() for prompt in self.questions],
            "failures": self.failures,
        }


def fleet(
    registry: Registry,
    *,
    include_ended: bool = False,
    failed_starts: bool = False,
    asked: ContainerQuery | None = None,
) -> Fleet:
    """The fleet as `session.list` and `session.dashboard` show it.

    `failed_starts`: keep sessions whose last start failed, as the dashboard does (a failed
    start needs attention), and hide only stopped ones unless `include_ended`. `asked`: the
    current engine's `docker ps`, already on its way (see `listing.survey`).
    """
    surveyed = survey(registry, asked=asked)
    records = [view.state for view in surveyed.sessions if view.state is not None]
    questions = feedback.pending_questions(registry, records)
    waiting: dict[str, list[Prompt]] = {}
    for prompt in questions:
        waiting.setdefault(prompt.session_id, []).append(prompt)
    hide = ENDED - {"error"} if failed_starts else ENDED
    shown = [v for v in surveyed.sessions if include_ended or v.status not in hide]
    views = [_with_agent(registry, view, waiting.get(view.session_id, [])) for view in shown]
    hidden_what = "stopped" if failed_starts else "stopped or failed"
    hidden = len(surveyed.sessions) - len(shown)
    return Fleet(views, hidden, questions, surveyed.foreign, hidden_what, surveyed.unreachable)


def _with_agent(registry: Registry, view: SessionView, questions: Sequence[Prompt]) -> SessionView:
    agent = conversation.agent_json(registry, view) if view.state is not None else {}
    agent["questions_waiting"] = len(questions)
    if view.state is not None:
        agent["work"] = _work(registry, view)
    agent["egress_denied"] = denial_count(registry.root, view.role, view.session_id)
    blocking = [q for q in questions if q.severity == "block"]
    if blocking and agent.get("agent") != "working":
        agent["agent"] = "waiting"
        agent["agent_since"] = blocking[0].created_at
        agent["agent_reason"] = f"question {blocking[0].id}: {blocking[0].reason}"
    return dataclasses.replace(view, agent=agent)


def _work(registry: Registry, view: SessionView) -> dict[str, object] | None:
    """What the session's last collect found (`session.collect`), or None before the first."""
    from orchestrator.homecoming.record import last_result

    assert view.state is not None
    found = last_result(registry, view.state)
    if found is None:
        return None
    keys = ("result", "at", "ahead", "files", "flagged", "conflicts")
    return {key: found.get(key) for key in keys}


def render(snapshot: Fleet) -> str:
    """The dashboard for a person: sessions, questions waiting, failures."""
    rows = [
        (
            v.session_id,
            v.role,
            v.branch or "-",
            v.status,
            agent_cell(v.agent),
            human_age(v.age_seconds()),
            str(v.agent.get("questions_waiting") or "-"),
            str(v.agent.get("last_message") or "-"),
        )
        for v in snapshot.sessions
    ]
    header = ("SESSION", "ROLE", "BRANCH", "STATUS", "AGENT", "AGE", "QUESTIONS", "LAST MESSAGE")
    parts = [table(header, rows) if rows else "no sessions"]
    if snapshot.hidden:
        plural = "s" if snapshot.hidden != 1 else ""
        parts.append(f"({snapshot.hidden} {snapshot.hidden_what} session{plural} hidden: --all)")
    if snapshot.questions:
        questions = [
            (
                q.id,
                q.session_id,
                q.severity,
                human_age(_age(q.created_at)),
                " ".join(q.reason.split())[:60],
            )
            for q in snapshot.questions
        ]
        parts += [
            "",
            "QUESTIONS WAITING",
            table(("ID", "SESSION", "SEVERITY", "AGE", "REASON"), questions),
        ]
    else:
        parts += ["", "no questions waiting"]
    failures = snapshot.failures
    if failures:
        problems = [(f["session"] or "-", f["what"], " ".join(f["why"].split())) for f in failures]
        parts += ["", "NEEDS ATTENTION", table(("SESSION", "WHAT", "WHY"), problems)]
    collected = _work_rows(snapshot.sessions)
    if collected:
        columns = ("SESSION", "COLLECTED", "AHEAD", "FILES", "CONFLICTS", "FLAGGED")
        parts += ["", "WORK COLLECTED", table(columns, collected)]
    return "\n".join(parts)


def _work_rows(views: Sequence[SessionView]) -> list[tuple[str, ...]]:
    """One row per session with a collect: its age, commits ahead, files, conflicts with the
    branch it started from, and flagged paths (as the agent named them, sanitized)."""
    from orchestrator.homecoming.report import flagged_cell
    from orchestrator.untrusted import printable

    rows: list[tuple[str, ...]] = []
    for view in views:
        work = view.agent.get("work")
        if not isinstance(work, dict):
            continue
        flagged = work.get("flagged")
        conflicts = work.get("conflicts")
        rows.append(
            (
                view.session_id,
                human_age(_age(str(work.get("at") or ""))),
                str(work.get("ahead", "-")),
                str(work.get("files", "-")),
                printable(", ".join(map(str, conflicts)), limit=60) if conflicts else "-",
                flagged_cell(flagged) if isinstance(flagged, dict) else "-",
            )
        )
    return rows


def render_json(snapshot: Fleet) -> str:
    return json_text(snapshot.as_json(), indent=2)


def _age(moment: str) -> int | None:
    from datetime import datetime

    try:
        return int((now() - datetime.fromisoformat(moment)).total_seconds())
    except (ValueError, TypeError):  # not a time, or one without a time zone
        return None


# --- The origin's names ---------------------------------------------------------------------------
# laurierloi/filare's `orchestrator.dashboard`: one entry per recorded session with its pending
# questions, for its code and scripts. The rows are `fleet`'s, statuses reconciled with the engine.


@dataclass(frozen=True)
class DashboardEntry:
    """A session as the origin's dashboard showed it."""

    session_id: str
    role: str
    branch: str
    status: str
    workspace: str
    prompts_pending: int

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def collect_dashboard(
    repo_root: Path | None = None, queue: Path | None = None
) -> list[DashboardEntry]:
    """Every session of the registry, stopped ones included, with its unanswered questions.

    The registry is `outputs/agents` of the repository holding `repo_root`; without it,
    `$FILARE_STATE_DIR`, else that of the repository holding the current folder. `queue` counts
    the questions of another queue file than the registry's own.
    """
    registry = _origin_registry(repo_root)
    snapshot = fleet(registry, include_ended=True)
    questions = snapshot.questions
    if queue is not None and Path(queue).resolve() != feedback.queue_path(registry).resolve():
        questions = [prompt for prompt in feedback.load_queue(queue) if prompt.pending]
    pending: dict[str, int] = {}
    for prompt in questions:
        pending[prompt.session_id] = pending.get(prompt.session_id, 0) + 1
    return [
        DashboardEntry(
            session_id=view.session_id,
            role=view.role,
            branch=view.branch,
            status=view.status,
            workspace=view.workspace,
            prompts_pending=pending.get(view.session_id, 0),
        )
        for view in snapshot.sessions
    ]


def to_json(entries: Sequence[DashboardEntry]) -> str:
    return json_text([entry.to_dict() for entry in entries], indent=2)


def _origin_registry(repo_root: Path | None) -> Registry:
    from orchestrator.plan import find_repository

    if repo_root is None and os.environ.get(STATE_ROOT_ENV):
        return Registry.default()
    start = Path(repo_root or Path.cwd()).absolute()
    root = find_repository(start)
    if root is None:
        raise InputError(f"{start}: not in a git repository (its outputs/agents is the registry)")
    return Registry(root / "outputs" / "agents")
