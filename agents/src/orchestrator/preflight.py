"""Checks of what a session names on the host, run for every selected session before any starts.

Docker reads `--env-file` itself and, on a bad line, prints the line back (values included). We
apply Docker's own rules first so that a typo costs one line naming the file and the line number,
and the values stay private. Folders a session would be given are checked against the rules of
`orchestrator.hostpaths`, after resolving links. Every problem of every session is reported at
once, one line each.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import hostpaths
from orchestrator.errors import ManifestError
from orchestrator.plan import find_repository, seed_source, session_folders, tool_checkout

if TYPE_CHECKING:
    from orchestrator.spec import SessionSpec

# Docker's bufio.Scanner gives up on longer lines.
_MAX_ENV_LINE = 64 * 1024
_BOM = b"\xef\xbb\xbf"
# Enough of a key file to tell a private key from a public one, never shown.
_KEY_PROBE = 4096
_PRIVATE_KEY_MARKERS = (b"PRIVATE KEY-----", b"PuTTY-User-Key-File")
# Folders of the user's that hold credentials: no session may be given them, or anything in them.
_PRIVATE_HOME_FOLDERS = {".ssh": "your SSH folder", ".gnupg": "your GnuPG folder"}
_PRIVATE_HOME_FOLDERS |= {".docker": "your Docker settings", ".aws": "your AWS settings"}


def check_inputs(sessions: Iterable[SessionSpec], *, registry_root: Path | None = None) -> None:
    """Raise one `ManifestError` naming every problem of the sessions' files and folders."""
    problems = input_problems(sessions, registry_root=registry_root)
    if problems:
        raise ManifestError(*problems)


def input_problems(
    sessions: Iterable[SessionSpec],
    *,
    registry_root: Path | None = None,
    shared_workspaces: bool = True,
) -> list[str]:
    """Every problem of the sessions' files and folders, one line each.

    `shared_workspaces=False` leaves out workspaces shared without consent, for a caller that
    has its manifest's own line about them already."""
    sessions = list(sessions)
    problems: list[str] = []
    for session in sessions:
        problems += _file_problems(session, "env_file", session.env_file) or [
            _line(session, "env_file", f"{session.env_file}: {problem}")
            for problem in env_file_problems(session.env_file)
        ]
        problems += _file_problems(session, "ssh_key", session.ssh_key) or _key_problems(session)
        if session.known_hosts is not None:
            problems += _file_problems(session, "known_hosts", session.known_hosts)
        problems += _folder_problems(session, registry_root)
        problems += _user_problems(session)
    if shared_workspaces:
        problems += _shared_workspace_problems(sessions, registry_root)
    return problems


def env_file_problems(path: Path) -> list[str]:
    """Lines Docker would reject, described by number only (never by content)."""
    problems: list[str] = []
    data = path.read_bytes()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.removeprefix(_BOM) if number == 1 else raw
        if len(line) >= _MAX_ENV_LINE:
            problems.append(f"line {number}: longer than {_MAX_ENV_LINE} bytes")
            continue
        if b"\x00" in line:
            problems.append(f"line {number}: contains a NUL byte")
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"line {number}: not valid UTF-8")
            continue
        text = text.rstrip("\r").lstrip()
        if not text or text.startswith("#"):
            continue
        name = text.split("=", 1)[0].lstrip(" \t")
        if not name:
            problems.append(f"line {number}: no variable name before '='")
        elif name.startswith("export ") or name.startswith("export\t"):
            problems.append(
                f"line {number}: 'export' is not allowed in env files; write NAME=VALUE"
            )
        elif any(c in name for c in " \t"):
            problems.append(f"line {number}: variable name contains whitespace")
    return problems


def _file_problems(session: SessionSpec, field: str, path: Path) -> list[str]:
    if path.is_symlink() and not path.exists():
        return [_line(session, field, f"{path} is a link to nothing")]
    if not path.exists():
        return [_line(session, field, f"{path} does not exist")]
    if path.is_dir():
        return [_line(session, field, f"{path} is a folder, not a file")]
    if not os.access(path, os.R_OK):
        return [_line(session, field, f"{path} is not readable")]
    return []


def _key_problems(session: SessionSpec) -> list[str]:
    """A key file that is not a private key (a `.pub`, say) would be mounted as `id_rsa`."""
    with session.ssh_key.open("rb") as handle:
        head = handle.read(_KEY_PROBE)
    if any(marker in head for marker in _PRIVATE_KEY_MARKERS):
        return []
    return [
        _line(
            session,
            "ssh_key",
            f"{session.ssh_key} is not a private key (a public key, or another file); name the "
            "private key file",
        )
    ]


