"""Session manifests: what an orchestrator asks for, validated before anything runs.

A manifest is YAML in one of three shapes, all of which existing manifests use:

- a list of sessions;
- a single session mapping;
- a mapping with `defaults` (merged under every session) and `sessions`.

Every error names the manifest, the session and the field, on one line, so that a user running
fifty sessions can find the typo without reading a traceback.

This module is the only one that imports pydantic and PyYAML; what it returns are plain
`orchestrator.manifest.SessionSpec` records. Callers go through `manifest.load_manifest`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
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

from orchestrator.errors import ManifestError, did_you_mean
from orchestrator.manifest import Resources, SessionSpec, default_owner

DEFAULT_IMAGE = "filare-codex"

# Session ids and roles become container names, label values and path parts: keep them to what
# is safe in all three (upper case is fine for Docker, not for case-insensitive file systems).
_SAFE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?")
MAX_ID_LENGTH = 63
MAX_ROLE_LENGTH = 32
# Characters that would break a `-v SRC:DST` bind, a label, or a line-oriented format.
_PATH_FORBIDDEN = {":": "a colon", "\n": "a line break", "\t": "a tab", "\r": "a carriage return"}
# git check-ref-format, the parts that matter for a branch name given by hand.
_BAD_BRANCH = re.compile(
    r"(^[-/.])|(\.\.)|([\x00-\x20~^:?*\[\\\x7f])|(@\{)|(/$)|(\.lock$)|(//)|(\.$)"
)


def _safe_name(kind: str, max_length: int) -> Any:
    def check(value: str) -> str:
        if len(value) > max_length:
            raise ValueError(f"{kind} {value!r} is longer than {max_length} characters")
        if not _SAFE_NAME.fullmatch(value) or ".." in value:
            raise ValueError(
                f"{kind} {value!r} must be lower-case letters, digits, '.', '_' or '-', "
                "start and end with a letter or digit, and contain no '..'"
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
    return value


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _check_branch(value: str) -> str:
    if not value or _BAD_BRANCH.search(value):
        raise ValueError(f"{value!r} is not a valid git branch name")
    return value


SessionId = Annotated[str, _safe_name("session id", MAX_ID_LENGTH)]
Role = Annotated[str, _safe_name("role", MAX_ROLE_LENGTH)]
Text = Annotated[str, AfterValidator(_one_line_text)]
HostPath = Annotated[Path, AfterValidator(_clean_path)]
Tag = Annotated[str, AfterValidator(_one_line_text), Field(pattern=r"^[^,]+$")]


class ResourcesModel(BaseModel):
    """Limits handed to `docker run` as `--cpus` and `--memory`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float | None = Field(default=None, gt=0)
    memory: Annotated[str | None, Field(pattern=r"^[0-9]+(\.[0-9]+)?[bkmgBKMG]?$")] = None


