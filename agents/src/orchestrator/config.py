"""Session manifests: what an orchestrator asks for, validated before anything runs.

This is the public, validating API of manifests, under the names the origin project gave it:
`AgentSessionConfig`, `ManifestError`, `load_manifest` and `select_sessions`.

A manifest is YAML in one of three shapes, all of which existing manifests use:

- a list of sessions;
- a single session mapping;
- a mapping with `defaults` (merged under every session) and `sessions`.

Every problem is reported, each on one line naming the manifest, the session and the field, so
that a user running fifty sessions fixes every typo in one go without reading a traceback.

This module and `orchestrator.catalog` are the only ones that import pydantic and PyYAML. The
runtime works on the plain `orchestrator.spec.SessionSpec` records this module hands on
(`validate_manifest`), through the cached loader of `orchestrator.manifest`.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from orchestrator import hostpaths
from orchestrator.errors import ManifestError, did_you_mean
from orchestrator.spec import (
    MAX_NAME_LENGTH,
    Egress,
    EngineSlot,
    Limits,
    Mount,
    Resources,
    SessionSpec,
    default_owner,
    is_safe_name,
    read_manifest,
    select_sessions,
)

__all__ = [
    "DEFAULT_IMAGE",
    "AgentSessionConfig",
    "ManifestError",
    "MountConfig",
    "load_manifest",
    "select_sessions",
    "validate_manifest",
]

DEFAULT_IMAGE = "filare-codex"

MAX_ID_LENGTH = MAX_NAME_LENGTH
MAX_ROLE_LENGTH = 32
# Characters that would break a `-v SRC:DST` bind, a label, or a line-oriented format.
_PATH_FORBIDDEN = {":": "a colon", "\n": "a line break", "\t": "a tab", "\r": "a carriage return"}
# git check-ref-format, the parts that matter for a branch name given by hand.
_BAD_BRANCH = re.compile(
    r"(^[-/.])|(\.\.)|([\x00-\x20~^:?*\[\\\x7f])|(@\{)|(/$)|(\.lock$)|(//)|(\.$)"
)
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/:@-]*")
_MEMORY = re.compile(r"[0-9]+(\.[0-9]+)?[bkmgBKMG]?")
_USER = re.compile(r"([0-9]+):([0-9]+)")
# Where a session's own things are mounted; extra mounts may not cover them.
CONTAINER_HOME = "/home/agent"
_RESERVED_TARGETS = {
    f"{CONTAINER_HOME}/workspace": "the workspace",
    f"{CONTAINER_HOME}/.ssh": "the SSH folder",
    f"{CONTAINER_HOME}/.codex": "the session's Codex home",
    f"{CONTAINER_HOME}/.filare": "the session's transcript and question folders",
    "/run/filare": "the session's env file and inbox",
}


def _coerce_text(value: Any) -> Any:
    """Numbers become text, as the origin's loader made them (`id: 1` is session '1')."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _safe_name(kind: str, max_length: int) -> Any:
    def check(value: str) -> str:
        if not value:
            raise ValueError(f"{kind} must not be empty")
        if len(value) > max_length:
            raise ValueError(f"{kind} {value!r} is longer than {max_length} characters")
        if not is_safe_name(value, max_length):
            raise ValueError(
                f"{kind} {value!r} must be letters, digits, '.', '_' or '-', start with a letter "
                "or digit, and contain no '..'"
            )
        return value

    return AfterValidator(check)


def _one_line_text(value: str) -> str:
    if any(c in value for c in "\n\r\t\x00"):
        raise ValueError("must be a single line without tabs")
    return value


def _clean_path(value: Path) -> Path:
    text = str(value)
    for char, what in _PATH_FORBIDDEN.items():
        if char in text:
            raise ValueError(
                f"path {text!r} contains {what}, which Docker bind mounts cannot carry"
            )
    if "\x00" in text:
        raise ValueError(f"path {text!r} contains a NUL byte")
    return value


def _as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [_coerce_text(item) for item in value]
    return value


def _check_branch(value: str) -> str:
    if not value or _BAD_BRANCH.search(value):
        raise ValueError(f"{value!r} is not a valid git branch name")
    return value