def _folder_problems(session: SessionSpec, registry_root: Path | None) -> list[str]:
    problems = []
    # The workspace is written (seeded, then the agent's); `codex_dir` is only read from, and
    # may be absent (nothing to copy: a key in the env file is enough).
    for field, access, missing_ok in (("workspace", os.W_OK, False), ("codex_dir", os.R_OK, True)):
        path: Path = getattr(session, field)
        if path.is_symlink() and not path.exists():
            problems.append(_line(session, field, f"{path} is a link to nothing"))
        elif path.exists() and not path.is_dir():
            problems.append(_line(session, field, f"{path} exists and is not a folder"))
        elif not path.exists() and not missing_ok and not _creatable(path):
            problems.append(_line(session, field, f"{path} cannot be created (no write access)"))
        elif path.exists() and not os.access(path, access | os.X_OK):
            what = "writable" if access == os.W_OK else "readable"
            problems.append(_line(session, field, f"{path} is not {what}"))
    not_covered, private = _protected(session, registry_root)
    reason = hostpaths.unsafe_reason(
        hostpaths.resolved(session.workspace), not_covered=not_covered, private=private
    )
    if reason is not None:
        problems.append(
            _line(session, "workspace", f"{session.workspace} cannot be a workspace: {reason}")
        )
    problems += _transcript_problems(session, registry_root, not_covered, private)
    for index, mount in enumerate(session.mounts):
        field = f"mounts[{index}].source"
        if not mount.source.exists():
            problems.append(_line(session, field, f"{mount.source} does not exist"))
            continue
        reason = hostpaths.unsafe_reason(
            hostpaths.resolved(mount.source),
            not_covered=not_covered,
            private={**private, hostpaths.resolved(session.workspace): "the session's workspace"},
        )
        if reason is not None:
            problems.append(_line(session, field, f"{mount.source} cannot be mounted: {reason}"))
    if (
        not _has_content(session.workspace)
        and seed_source(session) is None
        and session.manifest_path is not None
    ):
        problems.append(
            _line(
                session,
                "workspace",
                f"{session.workspace} is empty and the manifest is not in a git repository to "
                "seed it from; set 'seed_from' to a repository, or fill the workspace",
            )
        )
    return problems


def _transcript_problems(
    session: SessionSpec,
    registry_root: Path | None,
    not_covered: dict[Path, str],
    private: dict[Path, str],
) -> list[str]:
    """A transcript folder the manifest names is mounted writable and given to the session's
    user, so the workspace's rules apply to it; the session's own default one, under its record,
    is the one place in the registry it may be."""
    if session.transcript_dir is None:
        return []
    path = hostpaths.resolved(session.transcript_dir)
    if registry_root is not None:
        default = session_folders(dataclasses.replace(session, transcript_dir=None), registry_root)
        if path == hostpaths.resolved(default.transcript_dir):
            return []
    reason = hostpaths.unsafe_reason(path, not_covered=not_covered, private=private)
    if reason is None:
        return []
    return [
        _line(
            session,
            "transcript_dir",
            f"{session.transcript_dir} cannot be a transcript folder: {reason}",
        )
    ]


def _protected(
    session: SessionSpec, registry_root: Path | None
) -> tuple[dict[Path, str], dict[Path, str]]:
    resolved = hostpaths.resolved
    not_covered = {resolved(tool_checkout()): "this tool's checkout"}
    home = hostpaths.home_folder()
    private: dict[Path, str] = {resolved(session.codex_dir): "your Codex folder"}
    if home is not None:
        not_covered[home] = "your home folder"
        private |= {home / name: what for name, what in _PRIVATE_HOME_FOLDERS.items()}
    source = seed_source(session)
    if source is not None:
        not_covered[resolved(source)] = "the repository it is seeded from"
    manifest_repository = (
        find_repository(session.manifest_path.parent) if session.manifest_path else None
    )
    if manifest_repository is not None:
        not_covered[resolved(manifest_repository)] = "the manifest's repository"
    if registry_root is not None:
        private[resolved(registry_root)] = "the session registry"
    for path in (session.env_file, session.ssh_key):
        private[resolved(path)] = "a secret file of the session"
    return not_covered, private


