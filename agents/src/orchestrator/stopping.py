"""Stop and prune sessions: containers matched by label, never by name, under session locks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import engine, session_folders
from orchestrator.errors import InputError
from orchestrator.listing import ENDED, Key, SessionView, list_sessions, survey
from orchestrator.registry import Registry, now
from orchestrator.spec import default_owner

DEFAULT_STOP_TIMEOUT = 10.0
# How long prune waits for starts in progress before it leaves them alone.
START_WAIT = 30.0
# A start killed together with its `docker run` (SIGKILL of its process group) may leave a
# request the engine still carries out: the container can appear a moment after the start's
# lock is free. Prune gives such a fresh, container-less start this long to show one.
LATE_CREATE_WAIT = 2.0
LATE_CREATE_WINDOW = 60.0


@dataclass(frozen=True)
class StopOutcome:
    """One stopped session; `was_running` is False when there was nothing left to stop."""

    session_id: str
    role: str
    container_name: str
    container_id: str | None
    was_running: bool

    @property
    def result(self) -> str:
        """`stopped` when a container was there (running or exited), else `already stopped`."""
        return "stopped" if self.was_running else "already stopped"


@dataclass(frozen=True)
class StopReport:
    """What `stop_sessions` did, and the sessions `--all` left alone because others own them."""

    stopped: list[StopOutcome]
    other_owners: dict[str, int]
    # Sessions selected but left as they are: their engine did not answer (id -> engine).
    unreachable: dict[str, str] = field(default_factory=dict)


def stop_sessions(
    registry: Registry | None = None,
    *,
    session_ids: Sequence[str] = (),
    role: str | None = None,
    manifest: Path | None = None,
    everything: bool = False,
    owner: str | None = None,
    timeout: float = DEFAULT_STOP_TIMEOUT,
) -> list[StopOutcome]:
    """Stop and remove the selected sessions' containers, delete their secrets, record it."""
    return stop_report(
        registry,
        session_ids=session_ids,
        role=role,
        manifest=manifest,
        everything=everything,
        owner=owner,
        timeout=timeout,
    ).stopped


def stop_report(
    registry: Registry | None = None,
    *,
    session_ids: Sequence[str] = (),
    role: str | None = None,
    manifest: Path | None = None,
    everything: bool = False,
    owner: str | None = None,
    timeout: float = DEFAULT_STOP_TIMEOUT,
    asked: engine.ContainerQuery | None = None,
) -> StopReport:
    """Stop the sessions every given selector matches (they combine as AND).

    Selection is by session id(s), role, manifest, or `everything` of `owner` (the current user
    by default). A selector that matches nothing is bad input naming what does exist; `--all` on
    an empty fleet is a quiet success. Containers are matched by label, never by name. `asked`:
    the current engine's `docker ps` already on its way, for the selection (see `survey`); the
    sessions are surveyed again once locked.
    """
    if not (session_ids or role or manifest or everything):
        raise InputError("say which sessions to stop: --session, --role, --manifest or --all")
    if any(not one for one in session_ids):
        raise InputError("--session needs a session id")
    if timeout < 0:
        raise InputError(f"--timeout must be 0 or more seconds, not {timeout:g}")
    registry = registry or Registry.default()
    owner = owner or default_owner()
    if manifest is not None:
        manifest = manifest.expanduser().resolve()
        if not manifest.is_file():
            raise InputError(f"{manifest}: manifest not found")
    views = survey(registry, asked=asked).sessions
    _check_selectors(views, session_ids, role, manifest, registry)

    def selected(candidates: Iterable[SessionView]) -> list[SessionView]:
        return [
            v
            for v in candidates
            if (not session_ids or v.session_id in session_ids)
            and (role is None or v.role == role)
            and (manifest is None or v.manifest == manifest)
            and (not everything or v.owner == owner)
        ]

    chosen = selected(views)
    others: dict[str, int] = {}
    if everything:
        for view in views:
            if view.owner != owner and view.status not in ENDED:
                others[view.owner] = others.get(view.owner, 0) + 1
    keys = sorted({v.key for v in chosen})
    with locked(registry, keys):
        fresh = [v for v in selected(list_sessions(registry)) if v.key in keys]
        dark = {v.session_id: v.engine or "current" for v in fresh if v.status == "unreachable"}
        fresh = [v for v in fresh if v.session_id not in dark]
        on_each_engine(fresh, lambda context, ids: engine.Engine(context).stop(ids, timeout))
        for view in fresh:
            forget(registry, view)
        # A session's egress network stays for its next start; `session.prune` removes it.
    outcomes = [
        StopOutcome(
            v.session_id,
            v.role,
            v.container_name,
            v.container_id,
            was_running=v.container is not None,
        )
        for v in fresh
    ]
    return StopReport(outcomes, others, dark)


