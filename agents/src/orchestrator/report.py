"""Plain-text renderings of results for the command line; pure, so their shape is unit-tested.

One vocabulary for what happened to a session: `started`, `already running`, `stopped`,
`already stopped`, `failed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from orchestrator.registry import now
from orchestrator.untrusted import json_text, printable

if TYPE_CHECKING:  # only named in annotations: `start`, `send`, `wait` and `list` need not
    # import them (the conversation's module alone is 10 ms of a start)
    from orchestrator.conversation import Sent
    from orchestrator.egress import EgressPolicy
    from orchestrator.launch import StartOutcome
    from orchestrator.listing import SessionView
    from orchestrator.spec import SessionSpec
    from orchestrator.stopping import PruneAction, StopReport


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded.

    Every cell goes through `untrusted.printable` (one line each): tables show what sessions
    wrote (messages, reasons, paths), and nothing in a cell may drive the terminal.
    """
    shown = [[printable(cell) for cell in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in shown) for i in range(len(header) - 1)]
    lines = []
    for row in shown:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def start_row(outcome: StartOutcome) -> tuple[str, str, str, str]:
    """SESSION, RESULT, CONTAINER, WORKSPACE (or the reason it failed)."""
    session = outcome.session
    if outcome.error is not None:
        return (session.id, "failed", "-", str(outcome.error).replace("\n", "; "))
    assert outcome.state is not None
    result = "already running" if outcome.already_running else "started"
    cid = (outcome.state.container_id or "")[:12]
    # The workspace the container really mounts, from its record (not what the manifest says now).
    return (
        session.id,
        result,
        f"{outcome.state.container_name} ({cid})",
        str(outcome.state.workspace),
    )


def start_table(outcomes: Sequence[StartOutcome]) -> str:
    return table(("SESSION", "RESULT", "CONTAINER", "WORKSPACE"), [start_row(o) for o in outcomes])


def warnings_text(outcomes: Sequence[StartOutcome]) -> list[str]:
    """Every launch warning once, however many sessions met it."""
    return list(dict.fromkeys(f"warning: {printable(w)}" for o in outcomes for w in o.warnings))


def stop_text(report: StopReport) -> str:
    lines = []
    if report.stopped:
        rows = [(o.session_id, o.result, o.container_name) for o in report.stopped]
        lines.append(table(("SESSION", "RESULT", "CONTAINER"), rows))
    else:
        lines.append("no matching sessions")
    for owner, count in sorted(report.other_owners.items()):
        lines.append(
            f"left alone: {count} session{'s' if count != 1 else ''} of owner {owner!r} "
            "(--all stops your own; select them with --session, --role or --manifest)"
        )
    for session_id, context in sorted(report.unreachable.items()):
        lines.append(
            f"not stopped: {session_id}: its engine {context!r} does not answer (stop it once "
            "the engine is back)"
        )
    return "\n".join(lines)


def prune_line(action: PruneAction, *, dry_run: bool) -> str:
    verb = f"would {action.verb}" if dry_run else _past(action.verb)
    return printable(f"{action.role}/{action.session_id}  {verb} {action.what}  ({action.reason})")


def _past(verb: str) -> str:
    return {"remove": "removed", "delete": "deleted", "mark stopped": "marked stopped"}[verb]


def sessions_table(views: Sequence[SessionView], *, hidden: int = 0) -> str:
    if not views:
        text = "no sessions"
    else:
        header = (
            "SESSION",
            "ROLE",
            "OWNER",
            "STATUS",
            "AGENT",
            "CONTAINER",
            "IMAGE",
            "AGE",
            "WORKSPACE",
        )
        rows = [
            (
                v.session_id,
                v.role,
                v.owner,
                v.status,
                agent_cell(v.agent),
                v.container_name,
                v.image,
                human_age(v.age_seconds()),
                v.workspace,
            )
            for v in views
        ]
        text = table(header, rows)
    if hidden:
        text += f"\n({hidden} stopped or failed session{'s' if hidden != 1 else ''} hidden: --all)"
    return text


def agent_cell(agent: dict[str, object]) -> str:
    """`working 2m`, `idle`, `failed`, `none`…: what the session's agent does, in a few
    characters, named as `--json`'s `agent` names it (the reason, turns and last message are in
    `--json` and on the dashboard); `(bad transcript)` after it when lines of its newest
    transcripts are no events."""
    denied = agent.get("egress_denied")
    note = f", {denied} denied" if isinstance(denied, int) and denied else ""
    state = agent.get("agent")
    if not state or state == "none":
        return "none" + note
    since = agent.get("agent_since")
    cell = str(state)
    if state == "working" and isinstance(since, str):
        started = datetime.fromisoformat(since)
        cell = f"working {human_age(int((now() - started).total_seconds()))}"
    spent, budget = agent.get("tokens_conversation"), agent.get("tokens_budget")
    if isinstance(budget, int):
        cell += f" {spent if isinstance(spent, int) else 0}/{budget} tok"
    cell += note
    return f"{cell} (bad transcript)" if agent.get("transcript_skipped") else cell


def sessions_json(views: Sequence[SessionView]) -> str:
    return json_text([v.as_json() for v in views], indent=2)


def resolved_yaml(sessions: Sequence[SessionSpec], policies: Sequence[EgressPolicy] = ()) -> str:
    """A manifest of the sessions as resolved: it loads back to the same sessions, and validating
    it prints it again unchanged (so it names no manifest of its own). Each session's resolved
    egress comes first, as comments."""
    import yaml

    data = {"sessions": [_resolved_fields(s) for s in sessions]}
    header = f"# {len(sessions)} session(s) as started: defaults merged, paths resolved\n"
    for session, policy in zip(sessions, policies, strict=False):
        header += f"# egress of {session.id}: " + "\n# ".join(policy.lines()) + "\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def resolved_json(sessions: Sequence[SessionSpec], policies: Sequence[EgressPolicy] = ()) -> str:
    rows = [s.to_dict() for s in sessions]
    for row, policy in zip(rows, policies, strict=False):
        row["egress_resolved"] = policy.to_json()
    return json_text(rows, indent=2) + "\n"


def _resolved_fields(session: SessionSpec) -> dict[str, object]:
    data = session.to_dict()
    del data["manifest_path"]
    return data


def human_age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def sent_table(results: Sequence[Sent]) -> str:
    """SESSION, TURN, RESULT and the final message (or why there is none)."""
    rows = [(s.session_id, s.turn or "-", s.result, _one_line(s.detail)) for s in results]
    return table(("SESSION", "TURN", "RESULT", "MESSAGE"), rows)


def sent_json(results: Sequence[Sent]) -> str:
    return json_text(
        [
            {
                "session": sent.session_id,
                "turn": sent.turn,
                "status": sent.result,
                "reason": sent.status.reason if sent.status else None,
                "final_message": sent.final_message,
                "error": str(sent.error) if sent.error else None,
            }
            for sent in results
        ],
        indent=2,
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())
