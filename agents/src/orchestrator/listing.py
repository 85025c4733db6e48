"""Every session as one view, reconciled from Docker labels and the registry's records.

Docker labels say what runs; records say what was asked for. Listing reconciles the two, so a
killed start, a removed container or a daemon restart shows up as an orphan or a stale record
instead of being silently lost. Every engine a record names is surveyed, all at once; one that
does not answer marks its sessions `unreachable` and the others show as usual. Containers whose
labels are not ours to act on (unsafe names, records that name another session) are reported
as `foreign` and never acted on.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from orchestrator import engine
from orchestrator.errors import EngineError
from orchestrator.plan import ENGINE_LABEL, OWNER_LABEL, session_filters
from orchestrator.registry import Registry, SessionState, now
from orchestrator.spec import is_safe_name

Key = tuple[str, str]  # (role, session id)

# Every status a session can show, and what it means; `session.list` documents these.
STATUSES = {
    "running": "its container runs",
    "unhealthy": "its container runs, but Codex in it, or its agent daemon, fails its health check",
    "starting": "a start is under way",
    "exited": "its container stopped by itself (a crash, a daemon restart, `docker stop`)",
    "stopped": "stopped by `session.stop`; its record, Codex home and transcripts are kept",
    "error": "its last start failed; the record says why",
    "stale": "the record says it runs, but no container is there",
    "orphan": "a container of ours that no record knows",
    "unreachable": "its engine does not answer: what runs there is not known until it does",
}
# How long a named engine may take to answer a survey before its sessions show `unreachable`.
SURVEY_TIMEOUT = 10.0
# What `session.list` hides unless asked for everything.
ENDED = frozenset({"stopped", "error"})


@dataclass(frozen=True)
class SessionView:
    """One session as `session.list` shows it, reconciled from labels and the registry."""

    session_id: str
    role: str
    owner: str
    status: str
    container_id: str | None
    container_name: str
    image: str
    workspace: str
    state: SessionState | None
    container: engine.Container | None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    agent: dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.role, self.session_id)

    @property
    def manifest(self) -> Path | None:
        if self.state is not None and self.state.manifest is not None:
            return self.state.manifest
        text = self.container.labels.get("filare.manifest") if self.container else None
        return Path(text) if text else None

    @property
    def engine(self) -> str | None:
        """The Docker context the session runs on; None: the current one."""
        if self.state is not None:
            return self.state.engine
        return self.container.engine if self.container else None

    @property
    def branch(self) -> str:
        if self.state is not None and self.state.branch:
            return self.state.branch
        return self.container.labels.get("filare.branch", "") if self.container else ""

    def age_seconds(self) -> int | None:
        """Seconds since the session started, while it runs; since it ended, once it has."""
        since = self.stopped_at if self.status in ENDED else self.started_at
        return int((now() - since).total_seconds()) if since else None

    def as_json(self) -> dict[str, object]:
        """The stable fields of `session.list --json` (documented in the README)."""
        state = self.state
        return {
            "session": self.session_id,
            "role": self.role,
            "owner": self.owner,
            "status": self.status,
            "branch": self.branch,
            "manifest": str(self.manifest) if self.manifest else None,
            "tags": list(state.tags) if state else [],
            "container_id": self.container_id,
            "container": self.container_name,
            "image": self.image,
            "workspace": self.workspace,
            "started_at": _iso(self.started_at),
            "stopped_at": _iso(self.stopped_at),
            "age_seconds": self.age_seconds(),
            "error": state.error if state and self.status == "error" else None,
            "engine": self.engine,
            **self.agent,
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


@dataclass(frozen=True)
class Fleet:
    """The reconciled sessions of a registry, and what was found there but left alone."""

    sessions: list[SessionView]
    foreign: list[str]
    # Engines that did not answer, and what they answered with (one line each).
    unreachable: dict[str, str] = field(default_factory=dict)


def list_sessions(registry: Registry | None = None) -> list[SessionView]:
    """Every session known from labels or records, sorted by role then id."""
    return survey(registry).sessions


def survey(
    registry: Registry | None = None, *, asked: engine.ContainerQuery | None = None
) -> Fleet:
    """One engine call per engine (all at once) and one pass over the records.

    The engines are the current context and every context a record names. When none answers,
    that is the engine fault it is; when some do, the others' sessions show `unreachable`.
    `asked` is the current engine's answer already on its way, asked with `session_filters`.
    """
    registry = registry or Registry.default()
    scan = registry.scan()
    contexts = [None, *sorted({s.engine for s in scan.states if s.engine})]
    answers = _survey_engines(contexts, session_filters(registry.root), asked)
    failed = {c: a for c, a in answers.items() if isinstance(a, EngineError)}
    if len(failed) == len(contexts):
        raise failed[None]
    containers = _one_each(
        c for context, a in answers.items() if isinstance(a, list) for c in a if c.engine == context
    )
    ours, foreign = [], list(scan.foreign)
    for container in containers:
        if is_safe_name(container.role) and is_safe_name(container.session_id):
            ours.append(container)
        else:
            foreign.append(
                f"container {container.name} ({container.id[:12]}): left alone: its labels name "
                f"an unsafe session {container.role!r}/{container.session_id!r}"
            )
    unreachable = {context or "current": str(error) for context, error in failed.items()}
    views = reconcile(scan.states, ours, failed.keys())
    if any(s.labels.get("filare.storage") == "volumes" for s in scan.states):
        # Sessions on engines without this machine's files: what they wrote, brought home.
        from orchestrator import denials, volumes

        volumes.refresh_views(registry, views)
        # And what the egress proxy there refused them.
        reachable = [v for v in views if v.status != "unreachable"]
        denials.refresh_states(registry, [v.state for v in reachable if v.state is not None])
    return Fleet(views, foreign, unreachable)


def _survey_engines(
    contexts: list[str | None], filters: list[str], asked: engine.ContainerQuery | None = None
) -> dict[str | None, list[engine.Container] | EngineError]:
    """Each context's containers, or its error; one call per engine, all at once: contexts
    that name one engine (the current one and its name, say) share one answer. The current
    engine's is `asked`, when that asked it the same."""
    by_host: dict[str, list[str | None]] = {}
    for context in contexts:
        by_host.setdefault(engine.endpoint(context) or f"?{context}", []).append(context)
    heads = [names[0] for names in by_host.values()]

    def one(context: str | None) -> list[engine.Container] | EngineError:
        timeout = SURVEY_TIMEOUT if context else None
        try:
            if context is None and asked is not None and asked.filters == tuple(filters):
                return asked.containers()
            return engine.Engine(context).list_containers(filters, timeout=timeout)
        except EngineError as exc:
            return exc

    if len(heads) == 1:
        answers = [one(heads[0])]
    else:
        with ThreadPoolExecutor(max_workers=len(heads)) as pool:
            answers = list(pool.map(one, heads))
    return {
        context: answer
        for names, answer in zip(by_host.values(), answers, strict=True)
        for context in names
    }