def on_each_engine(
    views: Sequence[SessionView], act: Callable[[str | None, list[str]], None]
) -> None:
    """`act(context, container ids)` once per engine the views' containers are on, all engines
    at once; the first engine fault is raised once every engine has been tried."""
    by_engine: dict[str | None, list[str]] = {}
    for view in views:
        if view.container is not None:
            by_engine.setdefault(view.container.engine, []).append(view.container.id)
    if len(by_engine) <= 1:
        for context, ids in by_engine.items():
            act(context, ids)
        return
    with ThreadPoolExecutor(max_workers=len(by_engine)) as pool:
        futures = [pool.submit(act, context, ids) for context, ids in by_engine.items()]
    for future in futures:
        future.result()


def _check_selectors(
    views: Sequence[SessionView],
    session_ids: Sequence[str],
    role: str | None,
    manifest: Path | None,
    registry: Registry,
) -> None:
    """Name the selector that excluded what the user asked for, instead of matching nothing."""
    from orchestrator.errors import did_you_mean

    ids = {v.session_id for v in views}
    for wanted in session_ids:
        if wanted not in ids:
            raise InputError(
                f"no session with id {wanted!r} in {registry.root}{did_you_mean(wanted, ids)}"
            )
    roles = sorted({v.role for v in views})
    if role is not None and role not in roles:
        known = ", ".join(repr(r) for r in roles) or "none"
        raise InputError(
            f"no session with role {role!r} in {registry.root}{did_you_mean(role, roles)} "
            f"(roles recorded: {known})"
        )
    for wanted in session_ids:
        for view in (v for v in views if v.session_id == wanted):
            if role is not None and view.role != role:
                raise InputError(
                    f"session {wanted!r} has role {view.role!r}, not {role!r}: selectors "
                    "combine, and a session is stopped only when every one matches"
                )
            if manifest is not None and view.manifest != manifest:
                raise InputError(
                    f"session {wanted!r} was started from {view.manifest}, not {manifest}: "
                    "selectors combine, and a session is stopped only when every one matches"
                )


def _remove_networks(registry: Registry, views: Sequence[SessionView]) -> None:
    """The egress networks of these sessions (one engine call per engine finds them all)."""
    from orchestrator import egress_proxy

    keys = {v.key for v in views}
    if not keys:
        return
    for context in _engines_of(views):
        for _, role, session_id in egress_proxy.our_networks(registry, context):
            if (role, session_id) in keys:
                egress_proxy.remove_network(registry, role, session_id, context)


def _engines_of(views: Sequence[SessionView]) -> list[str | None]:
    """The current engine and every engine these sessions run on (egress networks and the
    proxy live on the session's engine)."""
    return [None, *sorted({v.engine for v in views if v.engine and v.status != "unreachable"})]


def forget(registry: Registry, view: SessionView) -> None:
    """After its container is gone: delete its secret copies and record the session stopped."""
    session_folders.remove_secrets(registry.session_dir(view.role, view.session_id))
    if view.state is not None and view.state.status != "stopped":
        registry.write(view.state.replace(status="stopped", stopped_at=now()))


@contextlib.contextmanager
def locked(registry: Registry, keys: Sequence[Key]) -> Iterator[None]:
    """Hold several session locks, taken in sorted order so two stoppers cannot deadlock."""
    with contextlib.ExitStack() as stack:
        for role, session_id in sorted(keys):
            stack.enter_context(registry.lock(role, session_id))
        yield


# --- prune -----------------------------------------------------------------------------------

_DEAD = {"orphan", "exited"}


@dataclass(frozen=True)
class PruneAction:
    """One thing prune does (or would do, in a dry run), and why."""

    role: str
    session_id: str
    verb: str
    what: str
    reason: str


def prune(
    registry: Registry | None = None, *, dry_run: bool = False, records: bool = False
) -> list[PruneAction]:
    """Remove what is ours and dead: orphan and exited containers, lone SSH folders; mark stale
    records stopped. With `records`, also delete stopped and errored sessions entirely: record,
    Codex home, transcripts.

    Only containers carrying this registry's labels are candidates; nothing else is touched. A
    record still saying `starting` counts as dead only when no process holds its lock. A start in
    progress (or the launch script of a start whose command was killed, which keeps the lock
    until its `docker run` returns) is first waited for, up to `START_WAIT` seconds, and left
    alone if it is still going then.
    """
    registry = registry or Registry.default()
    views = survey(registry).sessions
    if _wait_for_starts(registry, views):
        views = survey(registry).sessions
    actions = _prune_actions(registry, views, records, holding_locks=False)
    egress_actions = _egress_actions(registry, views)
    if dry_run:
        return actions + egress_actions
    if not actions:
        _prune_egress(registry, views)
        return egress_actions
    keys = sorted({(a.role, a.session_id) for a in actions})
    with locked(registry, keys):
        views = [v for v in list_sessions(registry) if v.key in keys]
        if _late_container_possible(views):
            time.sleep(LATE_CREATE_WAIT)
            views = [v for v in list_sessions(registry) if v.key in keys]
        actions = _prune_actions(registry, views, records, holding_locks=True, keys=keys)
        dead = [v for v in views if _is_dead(registry, v, holding_locks=True)]
        on_each_engine(dead, lambda context, ids: engine.Engine(context).remove(ids))
        for view in dead:
            forget(registry, view)
        for key in keys:
            session_folders.remove_secrets(registry.session_dir(*key))
        if records:
            gone = [v for v in views if v.container is None and (v.status in ENDED or v in dead)]
            # Their networks now, under the locks held: taking a lock later would make the
            # session's folder again.
            _remove_networks(registry, gone)
            for view in gone:
                _remove_session_folder(registry, view)
    _prune_egress(registry, views)
    return actions + egress_actions


