"""One screen for the fleet: every session with what its agent does, the questions that wait,
and what failed.

It reads only local records (the registry, the turns, the transcripts' ends, the question
queue) and makes one batched engine call (`docker ps`) per refresh, so it stays cheap with fifty
sessions. `session.list` shows the same rows; `session.dashboard --json` is one object holding
what `session.list --json` and `feedback.list --pending --json` print.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator import conversation, feedback
from orchestrator.feedback import Prompt
from orchestrator.listing import ENDED, SessionView, survey
from orchestrator.registry import Registry, now
from orchestrator.report import agent_cell, human_age, table

# Session statuses and agent states that need a person's eyes.
FAILED_STATUSES = frozenset({"error", "stale", "orphan", "exited", "unhealthy"})
FAILED_AGENT = frozenset({"failed", "interrupted"})


@dataclass(frozen=True)
class Fleet:
    """Sessions with their agents' state, the questions waiting, and what was left alone."""

    sessions: list[SessionView]
    hidden: int
    questions: list[Prompt]
    foreign: list[str]
    hidden_what: str = "stopped or failed"

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
        found += [{"session": "", "what": "left alone", "why": line} for line in self.foreign]
        return found

    def as_json(self) -> dict[str, object]:
        return {
            "sessions": [view.as_json() for view in self.sessions],
            "questions": [prompt.to_dict() for prompt in self.questions],
            "failures": self.failures,
        }


def fleet(registry: Registry, *, include_ended: bool = False, failed_starts: bool = False) -> Fleet:
    """The fleet as `session.list` and `session.dashboard` show it.

    `failed_starts`: keep sessions whose last start failed, as the dashboard does (a failed
    start needs attention), and hide only stopped ones unless `include_ended`.
    """
    surveyed = survey(registry)
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
    return Fleet(views, hidden, questions, surveyed.foreign, hidden_what)


def _with_agent(registry: Registry, view: SessionView, questions: Sequence[Prompt]) -> SessionView:
    agent = conversation.agent_json(registry, view) if view.state is not None else {}
    agent["questions_waiting"] = len(questions)
    blocking = [q for q in questions if q.severity == "block"]
    if blocking and agent.get("agent") != "working":
        agent["agent"] = "waiting"
        agent["agent_since"] = blocking[0].created_at
        agent["agent_reason"] = f"question {blocking[0].id}: {blocking[0].reason}"
    return dataclasses.replace(view, agent=agent)


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
    return "\n".join(parts)


def render_json(snapshot: Fleet) -> str:
    return json.dumps(snapshot.as_json(), indent=2)


def _age(moment: str) -> int | None:
    from datetime import datetime

    try:
        return int((now() - datetime.fromisoformat(moment)).total_seconds())
    except ValueError:
        return None