def _user_problems(session: SessionSpec) -> list[str]:
    if session.user is None or os.getuid() == 0:
        return []
    own = f"{os.getuid()}:{os.getgid()}"
    if session.user != own:
        return [
            _line(
                session,
                "user",
                f"only root can run sessions as {session.user}; leave 'user' out to run as "
                f"yourself ({own})",
            )
        ]
    return []


def _shared_workspace_problems(
    sessions: Sequence[SessionSpec], registry_root: Path | None = None
) -> list[str]:
    """Two sessions on one folder, reached by different paths (a link, `..`), or one in a folder
    inside the other's, need consent too: either agent can write what the other runs. Consent
    is advised only where it would be enough: a folder refused anyway (`/tmp`) has its own
    line saying why."""
    seen: list[tuple[Path, SessionSpec]] = []
    problems = []
    for session in sessions:
        folder = hostpaths.resolved(session.workspace)
        for other_folder, other in seen:
            if (other.shared_workspace and session.shared_workspace) or not hostpaths.overlap(
                folder, other_folder
            ):
                continue
            if folder == other_folder:
                how = "is the same folder as"
            elif other_folder in folder.parents:
                how = "lies inside"
            else:
                how = "holds"
            not_covered, private = _protected(session, registry_root)
            refused = hostpaths.unsafe_reason(folder, not_covered=not_covered, private=private)
            advice = "" if refused else "; set 'shared_workspace: true' on both to allow it"
            problems.append(
                _line(
                    session,
                    "workspace",
                    f"{session.workspace} {how} session {other.id!r}'s workspace "
                    f"{other.workspace}{advice}",
                )
            )
            break
        seen.append((folder, session))
    return problems


def _has_content(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(True for _ in entries)
    except OSError:
        return False


def _creatable(path: Path) -> bool:
    """Whether the nearest existing parent lets us create the folder."""
    for parent in path.parents:
        if parent.exists():
            return parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)
    return False


def _line(session: SessionSpec, field: str, message: str) -> str:
    return f"{session.manifest_path}: session {session.id!r}: field {field!r}: {message}"


# Variables Codex 0.171.0 takes an OpenAI API key from, when no login is in its home.
_API_KEY_VARIABLES = ("OPENAI_API_KEY", "CODEX_API_KEY")


def login_warnings(sessions: Iterable[SessionSpec]) -> list[str]:
    """One warning naming every session whose Codex could not authenticate: no `auth.json` in
    its `codex_dir` (what `codex login` writes) and no API key in its env file (an OpenAI key,
    or the variable its `config.toml`'s model provider reads). Only names are read from env
    files, never values. Sessions on the smoke image, which has no Codex, need neither."""
    from orchestrator.engine import SMOKE_IMAGE

    without = [
        session
        for session in sessions
        if session.image != SMOKE_IMAGE
        and not (session.codex_dir / "auth.json").is_file()
        and not set(_key_variables(session.codex_dir)) & _env_names(session.env_file)
    ]
    if not without:
        return []
    names = ", ".join(repr(session.id) for session in without[:3])
    if len(without) > 3:
        names += f" and {len(without) - 3} more"
    first = without[0]
    return [
        f"warning: session{'s' if len(without) > 1 else ''} {names}: no Codex login "
        f"({first.codex_dir / 'auth.json'}) and no OPENAI_API_KEY in {first.env_file}"
        f"{' (and the others)' if len(without) > 1 else ''}: turns will fail to "
        "authenticate; run 'codex login', or add OPENAI_API_KEY to the env file "
        "('uv run inv demo --codex' shows a turn with no account)"
    ]


def _key_variables(codex_dir: Path) -> tuple[str, ...]:
    """The variables that give this Codex home's model provider its key."""
    import tomllib

    try:
        config = tomllib.loads((codex_dir / "config.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return _API_KEY_VARIABLES
    provider = config.get("model_provider")
    providers = config.get("model_providers")
    if isinstance(provider, str) and isinstance(providers, dict):
        entry = providers.get(provider)
        if isinstance(entry, dict) and isinstance(entry.get("env_key"), str):
            return (entry["env_key"],)
    return _API_KEY_VARIABLES


def _env_names(env_file: Path) -> set[str]:
    """The variable names an env file sets (Docker's rules), values unread."""
    try:
        data = env_file.read_bytes()
    except OSError:
        return set()
    names = set()
    for raw in data.split(b"\n"):
        text = raw.decode("utf-8", "replace").strip().removeprefix("\ufeff")
        if text and not text.startswith("#"):
            names.add(text.split("=", 1)[0].strip())
    return names
