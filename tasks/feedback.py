"""`feedback.*`: the questions agents ask their operator, and the answers."""

from __future__ import annotations

import sys

from invoke.context import Context
from invoke.tasks import task

from tasks.catalog_task import CatalogTask
from tasks.locations import session_registry


@task(
    klass=CatalogTask,
    name="list",
    category="feedback",
    safe_for_agents=True,
    runs_in="host",
    example="just feedback-list --pending",
    help={
        "session": "only this session's questions",
        "pending": "only questions not answered yet",
        "json": "print a JSON array (the queue's own fields) instead of a table",
    },
)
def list_(c: Context, session: str = "", pending: bool = False, json: bool = False) -> None:
    """List the questions agents asked (gathered from the sessions into the queue).

    The queue is the origin's outputs/agents/prompts.json; agents ask with filare-ask.
    """
    from orchestrator import feedback
    from orchestrator.report import table
    from orchestrator.untrusted import json_text, printable

    prompts, problems = feedback.gather(session_registry())
    chosen = [
        p
        for p in prompts
        if (not session or p.session_id == session) and (p.pending or not pending)
    ]
    if json:
        print(json_text([p.to_dict() for p in chosen], indent=2))
    elif chosen:
        rows = [
            (
                p.id,
                p.session_id,
                p.severity,
                p.decision or "pending",
                " ".join(p.reason.split())[:70],
            )
            for p in chosen
        ]
        print(table(("ID", "SESSION", "SEVERITY", "DECISION", "REASON"), rows))
    else:
        print("no questions")
    for line in problems:
        print(f"warning: {printable(line)}", file=sys.stderr)


@task(
    klass=CatalogTask,
    category="feedback",
    safe_for_agents=True,
    runs_in="host",
    example='just feedback-add --session alpha --reason "May I push to main?" --severity block',
    help={
        "session": "the session the question is about",
        "reason": "the question",
        "requested_action": "what would be done once allowed",
        "suggested_reply": "the expected answer",
        "severity": "info, warn or block",
    },
)
def add(
    c: Context,
    session: str,
    reason: str,
    requested_action: str = "",
    suggested_reply: str = "",
    severity: str = "info",
) -> None:
    """Add a question to the queue by hand, as a session's agent does with filare-ask."""
    from orchestrator import feedback
    from orchestrator.errors import InputError

    registry = session_registry()
    states = [s for s in registry.states() if s.session_id == session]
    if not states:
        raise InputError(f"no session with id {session!r} in {registry.root}")
    prompt = feedback.add(
        registry,
        states[0],
        reason=reason,
        requested_action=requested_action,
        suggested_reply=suggested_reply or None,
        severity=severity,
    )
    print(prompt.id)


@task(
    klass=CatalogTask,
    category="feedback",
    safe_for_agents=False,
    runs_in="host",
    example="just feedback-answer --id alpha-1a2b --decision approved --reply 'Go ahead'",
    confirm="the decision and reply: they go to the agent as its next message",
    help={
        "id": "the question's id (feedback.list shows them)",
        "decision": "approved or rejected",
        "reply": "what to tell the agent",
    },
)
def answer(c: Context, id: str, decision: str, reply: str = "") -> None:
    """Answer a question: record the decision and deliver it to the session as its next turn.

    Delivered once: answering again names the turn that carried the answer.
    """
    from orchestrator import feedback
    from orchestrator.untrusted import printable

    done = feedback.answer(session_registry(), id, decision, reply or None)
    what = "already delivered in" if done.already_delivered else "delivered as"
    prompt = done.prompt
    print(
        printable(f"{prompt.id}  {prompt.decision}  {what} turn {done.turn} of {prompt.session_id}")
    )
