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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import egress, engine, hostpaths, limits, session_folders, skills
from orchestrator.errors import EngineError, InputError, OrchestratorError
from orchestrator.plan import (
    REGISTRY_LABEL,
    SESSION_NETWORK,
    SHARED_WORKSPACE_LABEL,
    LaunchPlan,
    launch_script,
    plan_launch,
    session_filters,
    tool_checkout,
)
from orchestrator.preflight import check_inputs
from orchestrator.registry import Registry, SessionState, now
from orchestrator.spec import SessionSpec

if TYPE_CHECKING:  # the egress proxy's module is imported only by starts that need it
    from orchestrator import egress_proxy

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
    progress: Callable[[str], None] | None = None,
    images: engine.ImageQuery | None = None,
) -> list[StartOutcome]:
    """Start sessions concurrently (at most `parallel` at once), results in manifest order.

    With `progress`, an image a session's engine lacks and the current engine has is copied
    there, `progress` told how far it is; without, such a session is refused with what to run.

    Inputs of every session, the engine and the images are checked before any starts.
    `manifest_sessions` are every session of the manifest (default: `sessions`): no seeding copies
    their workspaces or secret files. A failing session does not stop the others; a Ctrl-C
    removes what this call created and re-raises. `images`: the current engine asked for them
    already (`early.ask_images`).
    """
    from orchestrator import early

    registry = registry or Registry.default()
    # The current engine is asked for its images while the inputs are checked: only read, its
    # answer is used once they pass (a bad input is still reported first, the call ended).
    with images or early.ask_images(sessions) as asked:
        if parallel < 1:
            raise InputError(f"--parallel must be at least 1, not {parallel}")
        check_start(sessions, registry, engine_too=False)
        engine.require_cli()
        sessions, refused = place_sessions(sessions, registry)
        _check_runtimes(sessions)
        refused |= _missing_images(sessions, progress, ahead=asked)
    context = _SeedContext.of(registry, [*sessions, *manifest_sessions])
    cancelled = threading.Event()

    def start_one(session: SessionSpec) -> StartOutcome:
        try:
            if session.id in refused:
                return _refuse(session, registry, refused[session.id])
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


def _remote(context: str | None) -> bool:
    """`volumes.remote`, importing `volumes` only for a named engine: the current one always
    sees this machine's files, and the module is a few ms of every start's imports."""
    if not context:
        return False
    from orchestrator import volumes

    return volumes.remote(context)


def place_sessions(
    sessions: Sequence[SessionSpec], registry: Registry
) -> tuple[list[SessionSpec], dict[str, str]]:
    """Each session with its engine decided (`engine` set, the pool gone), and why the ones no
    engine took were refused. Engines named but unknown, or out of this machine's reach for
    bind mounts, are bad input found before anything is written."""
    from orchestrator.placement import place

    named = {s.engine for s in sessions if s.engine} | {
        slot.context for s in sessions for slot in s.engines
    }
    hosts = engine.context_hosts(sorted(named))
    placement = place(sessions, registry)
    placed = [
        dataclasses.replace(s, engine=placement.engines.get(s.id, s.engine), engines=())
        for s in sessions
    ]
    remote = [
        s for s in placed if s.engine and not engine.shares_files(hosts.get(s.engine, "unix://"))
    ]
    if remote:
        from orchestrator import volumes

        problems = [
            f"{s.manifest_path}: session {s.id!r}: {problem}"
            for s in remote
            for problem in volumes.problems(s, hosts[s.engine or ""])
        ]
        if problems:
            raise InputError(*problems)
    return placed, dict(placement.refused)