class AgentSessionConfig(BaseModel):
    """One agent session as the manifest describes it, with every path made absolute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: SessionId
    role: Role
    branch: Annotated[str, AfterValidator(_check_branch)]
    workspace: HostPath
    env_file: HostPath
    ssh_key: HostPath
    goal: str | None = None
    image: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._/:@-]*$", max_length=255)] = (
        DEFAULT_IMAGE
    )
    tags: Annotated[list[Tag], BeforeValidator(_as_list)] = Field(default_factory=list)
    startup_script: str | None = None
    operator_contact: Text | None = None
    owner: Annotated[Text, Field(min_length=1, max_length=64)] = Field(
        default_factory=default_owner
    )
    codex_dir: HostPath  # default `~/.codex`, filled in by `_build_session`
    resources: ResourcesModel = Field(default_factory=ResourcesModel)
    shared_workspace: bool = False
    # "env-file": `docker run --env-file` (values visible to `docker inspect`); "mount": the file
    # is bound read-only and the image's entry point loads it, so inspect shows no values.
    env_mode: Literal["env-file", "mount"] = "env-file"
    manifest_path: Path | None = None

    @field_validator("owner")
    @classmethod
    def _owner_is_label_safe(cls, value: str) -> str:
        if "=" in value or "," in value:
            raise ValueError("must not contain '=' or ','")
        return value

    def to_spec(self) -> SessionSpec:
        data = self.model_dump()
        data["tags"] = tuple(self.tags)
        data["resources"] = Resources(self.resources.cpus, self.resources.memory)
        return SessionSpec(**data)


SESSION_FIELDS = tuple(name for name in AgentSessionConfig.model_fields if name != "manifest_path")
_PATH_FIELDS = ("workspace", "env_file", "ssh_key", "codex_dir")
_TOP_LEVEL_KEYS = ("defaults", "sessions")


def validate_manifest(manifest: Path, data: bytes) -> tuple[list[SessionSpec], bool]:
    """Validate a manifest's bytes; relative paths resolve against the folder of `manifest`.

    Also says whether the result may be cached: not when a path names another user's home
    (`~name/...`), which expands through the password database rather than the cache's key.
    """
    raw = _parse_yaml(manifest, data)
    defaults, entries = _split_shapes(manifest, raw)
    merged = [{**defaults, **entry} | _merged_resources(defaults, entry) for entry in entries]
    sessions = [_build_session(manifest, index, data) for index, data in enumerate(merged, 1)]
    _check_unique(manifest, sessions)
    cacheable = not any(
        _names_other_home(data.get(name)) for data in merged for name in _PATH_FIELDS
    )
    return [session.to_spec() for session in sessions], cacheable


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
    for key in raw:
        if key not in _TOP_LEVEL_KEYS:
            hint = did_you_mean(str(key), _TOP_LEVEL_KEYS)
            raise ManifestError(f"{manifest}: unknown top-level field {key!r}{hint}")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ManifestError(f"{manifest}: field 'defaults': expected a mapping")
    for key in defaults:
        if key not in SESSION_FIELDS or key == "id":
            hint = did_you_mean(str(key), SESSION_FIELDS)
            raise ManifestError(f"{manifest}: defaults: unknown field {key!r}{hint}")
    sessions = raw.get("sessions")
    if not isinstance(sessions, list) or not sessions:
        raise ManifestError(f"{manifest}: field 'sessions': expected a non-empty list of sessions")
    return defaults, _entries(manifest, sessions)


def _entries(manifest: Path, items: list[Any]) -> list[dict[str, Any]]:
    if not items:
        raise ManifestError(f"{manifest}: no sessions")
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise ManifestError(
                f"{manifest}: session #{index}: expected a mapping, got {type(item).__name__}"
            )
    return items


def _merged_resources(defaults: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    base, own = defaults.get("resources"), entry.get("resources")
    if isinstance(base, dict) and isinstance(own, dict):
        return {"resources": {**base, **own}}
    return {}


def _build_session(manifest: Path, index: int, data: dict[str, Any]) -> AgentSessionConfig:
    label = f"session {data['id']!r}" if isinstance(data.get("id"), str) else f"session #{index}"
    data = dict(data)
    for name in _PATH_FIELDS:
        value = data.get(name)
        try:
            if isinstance(value, str) and value:
                data[name] = _resolve(manifest.parent, value)
            elif name == "codex_dir" and value is None:
                data[name] = Path.home() / ".codex"
        except RuntimeError:  # `~` with no home folder: no $HOME and no passwd entry
            raise ManifestError(
                f"{manifest}: {label}: field {name!r}: no home folder to find '~' in "
                "(set HOME, or give the path in full)"
            ) from None
    data["manifest_path"] = manifest
    try:
        return AgentSessionConfig.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(f"{manifest}: {label}: {_first_error(exc)}") from None


def _names_other_home(value: object) -> bool:
    return isinstance(value, str) and value.startswith("~") and value.split("/")[0] != "~"


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False)
    # A misspelt field also shows up as a missing one: the misspelling is the useful report.
    error = min(errors, key=lambda e: e["type"] != "extra_forbidden")
    loc = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown field {loc!r}{did_you_mean(loc.split('.')[-1], SESSION_FIELDS)}"
    if error["type"] == "missing":
        return f"field {loc!r}: required field is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"field {loc!r}: {message}"


def _check_unique(manifest: Path, sessions: Sequence[AgentSessionConfig]) -> None:
    seen: dict[str, AgentSessionConfig] = {}
    for session in sessions:
        if session.id in seen:
            raise ManifestError(f"{manifest}: session {session.id!r}: field 'id': duplicate id")
        seen[session.id] = session
    by_workspace: dict[Path, AgentSessionConfig] = {}
    for session in sessions:
        other = by_workspace.setdefault(session.workspace, session)
        if other is not session and not (other.shared_workspace and session.shared_workspace):
            raise ManifestError(
                f"{manifest}: session {session.id!r}: field 'workspace': {session.workspace} is "
                f"also the workspace of session {other.id!r}; set 'shared_workspace: true' on "
                "both to allow it"
            )
