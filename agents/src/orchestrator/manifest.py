"""Load a manifest for the runtime, with a cache that spares repeat starts the validation.

`orchestrator.config` validates a manifest with pydantic and PyYAML; the runtime works on the
plain `SessionSpec` records of `orchestrator.spec`. Validation is a pure function of a few inputs
(the manifest's bytes and path, the user, the home folder, the schema's source and the libraries
that run it), so its result can be kept: a start of a manifest already validated with the same
inputs reads one small JSON file instead of importing pydantic, parsing YAML and building the
models, which costs about 0.2 s here, on every command, for every orchestrator.

The cache is opt-in (`cache_dir`); the task layer passes the user's cache folder. An entry that
is missing, unreadable, made from other inputs or writable by others is a miss, never an error.

Layers, bottom up: `spec` (plain data) <- `config` (the validating boundary, and the public
`load_manifest` returning `AgentSessionConfig`s) <- this module (cached loading for the runtime).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import ManifestError
from orchestrator.spec import (
    Mount,
    Resources,
    SessionSpec,
    default_owner,
    read_manifest,
    select_sessions,
)

if TYPE_CHECKING:
    from orchestrator.registry import Registry

__all__ = [
    "Mount",
    "Resources",
    "SessionSpec",
    "default_cache_dir",
    "default_owner",
    "load_checked",
    "load_manifest",
    "select_sessions",
]

CACHE_ENV = "XDG_CACHE_HOME"
# One entry per manifest path; beyond this many, the least recently written go.
MAX_ENTRIES = 128
# (module, distribution) of the libraries validation runs on.
_VALIDATORS = (("pydantic", "pydantic"), ("pydantic_core", "pydantic_core"), ("yaml", "pyyaml"))
# The modules whose source decides what validation produces.
_SCHEMA_SOURCES = ("config.py", "spec.py", "manifest.py")


def load_manifest(
    path: str | os.PathLike[str], *, cache_dir: Path | None = None
) -> list[SessionSpec]:
    """Read and validate a manifest; relative paths resolve against the manifest's folder.

    With `cache_dir`, a manifest validated before with the same inputs is not validated again.
    """
    manifest, data = read_manifest(path)
    if cache_dir is None:
        return _validate(manifest, data)[0]
    entry = cache_dir / f"{hashlib.sha256(bytes(manifest)).hexdigest()[:32]}.json"
    key = _cache_key(manifest, data)
    cached = _cached(entry, key)
    if cached is not None:
        return cached
    sessions, cacheable = _validate(manifest, data)
    if cacheable:
        _store(entry, key, sessions)
    return sessions


def load_checked(
    manifest: Path, registry: Registry, *, cache_dir: Path | None = None
) -> list[SessionSpec]:
    """A manifest's sessions. When its fields are wrong, the files and folders of the sessions
    that could be read are checked as well, so one run names every problem of the manifest."""
    try:
        return load_manifest(manifest, cache_dir=cache_dir)
    except ManifestError as exc:
        if not exc.checkable:
            raise
        from orchestrator.preflight import input_problems

        extra = input_problems(exc.checkable, registry_root=registry.root, shared_workspaces=False)
        raise ManifestError(*exc.problems, *extra) from None


def default_cache_dir() -> Path | None:
    """`$XDG_CACHE_HOME/filare-agents/manifests`, else under `~/.cache`; None without a home.

    A relative `XDG_CACHE_HOME` is ignored, as the XDG specification asks.
    """
    base = Path(os.environ.get(CACHE_ENV, ""))
    if not base.is_absolute():
        base = _home() / ".cache"
        if not base.is_absolute():
            return None
    return base / "filare-agents" / "manifests"


def _home() -> Path:
    """The home folder, or an empty path when there is none (no `$HOME`, no passwd entry)."""
    try:
        return Path.home()
    except RuntimeError:
        return Path()


def _validate(manifest: Path, data: bytes) -> tuple[list[SessionSpec], bool]:
    from orchestrator.config import validate_manifest

    return validate_manifest(manifest, data)


def _cache_key(manifest: Path, data: bytes) -> str:
    """A digest of everything validation reads: change any of it and the entry is not used.

    That is the manifest and its path, the user and home folder that defaults and `~` come from,
    the schema's source, and the Python, pydantic and PyYAML that run it.
    """
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for part in (
        *((here / name).read_bytes() for name in _SCHEMA_SOURCES),
        "\n".join(_validator_versions()).encode(),
        bytes(manifest),
        default_owner().encode(),
        bytes(_home()),
        data,
    ):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def _validator_versions() -> list[str]:
    """Python's version and the installed pydantic, pydantic-core and PyYAML, without importing
    them: the names of their `*.dist-info` folders carry the versions."""
    import importlib.util

    found = [sys.version]
    prefixes: dict[Path, list[str]] = {}  # one folder listing per site-packages, not per library
    for module, distribution in _VALIDATORS:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            found.append(f"{module}: not installed")
            continue
        prefixes.setdefault(Path(spec.origin).parent.parent, []).append(f"{distribution}-")
    for site, names in prefixes.items():
        found += sorted(
            path.name
            for path in site.glob("*.dist-info")
            if path.name.lower().startswith(tuple(names))
        )
    return found


def _cached(entry: Path, key: str) -> list[SessionSpec] | None:
    """The entry's sessions, if it was made from `key` and only this user could have written it."""
    try:
        with entry.open("rb") as handle:
            if not (_private(os.fstat(handle.fileno())) and _private(entry.parent.stat())):
                return None
            stored = json.loads(handle.read())
        if stored["key"] != key:
            return None
        return [SessionSpec.from_dict(item) for item in stored["sessions"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _private(status: os.stat_result) -> bool:
    return status.st_uid == os.getuid() and not status.st_mode & 0o022


def _store(entry: Path, key: str, sessions: Sequence[SessionSpec]) -> None:
    """Write the entry, and drop the least recently written ones beyond `MAX_ENTRIES`."""
    from orchestrator.registry import atomic_write

    text = json.dumps({"key": key, "sessions": [s.to_dict() for s in sessions]})
    # A read-only or full cache folder costs speed, not correctness.
    with contextlib.suppress(OSError):
        entry.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(entry, text + "\n", durable=False)
        entries = sorted(entry.parent.glob("*.json"), key=_age_key)
        for old in entries[:-MAX_ENTRIES]:
            old.unlink(missing_ok=True)


def _age_key(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0
