"""Start, stop, list and prune sessions: the effects, carried out under per-session locks.

Docker labels say what runs; the registry says what was asked for. Every command that looks at
sessions reconciles the two, so a killed start, a removed container or a daemon restart shows up
as an orphan or a stale record instead of being silently lost.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestrator import engine
from orchestrator.errors import EngineError, InputError, OrchestratorError
from orchestrator.manifest import SessionSpec, default_owner
from orchestrator.plan import (
    SHARED_WORKSPACE_LABEL,
    LaunchPlan,
    find_repository,
    plan_launch,
    session_filters,
)
from orchestrator.preflight import check_inputs
from orchestrator.registry import Registry, SessionState, now

LAUNCH_TIMEOUT = 900.0
DEFAULT_STOP_TIMEOUT = 10.0
MAX_PARALLEL_STARTS = 8
SCRIPT_ENV = "FILARE_LAUNCH_SCRIPT"

Key = tuple[str, str]  # (role, session id)


def launch_script() -> Path:
    """`scripts/run_codex_container.sh` of this checkout (or `$FILARE_LAUNCH_SCRIPT`)."""
    override = os.environ.get(SCRIPT_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "scripts" / "run_codex_container.sh"


def plan_for(session: SessionSpec, registry: Registry, *, dry_run: bool = False) -> LaunchPlan:
    seed_from = find_repository(session.manifest_path.parent) if session.manifest_path else None
    return plan_launch(
        session,
        registry_root=registry.root,
        script=launch_script(),
        seed_from=seed_from,
        dry_run=dry_run,
    )


# --- start -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartOutcome:
    """What one session's start did; `error` is set when it failed (and was cleaned up)."""

    session: SessionSpec
    state: SessionState | None = None
    already_running: bool = False
    error: OrchestratorError | None = None


def launch_container(session: SessionSpec, registry: Registry | None = None) -> SessionState:
    """Start one session's container, or report the one already running for it."""
    registry = registry or Registry.default()
    check_inputs([session])
    engine.require_cli()
    outcome = _launch(session, registry, threading.Event())
    assert outcome.state is not None
    return outcome.state


def start_sessions(
    sessions: Sequence[SessionSpec],
    registry: Registry | None = None,
    *,
    parallel: int = MAX_PARALLEL_STARTS,
) -> list[StartOutcome]:
    """Start sessions concurrently (at most `parallel` at once), in manifest order of results.

    Inputs of every session are checked before any starts. A failing session does not stop the
    others; a Ctrl-C removes what this call created and re-raises.
    """
    registry = registry or Registry.default()
    check_inputs(sessions)
    engine.require_cli()
    cancelled = threading.Event()

    def start_one(session: SessionSpec) -> StartOutcome:
        try:
            return _launch(session, registry, cancelled)
        except OrchestratorError as exc:
            return StartOutcome(session, error=exc)

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(sessions)))) as pool:
        futures = [pool.submit(start_one, session) for session in sessions]
        try:
            return [future.result() for future in futures]
        except BaseException:
            cancelled.set()
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True)
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is None:
                    outcome = future.result()
                    if outcome.state is not None and not outcome.already_running:
                        _undo(registry, outcome.session)
            raise


def dry_run(session: SessionSpec, registry: Registry | None = None) -> str:
    """The `docker run` command line a start would execute; creates and writes nothing."""
    registry = registry or Registry.default()
    plan = plan_for(session, registry, dry_run=True)
    return _run_script(plan, timeout=engine.DEFAULT_TIMEOUT).strip()


def _launch(
    session: SessionSpec,
    registry: Registry,
    cancelled: threading.Event,
) -> StartOutcome:
    """Start one session under its lock, asking the engine nothing it need not.

    A fresh start goes straight to `docker run`: the container name is unique per session, so a
    container already running for it shows up as a name conflict, resolved then. Only a record
    that says the session runs is checked with the engine first.
    """
    plan = plan_for(session, registry)
    workspace_lock = (
        contextlib.nullcontext()
        if session.shared_workspace
        else registry.workspace_lock(session.workspace)
    )
    with registry.lock(session.role, session.id) as lock_fd, workspace_lock as workspace_fd:
        if cancelled.is_set():
            raise OrchestratorError(f"session {session.id!r}: start cancelled")
        record = registry.read(session.role, session.id)
        if record is not None and record.status in {"running", "starting"}:
            existing = _session_containers(registry, session.role, session.id)
            running = next((c for c in existing if c.running), None)
            if running is not None:
                return StartOutcome(session, _adopt(registry, plan, running), already_running=True)
            engine.remove_containers([c.id for c in existing])
        _check_workspace_free(session, registry)
        state = registry.write(_new_state(plan))
        try:
            held = (lock_fd,) if workspace_fd is None else (lock_fd, workspace_fd)
            container = _run_container(plan, registry, held)
        except BaseException as exc:
            _undo(registry, session)
            reason = str(exc) if isinstance(exc, OrchestratorError) else type(exc).__name__
            registry.write(state.replace(status="error", error=reason))
            raise
        if isinstance(container, engine.Container):
            return StartOutcome(session, _adopt(registry, plan, container), already_running=True)
        started = state.replace(status="running", container_id=container, started_at=now())
        return StartOutcome(session, registry.write(started))


