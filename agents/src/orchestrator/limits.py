"""Limits of a session's agent: a token budget, a time per turn, and how long a silence may last.

The manifest's `limits` (in `defaults` and per session) reach the container as `limits.json` in
the session's inbox, a host folder bound read-only at `/run/filare/inbox`: the agent can read its
limits but not lift them. The session's agent daemon (`filare-agentd`) enforces them by itself,
so they hold while no host command runs:

- `tokens`: the conversation's total as Codex counts it. The turn that passes it is interrupted
  and ends `over budget`; a later turn is refused, by the daemon and, first, by the host at every
  send (exit 2), until `session.budget` raises it. The conversation is kept.
- `turn_seconds`: a turn running longer is interrupted and ends `timed out`.
- `stall_seconds`: a working turn with no word from Codex for that long shows `stalled`; it goes
  on (only `turn_seconds` ends it).

A budget raised with `session.budget` is the host's (`budget.json` in the session's folder, never
mounted): a later `session.start` or `session.resume` keeps it when the manifest's is lower.

The figures shown (`session.list --json`: `tokens_last_turn`, `tokens_conversation`) come from
the turns' records in the transcript folder, which the session can write: they are read bounded
and checked, and the host remembers the highest total it saw, so a rewritten record cannot lower
it below what was seen.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator import transcript
from orchestrator.errors import InputError, did_you_mean
from orchestrator.registry import Registry, atomic_write, now
from orchestrator.spec import Limits
from orchestrator.untrusted import loads, read_limited

LIMITS_FILE = "limits.json"
BUDGET_FILE = "budget.json"
INBOX = "inbox"
# How a limit ends a turn, as the agent daemon writes it in `N.exit` (`reason`), and as the
# turn's and the agent's state show it.
OVER_BUDGET = "over budget"
TIMED_OUT = "timed out"
STALLED = "stalled"
ENDED_BY_LIMIT = frozenset({OVER_BUDGET, TIMED_OUT})
MAX_FILE_BYTES = 4096
# How much of the end of a `codex exec` turn's transcript is read for its token usage.
USAGE_TAIL_BYTES = 16 << 10
# How many of the newest turns are looked at for the figures (a turn refused has none).
RECENT_TURNS = 4


@dataclass(frozen=True)
class Usage:
    """Tokens of the conversation and of its last turn that counted any (None: not known)."""

    conversation: int | None
    last_turn: int | None


def effective(limits: Limits, session_dir: Path) -> Limits:
    """The manifest's limits with a budget raised by `session.budget` kept, when it is higher."""
    raised = _budget_record(session_dir).get("tokens")
    if isinstance(raised, int) and (limits.tokens is None or raised > limits.tokens):
        return replace(limits, tokens=raised)
    return limits


def install(session_dir: Path, limits: Limits) -> Limits:
    """Write the session's limits into its inbox (read-only in the container), before it starts
    and whenever they change; the agent daemon reads them again when the inbox changes."""
    chosen = effective(limits, session_dir)
    record = {
        "tokens": chosen.tokens,
        "turn_seconds": chosen.turn_seconds,
        "stall_seconds": chosen.stall_seconds,
    }
    atomic_write(session_dir / INBOX / LIMITS_FILE, json.dumps(record) + "\n", mode=0o644)
    return chosen


def current(session_dir: Path) -> Limits:
    """The limits the session's container was given (none before its first start with them)."""
    data = loads(read_limited(session_dir / INBOX / LIMITS_FILE, MAX_FILE_BYTES))
    if not isinstance(data, dict):
        return Limits()

    def positive(key: str) -> float | None:
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            return None
        return float(value) if value < 1e15 else None

    tokens = positive("tokens")
    return Limits(
        int(tokens) if tokens is not None else None,
        positive("turn_seconds"),
        positive("stall_seconds"),
    )


def usage(session_dir: Path, transcripts: Path) -> Usage:
    """The conversation's tokens and its last turn's: from the newest turn that counted any
    (`N.exit` of the agent daemon, else the cumulative `turn.completed` usage of `codex exec`),
    never below the highest total the host saw before."""
    numbers = transcript.numbered(transcripts, "exit")[-RECENT_TURNS:]
    found: Usage | None = None
    previous: int | None = None
    for number in reversed(numbers):
        total, spent = _figures(transcripts, number)
        if total is None:
            continue
        if found is None:
            found = Usage(total, spent)
            if spent is not None:
                break
        elif previous is None:
            previous = total
            break
    if found is not None and found.last_turn is None and previous is not None:
        found = Usage(found.conversation, max(0, (found.conversation or 0) - previous))
    seen = _budget_record(session_dir).get("seen")
    if isinstance(seen, int) and (found is None or (found.conversation or 0) < seen):
        return Usage(seen, found.last_turn if found else None)
    return found or Usage(None, None)


