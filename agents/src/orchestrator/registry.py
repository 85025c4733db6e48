"""The session registry: one folder per session holding its durable record and its lock.

Layout, under the registry root (`outputs/agents` by default)::

    <role>/<session-id>/state.json   what was asked for and what happened (atomic writes)
    <role>/<session-id>/lock         flock(2) target held across processes for start and stop
    <role>/<session-id>/ssh/         the session's private copy of its SSH key

Docker labels remain the truth about what runs; this record is what survives the containers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from orchestrator.errors import OrchestratorError
from orchestrator.spec import is_safe_name
from orchestrator.transcript import is_thread_id

Status = Literal["starting", "running", "stopped", "error"]
STATUSES = frozenset(get_args(Status))
STATE_FILE = "state.json"
LOCK_FILE = "lock"
WORKSPACE_LOCKS = ".workspace-locks"
STATE_ROOT_ENV = "FILARE_STATE_DIR"
# A record is a few kilobytes; anything much larger was not written by us.
MAX_RECORD_BYTES = 1 << 20


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SessionState:
    """The durable record of one session. Holds paths and names, never secret values.

    A plain dataclass rather than a pydantic model: `session.list` and `session.stop` read every
    record on each call, and should not pay pydantic's import on that path.
    """

    session_id: str
    role: str
    owner: str
    status: Status
    container_name: str
    image: str
    workspace: Path
    ssh_dir: Path
    container_id: str | None = None
    manifest: Path | None = None
    labels: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)
    error: str | None = None
    branch: str = ""
    tags: list[str] = field(default_factory=list)
    goal: str | None = None
    # Free-form, as the manifest gave it (text, or a mapping of escalation rules).
    operator_contact: Any = None
    # The UID:GID the container runs as, and the folder its transcripts go to.
    user: str | None = None
    transcript_dir: Path | None = None
    # The Codex conversation every turn of the session continues, once the first turn began it.
    thread_id: str | None = None
    # The Docker context it runs on (None: the current one); a session stays on it for life.
    engine: str | None = None
    # Where the session's work comes home: the repository its workspace was seeded from, the
    # commit it was seeded at and the source's ref that held it ("refs/heads/main"), all written
    # by the host at seeding and never read back from the workspace.
    seed_repository: Path | None = None
    base_commit: str | None = None
    base_ref: str | None = None
    created_at: datetime = field(default_factory=now)
    updated_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    stopped_at: datetime | None = None

    def replace(self, **changes: Any) -> SessionState:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        def encode(value: object) -> object:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, Path):
                return str(value)
            raise TypeError(type(value).__name__)

        return json.dumps(dataclasses.asdict(self), indent=2, default=encode) + "\n"

    @classmethod
    def from_json(cls, text: bytes | str) -> SessionState:
        """Parse a record, checking what later commands act on; unknown fields are ignored."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        if data.get("status") not in STATUSES:
            raise ValueError(f"unknown status {data.get('status')!r}")
        for name in ("session_id", "role"):
            if not isinstance(data.get(name), str) or not is_safe_name(data[name]):
                raise ValueError(f"unsafe {name} {data.get(name)!r}")
        data = {key: value for key, value in data.items() if key in _FIELDS}
        if not is_thread_id(data.get("thread_id")):
            # Learnt from a transcript the session wrote: only Codex's shape is kept.
            data["thread_id"] = None
        for name in ("workspace", "ssh_dir", "manifest", "transcript_dir", "seed_repository"):
            if data.get(name) is not None:
                data[name] = Path(data[name])
        for name in ("created_at", "updated_at", "started_at", "stopped_at"):
            if data.get(name) is not None:
                data[name] = datetime.fromisoformat(data[name])
        return cls(**data)


_FIELDS = frozenset(f.name for f in dataclasses.fields(SessionState))