class _NameTaken(EngineError):
    """`docker run` found the session's container name in use."""


def _run_container(
    plan: LaunchPlan, registry: Registry, locks: Sequence[int]
) -> str | engine.Container:
    """The new container's id, or the session's own container already running under its name.

    `locks` (the session's and its workspace's) are handed to the launch script, so a start
    killed half way keeps both held until its orphaned children are done.

    An exited container of the session is removed and the run tried once more; a container of
    that name without the session's labels is not ours, and is left alone.
    """
    for attempt in range(2):
        try:
            output = _run_script(plan, timeout=LAUNCH_TIMEOUT, keep_fds=locks)
            return output.strip().splitlines()[-1]
        except _NameTaken:
            existing = _session_containers(registry, plan.session.role, plan.session.id)
            running = next((c for c in existing if c.running), None)
            if running is not None:
                return running
            if not existing or attempt:
                raise
            engine.remove_containers([c.id for c in existing])
    raise AssertionError("unreachable")


def _check_workspace_free(session: SessionSpec, registry: Registry) -> None:
    """Refuse a workspace another live session uses, unless both allow sharing it.

    Called under the workspace's lock, which every start of an unshared workspace holds until
    its container runs. Records name the candidates without an engine call; only a candidate is
    checked for a running container, so a stale record never blocks a start.
    """
    candidates = {
        (r.role, r.session_id)
        for r in registry.states()
        if r.workspace == session.workspace
        and (r.role, r.session_id) != (session.role, session.id)
        and r.status in {"running", "starting"}
        and not (session.shared_workspace and r.labels.get(SHARED_WORKSPACE_LABEL) == "true")
    }
    if not candidates:
        return
    for other in engine.list_containers(session_filters(registry.root)):
        if other.running and (other.role, other.session_id) in candidates:
            raise InputError(
                f"session {session.id!r}: workspace {session.workspace} is in use by running "
                f"session {other.session_id!r} ({other.name}); set 'shared_workspace: true' on "
                "both to allow it"
            )


def _new_state(plan: LaunchPlan) -> SessionState:
    session = plan.session
    return SessionState(
        session_id=session.id,
        role=session.role,
        owner=session.owner,
        status="starting",
        container_name=plan.name,
        image=session.image,
        workspace=session.workspace,
        ssh_dir=plan.ssh_dir,
        manifest=session.manifest_path,
        labels=plan.labels,
        argv=plan.argv,
    )


def _adopt(registry: Registry, plan: LaunchPlan, container: engine.Container) -> SessionState:
    state = registry.read(plan.session.role, plan.session.id)
    if state is not None and state.status == "running" and state.container_id == container.id:
        return state
    base = state or _new_state(plan)
    return registry.write(
        base.replace(
            status="running",
            container_id=container.id,
            started_at=base.started_at or container.created or now(),
            error=None,
        )
    )


def _run_script(plan: LaunchPlan, timeout: float, keep_fds: Sequence[int] = ()) -> str:
    """Run the launch script; `keep_fds` (the session lock) stay held by it until it exits."""
    try:
        result = subprocess.run(
            plan.argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            pass_fds=tuple(keep_fds),
        )
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"session {plan.session.id!r}: launch did not finish within {timeout:g} s"
        ) from None
    if result.returncode == 0:
        return result.stdout
    raise _launch_error(plan, result.returncode, result.stderr)


