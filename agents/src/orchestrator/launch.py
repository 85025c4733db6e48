"""Start sessions: every input checked first, then one detached container each, under locks.

Bad input (a manifest's files, the engine, the images, ids another session holds) is found
before any record is written or any workspace seeded. A start that fails half way removes what
it created (container, SSH folder, env copy) and records why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from orchestrator import engine, hostpaths, session_folders, skills
from orchestrator.errors import EngineError, InputError, ManifestError, OrchestratorError
from orchestrator.plan import (
    SESSION_NETWORK,
    SHARED_WORKSPACE_LABEL,
    LaunchPlan,
    launch_script,
    plan_launch,
    session_filters,
    tool_checkout,
)
from orchestrator.preflight import check_inputs, input_problems
from orchestrator.registry import Registry, SessionState, now
from orchestrator.spec import SessionSpec

LAUNCH_TIMEOUT = 900.0
MAX_PARALLEL_STARTS = 8
WARNING_PREFIX = "run_codex_container.sh: warning: "


@dataclass(frozen=True)
class StartOutcome:
    """What one session's start did; `error` is set when it failed (and was cleaned up)."""

    session: SessionSpec
    state: SessionState | None = None
    already_running: bool = False
    error: OrchestratorError | None = None
    warnings: tuple[str, ...] = ()


def launch_container(session: SessionSpec, registry: Registry | None = None) -> SessionState:
    """Start one session's container, or report the one already running for it."""
    (outcome,) = start_sessions([session], registry)
    if outcome.error is not None:
        raise outcome.error
    assert outcome.state is not None
    return outcome.state


def start_sessions(
    sessions: Sequence[SessionSpec],
    registry: Registry | None = None,
    *,
    parallel: int = MAX_PARALLEL_STARTS,
    manifest_sessions: Sequence[SessionSpec] = (),
) -> list[StartOutcome]:
    """Start sessions concurrently (at most `parallel` at once), results in manifest order.

    Inputs of every session, the engine and the images are checked before any starts.
    `manifest_sessions` are every session of the manifest (default: `sessions`): no seeding copies
    their workspaces or secret files. A failing session does not stop the others; a Ctrl-C
    removes what this call created and re-raises.
    """
    registry = registry or Registry.default()
    if parallel < 1:
        raise InputError(f"--parallel must be at least 1, not {parallel}")
    check_start(sessions, registry, engine_too=False)
    engine.require_cli()
    missing = engine.missing_images(sorted({s.image for s in sessions}))
    context = _SeedContext.of(registry, [*sessions, *manifest_sessions])
    cancelled = threading.Event()

    def start_one(session: SessionSpec) -> StartOutcome:
        try:
            if session.image in missing:
                return _refuse(session, registry, engine.missing_image_hint(session.image))
            return _launch(session, registry, context, cancelled)
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
                        _record_interrupted(registry, outcome.session)
            raise


def _record_interrupted(registry: Registry, session: SessionSpec) -> None:
    """A start this call made, undone because the call was interrupted: the record says so,
    never `running` for a container that is gone (which would show as `stale`)."""
    with registry.lock(session.role, session.id):
        state = registry.read(session.role, session.id)
        if state is not None:
            registry.write(state.replace(status="error", error=INTERRUPTED))


def _refuse(session: SessionSpec, registry: Registry, reason: str) -> StartOutcome:
    """A session that cannot start (its image is missing): recorded as failed, nothing seeded.
    The user builds the image: bad input, exit code 2, as `demo` says it too."""
    error = InputError(f"session {session.id!r}: {reason}")
    with registry.lock(session.role, session.id):
        previous = registry.read(session.role, session.id)
        if previous is None or previous.status not in {"running", "starting"}:
            plan = _SeedContext(registry, (), ()).plan(session)
            registry.write(_new_state(plan, previous).replace(status="error", error=str(error)))
    return StartOutcome(session, error=error)


def load_checked(
    manifest: Path, registry: Registry, *, cache_dir: Path | None = None
) -> list[SessionSpec]:
    """A manifest's sessions. When its fields are wrong, the files and folders of the sessions
    that could be read are checked as well, so one run names every problem of the manifest."""
    from orchestrator.manifest import load_manifest

    try:
        return load_manifest(manifest, cache_dir=cache_dir)
    except ManifestError as exc:
        if not exc.checkable:
            raise
        extra = input_problems(exc.checkable, registry_root=registry.root, shared_workspaces=False)
        raise ManifestError(*exc.problems, *extra) from None