def _egress_actions(registry: Registry, views: Sequence[SessionView]) -> list[PruneAction]:
    """Egress networks whose session has no running container. (The proxy, once it serves no
    network, goes too, unreported: it is the tool's, not a session's.)"""
    from orchestrator import egress_proxy

    running = {v.key for v in views if v.container is not None and v.container.running}
    return [
        PruneAction(role, session_id, "remove", f"network {name}", "no running session")
        for context in _engines_of(views)
        for name, role, session_id in egress_proxy.our_networks(registry, context)
        if (role, session_id) not in running
    ]


def _prune_egress(registry: Registry, views: Sequence[SessionView]) -> None:
    """Networks under their session's lock (a start holds it until its container runs); the
    proxy under the egress lock, once no network is left for it to serve."""
    from orchestrator import egress_proxy
    from orchestrator.plan import session_filters

    for context in _engines_of(views):
        for _, role, session_id in egress_proxy.our_networks(registry, context):
            with registry.lock(role, session_id):
                filters = session_filters(registry.root, session=session_id, role=role)
                containers = engine.list_containers(filters, context=context)
                if not any(c.running for c in containers):
                    egress_proxy.remove_network(registry, role, session_id, context)
        with registry.named_lock("egress"):
            if not egress_proxy.our_networks(registry, context):
                egress_proxy.remove_proxy(registry, context)


def _late_container_possible(views: Sequence[SessionView]) -> bool:
    """Whether a start that died in the last minute without a container is among `views`."""
    moment = now()
    return any(
        v.status == "starting"
        and v.container is None
        and v.state is not None
        and (moment - v.state.updated_at).total_seconds() < LATE_CREATE_WINDOW
        for v in views
    )


def _wait_for_starts(registry: Registry, views: Sequence[SessionView]) -> bool:
    """Wait while a session recorded as starting has its lock held; whether any was."""
    starting = [v.key for v in views if v.status == "starting"]
    deadline = time.monotonic() + START_WAIT
    waited = False
    while any(registry.busy(*key) for key in starting) and time.monotonic() < deadline:
        waited = True
        time.sleep(0.1)
    return waited


def _remove_session_folder(registry: Registry, view: SessionView) -> None:
    """Everything of a session: record, Codex home, agent folder, default transcripts, what the
    egress proxy recorded of it, its volumes on an engine without this machine's files. The lock
    file goes too; its holder (us) keeps the open descriptor until done."""
    from orchestrator import volumes
    from orchestrator.denials import remove_denials

    if view.state is not None and volumes.uses_volumes(view.state.labels):
        from orchestrator import egress_volumes
        from orchestrator.egress_proxy import proxy_name

        # Its volumes first: a session whose engine cannot remove them keeps its record.
        volumes.remove_volumes(registry.root, view.role, view.session_id, view.engine)
        egress_volumes.drop_denials(
            proxy_name(registry.root), view.role, view.session_id, view.engine
        )
    remove_denials(registry.root, view.role, view.session_id)
    folder = registry.session_dir(view.role, view.session_id)
    for entry in list(folder.iterdir()) if folder.is_dir() else []:
        if entry.name == "lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            session_folders.remove_tree(entry)
        else:
            entry.unlink()
    with contextlib.suppress(OSError):
        (folder / "lock").unlink()
        folder.rmdir()
        folder.parent.rmdir()


def _is_dead(registry: Registry, view: SessionView, *, holding_locks: bool) -> bool:
    if view.status in _DEAD or view.status == "stale":
        return True
    if view.status == "starting":
        return holding_locks or not registry.busy(view.role, view.session_id)
    return False


def _prune_actions(
    registry: Registry,
    views: Sequence[SessionView],
    records: bool,
    *,
    holding_locks: bool,
    keys: Sequence[Key] | None = None,
) -> list[PruneAction]:
    actions = []
    live = set()
    for view in views:
        key = view.key
        if _is_dead(registry, view, holding_locks=holding_locks):
            if view.container is not None:
                reason = "interrupted start" if view.status == "starting" else view.status
                actions.append(
                    PruneAction(*key, "remove", f"container {view.container.name}", reason)
                )
            elif not records:
                actions.append(PruneAction(*key, "mark stopped", "record", "stale: no container"))
            if records and view.container is None:
                actions.append(PruneAction(*key, "delete", "session folder", view.status))
        elif records and view.status in ENDED:
            actions.append(PruneAction(*key, "delete", "session folder", view.status))
        else:
            live.add(key)
    for ssh_dir in registry.ssh_dirs():
        key = (ssh_dir.parent.parent.name, ssh_dir.parent.name)
        if key not in live and (keys is None or key in keys):
            actions.append(PruneAction(*key, "remove", f"SSH folder {ssh_dir}", "no live session"))
    return actions