def _launch_error(plan: LaunchPlan, code: int, stderr: str) -> OrchestratorError:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else f"exit code {code}"
    prefix = f"session {plan.session.id!r}"
    if "No such image" in stderr:
        return EngineError(
            f"{prefix}: image {plan.session.image!r} not found: build it with 'inv codex.build' "
            "(no registry: 'inv codex.base' first; the offline smoke image: 'inv codex.build "
            "--dockerfile docker/Dockerfile.smoke --tag filare-codex:smoke')"
        )
    if "is already in use by container" in stderr:
        return _NameTaken(
            f"{prefix}: container name {plan.name!r} is taken by a container that is not this "
            "session's; rename or remove that container"
        )
    if reason.startswith("run_codex_container.sh:"):
        return InputError(f"{prefix}: {reason.removeprefix('run_codex_container.sh:').strip()}")
    return EngineError(f"{prefix}: {engine.describe_failure('run', reason)}")


def _undo(registry: Registry, session: SessionSpec) -> None:
    """Remove what a failed start of this session created: its containers and SSH folder."""
    with contextlib.suppress(OrchestratorError):
        containers = _session_containers(registry, session.role, session.id)
        engine.remove_containers([c.id for c in containers])
    shutil.rmtree(registry.session_dir(session.role, session.id) / "ssh", ignore_errors=True)


def _session_containers(registry: Registry, role: str, session_id: str) -> list[engine.Container]:
    return engine.list_containers(session_filters(registry.root, session=session_id, role=role))


# --- list --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionView:
    """One session as `session.list` shows it, reconciled from labels and the registry.

    `status` is `running`, `exited`, `starting`, `stopped` or `error` when labels and record
    agree, `orphan` for a container of ours with no record of it, and `stale` for a record that
    says running with no container behind it.
    """

    session_id: str
    role: str
    owner: str
    status: str
    container_id: str | None
    container_name: str
    image: str
    workspace: str
    since: datetime | None
    state: SessionState | None
    container: engine.Container | None

    def as_json(self) -> dict[str, object]:
        return {
            "session": self.session_id,
            "role": self.role,
            "owner": self.owner,
            "status": self.status,
            "container_id": self.container_id,
            "container": self.container_name,
            "image": self.image,
            "workspace": self.workspace,
            "since": self.since.isoformat() if self.since else None,
            "age_seconds": self.age_seconds(),
        }

    def age_seconds(self) -> int | None:
        return int((now() - self.since).total_seconds()) if self.since else None


def list_sessions(registry: Registry | None = None) -> list[SessionView]:
    """Every session known from labels or records, sorted by role then id."""
    registry = registry or Registry.default()
    containers = engine.list_containers(session_filters(registry.root))
    return _reconcile(registry.states(), containers)


def _reconcile(
    states: Iterable[SessionState], containers: Iterable[engine.Container]
) -> list[SessionView]:
    by_key_state = {(s.role, s.session_id): s for s in states}
    by_key_container: dict[Key, engine.Container] = {}
    for container in containers:
        key = (container.role, container.session_id)
        if key not in by_key_container or container.running:
            by_key_container[key] = container
    return [
        _view(key, by_key_state.get(key), by_key_container.get(key))
        for key in sorted(by_key_state.keys() | by_key_container.keys())
    ]