# What the record of a start cut short by Ctrl-C says.
INTERRUPTED = "interrupted: the start was cut short (Ctrl-C); start it again"


class StartInterrupted(OrchestratorError):
    """The launch script was ended by SIGINT (a Ctrl-C at the terminal)."""

    exit_code = 130


def check_start(
    sessions: Sequence[SessionSpec], registry: Registry, *, engine_too: bool = True
) -> None:
    """Everything a start checks before it writes anything: files and folders, ids, and (with
    `engine_too`) the engine and the images."""
    check_inputs(sessions, registry_root=registry.root)
    _check_ids(sessions, registry)
    if engine_too:
        engine.require_cli()
        engine.missing_images(sorted({s.image for s in sessions}))


def dry_run(
    session: SessionSpec,
    registry: Registry | None = None,
    *,
    manifest_sessions: Sequence[SessionSpec] = (),
) -> str:
    """The `docker run` command line a start would execute; creates and writes nothing."""
    registry = registry or Registry.default()
    context = _SeedContext.of(registry, [session, *manifest_sessions])
    plan = context.plan(session, dry_run=True)
    return _run_script(plan, timeout=engine.DEFAULT_TIMEOUT).strip()


def running_container(session: SessionSpec, registry: Registry) -> engine.Container | None:
    """The session's container when its record says it runs and it does: a start would keep it
    and run nothing. Asks the engine only for a session recorded as running; an engine that
    cannot answer is no container (a dry run needs no engine)."""
    record = registry.read(session.role, session.id)
    if record is None or record.status not in {"running", "starting"}:
        return None
    try:
        containers = _session_containers(registry, session.role, session.id)
    except EngineError:
        return None
    return next((c for c in containers if c.running), None)


@dataclass(frozen=True)
class _SeedContext:
    """What no seeding may copy: every workspace known (the manifest's, the registry's), the
    registry itself, and every secret file the manifest names."""

    registry: Registry
    excludes: tuple[Path, ...]
    secrets: tuple[Path, ...]

    @classmethod
    def of(cls, registry: Registry, sessions: Sequence[SessionSpec]) -> _SeedContext:
        workspaces = {hostpaths.resolved(s.workspace) for s in sessions}
        workspaces |= {hostpaths.resolved(state.workspace) for state in registry.states()}
        secrets = {path for s in sessions for path in (s.env_file, s.ssh_key, s.known_hosts)}
        return cls(
            registry,
            tuple(sorted(workspaces | {registry.root})),
            tuple(sorted(hostpaths.resolved(path) for path in secrets if path is not None)),
        )

    def plan(self, session: SessionSpec, *, dry_run: bool = False) -> LaunchPlan:
        workspace = hostpaths.resolved(session.workspace)
        if session.transcript_dir is not None:
            # What preflight checked, links resolved, is what is made, given away and mounted.
            resolved = hostpaths.resolved(session.transcript_dir)
            session = dataclasses.replace(session, transcript_dir=resolved)
        return plan_launch(
            session,
            registry_root=self.registry.root,
            script=launch_script(),
            workspace=workspace,
            seed_excludes=tuple(path for path in self.excludes if path != workspace),
            seed_secrets=self.secrets,
            dry_run=dry_run,
        )


def _check_ids(sessions: Sequence[SessionSpec], registry: Registry) -> None:
    """An id names one session per state folder: not two roles, not two spellings of case."""
    problems = []
    states = registry.states()
    for session in sessions:
        for state in states:
            same_key = (state.role, state.session_id) == (session.role, session.id)
            if not same_key and state.session_id.casefold() == session.id.casefold():
                problems.append(
                    f"{session.manifest_path}: session {session.id!r}: field 'id': the state "
                    f"folder {registry.root} already has session {state.session_id!r} of role "
                    f"{state.role!r} (manifest {state.manifest}); give this session another id, "
                    f"or remove that one with 'session.prune --records'"
                )
    if problems:
        raise InputError(*problems)