def _check_image(value: str) -> str:
    if len(value) > 255 or not _IMAGE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an image reference (lower-case name, optional :tag or @digest)"
        )
    return value


def _check_memory(value: str | None) -> str | None:
    if value is not None and not _MEMORY.fullmatch(value):
        raise ValueError(f"{value!r} is not a size: a number with an optional unit b, k, m or g")
    return value


def _check_user(value: str | None) -> str | None:
    if value is None:
        return None
    match = _USER.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not UID:GID (two numbers)")
    if int(match.group(1)) == 0 or int(match.group(2)) == 0:
        raise ValueError("sessions never run as UID or GID 0; give an unprivileged UID:GID")
    return value


SessionId = Annotated[str, BeforeValidator(_coerce_text), _safe_name("session id", MAX_ID_LENGTH)]
Role = Annotated[str, BeforeValidator(_coerce_text), _safe_name("role", MAX_ROLE_LENGTH)]
Text = Annotated[str, AfterValidator(_one_line_text)]
HostPath = Annotated[Path, AfterValidator(_clean_path)]
Tag = Annotated[str, AfterValidator(_one_line_text)]


class ResourcesModel(BaseModel):
    """Limits handed to `docker run` as `--cpus`, `--memory` and `--pids-limit`.

    Absent, each takes the default of `orchestrator.plan`; 0 lifts that limit.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float | None = Field(default=None, ge=0)
    memory: Annotated[str | None, BeforeValidator(_coerce_text), AfterValidator(_check_memory)] = (
        None
    )
    pids: int | None = Field(default=None, ge=0)


def _check_allow_entry(value: str) -> str:
    from orchestrator.egress import parse_allow_entry

    return parse_allow_entry(value).text()


def _egress_shape(value: Any) -> Any:
    """`open` and `none` are words; an allowlist is a mapping."""
    if isinstance(value, str):
        if value not in {"open", "none"}:
            raise ValueError(
                f"{value!r}: must be 'open', 'none' or a mapping {{allow: [...], hosts: {{...}}}}"
            )
        return {"mode": value}
    if isinstance(value, dict):
        return {**value, "mode": "allow"}
    return value


AllowText = Annotated[str, BeforeValidator(_coerce_text), AfterValidator(_check_allow_entry)]


class EgressModel(BaseModel):
    """`egress`: `open`, `none`, or `{allow: [...], hosts: {...}}`: names (and suffixes,
    optional ports) the session may reach through the egress proxy, and names pinned to
    addresses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["open", "none", "allow"]
    allow: list[AllowText] = Field(default_factory=list)
    hosts: dict[str, str] = Field(default_factory=dict)

    @field_validator("hosts")
    @classmethod
    def _hosts_are_pins(cls, value: dict[str, str]) -> dict[str, str]:
        from orchestrator.egress import check_pin

        return dict(check_pin(name, address) for name, address in value.items())


# The container runtimes a manifest may name: the engine's default, or gVisor.
Runtime = Literal["runc", "runsc"]


class LimitsModel(BaseModel):
    """What the session's agent daemon enforces; see `orchestrator.limits`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int | None = Field(default=None, gt=0)
    turn_seconds: float | None = Field(default=None, gt=0, lt=1e9)
    stall_seconds: float | None = Field(default=None, gt=0, lt=1e9)


def _check_notify(value: list[str]) -> list[str]:
    if any(not part or "\x00" in part for part in value):
        raise ValueError("must be a list of non-empty strings (an argv, never run by a shell)")
    return value


class MountConfig(BaseModel):
    """An extra bind mount: `{source, target, read_only}`, or `SOURCE:TARGET[:ro]` as text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: HostPath
    target: str
    read_only: bool = False

    @field_validator("target")
    @classmethod
    def _target_is_free(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in ":,\n\r\t\x00"):
            raise ValueError(f"target {value!r} must be an absolute container path")
        target = posixpath.normpath(value)
        for reserved, what in _RESERVED_TARGETS.items():
            if _overlaps(target, reserved):
                raise ValueError(f"target {value!r} would cover {what} ({reserved})")
        if target == "/":
            raise ValueError("target '/' would cover the whole container")
        return target