def _one_each(containers: Iterable[engine.Container]) -> list[engine.Container]:
    """A container seen through two contexts of one engine (the current one, and its name),
    once: as found through the context its label names."""
    by_id: dict[str, engine.Container] = {}
    for container in containers:
        seen = by_id.get(container.id)
        if seen is None or container.engine == container.labels.get(ENGINE_LABEL):
            by_id[container.id] = container
    return list(by_id.values())


def reconcile(
    states: Iterable[SessionState],
    containers: Iterable[engine.Container],
    unreachable: Iterable[str | None] = (),
) -> list[SessionView]:
    by_key_state = {(s.role, s.session_id): s for s in states}
    by_key_container: dict[Key, engine.Container] = {}
    for container in containers:
        key = (container.role, container.session_id)
        if key not in by_key_container or container.running:
            by_key_container[key] = container
    dark = frozenset(unreachable)
    return [
        _view(key, by_key_state.get(key), by_key_container.get(key), dark)
        for key in sorted(by_key_state.keys() | by_key_container.keys())
    ]


def _view(
    key: Key,
    state: SessionState | None,
    container: engine.Container | None,
    unreachable: frozenset[str | None] = frozenset(),
) -> SessionView:
    role, session_id = key
    status = _status(state, container)
    if container is None and state is not None and state.engine in unreachable:
        status = "unreachable" if status not in ENDED else status
    started = state.started_at if state else None
    if started is None and container is not None:
        started = container.created
    labels = container.labels if container else {}
    return SessionView(
        session_id=session_id,
        role=role,
        owner=state.owner if state else labels.get(OWNER_LABEL, ""),
        status=status,
        container_id=container.id if container else (state.container_id if state else None),
        container_name=container.name if container else state.container_name if state else "",
        image=container.image if container else state.image if state else "",
        workspace=str(state.workspace) if state else labels.get("filare.workspace", ""),
        state=state,
        container=container,
        started_at=started,
        stopped_at=(state.stopped_at or state.updated_at) if state and status in ENDED else None,
    )


def _status(state: SessionState | None, container: engine.Container | None) -> str:
    if container is None:
        if state is not None and state.status in {"running", "starting"}:
            return "stale"
        return state.status if state else "stale"
    if state is None or state.container_id not in {None, container.id}:
        return "orphan"
    if not container.running:
        return "exited"
    if state.status == "running":
        return "unhealthy" if container.health == "unhealthy" else "running"
    return "orphan" if state.status in ENDED else state.status