def _missing_images(
    sessions: Sequence[SessionSpec],
    progress: Callable[[str], None] | None = None,
    *,
    ahead: engine.ImageQuery | None = None,
) -> dict[str, str]:
    """Sessions whose engine lacks their image, each with what to run; engines asked at once.

    An image a named engine lacks and the current engine has is copied there first (`docker
    save | docker load`, no registry needed), with `progress` told how far it is. With one
    engine, an engine that does not answer fails the whole start, before anything is written;
    with several, only the sessions of that engine fail.
    """
    by_engine: dict[str | None, list[SessionSpec]] = {}
    for session in sessions:
        by_engine.setdefault(session.engine, []).append(session)

    def check(context: str | None) -> set[str] | EngineError:
        images = sorted({s.image for s in by_engine[context]})
        try:
            if context is None and ahead is not None and set(images) <= set(ahead.images):
                return ahead.missing() & set(images)
            missing = engine.Engine(context).missing_images(images)
            if context is None or not missing or progress is None:
                return missing
            return missing - _copied(sorted(missing), context, progress)
        except EngineError as exc:
            if len(by_engine) == 1:
                raise
            return exc

    with ThreadPoolExecutor(max_workers=max(1, len(by_engine))) as pool:
        answers = dict(zip(by_engine, pool.map(check, list(by_engine)), strict=True))
    refused = {}
    for context, answer in answers.items():
        for session in by_engine[context]:
            if isinstance(answer, EngineError):
                refused[session.id] = str(answer)
            elif session.image in answer:
                refused[session.id] = engine.missing_image_hint(session.image, context=context)
    return refused


def _copied(images: Sequence[str], context: str, progress: Callable[[str], None]) -> set[str]:
    """The images copied from the current engine to `context`: those the current one has."""
    here = set(images) - engine.missing_images(images)
    for image in sorted(here):
        engine.copy_image(image, target=context, progress=copy_progress(image, context, progress))
        progress(f"copied image {image} to engine {context!r}")
    return here