def _launch(
    session: SessionSpec,
    registry: Registry,
    context: _SeedContext,
    cancelled: threading.Event,
) -> StartOutcome:
    """Start one session under its lock, asking the engine nothing it need not.

    A fresh start goes straight to `docker run`: the container name is unique per session, so a
    container already running for it shows up as a name conflict, resolved then. Only a record
    that says the session runs is checked with the engine first.
    """
    plan = context.plan(session)
    workspace_lock = (
        contextlib.nullcontext()
        if session.shared_workspace
        else registry.workspace_lock(plan.workspace)
    )
    with registry.lock(session.role, session.id) as lock_fd, workspace_lock as workspace_fd:
        if cancelled.is_set():
            raise OrchestratorError(f"session {session.id!r}: start cancelled")
        record = registry.read(session.role, session.id)
        if record is not None and record.status in {"running", "starting"}:
            existing = _session_containers(registry, session.role, session.id)
            running = next((c for c in existing if c.running), None)
            if running is not None:
                _check_same_manifest(session, record)
                return StartOutcome(session, _adopt(registry, plan, running), already_running=True)
            engine.remove_containers([c.id for c in existing])
        _check_workspace_free(session, plan.workspace, registry)
        state = registry.write(_new_state(plan, record))
        try:
            session_folders.prepare(
                plan,
                session_skills=skills.session_skills_dir(tool_checkout()),
                session_config=skills.session_skills_config(tool_checkout()),
            )
            held = (lock_fd,) if workspace_fd is None else (lock_fd, workspace_fd)
            container, warnings = _run_container(plan, registry, held)
        except BaseException as exc:
            _undo(registry, session)
            if isinstance(exc, StartInterrupted | KeyboardInterrupt):
                reason = INTERRUPTED
            else:
                reason = str(exc) if isinstance(exc, OrchestratorError) else type(exc).__name__
            registry.write(state.replace(status="error", error=reason))
            raise
        if isinstance(container, engine.Container):
            adopted = _adopt(registry, plan, container)
            return StartOutcome(session, adopted, already_running=True, warnings=warnings)
        started = state.replace(status="running", container_id=container, started_at=now())
        return StartOutcome(session, registry.write(started), warnings=warnings)


def _check_same_manifest(session: SessionSpec, record: SessionState) -> None:
    if record.manifest is None or record.manifest == session.manifest_path:
        return
    raise InputError(
        f"{session.manifest_path}: session {session.id!r}: already running from another "
        f"manifest, {record.manifest} (workspace {record.workspace}); stop it first, or give "
        "this session another id"
    )


class _NameTaken(EngineError):
    """`docker run` found the session's container name in use."""


class _NoNetwork(EngineError):
    """`docker run` found no session network: it is made on first use."""


def _run_container(
    plan: LaunchPlan, registry: Registry, locks: Sequence[int]
) -> tuple[str | engine.Container, tuple[str, ...]]:
    """The new container's id (or the session's own container already running under its name),
    and the launch script's warnings.

    `locks` (the session's and its workspace's) are handed to the launch script, so a start
    killed half way keeps both held until its orphaned children are done.

    An exited container of the session is removed and the run tried once more; a container of
    that name without the session's labels is not ours, and is left alone.
    """
    for attempt in range(3):
        try:
            output, warnings = _run_script_warnings(plan, LAUNCH_TIMEOUT, locks)
            return output.strip().splitlines()[-1], warnings
        except _NoNetwork:
            with registry.named_lock("network"):
                engine.create_session_network(SESSION_NETWORK)
        except _NameTaken:
            existing = _session_containers(registry, plan.session.role, plan.session.id)
            running = next((c for c in existing if c.running), None)
            if running is not None:
                return running, ()
            if not existing or attempt == 2:
                raise _name_taken_by(plan) from None
            engine.remove_containers([c.id for c in existing])
    raise AssertionError("unreachable")


def _name_taken_by(plan: LaunchPlan) -> EngineError:
    """Say whose container holds the name: another state folder's session, or not ours."""
    labels = engine.container_labels(plan.name)
    prefix = f"session {plan.session.id!r}: container name {plan.name!r} is taken"
    other = labels.get("filare.registry")
    if other and labels.get("filare.session") == plan.session.id:
        return EngineError(
            f"{prefix} by this session as recorded in another state folder, {other}; reach it "
            f"with FILARE_STATE_DIR={other}, or stop it there first"
        )
    return EngineError(
        f"{prefix} by a container that is not this session's; rename or remove that container"
    )