def _figures(transcripts: Path, number: str) -> tuple[int | None, int | None]:
    data = loads(read_limited(transcripts / f"{number}.exit", MAX_FILE_BYTES))
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if isinstance(tokens, dict):
        total, spent = tokens.get("conversation"), tokens.get("turn")
        if _count(total):
            return total, spent if _count(spent) else None
    # `turn.completed` is a turn's last event: the end of its transcript is enough.
    for event in transcript.EventReader(transcripts, number).tail(USAGE_TAIL_BYTES):
        counted = event.get("usage") if event.get("type") == "turn.completed" else None
        if isinstance(counted, dict):
            parts = [counted.get("input_tokens"), counted.get("output_tokens")]
            if all(_count(part) for part in parts):
                return sum(int(part) for part in parts if isinstance(part, int)), None
    return None, None


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_budget(session_id: str, session_dir: Path, transcripts: Path) -> None:
    """Refuse a send (bad input) to a conversation past its token budget; remember the total."""
    limits = current(session_dir)
    spent = usage(session_dir, transcripts)
    if spent.conversation is not None:
        _remember(session_dir, spent.conversation)
    if limits.tokens is not None and (spent.conversation or 0) > limits.tokens:
        raise InputError(
            f"session {session_id!r} is over its token budget ({spent.conversation} of "
            f"{limits.tokens} tokens); raise it with 'uv run inv session.budget --session "
            f"{session_id} --tokens N' (the conversation is kept)"
        )


def set_budget(registry: Registry, session_id: str, tokens: int) -> Limits:
    """`session.budget`: give a recorded session a new token budget; see `raise_budget`."""
    from orchestrator.conversation import transcript_folder

    if not session_id:
        raise InputError("--session needs a session id")
    states = {state.session_id: state for state in registry.scan().states}
    state = states.get(session_id)
    if state is None:
        hint = did_you_mean(session_id, states)
        raise InputError(f"no session with id {session_id!r} in {registry.root}{hint}")
    with registry.lock(state.role, session_id):
        from orchestrator import volumes

        folder = registry.session_dir(state.role, session_id)
        chosen = raise_budget(session_id, folder, transcript_folder(registry, state), tokens)
        if state.status == "running":
            volumes.storage(registry, state).deliver([LIMITS_FILE])
        return chosen


def raise_budget(session_id: str, session_dir: Path, transcripts: Path, tokens: int) -> Limits:
    """Set the session's token budget to `tokens` (more than it has spent), now and at its later
    starts; its agent daemon takes it at once. Called under the session's lock."""
    if tokens <= 0:
        raise InputError(f"--tokens must be more than 0, not {tokens}")
    spent = usage(session_dir, transcripts).conversation
    if spent is not None and tokens <= spent:
        raise InputError(
            f"session {session_id!r} has spent {spent} tokens; a budget of {tokens} would "
            "leave it over budget: give more"
        )
    record = {**_budget_record(session_dir), "tokens": tokens, "raised_at": now().isoformat()}
    atomic_write(session_dir / BUDGET_FILE, json.dumps(record) + "\n")
    return install(session_dir, replace(current(session_dir), tokens=tokens))


def _remember(session_dir: Path, total: int) -> None:
    record = _budget_record(session_dir)
    seen = record.get("seen")
    if not isinstance(seen, int) or total > seen:
        atomic_write(session_dir / BUDGET_FILE, json.dumps({**record, "seen": total}) + "\n")


def _budget_record(session_dir: Path) -> dict[str, object]:
    data = loads(read_limited(session_dir / BUDGET_FILE, MAX_FILE_BYTES))
    return data if isinstance(data, dict) else {}


def stalled_since(transcripts: Path, number: str) -> str | None:
    """When the working turn `number` fell silent (`N.stalled` of the agent daemon), or None."""
    data = loads(read_limited(transcripts / f"{number}.stalled", MAX_FILE_BYTES))
    at = data.get("at") if isinstance(data, dict) else None
    return at if isinstance(at, str) and len(at) <= 40 and at.isprintable() else None


def agent_fields(
    agent: dict[str, object], session_dir: Path, transcripts: Path, working: str | None
) -> dict[str, object]:
    """The fields `session.list --json` adds for limits, and the agent's state they change:
    `stalled` for a working turn Codex fell silent in, `over budget` for a conversation past
    its budget that is not working."""
    limits = current(session_dir)
    spent = usage(session_dir, transcripts)
    fields: dict[str, object] = {
        "tokens_last_turn": spent.last_turn,
        "tokens_conversation": spent.conversation,
        "tokens_budget": limits.tokens,
        "turn_elapsed_seconds": None,
        "stalled_since": None,
    }
    state = agent.get("agent")
    since = agent.get("agent_since")
    if state == "working" and isinstance(since, str):
        from datetime import datetime

        started = datetime.fromisoformat(since)
        fields["turn_elapsed_seconds"] = max(0, int((now() - started).total_seconds()))
        stalled = stalled_since(transcripts, working) if working else None
        if stalled is not None:
            fields["agent"] = STALLED
            fields["stalled_since"] = stalled
    over = limits.tokens is not None and (spent.conversation or 0) > limits.tokens
    if over and state in {"idle", "failed", "interrupted"}:
        fields["agent"] = OVER_BUDGET
        fields["agent_reason"] = f"{spent.conversation} of {limits.tokens} tokens"
    elif state == OVER_BUDGET and not over:
        # Raised since: the conversation can go on.
        fields["agent"] = "idle"
    return fields


def end_reason(status: str, limits: Limits) -> str:
    """Why a limit ended a turn, in words for `session.wait` and `session.list`."""
    if status == TIMED_OUT:
        limit = f" ({limits.turn_seconds:g} s)" if limits.turn_seconds else ""
        return f"the turn ran past turn_seconds{limit} and was interrupted"
    return "the conversation passed its token budget; raise it with session.budget"
