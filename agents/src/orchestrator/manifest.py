"""Sessions as the runtime sees them, and a cache that spares repeat starts the validation.

`orchestrator.config` validates a manifest with pydantic; what it hands on is `SessionSpec`, a
plain frozen dataclass, so that nothing past the boundary imports pydantic. Validation is a pure
function of a few inputs (the manifest's bytes and path, the user, the home folder and the
schema's source), so its result can be kept: a start of a manifest already validated with the
same inputs reads one small JSON file instead of importing PyYAML and pydantic and building the
models, which costs about 0.2 s here, on every command, for every orchestrator.

The cache is opt-in (`cache_dir`); the task layer passes the user's cache folder. An entry that
is missing, unreadable or made from other inputs is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orchestrator.errors import ManifestError, did_you_mean

CACHE_ENV = "XDG_CACHE_HOME"
EnvMode = Literal["env-file", "mount"]
_PATH_FIELDS = ("workspace", "env_file", "ssh_key", "codex_dir", "manifest_path")
# `~name/...` expands through the password database, which the cache key does not cover.
_OTHER_USERS_HOME = re.compile(r"~[^/\s'\"]")


@dataclass(frozen=True, slots=True)
class Resources:
    """Limits handed to `docker run` as `--cpus` and `--memory`."""

    cpus: float | None = None
    memory: str | None = None


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
    operator_contact: str | None = None
    resources: Resources = Resources()
    shared_workspace: bool = False
    env_mode: EnvMode = "env-file"
    manifest_path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        for name in _PATH_FIELDS:
            if data[name] is not None:
                data[name] = str(data[name])
        data["tags"] = list(self.tags)
        data["resources"] = dataclasses.asdict(self.resources)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionSpec:
        data = dict(data)
        for name in _PATH_FIELDS:
            if data.get(name) is not None:
                data[name] = Path(data[name])
        data["tags"] = tuple(data.get("tags", ()))
        data["resources"] = Resources(**data.get("resources", {}))
        return cls(**data)


def load_manifest(
    path: str | os.PathLike[str], *, cache_dir: Path | None = None
) -> list[SessionSpec]:
    """Read and validate a manifest; relative paths resolve against the manifest's folder.

    With `cache_dir`, a manifest validated before with the same inputs is not validated again.
    """
    manifest = Path(path).expanduser().resolve()
    data = _read(manifest)
    if cache_dir is None:
        return _validate(manifest, data)
    entry = cache_dir / f"{hashlib.sha256(bytes(manifest)).hexdigest()[:32]}.json"
    key = _cache_key(manifest, data)
    cached = _cached(entry, key)
    if cached is not None:
        return cached
    sessions = _validate(manifest, data)
    if not _OTHER_USERS_HOME.search(data.decode("utf-8", "replace")):
        _store(entry, key, sessions)
    return sessions


def select_sessions(
    sessions: Sequence[SessionSpec], session_id: str | Iterable[str] | None
) -> list[SessionSpec]:
    """Keep the sessions named by id (all of them when none is named), in manifest order."""
    if session_id is None:
        return list(sessions)
    wanted = [session_id] if isinstance(session_id, str) else list(session_id)
    if not wanted:
        return list(sessions)
    known = {s.id for s in sessions}
    missing = [w for w in wanted if w not in known]
    if missing:
        where = sessions[0].manifest_path if sessions else "the manifest"
        hint = did_you_mean(missing[0], known)
        raise ManifestError(f"{where}: no session with id {missing[0]!r}{hint}")
    return [s for s in sessions if s.id in wanted]


def default_owner() -> str:
    """The current user's name; a UID without one (common in containers) becomes `uid-<n>`."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid-{os.getuid()}"


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/filare-agents/manifests`, else under `~/.cache`."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache"
    return Path(base) / "filare-agents" / "manifests"


def _read(manifest: Path) -> bytes:
    try:
        return manifest.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{manifest}: manifest not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{manifest}: manifest is a folder, not a file") from None
    except OSError as exc:
        raise ManifestError(f"{manifest}: cannot read manifest: {exc}") from None


def _validate(manifest: Path, data: bytes) -> list[SessionSpec]:
    from orchestrator.config import validate_manifest

    return validate_manifest(manifest, data)


def _cache_key(manifest: Path, data: bytes) -> str:
    """A digest of everything validation reads: change any of it and the entry is not used."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for part in (
        (here / "config.py").read_bytes(),
        (here / "manifest.py").read_bytes(),
        bytes(manifest),
        default_owner().encode(),
        bytes(Path.home()),
        data,
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _cached(entry: Path, key: str) -> list[SessionSpec] | None:
    try:
        stored = json.loads(entry.read_bytes())
        if stored["key"] != key:
            return None
        return [SessionSpec.from_dict(item) for item in stored["sessions"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _store(entry: Path, key: str, sessions: Sequence[SessionSpec]) -> None:
    from orchestrator.registry import atomic_write

    text = json.dumps({"key": key, "sessions": [s.to_dict() for s in sessions]})
    # A read-only or full cache folder costs speed, not correctness.
    with contextlib.suppress(OSError):
        atomic_write(entry, text + "\n", durable=False)