def _check_workspace_free(session: SessionSpec, workspace: Path, registry: Registry) -> None:
    """Refuse a workspace another live session uses, or that holds or lies inside one, unless
    both allow sharing it.

    Called under the workspace's lock, which every start of an unshared workspace holds until
    its container runs. Records name the candidates without an engine call; only a candidate is
    checked for a running container, so a stale record never blocks a start. Paths are compared
    with links resolved.
    """
    candidates = {
        (r.role, r.session_id): hostpaths.resolved(r.workspace)
        for r in registry.states()
        if hostpaths.overlap(hostpaths.resolved(r.workspace), workspace)
        and (r.role, r.session_id) != (session.role, session.id)
        and r.status in {"running", "starting"}
        and not (session.shared_workspace and r.labels.get(SHARED_WORKSPACE_LABEL) == "true")
    }
    if not candidates:
        return
    for other in engine.list_containers(session_filters(registry.root)):
        if other.running and (other.role, other.session_id) in candidates:
            theirs = candidates[(other.role, other.session_id)]
            where = "" if theirs == workspace else f", whose workspace {theirs} overlaps it"
            raise InputError(
                f"session {session.id!r}: workspace {session.workspace} is in use by running "
                f"session {other.session_id!r} ({other.name}{where}); set "
                "'shared_workspace: true' on both to allow it"
            )


def _new_state(plan: LaunchPlan, previous: SessionState | None) -> SessionState:
    """A record of this start; the conversation of an earlier one carries over."""
    session = plan.session
    return SessionState(
        session_id=session.id,
        role=session.role,
        owner=session.owner,
        status="starting",
        container_name=plan.name,
        image=session.image,
        workspace=plan.workspace,
        ssh_dir=plan.ssh_dir,
        manifest=session.manifest_path,
        labels=plan.labels,
        argv=plan.argv,
        branch=session.branch,
        tags=list(session.tags),
        goal=session.goal,
        operator_contact=session.operator_contact,
        user=plan.user,
        transcript_dir=plan.folders.transcript_dir,
        thread_id=previous.thread_id if previous else None,
    )


def _adopt(registry: Registry, plan: LaunchPlan, container: engine.Container) -> SessionState:
    state = registry.read(plan.session.role, plan.session.id)
    if state is not None and state.status == "running" and state.container_id == container.id:
        return state
    base = state or _new_state(plan, None)
    return registry.write(
        base.replace(
            status="running",
            container_id=container.id,
            started_at=base.started_at or container.created or now(),
            error=None,
        )
    )


def _run_script(plan: LaunchPlan, timeout: float, keep_fds: Sequence[int] = ()) -> str:
    return _run_script_warnings(plan, timeout, keep_fds)[0]


def _run_script_warnings(
    plan: LaunchPlan, timeout: float, keep_fds: Sequence[int] = ()
) -> tuple[str, tuple[str, ...]]:
    """Run the launch script; `keep_fds` (the locks) stay held by it until it exits."""
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
    warnings = tuple(
        line.removeprefix(WARNING_PREFIX)
        for line in result.stderr.splitlines()
        if line.startswith(WARNING_PREFIX)
    )
    if result.returncode == 0:
        return result.stdout, warnings
    raise _launch_error(plan, result.returncode, result.stderr)


def _launch_error(plan: LaunchPlan, code: int, stderr: str) -> OrchestratorError:
    if code in (-signal.SIGINT, 128 + signal.SIGINT):
        # Ctrl-C reaches the whole process group: the launch script and its `docker run` too.
        return StartInterrupted(f"session {plan.session.id!r}: {INTERRUPTED}")
    lines = [
        line.strip()
        for line in stderr.splitlines()
        if line.strip()
        and not line.startswith(WARNING_PREFIX)
        and not line.startswith("Run 'docker run --help'")
    ]
    reason = lines[-1] if lines else f"exit code {code}"
    prefix = f"session {plan.session.id!r}"
    if "No such image" in stderr:
        return EngineError(f"{prefix}: {engine.missing_image_hint(plan.session.image)}")
    if "is already in use by container" in stderr:
        return _NameTaken(f"{prefix}: container name {plan.name!r} is taken")
    if (
        f"network {SESSION_NETWORK} not found" in stderr
        or f"network {SESSION_NETWORK} is ambiguous" in stderr
    ):
        return _NoNetwork(f"{prefix}: no network {SESSION_NETWORK}")
    if reason.startswith("run_codex_container.sh:"):
        return InputError(f"{prefix}: {reason.removeprefix('run_codex_container.sh:').strip()}")
    return EngineError(f"{prefix}: {engine.describe_failure('run', reason)}")