# A Docker context's name, as `docker context create` accepts it.
_CONTEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _check_context(value: str | None) -> str | None:
    if value is not None and (not _CONTEXT.fullmatch(value) or len(value) > 128):
        raise ValueError(f"{value!r} is not a Docker context name (see 'docker context ls')")
    return value


class EngineSlotModel(BaseModel):
    """One engine of a pool: `{context: build1, max_sessions: 6}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context: Annotated[str, AfterValidator(_check_context)]
    max_sessions: int = Field(gt=0)


def _overlaps(a: str, b: str) -> bool:
    pa, pb = PurePosixPath(a), PurePosixPath(b)
    return pa == pb or pb in pa.parents or pa in pb.parents


def _mount_from_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    parts = value.split(":")
    if len(parts) == 3 and parts[2] in {"ro", "rw"}:
        return {"source": parts[0], "target": parts[1], "read_only": parts[2] == "ro"}
    if len(parts) == 2:
        return {"source": parts[0], "target": parts[1]}
    raise ValueError(f"{value!r} is not SOURCE:TARGET or SOURCE:TARGET:ro")


class AgentSessionConfig(BaseModel):
    """One agent session as the manifest describes it, defaults merged, every path absolute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: SessionId
    role: Role
    branch: Annotated[str, BeforeValidator(_coerce_text), AfterValidator(_check_branch)]
    workspace: HostPath
    env_file: HostPath
    ssh_key: HostPath
    goal: str | None = None
    image: Annotated[str, AfterValidator(_check_image)] = DEFAULT_IMAGE
    tags: Annotated[list[Tag], BeforeValidator(_as_list)] = Field(default_factory=list)
    startup_script: str | None = None
    # Free-form and recorded, as in the origin's manifests: text, or a mapping of rules.
    operator_contact: Any = None
    owner: Annotated[Text, Field(min_length=1, max_length=64)] = Field(
        default_factory=default_owner
    )
    codex_dir: HostPath  # default `~/.codex`, filled in by `_build_session`
    resources: ResourcesModel = Field(default_factory=ResourcesModel)
    shared_workspace: bool = False
    # "env-file": `docker run --env-file` (values visible to `docker inspect`); "mount": the file
    # is bound read-only and the image's entry point loads it, so inspect shows no values.
    env_mode: Literal["env-file", "mount"] = "env-file"
    mounts: list[Annotated[MountConfig, BeforeValidator(_mount_from_text)]] = Field(
        default_factory=list
    )
    # Default: `transcript/` in the session's record folder (outputs/agents/<role>/<id>/).
    transcript_dir: HostPath | None = None
    # The repository an empty workspace is seeded from; default: the manifest's repository.
    seed_from: HostPath | None = None
    # A known_hosts file to pin SSH host keys with; default: keys are learnt on first use.
    known_hosts: HostPath | None = None
    # UID:GID the container runs as; default: the caller's, or 10001:10001 when that is root.
    user: Annotated[str | None, AfterValidator(_check_user)] = None
    limits: LimitsModel = Field(default_factory=LimitsModel)
    # An argv `session.watch` runs once per event of the session; a string is one program name.
    notify: Annotated[list[str], BeforeValidator(_as_list), AfterValidator(_check_notify)] = Field(
        default_factory=list
    )
    # The Docker context to run on; default: the current context, as `docker` alone uses.
    engine: Annotated[str | None, AfterValidator(_check_context)] = None
    # A pool (usually in `defaults`): each session goes to the engine with room and the fewest
    # live sessions when it first starts, and stays there.
    engines: list[EngineSlotModel] = Field(default_factory=list)
    # `open`, `none`, or `{allow, hosts}`; absent: the default profile (`orchestrator.egress`).
    egress: Annotated[EgressModel | None, BeforeValidator(_egress_shape)] = None
    runtime: Runtime | None = None
    manifest_path: Path | None = None

    @field_validator("engines")
    @classmethod
    def _engines_differ(cls, value: list[EngineSlotModel]) -> list[EngineSlotModel]:
        seen = [slot.context for slot in value]
        for name in seen:
            if seen.count(name) > 1:
                raise ValueError(f"engine {name!r} is in the pool twice")
        return value

    @field_validator("owner")
    @classmethod
    def _owner_is_label_safe(cls, value: str) -> str:
        if "=" in value or "," in value:
            raise ValueError("must not contain '=' or ','")
        return value

    @field_validator("tags")
    @classmethod
    def _tags_are_label_safe(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not tag or "," in tag:
                raise ValueError(f"tag {tag!r} must be non-empty and contain no ','")
        return value

    def to_spec(self) -> SessionSpec:
        """The plain record the runtime works on."""
        data = self.model_dump()
        data["tags"] = tuple(self.tags)
        data["resources"] = Resources(**self.resources.model_dump())
        data["limits"] = Limits(**self.limits.model_dump())
        data["notify"] = tuple(self.notify)
        data["mounts"] = tuple(Mount(m.source, m.target, m.read_only) for m in self.mounts)
        data["engines"] = tuple(EngineSlot(e.context, e.max_sessions) for e in self.engines)
        if self.egress is not None:
            data["egress"] = Egress(
                self.egress.mode,
                tuple(self.egress.allow),
                tuple(sorted(self.egress.hosts.items())),
            )
        return SessionSpec(**data)


SESSION_FIELDS = tuple(name for name in AgentSessionConfig.model_fields if name != "manifest_path")
_PATH_FIELDS = (
    "workspace",
    "env_file",
    "ssh_key",
    "codex_dir",
    "transcript_dir",
    "seed_from",
    "known_hosts",
)
_TOP_LEVEL_KEYS = ("defaults", "sessions")


def load_manifest(path: str | os.PathLike[str]) -> list[AgentSessionConfig]:
    """Read and validate a manifest; relative paths resolve against the manifest's folder.

    Raises `ManifestError` naming every problem found. The runtime's cached loader is
    `orchestrator.manifest.load_manifest`, which returns the same sessions as `SessionSpec`s.
    """
    manifest, data = read_manifest(path)
    return _load(manifest, data)[0]


def validate_manifest(manifest: Path, data: bytes) -> tuple[list[SessionSpec], bool]:
    """Validate a manifest's bytes into the runtime's records.

    Also says whether the result may be cached: not when a path names another user's home
    (`~name/...`), which expands through the password database rather than the cache's key.
    """
    sessions, cacheable = _load(manifest, data)
    return [session.to_spec() for session in sessions], cacheable


def _load(manifest: Path, data: bytes) -> tuple[list[AgentSessionConfig], bool]:
    raw = _parse_yaml(manifest, data)
    defaults, entries = _split_shapes(manifest, raw)
    merged = [_merged(defaults, entry) for entry in entries]
    sessions: list[AgentSessionConfig] = []
    # Every session whose fields are good enough to compare and to check its files, with its
    # position: one run reports the fields, the duplicate ids and (the caller's) file problems.
    checkable: list[tuple[int, AgentSessionConfig]] = []
    problems = _engine_problems(manifest, defaults, entries)
    for index, fields in enumerate(merged, 1):
        try:
            session = _build_session(manifest, index, fields)
        except ManifestError as exc:
            problems += exc.problems
            checkable += [(index, repaired) for repaired in exc.checkable]
        else:
            sessions.append(session)
            checkable.append((index, session))
    problems += _uniqueness_problems(manifest, checkable)
    if problems:
        error = ManifestError(*problems)
        error.checkable = [session.to_spec() for _, session in checkable]
        raise error
    cacheable = not any(
        _names_other_home(fields.get(name)) for fields in merged for name in _PATH_FIELDS
    )
    return sessions, cacheable


def _parse_yaml(manifest: Path, data: bytes) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{manifest}: cannot read manifest: {exc}") from None
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader, chosen above
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{manifest}{line}: invalid YAML: {problem}") from None


def _split_shapes(manifest: Path, raw: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if raw is None:
        raise ManifestError(f"{manifest}: manifest is empty")
    if isinstance(raw, list):
        return {}, _entries(manifest, raw)
    if not isinstance(raw, dict):
        raise ManifestError(
            f"{manifest}: expected a list of sessions or a mapping, got {type(raw).__name__}"
        )
    if "sessions" not in raw and "defaults" not in raw:
        return {}, _entries(manifest, [raw])
    problems = [
        f"{manifest}: unknown top-level field {key!r}{did_you_mean(str(key), _TOP_LEVEL_KEYS)}"
        for key in raw
        if key not in _TOP_LEVEL_KEYS
    ]
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append(f"{manifest}: field 'defaults': expected a mapping")
        defaults = {}
    problems += [
        f"{manifest}: defaults: unknown field {key!r}{did_you_mean(str(key), SESSION_FIELDS)}"
        for key in defaults
        if key not in SESSION_FIELDS or key == "id"
    ]
    sessions = raw.get("sessions")
    if not isinstance(sessions, list) or not sessions:
        problems.append(f"{manifest}: field 'sessions': expected a non-empty list of sessions")
    if problems or not isinstance(sessions, list):
        raise ManifestError(*problems)
    return defaults, _entries(manifest, sessions)


def _entries(manifest: Path, items: list[Any]) -> list[dict[str, Any]]:
    if not items:
        raise ManifestError(f"{manifest}: no sessions")
    problems = [
        f"{manifest}: session #{index}: expected a mapping, got {type(item).__name__}"
        for index, item in enumerate(items, start=1)
        if not isinstance(item, dict)
    ]
    if problems:
        raise ManifestError(*problems)
    return items


def _merged(defaults: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """A session's fields over the defaults; a session naming its own `engine` leaves the
    defaults' pool, one naming its own pool leaves the defaults' engine."""
    fields = {**defaults, **entry} | _merged_resources(defaults, entry)
    fields |= _merged_limits(defaults, entry)
    if "engine" in entry and "engines" not in entry:
        fields.pop("engines", None)
    if "engines" in entry and "engine" not in entry:
        fields.pop("engine", None)
    return fields


def _engine_problems(
    manifest: Path, defaults: Mapping[str, Any], entries: Sequence[Mapping[str, Any]]
) -> list[str]:
    """One engine or one pool, never both in one place."""
    both = "fields 'engine' and 'engines': give one engine or a pool"
    problems = []
    if defaults.get("engine") is not None and defaults.get("engines"):
        problems.append(f"{manifest}: defaults: {both}")
    for index, entry in enumerate(entries, 1):
        if entry.get("engine") is not None and entry.get("engines"):
            given = entry.get("id")
            label = f"session #{index}"
            if isinstance(given, str | int):
                label = f"session {str(given)!r}"
            problems.append(f"{manifest}: {label}: {both}")
    return problems


def _merged_resources(defaults: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    base, own = defaults.get("resources"), entry.get("resources")
    if isinstance(base, dict) and isinstance(own, dict):
        return {"resources": {**base, **own}}
    return {}


def _merged_limits(defaults: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """A session's `limits` override the defaults' one by one, as `resources` do."""
    base, own = defaults.get("limits"), entry.get("limits")
    if isinstance(base, dict) and isinstance(own, dict):
        return {"limits": {**base, **own}}
    return {}


def _build_session(manifest: Path, index: int, data: dict[str, Any]) -> AgentSessionConfig:
    given = data.get("id")
    label = f"session {str(given)!r}" if isinstance(given, str | int) else f"session #{index}"
    data = dict(data)
    problems: list[str] = []
    for name in _PATH_FIELDS:
        value = data.get(name)
        try:
            if isinstance(value, str) and value:
                data[name] = _resolve(manifest.parent, value)
            elif name == "codex_dir" and value is None:
                data[name] = Path.home() / ".codex"
        except RuntimeError:  # `~` with no home folder: no $HOME and no passwd entry
            problems.append(
                f"{manifest}: {label}: field {name!r}: no home folder to find '~' in "
                "(set HOME, or give the path in full)"
            )
    if "mounts" in data:
        data["mounts"] = _resolved_mounts(manifest.parent, data["mounts"])
    data["manifest_path"] = manifest
    repaired: list[AgentSessionConfig] = []
    try:
        session = AgentSessionConfig.model_validate(data)
    except ValidationError as exc:
        if not problems:
            repaired = _without_bad_fields(data, exc)
        problems += [f"{manifest}: {label}: {problem}" for problem in _problems(exc)]
    if problems:
        error = ManifestError(*problems)
        error.checkable = repaired
        raise error
    return session


def _without_bad_fields(data: dict[str, Any], exc: ValidationError) -> list[AgentSessionConfig]:
    """The session without the fields that failed (a misspelt one, a bad size), when what is
    left still makes a session: its files can then be checked in the same run."""
    bad = {error["loc"][0] for error in exc.errors(include_url=False) if error["loc"]}
    try:
        return [AgentSessionConfig.model_validate({k: v for k, v in data.items() if k not in bad})]
    except ValidationError:
        return []


def _resolved_mounts(base: Path, value: Any) -> Any:
    """Mount sources resolve like every other path; anything else is left to the model."""
    if not isinstance(value, list):
        return value
    resolved = []
    for item in value:
        try:
            item = _mount_from_text(item)
        except ValueError:
            resolved.append(item)
            continue
        source = item.get("source") if isinstance(item, dict) else None
        if isinstance(source, str) and source:
            item = {**item, "source": _resolve(base, source)}
        resolved.append(item)
    return resolved


def _names_other_home(value: object) -> bool:
    return isinstance(value, str) and value.startswith("~") and value.split("/")[0] != "~"


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


# pydantic's own words, for the cases where the field's rule says it better.
_MESSAGES = {
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "string_type": "must be text",
    "list_type": "must be a list",
    "model_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "greater_than": "must be greater than 0",
    "greater_than_equal": "must be 0 (no limit) or more",
    "literal_error": "must be one of",
}


def _problems(exc: ValidationError) -> list[str]:
    """One line per problem; a misspelt field is reported once, as a misspelling."""
    errors = exc.errors(include_url=False, include_input=False)
    lines: list[str] = []
    suggested: set[str] = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = ".".join(str(part) for part in error["loc"])
            close = did_you_mean(loc.split(".")[-1], SESSION_FIELDS)
            lines.append(f"unknown field {loc!r}{close}")
            if close:
                suggested.add(close.split("'")[1])
    for error in errors:
        loc = ".".join(str(part) for part in error["loc"])
        kind = error["type"]
        if kind == "extra_forbidden" or (kind == "missing" and loc in suggested):
            continue
        if kind == "missing":
            lines.append(f"field {loc!r}: required field is missing")
        elif kind == "literal_error":
            lines.append(f"field {loc!r}: {error['msg'].replace('Input should be', 'must be')}")
        elif kind in _MESSAGES:
            lines.append(f"field {loc!r}: {_MESSAGES[kind]}")
        else:
            lines.append(f"field {loc!r}: {error['msg'].removeprefix('Value error, ')}")
    return lines


def _uniqueness_problems(
    manifest: Path, numbered: Sequence[tuple[int, AgentSessionConfig]]
) -> list[str]:
    """Duplicate ids, ids differing only in case, and workspaces shared without consent; a
    duplicate names the entries by position (`#1`, counted from 1), since their ids are one."""
    problems: list[str] = []
    seen: dict[str, tuple[int, AgentSessionConfig]] = {}
    duplicates: set[int] = set()
    for index, session in numbered:
        first, other = seen.setdefault(session.id.casefold(), (index, session))
        if other is session:
            continue
        duplicates.add(index)
        if other.id == session.id:
            problems.append(
                f"{manifest}: session {session.id!r}: field 'id': duplicate id: sessions "
                f"#{first} and #{index}"
            )
        else:
            problems.append(
                f"{manifest}: session {session.id!r}: field 'id': differs from session "
                f"{other.id!r} only in case (sessions #{first} and #{index}); its records would "
                "collide on a file system that ignores case"
            )
    by_workspace: dict[Path, AgentSessionConfig] = {}
    for index, session in numbered:
        if index in duplicates:
            continue
        other = by_workspace.setdefault(session.workspace, session)
        if other is not session and not (other.shared_workspace and session.shared_workspace):
            # Consent is advice only where it is enough: `/tmp` is refused with its own line.
            refused = hostpaths.unsafe_reason(
                hostpaths.resolved(session.workspace), not_covered={}, private={}
            )
            advice = "" if refused else "; set 'shared_workspace: true' on both to allow it"
            problems.append(
                f"{manifest}: session {session.id!r}: field 'workspace': {session.workspace} is "
                f"also the workspace of session {other.id!r}{advice}"
            )
    return problems
