"""Where a session's files live: bind mounts of this machine's folders, or named volumes on an
engine that does not share this machine's files (a Docker context over `ssh://` or `tcp://`).

Both ways sit behind one interface, `Storage`, chosen from the session's record (its
`filare.storage` label), so the commands never ask which one they use:

- `deliver(names, remove)`: the inbox files the host wrote (a turn's message, instructions and
  request, an interrupt, the limits) reach the session; `remove` withdraws some.
- `refresh()`: what the session wrote (transcripts, questions, the agent daemon's ready file)
  is in the session's folder here, where every reader reads it through `orchestrator.untrusted`.
- `remove_question(file_id)`: a question taken into the queue is gone from the session too.
- `workspace_source()`: what a throwaway container mounts as the workspace (collect of a stopped
  session).
- `read_workspace_file(path)`: a small file of the workspace (the role's instructions), bounded.

With bind mounts all of that is the folders themselves (nothing to do). With volumes:

- the workspace, Codex home, agent folder and inbox are volumes on the session's engine,
  labelled like its container (`filare.registry`, `filare.session`, `filare.role`,
  `filare.owner`), so `session.prune --records` removes them with the record;
- a start seeds a fresh folder here with the launch script's own rules (`--seed-only`), and a
  throwaway container of the session's image unpacks one tar stream of it, with the Codex home
  and the inbox, into the volumes, owned by the session's user (`docker cp` cannot set owners);
- the SSH key goes into a tmpfs at `~/.ssh` over `docker exec -i` (standard input, 0600): never
  on the engine's disk, gone with the container;
- the inbox is a volume owned by root, writable by no session user; the host writes into it over
  `docker exec --user 0` (files unpacked into a hidden folder, then renamed into place, so the
  agent daemon never reads half a request);
- what the session wrote comes home with `docker cp CONTAINER:/home/agent/.filare -` (which
  works on a stopped container too), unpacked by `orchestrator.untar` within the record bound
  (`FILARE_RECORD_LIMIT_MB`) and mirrored into the session's folder here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import re
import stat
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from orchestrator import engine
from orchestrator.errors import EngineError, InputError, OrchestratorError
from orchestrator.plan import (
    CONTAINER_AGENT_DIR,
    CONTAINER_CODEX_HOME,
    CONTAINER_HOME,
    CONTAINER_INBOX,
    CONTAINER_SSH,
    CONTAINER_TRANSCRIPT,
    CONTAINER_WORKSPACE,
    OWNER_LABEL,
    REGISTRY_LABEL,
    ROLE_LABEL,
    SESSION_LABEL,
)

if TYPE_CHECKING:
    import tarfile

    from orchestrator import untar
    from orchestrator.listing import SessionView
    from orchestrator.plan import LaunchPlan
    from orchestrator.registry import Registry, SessionState
    from orchestrator.spec import SessionSpec

# The label (on the container, and so in the record) that says a session's files are volumes.
STORAGE_LABEL = "filare.storage"
VOLUMES = "volumes"
# The label of a volume: which of the session's folders it holds.
VOLUME_LABEL = "filare.volume"
# The label of the throwaway container that fills a session's volumes at its start.
SEEDING_LABEL = "filare.seeding"
PARTS = ("workspace", "codex", "agent", "inbox")
MOUNTS = {
    "workspace": CONTAINER_WORKSPACE,
    "codex": CONTAINER_CODEX_HOME,
    "agent": CONTAINER_AGENT_DIR,
    "inbox": CONTAINER_INBOX,
}
SEED_TIMEOUT = 900.0
COPY_TIMEOUT = 300.0
# How often one command brings a session's files home at most (a wait polls far more often).
REFRESH_SECONDS = 1.0
MAX_ROLE_FILE_BYTES = 256 << 10
_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")
_DELIVER = """set -eu
inbox=$1; stage="$inbox/.incoming.$2"; shift 2
mkdir "$stage"
tar -x -o -f - -C "$stage"
while [ "$#" -gt 0 ] && [ "$1" != - ]; do mv -f "$stage/$1" "$inbox/$1"; shift; done
[ "$#" -eq 0 ] || shift
for name in "$@"; do rm -f "$inbox/$name"; done
rm -rf "$stage"
"""
_SEED = """set -eu
rm -rf /seed/codex/skills /seed/codex/rules
exec tar -x --same-owner --numeric-owner -p -f - -C /seed
"""


# What a turn leaves in the session's transcript folder.
TRANSCRIPT_SUFFIXES = ("jsonl", "exit", "stderr", "pid")


class Storage(Protocol):
    """What the commands need of a session's files, wherever they are."""

    def deliver(self, names: Sequence[str] = (), remove: Sequence[str] = ()) -> None: ...

    def refresh(self) -> None: ...

    def remove_question(self, file_id: str) -> None: ...

    def forget_transcripts(self, numbers: Sequence[str]) -> None: ...

    def workspace_source(self) -> str: ...

    def read_workspace_file(self, path: str) -> bytes | None: ...


