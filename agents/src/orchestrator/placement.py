"""Which engine each session starts on: its own, the one it was pinned to, or a pool's choice.

A session stays on its engine for life: once it has run, its record names the engine, and every
later start goes there (its workspace, Codex home and conversation are there). A session with a
pool goes to the engine with room (fewer live sessions than its `max_sessions`) and the fewest
live sessions, counted from the engines themselves when the start begins: what runs there,
started by anyone, is what fills it. Engines are asked in parallel; one that does not answer
has no room.

`max_sessions` is a placement rule, not a quota: two orchestrators placing at the same moment may
both see the last free place.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from orchestrator import engine
from orchestrator.errors import EngineError, InputError
from orchestrator.plan import SESSION_LABEL, container_name
from orchestrator.registry import Registry, SessionState
from orchestrator.spec import SessionSpec

# How long an engine of a pool may take to say what runs on it before it counts as full.
COUNT_TIMEOUT = 15.0


@dataclass(frozen=True)
class Placement:
    """Each session's engine (None: the current context), and the sessions no engine took."""

    engines: dict[str, str | None] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def place(sessions: Sequence[SessionSpec], registry: Registry) -> Placement:
    """Decide every session's engine; refuses (bad input) a pinned engine that is not the one
    the session already lives on."""
    placement = Placement()
    pooled: list[SessionSpec] = []
    staying: dict[str, SessionState] = {}
    for session in sessions:
        record = registry.read(session.role, session.id)
        if record is not None and record.started_at is not None:
            staying[session.id] = record
            _check_same_engine(session, record)
            placement.engines[session.id] = record.engine
        elif session.engines and session.engine is None:
            pooled.append(session)
        else:
            placement.engines[session.id] = session.engine
    if not pooled:
        return placement
    pool = {slot.context: slot.max_sessions for s in pooled for slot in s.engines}
    counts = _live_counts(sorted(pool))
    # A session of this start that will run again on a pool engine takes its place there too.
    for record in staying.values():
        count = counts.get(record.engine) if record.engine else None
        if isinstance(count, LiveCount):
            count.sessions.add(record.container_name)
    for session in pooled:
        with_room = [
            (len(count.sessions), index, slot.context)
            for index, slot in enumerate(session.engines)
            if isinstance(count := counts[slot.context], LiveCount)
            and len(count.sessions) < slot.max_sessions
        ]
        if not with_room:
            placement.refused[session.id] = _no_room(session, counts)
            continue
        _, _, chosen = min(with_room)
        live = counts[chosen]
        assert isinstance(live, LiveCount)
        live.sessions.add(container_name(session.role, session.id))
        placement.engines[session.id] = chosen
    return placement


@dataclass
class LiveCount:
    """The sessions live on one engine, by container name (ours or anyone's)."""

    sessions: set[str]


def _live_counts(contexts: Sequence[str]) -> dict[str, LiveCount | str]:
    """Each engine's live sessions, or why it could not say; all engines asked at once."""

    def count(context: str) -> LiveCount | str:
        try:
            running = engine.Engine(context).list_containers(
                [f"label={SESSION_LABEL}", "status=running"], timeout=COUNT_TIMEOUT
            )
        except EngineError as exc:
            return str(exc)
        return LiveCount({c.name for c in running})

    with ThreadPoolExecutor(max_workers=max(1, len(contexts))) as pool:
        return dict(zip(contexts, pool.map(count, contexts), strict=True))


def _no_room(session: SessionSpec, counts: dict[str, LiveCount | str]) -> str:
    parts = []
    for slot in session.engines:
        count = counts[slot.context]
        if isinstance(count, LiveCount):
            parts.append(f"{slot.context} {len(count.sessions)}/{slot.max_sessions} live")
        else:
            parts.append(f"{slot.context} unreachable ({count})")
    return f"no engine of the pool has room: {'; '.join(parts)}"


def _check_same_engine(session: SessionSpec, record: SessionState) -> None:
    if session.engines and session.engine is None:
        return  # a pool: the session stays where it was placed
    if session.engine == record.engine:
        return
    where = f"engine {record.engine!r}" if record.engine else "the current engine"
    raise InputError(
        f"{session.manifest_path}: session {session.id!r}: field 'engine': the session lives on "
        f"{where} (its workspace and conversation are there); to move it, stop it and remove "
        "its record with 'session.prune --records', or give the new one another id"
    )