def _view(key: Key, state: SessionState | None, container: engine.Container | None) -> SessionView:
    role, session_id = key
    status = _status(state, container)
    since = None
    if state is not None:
        since = state.stopped_at if status in {"stopped", "error"} else state.started_at
        since = since or state.updated_at
    if since is None and container is not None:
        since = container.created
    labels = container.labels if container else {}
    return SessionView(
        session_id=session_id,
        role=role,
        owner=state.owner if state else labels.get("filare.owner", ""),
        status=status,
        container_id=container.id if container else (state.container_id if state else None),
        container_name=container.name if container else state.container_name if state else "",
        image=container.image if container else state.image if state else "",
        workspace=str(state.workspace) if state else labels.get("filare.workspace", ""),
        since=since,
        state=state,
        container=container,
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
        return "running"
    return "orphan" if state.status in {"stopped", "error"} else state.status


# --- stop --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StopOutcome:
    session_id: str
    role: str
    container_name: str
    container_id: str | None
    was_running: bool


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
    """Stop and remove the selected sessions' containers, delete their SSH folders, record it.

    Selection is by session id(s), role, manifest, or `everything` of `owner` (the current user
    by default); selectors combine as AND. Containers are matched by label, never by name.
    """
    if not (session_ids or role or manifest or everything):
        raise InputError("say which sessions to stop: --session, --role, --manifest or --all")
    registry = registry or Registry.default()
    owner = owner or default_owner()
    manifest = manifest.expanduser().resolve() if manifest else None

    def selected(views: Iterable[SessionView]) -> list[SessionView]:
        return [
            v
            for v in views
            if (not session_ids or v.session_id in session_ids)
            and (role is None or v.role == role)
            and (manifest is None or _manifest_of(v) == manifest)
            and (not everything or v.owner == owner)
        ]

    chosen = selected(list_sessions(registry))
    unknown = sorted(set(session_ids) - {v.session_id for v in chosen})
    if unknown:
        raise InputError(f"no session with id {unknown[0]!r} in {registry.root}")
    keys = sorted({(v.role, v.session_id) for v in chosen})
    with _locked(registry, keys):
        views = [v for v in selected(list_sessions(registry)) if (v.role, v.session_id) in keys]
        containers = [v.container for v in views if v.container is not None]
        engine.stop_containers([c.id for c in containers], timeout)
        for view in views:
            _forget(registry, view)
    return [
        StopOutcome(
            v.session_id,
            v.role,
            v.container_name,
            v.container_id,
            was_running=v.container is not None and v.container.running,
        )
        for v in views
    ]


def _manifest_of(view: SessionView) -> Path | None:
    if view.state is not None and view.state.manifest is not None:
        return view.state.manifest
    text = view.container.labels.get("filare.manifest") if view.container else None
    return Path(text) if text else None


def _forget(registry: Registry, view: SessionView) -> None:
    """After its container is gone: delete the SSH folder and record the session as stopped."""
    shutil.rmtree(registry.session_dir(view.role, view.session_id) / "ssh", ignore_errors=True)
    if view.state is not None and view.state.status != "stopped":
        registry.write(view.state.replace(status="stopped", stopped_at=now()))


@contextlib.contextmanager
def _locked(registry: Registry, keys: Sequence[Key]) -> Iterator[None]:
    """Hold several session locks, taken in sorted order so two stoppers cannot deadlock."""
    with contextlib.ExitStack() as stack:
        for role, session_id in sorted(keys):
            stack.enter_context(registry.lock(role, session_id))
        yield


# --- prune -------------------------------------------------------------------------------------

_DEAD = {"orphan", "exited"}


@dataclass(frozen=True)
class PruneAction:
    """One thing prune removes (or would remove, in a dry run), and why."""

    role: str
    session_id: str
    what: str
    reason: str


def prune(registry: Registry | None = None, *, dry_run: bool = False) -> list[PruneAction]:
    """Remove what is ours and dead: orphan and exited containers, stale records, lone SSH folders.

    Only containers carrying this registry's labels are candidates; nothing else is touched. A
    record still saying `starting` counts as dead only when no process holds its lock, so a start
    in progress elsewhere is left alone.
    """
    registry = registry or Registry.default()
    actions = _prune_actions(registry, list_sessions(registry), holding_locks=False)
    if dry_run or not actions:
        return actions
    keys = sorted({(a.role, a.session_id) for a in actions})
    with _locked(registry, keys):
        views = [v for v in list_sessions(registry) if (v.role, v.session_id) in keys]
        actions = _prune_actions(registry, views, holding_locks=True, keys=keys)
        dead = [v for v in views if _is_dead(registry, v, holding_locks=True)]
        engine.remove_containers([v.container.id for v in dead if v.container is not None])
        for view in dead:
            _forget(registry, view)
        for key in keys:
            shutil.rmtree(registry.session_dir(*key) / "ssh", ignore_errors=True)
    return actions


def _is_dead(registry: Registry, view: SessionView, *, holding_locks: bool) -> bool:
    if view.status in _DEAD or view.status == "stale":
        return True
    if view.status == "starting":
        return holding_locks or not registry.busy(view.role, view.session_id)
    return False


def _prune_actions(
    registry: Registry,
    views: Sequence[SessionView],
    *,
    holding_locks: bool,
    keys: Sequence[Key] | None = None,
) -> list[PruneAction]:
    actions = []
    live = set()
    for view in views:
        key = (view.role, view.session_id)
        if not _is_dead(registry, view, holding_locks=holding_locks):
            live.add(key)
        elif view.container is not None:
            reason = "interrupted start" if view.status == "starting" else view.status
            actions.append(PruneAction(*key, f"container {view.container.name}", reason))
        else:
            actions.append(PruneAction(*key, "state record", "stale: no container"))
    for ssh_dir in registry.ssh_dirs():
        key = (ssh_dir.parent.parent.name, ssh_dir.parent.name)
        if key not in live and (keys is None or key in keys):
            actions.append(PruneAction(*key, f"SSH folder {ssh_dir}", "no live session"))
    return actions