def copy_progress(
    image: str, context: str, say: Callable[[str], None]
) -> Callable[[int, int], None]:
    """Tell `say` how far a copy is, each tenth of the image's size once."""
    told = [-1]

    def report(sent: int, size: int) -> None:
        tenth = min(10, sent * 10 // size) if size else 0
        if tenth > told[0]:
            told[0] = tenth
            say(
                f"copying image {image} to engine {context!r}: {sent / 1e6:.0f} of "
                f"{size / 1e6:.0f} MB"
            )

    return report


def _record_interrupted(registry: Registry, session: SessionSpec) -> None:
    """A start this call made, undone because the call was interrupted: the record says so,
    never `running` for a container that is gone (which would show as `stale`)."""
    with registry.lock(session.role, session.id):
        state = registry.read(session.role, session.id)
        if state is not None:
            registry.write(state.replace(status="error", error=INTERRUPTED))


def _refuse(session: SessionSpec, registry: Registry, reason: str) -> StartOutcome:
    """A session that cannot start (its image is missing, no engine takes it): recorded as
    failed, nothing seeded. The user builds the image or makes room: bad input, exit code 2,
    as `demo` says it too."""
    error = InputError(f"session {session.id!r}: {reason}")
    with registry.lock(session.role, session.id):
        previous = registry.read(session.role, session.id)
        if previous is None or previous.status not in {"running", "starting"}:
            plan = _SeedContext(registry, (), ()).plan(session)
            registry.write(_new_state(plan, previous).replace(status="error", error=str(error)))
    return StartOutcome(session, error=error)


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
        placed, refused = place_sessions(sessions, registry)
        refused |= _missing_images(placed)
        if refused:
            session_id, reason = next(iter(refused.items()))
            raise EngineError(f"session {session_id!r}: {reason}")


def _check_runtimes(sessions: Sequence[SessionSpec]) -> None:
    """A runtime its engine lacks is refused before anything is written, naming the fix."""
    for context in sorted({s.engine or "" for s in sessions}):
        on_engine = [s for s in sessions if (s.engine or "") == context]
        wanted = {s.runtime for s in on_engine if s.runtime is not None and s.runtime != "runc"}
        if not wanted:
            continue
        missing = sorted(wanted - engine.runtimes(context=context or None))
        if missing:
            users = [s.id for s in on_engine if s.runtime == missing[0]]
            raise EngineError(
                f"session {users[0]!r}: the engine has no runtime {missing[0]!r}: install and "
                "register it with 'sudo scripts/register_runsc.sh' (Debian's runsc, added to "
                "/etc/docker/daemon.json, the engine reloaded), see docs/egress.md"
            )


def dry_run(
    session: SessionSpec,
    registry: Registry | None = None,
    *,
    manifest_sessions: Sequence[SessionSpec] = (),
) -> str:
    """The `docker run` command line a start would execute; creates and writes nothing."""
    registry = registry or Registry.default()
    context = _SeedContext.of(registry, [session, *manifest_sessions])
    if session.engine or session.engines:
        placed, refused = place_sessions([session], registry)
        if refused:
            raise EngineError(f"session {session.id!r}: {refused[session.id]}")
        session = placed[0]
    if _remote(session.engine):
        from orchestrator import volumes

        return volumes.dry_run(volumes.with_volumes(context.plan(session)))
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
    registry itself, and every secret the manifest names (env files, keys, known hosts, and
    Codex folders, which hold a login)."""

    registry: Registry
    excludes: tuple[Path, ...]
    secrets: tuple[Path, ...]

    @classmethod
    def of(cls, registry: Registry, sessions: Sequence[SessionSpec]) -> _SeedContext:
        workspaces = {hostpaths.resolved(s.workspace) for s in sessions}
        workspaces |= {hostpaths.resolved(state.workspace) for state in registry.states()}
        secrets = {
            path
            for s in sessions
            for path in (s.env_file, s.ssh_key, s.known_hosts, s.codex_dir)
            if path != Path()
        }
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
    if _remote(session.engine):
        from orchestrator import volumes

        plan = volumes.with_volumes(plan)
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
            existing = _session_containers(registry, session.role, session.id, session.engine)
            running = next((c for c in existing if c.running), None)
            if running is not None:
                _check_same_manifest(session, record)
                return StartOutcome(session, _adopt(registry, plan, running), already_running=True)
            engine.Engine(session.engine).remove([c.id for c in existing])
        _check_workspace_free(session, plan.workspace, registry)
        state = registry.write(_new_state(plan, record))
        try:
            session_folders.prepare(
                plan,
                session_skills=skills.session_skills_dir(tool_checkout()),
                session_config=skills.session_skills_config(tool_checkout()),
            )
            limits.install(registry.session_dir(session.role, session.id), session.limits)
            joining = _prepare_network(session, registry)
            held = (lock_fd,) if workspace_fd is None else (lock_fd, workspace_fd)
            plan.folders.seed_record.unlink(missing_ok=True)
            try:
                container, warnings = _run_container(plan, registry, held, joining)
            finally:
                if joining is not None:
                    joining.wait()
            state = _with_seed_record(plan, state)
        except BaseException as exc:
            _undo(registry, session)
            if isinstance(exc, OSError):
                # Its folders could not be made or filled: this session's failure, in one line;
                # the others go on.
                error = OrchestratorError(f"session {session.id!r}: {_folder_fault(exc)}")
                registry.write(state.replace(status="error", error=str(error)))
                raise error from None
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


def _folder_fault(exc: OSError) -> str:
    where = f": {exc.filename}" if exc.filename else ""
    return f"cannot prepare its folders: {exc.strerror or exc}{where}"


def _with_seed_record(plan: LaunchPlan, state: SessionState) -> SessionState:
    """The record with the base the launch script wrote when it seeded the workspace just now.

    The file is in the session's host-only folder and was written from the fresh copy before the
    container started; a workspace that was not seeded this time keeps the base recorded before.
    """
    try:
        text = plan.folders.seed_record.read_text(encoding="ascii")
    except (FileNotFoundError, UnicodeDecodeError):
        return state
    # Imported only when this start seeded (3 ms a start would pay for nothing otherwise).
    from orchestrator.homecoming.refs import parse_seed_record

    seeded = parse_seed_record(text)
    if seeded is None:
        return state
    commit, ref = seeded
    return state.replace(seed_repository=_seed_repository(plan), base_commit=commit, base_ref=ref)


def _seed_repository(plan: LaunchPlan) -> Path | None:
    from orchestrator.plan import seed_source

    source = seed_source(plan.session)
    return hostpaths.resolved(source) if source is not None else None


def _prepare_network(session: SessionSpec, registry: Registry) -> egress_proxy.Joining | None:
    """A session behind the egress proxy gets its own network (kept from one start to the next)
    and its policy, written at every start (so a changed `egress` takes effect). An open or
    closed session needs none: one an earlier start kept goes."""
    if egress.egress_mode(session) == "proxy":
        from orchestrator import egress_proxy
        from orchestrator.plan import seed_source

        policy = egress.resolve_policy(session, seed_source(session))
        return egress_proxy.prepare(session, registry, policy)
    if egress.kept_network(registry.root, session):
        from orchestrator import egress_proxy

        egress_proxy.remove_network(registry, session.role, session.id, session.engine)
    return None


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


class _NoEgressNetwork(EngineError):
    """`docker run` found no network where the session's kept one should be."""


def _run_container(
    plan: LaunchPlan,
    registry: Registry,
    locks: Sequence[int],
    joining: egress_proxy.Joining | None = None,
) -> tuple[str | engine.Container, tuple[str, ...]]:
    """The new container's id (or the session's own container already running under its name),
    and the launch script's warnings.

    `locks` (the session's and its workspace's) are handed to the launch script, so a start
    killed half way keeps both held until its orphaned children are done.

    An exited container of the session is removed and the run tried once more; a container of
    that name without the session's labels is not ours, and is left alone.
    """
    run = _run_script_warnings
    if plan.labels.get("filare.storage") == "volumes":  # volumes.uses_volumes, not imported
        from orchestrator import volumes

        run = volumes.run
    for attempt in range(3):
        try:
            output, warnings = run(plan, LAUNCH_TIMEOUT, locks)
            return output.strip().splitlines()[-1], warnings
        except _NoNetwork:
            with registry.named_lock("network"):
                engine.Engine(plan.session.engine).create_session_network(SESSION_NETWORK)
        except _NoEgressNetwork:
            if joining is None or attempt == 2:
                raise
            joining.remake()
        except _NameTaken:
            session = plan.session
            existing = _session_containers(registry, session.role, session.id, session.engine)
            running = next((c for c in existing if c.running), None)
            if running is not None:
                return running, ()
            if not existing or attempt == 2:
                raise _name_taken_by(plan) from None
            engine.Engine(plan.session.engine).remove([c.id for c in existing])
    raise AssertionError("unreachable")


def _name_taken_by(plan: LaunchPlan) -> EngineError:
    """Say whose container holds the name: another state folder's session, or not ours."""
    labels = engine.Engine(plan.session.engine).labels(plan.name)
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
    contexts = {r.engine for r in registry.states() if (r.role, r.session_id) in candidates}
    for other in (
        container
        for context in sorted(contexts, key=str)
        for container in engine.Engine(context).list_containers(session_filters(registry.root))
    ):
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
        engine=session.engine,
        seed_repository=previous.seed_repository if previous else None,
        base_commit=previous.base_commit if previous else None,
        base_ref=previous.base_ref if previous else None,
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
        hint = engine.missing_image_hint(plan.session.image, context=plan.session.engine)
        return EngineError(f"{prefix}: {hint}")
    if "is already in use by container" in stderr:
        return _NameTaken(f"{prefix}: container name {plan.name!r} is taken")
    if (
        f"network {SESSION_NETWORK} not found" in stderr
        or f"network {SESSION_NETWORK} is ambiguous" in stderr
    ):
        return _NoNetwork(f"{prefix}: no network {SESSION_NETWORK}")
    if egress.egress_mode(plan.session) == "proxy":
        network = egress.network_name(plan.name, Path(plan.labels[REGISTRY_LABEL]))
        if f"network {network} not found" in stderr:
            return _NoEgressNetwork(f"{prefix}: no network {network}")
    if reason.startswith("run_codex_container.sh:"):
        return InputError(f"{prefix}: {reason.removeprefix('run_codex_container.sh:').strip()}")
    return EngineError(
        f"{prefix}: {engine.describe_failure('run', reason, context=plan.session.engine)}"
    )


def _undo(registry: Registry, session: SessionSpec) -> None:
    """Remove what a failed start of this session created: its containers and secret copies."""
    with contextlib.suppress(OrchestratorError):
        containers = _session_containers(registry, session.role, session.id, session.engine)
        engine.Engine(session.engine).remove([c.id for c in containers])
    if egress.egress_mode(session) == "proxy":
        from orchestrator import egress_proxy

        with contextlib.suppress(OrchestratorError):
            egress_proxy.remove_network(registry, session.role, session.id, session.engine)
    session_folders.remove_secrets(registry.session_dir(session.role, session.id))


def _session_containers(
    registry: Registry, role: str, session_id: str, context: str | None = None
) -> list[engine.Container]:
    filters = session_filters(registry.root, session=session_id, role=role)
    return engine.Engine(context).list_containers(filters)


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
    progress: Callable[[str], None] | None = None,
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
            outcomes += start_sessions(
                specs, registry, parallel=parallel, manifest_sessions=every, progress=progress
            )
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