def _undo(registry: Registry, session: SessionSpec) -> None:
    """Remove what a failed start of this session created: its containers and secret copies."""
    with contextlib.suppress(OrchestratorError):
        containers = _session_containers(registry, session.role, session.id)
        engine.remove_containers([c.id for c in containers])
    session_folders.remove_secrets(registry.session_dir(session.role, session.id))


def _session_containers(registry: Registry, role: str, session_id: str) -> list[engine.Container]:
    return engine.list_containers(session_filters(registry.root, session=session_id, role=role))


# --- coming back ----------------------------------------------------------------------------------

# What `resume --all` brings back: sessions recorded as running whose container is gone or exited.
RESUMABLE = frozenset({"exited", "stale"})


def resume_sessions(
    registry: Registry | None = None,
    *,
    everything: bool = False,
    session_ids: Sequence[str] = (),
    manifest: Path | None = None,
    parallel: int = MAX_PARALLEL_STARTS,
) -> list[StartOutcome]:
    """Start recorded sessions again from their manifests: the same workspace, Codex home,
    conversation and questions. A session whose container runs is reported, never doubled.

    `everything`: the sessions a daemon restart, a reboot or `docker stop` took down (recorded as
    running, their container exited or gone). `session_ids` and `manifest` also bring back
    sessions stopped on purpose.
    """
    from orchestrator.listing import survey
    from orchestrator.manifest import default_cache_dir, load_manifest

    if not (everything or session_ids or manifest):
        raise InputError("say which sessions to resume: --all, --session or --manifest")
    registry = registry or Registry.default()
    views = [v for v in survey(registry).sessions if v.state is not None]
    known = {v.session_id for v in views}
    unknown = [s for s in session_ids if s not in known]
    if unknown:
        raise InputError(f"no session with id {unknown[0]!r} in {registry.root}")
    wanted = manifest.expanduser().resolve() if manifest else None
    chosen = [
        v
        for v in views
        if (everything and v.status in RESUMABLE)
        or v.session_id in session_ids
        or (wanted is not None and v.manifest == wanted)
    ]
    outcomes: list[StartOutcome] = []
    by_manifest: dict[Path | None, list[str]] = {}
    for view in chosen:
        by_manifest.setdefault(view.manifest, []).append(view.session_id)
    for path, ids in sorted(by_manifest.items(), key=lambda item: str(item[0])):
        if path is None or not path.is_file():
            for session_id in ids:
                error = InputError(
                    f"session {session_id!r}: its manifest {path} is gone; start it with "
                    "session.start from a manifest"
                )
                outcomes.append(StartOutcome(_placeholder(views, session_id), error=error))
            continue
        every = load_manifest(path, cache_dir=default_cache_dir())
        specs = [s for s in every if s.id in ids]
        missing = set(ids) - {s.id for s in specs}
        for session_id in sorted(missing):
            error = InputError(f"session {session_id!r} is no longer in its manifest {path}")
            outcomes.append(StartOutcome(_placeholder(views, session_id), error=error))
        if specs:
            outcomes += start_sessions(specs, registry, parallel=parallel, manifest_sessions=every)
    return outcomes


def _placeholder(views: Sequence[object], session_id: str) -> SessionSpec:
    """A stand-in spec naming a session that cannot be loaded from a manifest, for reporting."""
    from orchestrator.listing import SessionView

    for view in views:
        if isinstance(view, SessionView) and view.session_id == session_id and view.state:
            state = view.state
            return SessionSpec(
                id=state.session_id,
                role=state.role,
                branch=state.branch,
                workspace=state.workspace,
                env_file=Path(),
                ssh_key=Path(),
                owner=state.owner,
                codex_dir=Path(),
                image=state.image,
                manifest_path=state.manifest,
            )
    raise AssertionError(session_id)