class Registry:
    """State folders under one root; every write is a temp file renamed into place."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    @classmethod
    def default(cls) -> Registry:
        """`$FILARE_STATE_DIR`, else `outputs/agents` under the current folder."""
        return cls(os.environ.get(STATE_ROOT_ENV) or Path.cwd() / "outputs" / "agents")

    def session_dir(self, role: str, session_id: str) -> Path:
        """`<root>/<role>/<id>`; names that could leave the root are refused, wherever from, and
        so is a link in their place: what is written or deleted there stays in the registry."""
        for kind, name in (("role", role), ("session id", session_id)):
            if not is_safe_name(name):
                raise OrchestratorError(f"{self.root}: refusing unsafe {kind} {name!r}")
        folder = self.root / role / session_id
        for part in (folder.parent, folder):
            if part.is_symlink():
                raise OrchestratorError(f"{part}: refusing a link in the registry; remove it")
        return folder

    def state_path(self, role: str, session_id: str) -> Path:
        return self.session_dir(role, session_id) / STATE_FILE

    def read(self, role: str, session_id: str) -> SessionState | None:
        path = self.state_path(role, session_id)
        state = self._load(path)
        if state is not None and (state.role, state.session_id) != (role, session_id):
            raise OrchestratorError(f"{path}: unreadable session state: it names another session")
        return state

    def write(self, state: SessionState) -> SessionState:
        state = state.replace(updated_at=now())
        atomic_write(self.state_path(state.role, state.session_id), state.to_json())
        return state

    def scan(self) -> RegistryScan:
        """Every valid record, sorted by role then id, and why any other was left alone.

        A session can be made to write under the registry (a manifest whose paths point there),
        so nothing found here is trusted: folders must be real folders with safe names, a record
        must name the folder it is in, and links are never followed.
        """
        states: list[SessionState] = []
        foreign: list[str] = []
        for folder in self._session_folders():
            path = folder / STATE_FILE
            try:
                state = _parse(path)
            except _Unreadable as exc:
                foreign.append(f"{path}: left alone: unreadable session state: {exc}")
                continue
            if state is None:
                continue
            if (state.role, state.session_id) != (folder.parent.name, folder.name):
                foreign.append(f"{path}: left alone: it names another session")
                continue
            states.append(state)
        return RegistryScan(states, foreign)

    def states(self) -> list[SessionState]:
        """Every valid record, sorted by role then id."""
        return self.scan().states

    def ssh_dirs(self) -> list[Path]:
        found = []
        for folder in self._session_folders():
            ssh = folder / "ssh"
            if ssh.is_dir() and not ssh.is_symlink():
                found.append(ssh)
        return found

    def _session_folders(self) -> list[Path]:
        """`<role>/<id>` folders with safe names, never reached through a link."""
        found = []
        for role in _real_folders(self.root):
            found += _real_folders(role)
        return found

    def lock(self, role: str, session_id: str) -> contextlib.AbstractContextManager[int]:
        """Hold the session's lock; blocks while another process holds it.

        Yields the lock's file descriptor: a child process that inherits it keeps the lock held
        after this process dies, so a killed start cannot be raced by the next one.
        """
        return _flock(self.session_dir(role, session_id) / LOCK_FILE)

    def workspace_lock(self, workspace: Path) -> contextlib.AbstractContextManager[int]:
        """Hold a lock named after a workspace, so two starts cannot both claim it."""
        digest = hashlib.sha256(str(workspace).encode()).hexdigest()[:32]
        return _flock(self.root / WORKSPACE_LOCKS / f"{digest}.lock")

    def named_lock(self, name: str) -> contextlib.AbstractContextManager[int]:
        """A lock for work on the registry as a whole (making the session network, say)."""
        return _flock(self.root / f".{name}.lock")

    def busy(self, role: str, session_id: str) -> bool:
        """Whether another process holds the session's lock right now (a start or stop)."""
        return held(self.session_dir(role, session_id) / LOCK_FILE)

    @staticmethod
    def _load(path: Path) -> SessionState | None:
        try:
            return _parse(path)
        except _Unreadable as exc:
            raise OrchestratorError(f"{path}: unreadable session state: {exc}") from None


class _Unreadable(Exception):
    """A record that is not one we wrote: not JSON, not a regular file, unsafe names."""


def _parse(path: Path) -> SessionState | None:
    """The record at `path`; None when there is none."""
    try:
        return SessionState.from_json(read_no_follow(path, MAX_RECORD_BYTES))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise _Unreadable(" ".join(str(exc).split())) from None


@dataclass(frozen=True)
class RegistryScan:
    """What a scan of the registry found: valid records, and one line for each left alone."""

    states: list[SessionState]
    foreign: list[str]


def _real_folders(parent: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(parent), key=lambda entry: entry.name)
    except FileNotFoundError:
        return []
    return [
        Path(entry.path)
        for entry in entries
        if is_safe_name(entry.name) and entry.is_dir(follow_symlinks=False)
    ]


def read_no_follow(path: Path, limit: int) -> bytes:
    """A regular file's first `limit` bytes, refusing a link or anything that is not a file."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit)
    finally:
        os.close(fd)


def held(path: Path) -> bool:
    """Whether the lock at `path` is held right now, by another process or another open of it
    in this one; a lock never taken is free."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextlib.contextmanager
def _flock(path: Path) -> Iterator[int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError as exc:  # a link in its place, say
        raise OrchestratorError(f"{path}: cannot open the lock: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def atomic_write(path: Path, text: str, *, durable: bool = True, mode: int | None = None) -> None:
    """Write `text` so that readers see the old file or the new one, never a mix.

    `durable` also flushes the file to disk before the rename, so a crash cannot leave an empty
    record; a cache, which can always be rebuilt, skips that wait. The rename replaces whatever
    is at `path`, a link included, and never writes through it. `mode` defaults to 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
