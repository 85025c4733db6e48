"""Sessions as the runtime sees them: plain frozen records, with no validation library behind them.

`orchestrator.config` validates a manifest (pydantic, PyYAML) and hands on `SessionSpec`s;
everything past that boundary works on these records, so `session.list`, `session.stop` and a
cached `session.start` never import pydantic. The rules a field obeys live in `config`.
"""

from __future__ import annotations

import dataclasses
import getpass
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from orchestrator.errors import ManifestError, did_you_mean

EnvMode = Literal["env-file", "mount"]
# Session ids and roles become container names, label values and path parts: letters of either
# case (the origin's manifests say `role: FEATURE`), digits, '.', '_', '-', never '..'.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 63
_PATH_FIELDS = (
    "workspace",
    "env_file",
    "ssh_key",
    "codex_dir",
    "manifest_path",
    "transcript_dir",
    "seed_from",
    "known_hosts",
)


@dataclass(frozen=True, slots=True)
class Resources:
    """Limits handed to `docker run`: `--cpus`, `--memory` and `--pids-limit`."""

    cpus: float | None = None
    memory: str | None = None
    pids: int | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """What a session's agent may spend and how long a turn may run; see `orchestrator.limits`."""

    tokens: int | None = None
    turn_seconds: float | None = None
    stall_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class Mount:
    """An extra bind mount: a host folder or file shown at `target` in the container."""

    source: Path
    target: str
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class EngineSlot:
    """One engine of a pool: a Docker context, and how many live sessions it takes at most."""

    context: str
    max_sessions: int


@dataclass(frozen=True, slots=True)
class Egress:
    """What a session may reach (`orchestrator.egress`): `open`, `none`, or `allow` through the
    egress proxy, with `hosts` pinning names to addresses."""

    mode: Literal["open", "none", "allow"]
    allow: tuple[str, ...] = ()
    hosts: tuple[tuple[str, str], ...] = ()

    def to_manifest(self) -> str | dict[str, Any]:
        """As a manifest writes it: `open`, `none`, or `{allow, hosts}`."""
        if self.mode != "allow":
            return self.mode
        return {"allow": list(self.allow), "hosts": dict(self.hosts)}

    @classmethod
    def from_manifest(cls, value: str | dict[str, Any]) -> Egress:
        if isinstance(value, str):
            return cls(value)  # type: ignore[arg-type]
        return cls("allow", tuple(value.get("allow", ())), tuple(value.get("hosts", {}).items()))


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """One validated session, every path absolute; see `config.AgentSessionConfig` for the rules."""

    id: str
    role: str
    branch: str
    workspace: Path
    env_file: Path
    ssh_key: Path
    owner: str
    codex_dir: Path
    image: str
    goal: str | None = None
    tags: tuple[str, ...] = ()
    startup_script: str | None = None
    # Free-form, as the origin's manifests use it (a mapping of escalation rules, or text).
    operator_contact: Any = None
    resources: Resources = Resources()
    shared_workspace: bool = False
    env_mode: EnvMode = "env-file"
    mounts: tuple[Mount, ...] = ()
    transcript_dir: Path | None = None
    seed_from: Path | None = None
    known_hosts: Path | None = None
    user: str | None = None
    limits: Limits = Limits()
    # The argv `session.watch` runs once per event of the session (never through a shell).
    notify: tuple[str, ...] = ()
    # The Docker context the session runs on (None: the current one), or a pool to place it in.
    engine: str | None = None
    engines: tuple[EngineSlot, ...] = ()
    manifest_path: Path | None = None
    # Absent: the default profile through the egress proxy (see `orchestrator.egress`).
    egress: Egress | None = None
    # The engine's container runtime (`runsc` for gVisor); absent: the engine's default.
    runtime: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for name in _PATH_FIELDS:
            if data[name] is not None:
                data[name] = str(data[name])
        data["tags"] = list(self.tags)
        data["notify"] = list(self.notify)
        data["mounts"] = [
            {"source": str(m.source), "target": m.target, "read_only": m.read_only}
            for m in self.mounts
        ]
        data["engines"] = [
            {"context": e.context, "max_sessions": e.max_sessions} for e in self.engines
        ]
        if self.egress is not None:
            data["egress"] = self.egress.to_manifest()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionSpec:
        data = dict(data)
        for name in _PATH_FIELDS:
            if data.get(name) is not None:
                data[name] = Path(data[name])
        data["tags"] = tuple(data.get("tags", ()))
        data["resources"] = Resources(**data.get("resources", {}))
        data["limits"] = Limits(**(data.get("limits") or {}))
        data["notify"] = tuple(data.get("notify") or ())
        data["mounts"] = tuple(
            Mount(Path(m["source"]), m["target"], m["read_only"]) for m in data.get("mounts", ())
        )
        data["engines"] = tuple(EngineSlot(**e) for e in data.get("engines", ()))
        if data.get("egress") is not None:
            data["egress"] = Egress.from_manifest(data["egress"])
        return cls(**data)


class _HasId(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def manifest_path(self) -> Path | None: ...


SessionT = TypeVar("SessionT", bound=_HasId)


def select_sessions(
    sessions: Sequence[SessionT], session_id: str | Iterable[str] | None
) -> list[SessionT]:
    """Keep the sessions named by id, in manifest order; `None` keeps them all.

    An empty selection (an option given without a value) is not "all": it is refused, so that a
    forgotten id never starts a whole manifest.
    """
    if session_id is None:
        return list(sessions)
    wanted = [session_id] if isinstance(session_id, str) else list(session_id)
    where = sessions[0].manifest_path if sessions else "the manifest"
    if not wanted or any(not w for w in wanted):
        raise ManifestError(f"{where}: --session needs a session id")
    known = [s.id for s in sessions]
    missing = [w for w in wanted if w not in known]
    if missing:
        hint = did_you_mean(missing[0], known)
        raise ManifestError(f"{where}: no session with id {missing[0]!r}{hint}")
    return [s for s in sessions if s.id in wanted]


def is_safe_name(text: str, max_length: int = MAX_NAME_LENGTH) -> bool:
    """Whether `text` can be a session id or role: safe as a path part, label and name."""
    return len(text) <= max_length and bool(SAFE_NAME.fullmatch(text)) and ".." not in text


def read_manifest(path: str | os.PathLike[str]) -> tuple[Path, bytes]:
    """The manifest's resolved path and its bytes; a one-line error when it cannot be read."""
    manifest = Path(path).expanduser().resolve()
    try:
        return manifest, manifest.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{manifest}: manifest not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{manifest}: manifest is a folder, not a file") from None
    except OSError as exc:
        raise ManifestError(f"{manifest}: cannot read manifest: {exc}") from None


def default_owner() -> str:
    """The current user's name; a UID without one (common in containers) becomes `uid-<n>`."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"