def uses_volumes(labels: Mapping[str, str]) -> bool:
    return labels.get(STORAGE_LABEL) == VOLUMES


def storage(registry: Registry, state: SessionState) -> Storage:
    """The session's storage, as its record says it was started."""
    if uses_volumes(state.labels):
        return Volumes(registry, state)
    return BindMounts(state)


@dataclass(frozen=True)
class BindMounts:
    """The session's folders are this machine's, bound into its container: nothing to move."""

    state: SessionState

    def deliver(self, names: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        return None

    def refresh(self) -> None:
        return None

    def remove_question(self, file_id: str) -> None:
        return None

    def forget_transcripts(self, numbers: Sequence[str]) -> None:
        return None  # removed here, in place, by the one who forgot them

    def workspace_source(self) -> str:
        return str(self.state.workspace)

    def read_workspace_file(self, path: str) -> bytes | None:
        """Up to `MAX_ROLE_FILE_BYTES` of a workspace file, read in place without following a
        link anywhere on its path (the workspace is the session's)."""
        parts = path.split("/")
        try:
            fd = os.open(self.state.workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            for part in parts[:-1]:
                next_fd = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
                os.close(fd)
                fd = next_fd
            file_fd = os.open(
                parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd
            )
        except OSError:
            return None
        finally:
            os.close(fd)
        try:
            # A FIFO or a device in its place is no file (and would block, or raise).
            if not stat.S_ISREG(os.fstat(file_fd).st_mode):
                return None
            return os.pread(file_fd, MAX_ROLE_FILE_BYTES, 0)
        except OSError:
            return None
        finally:
            os.close(file_fd)


# When each session's files last came home (per process): a wait loop does not copy them twice
# within `REFRESH_SECONDS`.
_refreshed: dict[tuple[str, str, str], float] = {}
_refresh_lock = threading.Lock()


@dataclass(frozen=True)
class Volumes:
    """The session's folders are volumes on its engine, reached through the engine only."""

    registry: Registry
    state: SessionState

    @property
    def _engine(self) -> engine.Engine:
        return engine.Engine(self.state.engine)

    @property
    def _container(self) -> str:
        return self.state.container_id or self.state.container_name

    @property
    def _dir(self) -> Path:
        return self.registry.session_dir(self.state.role, self.state.session_id)

    def deliver(self, names: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        if not names and not remove:
            return
        for name in (*names, *remove):
            if not _NAME.fullmatch(name):
                raise InputError(f"session {self.state.session_id!r}: no inbox file {name!r}")
        import tarfile

        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            for name in names:
                data = (self._dir / "inbox" / name).read_bytes()
                tar.addfile(_file_info(name, len(data), 0o644, 0, 0), io.BytesIO(data))
        argv = ["exec", "--interactive", "--user", "0:0", self._container, "sh", "-c", _DELIVER]
        argv += ["sh", CONTAINER_INBOX, os.urandom(6).hex(), *names, "-", *remove]
        _run(self._engine, argv, archive.getvalue(), COPY_TIMEOUT, self.state.session_id)

    def refresh(self, *, force: bool = False) -> None:
        key = (str(self.registry.root), self.state.role, self.state.session_id)
        with _refresh_lock:
            last = _refreshed.get(key, 0.0)
            if not force and time.monotonic() - last < REFRESH_SECONDS:
                return
            _refreshed[key] = time.monotonic()
        bring_home(self.registry, self.state)

    def remove_question(self, file_id: str) -> None:
        if not _NAME.fullmatch(file_id):
            return
        path = f"{CONTAINER_AGENT_DIR}/questions/{file_id}.json"
        argv = ["exec", *_user(self.state), self._container, "rm", "-f", "--", path]
        with contextlib.suppress(EngineError):
            _run(self._engine, argv, b"", engine.DEFAULT_TIMEOUT, self.state.session_id)

    def forget_transcripts(self, numbers: Sequence[str]) -> None:
        """The transcripts of turns forgotten here (past `MAX_TURNS`), removed in the volume
        too, as the session's user: otherwise the next copy home brings them back, and the
        session's folder grows until it passes its record bound."""
        if not numbers or not all(n.isdigit() and n.isascii() for n in numbers):
            return
        paths = [
            f"{CONTAINER_TRANSCRIPT}/{number}.{suffix}"
            for number in numbers
            for suffix in TRANSCRIPT_SUFFIXES
        ]
        argv = ["exec", *_user(self.state), self._container, "rm", "-f", "--", *paths]
        with contextlib.suppress(EngineError):
            _run(self._engine, argv, b"", engine.DEFAULT_TIMEOUT, self.state.session_id)

    def workspace_source(self) -> str:
        return workspace_source(self.state)

    def read_workspace_file(self, path: str) -> bytes | None:
        """Up to `MAX_ROLE_FILE_BYTES` of a workspace file, read in the container as the
        session's user (a link there leads only where the session itself can read)."""
        # A FIFO or a device in its place is no file (and would block): only a regular file is
        # read, and never for long.
        script = 'test -f "$1" && exec timeout 5 head -c "$2" -- "$1"'
        argv = ["exec", *_user(self.state), self._container, "sh", "-c", script, "sh"]
        argv += [f"{CONTAINER_WORKSPACE}/{path}", str(MAX_ROLE_FILE_BYTES)]
        try:
            return _run(self._engine, argv, b"", engine.DEFAULT_TIMEOUT, self.state.session_id)
        except EngineError:
            return None


def _user(state: SessionState) -> list[str]:
    return ["--user", state.user] if state.user else []


def _run(
    where: engine.Engine, args: Sequence[str], stdin: bytes, timeout: float, session_id: str
) -> bytes:
    """One docker call with bytes in and out; a failure is one line naming the session."""
    return engine.docker_bytes(
        *args,
        about=f"session {session_id!r}",
        stdin=stdin,
        timeout=timeout,
        context=where.context,
    )


def _file_info(name: str, size: int, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
    import tarfile

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid, info.mtime = size, mode, uid, gid, int(time.time())
    return info


def _folder_info(name: str, mode: int, uid: int, gid: int) -> tarfile.TarInfo:
    import tarfile

    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = tarfile.DIRTYPE, mode, uid, gid, 0
    return info


# --- which engines --------------------------------------------------------------------------------


@functools.cache
def remote(context: str | None) -> bool:
    """Whether the engine of `context` does not see this machine's files (ssh://, tcp://)."""
    if not context:
        return False
    host = engine.endpoint(context) or engine.context_hosts([context]).get(context, "")
    return bool(host) and not engine.shares_files(host)


def problems(session: SessionSpec, host: str) -> list[str]:
    """What a session asks for that an engine without this machine's files cannot give."""
    where = f"engine {session.engine!r} is at {host}, which does not see this machine's files"
    found = []
    if session.mounts:
        found.append(f"field 'mounts': {where}: a folder of this machine cannot be mounted there")
    if session.env_mode == "mount":
        found.append(
            f"field 'env_mode': {where}: use 'env_mode: env' (the env file is read here and "
            "passed with --env-file)"
        )
    return found


# --- names and labels -----------------------------------------------------------------------------


def volume_name(registry_root: Path, role: str, session_id: str, part: str) -> str:
    """`filare-<role>-<id>-<registry digest>-<part>`: two state folders using one engine never
    share a volume, as they never share a container."""
    digest = hashlib.sha256(str(registry_root).encode()).hexdigest()[:8]
    return f"filare-{role}-{session_id}-{digest}-{part}"


def _filters(registry_root: Path, role: str, session_id: str) -> list[str]:
    return [
        f"label={REGISTRY_LABEL}={registry_root}",
        f"label={ROLE_LABEL}={role}",
        f"label={SESSION_LABEL}={session_id}",
    ]


def session_volumes(
    registry_root: Path, role: str, session_id: str, context: str | None
) -> list[str]:
    """The names of the session's volumes on its engine, found by their labels."""
    args = ["volume", "ls", "--quiet"]
    for value in _filters(registry_root, role, session_id):
        args += ["--filter", value]
    return engine.Engine(context).docker(*args).split()


def remove_volumes(registry_root: Path, role: str, session_id: str, context: str | None) -> None:
    """Remove the session's volumes (`session.prune --records`): found by label, never by name."""
    names = session_volumes(registry_root, role, session_id, context)
    if names:
        engine.Engine(context).docker("volume", "rm", "--force", *names)


# --- starting -------------------------------------------------------------------------------------


def with_volumes(plan: LaunchPlan) -> LaunchPlan:
    """The plan of a session whose engine does not share this machine's files: labelled so."""
    import dataclasses

    labels = {**plan.labels, STORAGE_LABEL: VOLUMES}
    argv = [*plan.argv, "--label", f"{STORAGE_LABEL}={VOLUMES}"]
    return dataclasses.replace(plan, labels=labels, argv=argv)


def run(
    plan: LaunchPlan, timeout: float, keep_fds: Sequence[int] = ()
) -> tuple[str, tuple[str, ...]]:
    """Start the session on an engine without this machine's files: seed and fill its volumes,
    run its container on them (no bind mount), hand it its SSH key. Returns what the launch
    script would print (the container id) and its warnings."""
    from orchestrator.launch import WARNING_PREFIX, _launch_error, _NameTaken, _NoNetwork

    session = plan.session
    where = engine.Engine(session.engine)
    registry_root = Path(plan.labels[REGISTRY_LABEL])
    uid, gid = (int(part) for part in plan.user.split(":"))
    existing = set(session_volumes(registry_root, session.role, session.id, session.engine))
    names = {part: volume_name(registry_root, session.role, session.id, part) for part in PARTS}
    warnings: tuple[str, ...] = ()
    staging = plan.state_dir / "seed-workspace"
    fresh = names["workspace"] not in existing
    try:
        if fresh:
            warnings = _seed_here(plan, staging, timeout, keep_fds)
        for part in PARTS:
            if names[part] not in existing and not _labels_fit_mount(plan, part):
                # A label `--mount` cannot carry (a comma or quote in it): made on its own.
                where.docker(
                    "volume", "create",
                    *(f"--label={k}={v}" for k, v in _volume_labels(plan, part).items()),
                    names[part],
                )  # fmt: skip
        _fill(plan, names, staging if fresh else None, names["codex"] not in existing, (uid, gid))
    except BaseException:
        if fresh:
            with contextlib.suppress(OrchestratorError):
                remove_volumes(registry_root, session.role, session.id, session.engine)
        raise
    finally:
        if staging.exists():
            from orchestrator.session_folders import remove_tree

            remove_tree(staging)
    argv = where.argv("run", "--detach", *_run_args(plan, names, uid, gid))
    container = None
    try:
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, check=False, env=where.env()
            )
        except subprocess.TimeoutExpired:
            raise EngineError(
                f"session {session.id!r}: launch did not finish within {timeout:g} s"
            ) from None
        if done.returncode != 0:
            raise _launch_error(plan, done.returncode, done.stderr)
        container = done.stdout.strip().splitlines()[-1]
        _hand_key(plan, where, container, uid, gid)
    except BaseException as exc:
        # A name taken or a network to make: the caller runs this again on the filled volumes.
        # Any other failure of a first start removes what it made, so the next one seeds again
        # (and records the base it seeds at).
        if not isinstance(exc, _NameTaken | _NoNetwork):
            with contextlib.suppress(OrchestratorError):
                if container is not None:
                    where.remove([container])
                if fresh:
                    remove_volumes(registry_root, session.role, session.id, session.engine)
        raise
    return container, tuple(w.removeprefix(WARNING_PREFIX) for w in warnings)


def _seed_mount(name: str, part: str, labels: Mapping[str, str]) -> str:
    spec = f"type=volume,source={name},target=/seed/{part}"
    if all("," not in f"{k}={v}" and '"' not in f"{k}={v}" for k, v in labels.items()):
        spec += "".join(f",volume-label={k}={v}" for k, v in labels.items())
    return spec


def _labels_fit_mount(plan: LaunchPlan, part: str) -> bool:
    labels = _volume_labels(plan, part)
    return all("," not in f"{k}={v}" and '"' not in f"{k}={v}" for k, v in labels.items())


def _volume_labels(plan: LaunchPlan, part: str) -> dict[str, str]:
    keys = (REGISTRY_LABEL, SESSION_LABEL, ROLE_LABEL, OWNER_LABEL)
    return {**{key: plan.labels[key] for key in keys}, VOLUME_LABEL: part}


def _seed_here(
    plan: LaunchPlan, staging: Path, timeout: float, keep_fds: Sequence[int]
) -> tuple[str, ...]:
    """Seed a fresh folder here with the launch script's own rules (`--seed-only`)."""
    from orchestrator.launch import WARNING_PREFIX, _launch_error
    from orchestrator.session_folders import remove_tree

    if staging.exists():
        remove_tree(staging)
    argv = list(plan.argv)
    argv[argv.index("--workspace") + 1] = str(staging)
    argv = [word for word in argv if word != "--detach"] + ["--seed-only"]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False,
            pass_fds=tuple(keep_fds),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"session {plan.session.id!r}: seeding did not finish within {timeout:g} s"
        ) from None
    if done.returncode != 0:
        raise _launch_error(plan, done.returncode, done.stderr)
    return tuple(line for line in done.stderr.splitlines() if line.startswith(WARNING_PREFIX))


def _fill(
    plan: LaunchPlan,
    names: Mapping[str, str],
    workspace: Path | None,
    fresh_codex: bool,
    ids: tuple[int, int],
) -> None:
    """One tar stream into a throwaway container of the session's image: the seeded workspace
    (when there is one), the Codex home this start prepared, the agent folder and the inbox,
    each owned as in a bind-mounted session (the inbox by root)."""
    session = plan.session
    uid, gid = ids
    where = engine.Engine(session.engine)
    folders = plan.folders
    # The volumes a first start needs are made by this run, labelled (`volume-label`), in one
    # engine call rather than one each.
    mounts = [
        arg
        for part in PARTS
        for arg in ("--mount", _seed_mount(names[part], part, _volume_labels(plan, part)))
    ]
    argv = where.argv(
        "run", "--rm", "--interactive", "--pull", "never", "--network", "none",
        "--user", "0:0", "--cap-drop", "ALL", "--cap-add", "CHOWN", "--cap-add", "DAC_OVERRIDE",
        "--cap-add", "FOWNER", "--security-opt", "no-new-privileges",
        "--label", f"{SEEDING_LABEL}={session.id}",
        "--label", f"{REGISTRY_LABEL}-seeding={plan.labels[REGISTRY_LABEL]}",
        "--entrypoint", "sh", *mounts, session.image, "-c", _SEED,
    )  # fmt: skip
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env=where.env(),
    )  # fmt: skip
    assert process.stdin is not None and process.stderr is not None
    import tarfile

    timer = threading.Timer(SEED_TIMEOUT, process.kill)
    timer.start()
    try:
        with (
            contextlib.suppress(BrokenPipeError),
            tarfile.open(fileobj=process.stdin, mode="w|") as tar,
        ):
            if workspace is not None:
                _add_tree(tar, workspace, "workspace", uid, gid)
            tar.addfile(_folder_info("codex", 0o700, uid, gid))
            for entry in _codex_entries(folders.codex_home, folders.state_dir, fresh_codex):
                _add_tree(tar, entry, f"codex/{entry.name}", uid, gid)
            tar.addfile(_folder_info("agent", 0o700, uid, gid))
            tar.addfile(_folder_info("agent/transcript", 0o700, uid, gid))
            tar.addfile(_folder_info("agent/questions", 0o700, uid, gid))
            tar.addfile(_folder_info("inbox", 0o755, 0, 0))
            for entry in sorted(folders.inbox.iterdir()) if folders.inbox.is_dir() else []:
                if entry.is_file() and not entry.is_symlink():
                    data = entry.read_bytes()
                    tar.addfile(
                        _file_info(f"inbox/{entry.name}", len(data), 0o644, 0, 0), io.BytesIO(data)
                    )
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        stderr = process.stderr.read().decode("utf-8", "replace")
        code = process.wait()
    finally:
        timer.cancel()
    if code != 0:
        reason = engine.describe_failure("run", stderr, context=session.engine)
        raise EngineError(f"session {session.id!r}: filling its volumes failed: {reason}")
    auth = folders.codex_home / "auth.json"
    if auth.is_file() and not auth.is_symlink():
        from orchestrator.registry import atomic_write

        atomic_write(folders.state_dir / AUTH_DELIVERED, _auth_digest(auth) + "\n")


def _codex_entries(home: Path, state_dir: Path, fresh: bool) -> list[Path]:
    """What this start put in the session's Codex home here. `auth.json` only when the session's
    volume has not had this very one yet (`session_folders` rewrites it when the user's changed):
    a token Codex refreshed in the session stays."""
    from orchestrator.session_folders import AUTH_FILE

    entries = []
    for entry in sorted(home.iterdir()) if home.is_dir() else []:
        if entry.is_symlink():
            continue
        if entry.name == AUTH_FILE and not fresh and _auth_digest(entry) == _delivered(state_dir):
            continue
        entries.append(entry)
    return entries


AUTH_DELIVERED = "auth.delivered"


def _auth_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _delivered(state_dir: Path) -> str:
    """The digest of the `auth.json` last unpacked into the session's volume (host-only)."""
    try:
        return (state_dir / AUTH_DELIVERED).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _add_tree(tar: tarfile.TarFile, path: Path, name: str, uid: int, gid: int) -> None:
    """`path` (a file or a folder, links kept as links) under `name`, owned by uid:gid."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    tar.add(path, arcname=name, recursive=True, filter=owned)


def _run_args(plan: LaunchPlan, names: Mapping[str, str], uid: int, gid: int) -> list[str]:
    """`docker run` options of the session, as the launch script spells them for a bind-mounted
    session, with volumes and a tmpfs for the SSH folder in place of every host folder."""
    options = _options(plan.argv)
    args = [
        "--init", "--pull", "never", "--user", plan.user,
        "--env", f"HOME={CONTAINER_HOME}", "--workdir", CONTAINER_WORKSPACE,
        "--security-opt", "no-new-privileges", "--cap-drop", "ALL",
    ]  # fmt: skip
    for part in PARTS:
        # `--mount` rather than `--volume`: `docker inspect` then lists no `Binds` at all.
        args += ["--mount", f"type=volume,source={names[part]},target={MOUNTS[part]}"]
    args += ["--tmpfs", f"{CONTAINER_SSH}:mode=0700,uid={uid},gid={gid},size=1m"]
    args += ["--env-file", options["--env-file"][0], "--name", plan.name]
    network = options.get("--network", [""])[0]
    if network:
        args += ["--network", network]
    proxy = options.get("--egress-proxy", [""])[0]
    if proxy:
        args += _proxy_args(proxy)
    elif network != "none":
        args += ["--add-host", "host.docker.internal:host-gateway"]
    for option in ("--runtime", "--pids-limit", "--cpus", "--memory"):
        for value in options.get(option, []):
            args += [option, value]
    if "--log-max-size" in options:
        args += [
            "--log-driver",
            "json-file",
            "--log-opt",
            f"max-size={options['--log-max-size'][0]}",
        ]
        for value in options.get("--log-max-files", []):
            args += ["--log-opt", f"max-file={value}"]
    for value in options.get("--health-interval", []):
        args += ["--health-interval", f"{value}s", "--health-start-period", f"{value}s"]
    for label in options.get("--label", []):
        args += ["--label", label]
    return [*args, plan.session.image, "sh", "-c", _COMMAND]


# The container's long-lived process, as the launch script runs it: the agent daemon when the
# image has one, else a command that only keeps the container up.
_COMMAND = (
    "if command -v filare-agentd >/dev/null 2>&1; then exec filare-agentd; fi; exec sleep infinity"
)


_FLAGS = frozenset({"--detach", "--dry-run", "--seed-only", "--env-mount", "--no-seed"})


def _options(argv: Sequence[str]) -> dict[str, list[str]]:
    """The launch script's options of a plan, each with its values in order."""
    options: dict[str, list[str]] = {}
    words = list(argv[2:])
    index = 0
    while index < len(words):
        word = words[index]
        if word in _FLAGS:
            index += 1
            continue
        options.setdefault(word, []).append(words[index + 1])
        index += 2
    return options


def _proxy_args(proxy: str) -> list[str]:
    """The egress proxy as the launch script hands it to a session: every proxy variable, and a
    DNS server that answers nothing (the session resolves only the proxy's name)."""
    args = []
    for variable in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        args += ["--env", f"{variable}={proxy}", "--env", f"{variable.lower()}={proxy}"]
    local = "localhost,127.0.0.1,::1"
    args += ["--env", f"NO_PROXY={local}", "--env", f"no_proxy={local}"]
    return [*args, "--env", "NODE_USE_ENV_PROXY=1", "--dns", "192.0.2.53"]


def _proxy_connect() -> bytes:
    """ssh's way through the egress proxy: the launch script's own `proxy-connect` program
    (one source), read from between its `<<'PY'` and `PY` lines."""
    from orchestrator.plan import tool_checkout

    script = (tool_checkout() / "scripts" / "run_codex_container.sh").read_text(encoding="utf-8")
    body = script.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    return (body + "\n").encode()


def _ssh_files(plan: LaunchPlan) -> list[tuple[str, bytes, int]]:
    """The SSH folder's files, as the launch script writes them for a bind-mounted session."""
    session = plan.session
    files = [("id_rsa", session.ssh_key.read_bytes(), 0o600)]
    if session.known_hosts is not None:
        files.append(("known_hosts", session.known_hosts.read_bytes(), 0o644))
        hosts = [
            f"  UserKnownHostsFile {CONTAINER_SSH}/known_hosts",
            "  StrictHostKeyChecking yes",
        ]
    else:
        hosts = [
            f"  UserKnownHostsFile {CONTAINER_AGENT_DIR}/known_hosts",
            "  StrictHostKeyChecking accept-new",
        ]
    proxy = _options(plan.argv).get("--egress-proxy", [""])[0]
    if proxy:
        files.append(("proxy-connect", _proxy_connect(), 0o644))
        host, _, port = proxy.removeprefix("http://").rpartition(":")
        connect = f"python3 {CONTAINER_SSH}/proxy-connect {host} {port} %h %p"
        hosts.append(f"  ProxyCommand {connect}")
    config = ["Host *", f"  IdentityFile {CONTAINER_SSH}/id_rsa", *hosts]
    files.append(("config", ("\n".join(config) + "\n").encode(), 0o600))
    return files


def _hand_key(plan: LaunchPlan, where: engine.Engine, container: str, uid: int, gid: int) -> None:
    """The SSH folder into the container's tmpfs, over standard input: never on a disk there."""
    import tarfile

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        # The folder itself first: the tmpfs takes the image folder's mode, 0700 is ssh's.
        tar.addfile(_folder_info(".", 0o700, uid, gid))
        for name, data, mode in _ssh_files(plan):
            tar.addfile(_file_info(name, len(data), mode, uid, gid), io.BytesIO(data))
    argv = ["exec", "--interactive", "--user", plan.user, container]
    argv += ["tar", "-x", "-o", "-p", "-f", "-", "-C", CONTAINER_SSH]
    _run(where, argv, archive.getvalue(), COPY_TIMEOUT, plan.session.id)


# --- reading back ---------------------------------------------------------------------------------


def bring_home(registry: Registry, state: SessionState) -> None:
    """What the session wrote in its agent folder, mirrored into its folder here (transcripts
    into its transcript folder). A container that is gone leaves the last copy as it is."""
    import fcntl

    folder = registry.session_dir(state.role, state.session_id)
    folder.mkdir(parents=True, exist_ok=True)
    # One copy home at a time per session (a listing and a wait may run at once): each unpacks
    # into the one staging folder and mirrors from it. Not the session's lock, which a caller
    # (interrupt) may hold.
    lock = os.open(folder / ".agent-incoming.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _copy_home(state, folder)
    finally:
        os.close(lock)


def _copy_home(state: SessionState, folder: Path) -> None:
    from orchestrator import record_bound, untar

    staging = folder / ".agent-incoming"
    if staging.exists():
        from orchestrator.session_folders import remove_tree

        remove_tree(staging)
    container = state.container_id or state.container_name
    try:
        unpacked = untar.receive(
            engine.Engine(state.engine),
            f"{container}:{CONTAINER_AGENT_DIR}",
            staging,
            what=f"session {state.session_id!r}: its agent folder",
            limit=record_bound.record_limit(),
            max_entries=record_bound.MAX_ENTRIES,
            timeout=COPY_TIMEOUT,
        )
        if unpacked is None:
            return
        transcripts = state.transcript_dir
        default = folder / "agent" / "transcript"
        if transcripts is None or transcripts == default:
            untar.mirror(staging, folder / "agent", unpacked)
        else:
            untar.mirror(staging, folder / "agent", unpacked, skip="transcript")
            untar.mirror(staging / "transcript", transcripts, _below(unpacked, "transcript"))
    finally:
        from orchestrator.session_folders import remove_tree

        if staging.exists():
            remove_tree(staging)


def _below(unpacked: untar.Unpacked, prefix: str) -> untar.Unpacked:
    from orchestrator.untar import Unpacked

    cut = len(prefix) + 1
    return Unpacked(
        frozenset(f[cut:] for f in unpacked.files if f.startswith(f"{prefix}/")),
        frozenset(f[cut:] for f in unpacked.folders if f.startswith(f"{prefix}/")),
        unpacked.skipped,
        unpacked.size,
    )


def refresh_views(registry: Registry, views: Iterable[SessionView]) -> None:
    """Bring home, all at once, what each session on volumes with a container wrote; a session
    whose copy fails keeps what came home last (listing goes on)."""
    chosen = [
        v
        for v in views
        if v.state is not None and v.container is not None and uses_volumes(v.state.labels)
    ]
    if not chosen:
        return

    def one(view: SessionView) -> None:
        assert view.state is not None and view.container is not None
        state = view.state.replace(container_id=view.container.id)
        with contextlib.suppress(OrchestratorError, OSError):
            Volumes(registry, state).refresh()

    if len(chosen) == 1:
        one(chosen[0])
        return
    with ThreadPoolExecutor(max_workers=min(8, len(chosen))) as pool:
        list(pool.map(one, chosen))


def refresh_states(registry: Registry, states: Iterable[SessionState]) -> None:
    """`refresh_views` for records alone (the question queue reads no engine otherwise): each
    session on volumes that has had a container; one whose container is gone keeps its copy."""
    chosen = [s for s in states if uses_volumes(s.labels) and s.container_id]
    if not chosen:
        return

    def one(state: SessionState) -> None:
        with contextlib.suppress(OrchestratorError, OSError):
            Volumes(registry, state).refresh()

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(chosen)))) as pool:
        list(pool.map(one, chosen))


def workspace_source(state: SessionState) -> str:
    """What a throwaway container mounts as the session's workspace: its folder here, or its
    volume on an engine without this machine's files."""
    if not uses_volumes(state.labels):
        return str(state.workspace)
    root = Path(state.labels.get(REGISTRY_LABEL, ""))
    return volume_name(root, state.role, state.session_id, "workspace")


def dry_run(plan: LaunchPlan) -> str:
    """The `docker run` a start on an engine without this machine's files would execute (one
    line, shell-quoted); the volumes are filled and the key handed over around it."""
    import shlex

    registry_root = Path(plan.labels[REGISTRY_LABEL])
    session = plan.session
    names = {p: volume_name(registry_root, session.role, session.id, p) for p in PARTS}
    uid, gid = (int(part) for part in plan.user.split(":"))
    argv = engine.command_argv(
        "run", "--detach", *_run_args(plan, names, uid, gid), context=session.engine
    )
    return shlex.join(argv[argv.index("docker") :])
