"""A session's own folders on the host, made before its container starts.

Each session has its own Codex home: Codex's local databases break when several Codex processes
share one (`database is locked`, lost threads), and a shared home would let one session write
what every other session, and the user's own Codex, loads next (an `[mcp_servers]` entry, say).
The user's `codex_dir` stays the source of authentication and configuration: its `auth.json`,
`config.toml` (with what sessions need appended), `AGENTS.md`, its other configuration files
(`*.toml`, `*.json`, such as a model catalog the configuration names), `skills/` and `rules/`
are copied in at every start; its state (conversations, databases, history, logs) is not, and
nothing is ever copied back.

`auth.json` is copied only when the user's copy is newer than the session's: a token that Codex
refreshed inside the session stays there, and a new `codex login` on the host reaches every
session at its next start. A session's token is never written back to the user's folder, since
a session is not trusted to hand the host credentials.

The Codex home, the agent folder and the transcripts are writable by the session, so the host
treats what it finds there as hostile: it replaces entries by renaming over them (a planted link
is replaced, not followed) and never reads through a link there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import InputError
from orchestrator.plan import LaunchPlan
from orchestrator.registry import atomic_write

# What a session's Codex home takes from the user's Codex folder.
CONFIG_SUFFIXES = (".toml", ".json")
COPIED_FOLDERS = ("skills", "rules")
AUTH_FILE = "auth.json"


def prepare(plan: LaunchPlan, *, session_skills: Path | None, session_config: str) -> None:
    """Make the session's folders and fill its Codex home, owned by the session's user.

    `session_skills` (skills a session can use) join the user's skills; `session_config` (TOML)
    is appended to the user's `config.toml`.
    """
    folders = plan.folders
    for folder in (folders.codex_home, folders.agent_dir, folders.transcript_dir):
        _make_folder(folder)
    _make_folder(folders.inbox, mode=0o755)
    home = folders.codex_home
    source = plan.session.codex_dir
    config = _read_text(source / "config.toml")
    if session_config:
        config = f"{config.rstrip()}\n\n{session_config}" if config.strip() else session_config
    # The session's user owns its folders and what is copied in; the inbox stays the host's.
    owned = [home, folders.agent_dir, folders.transcript_dir]
    owned += _replace_file(home, "config.toml", config, 0o600)
    owned += _replace_file(home, "AGENTS.md", _read_text(source / "AGENTS.md"), 0o644)
    for other in _configuration_files(source):
        owned += _replace_file(home, other.name, other.read_text(encoding="utf-8"), 0o600)
    owned += _copy_auth(source / AUTH_FILE, home)
    copied = [
        tree for name in COPIED_FOLDERS for tree in _replace_folder(home, name, source / name)
    ]
    if session_skills is not None and session_skills.is_dir():
        owned += _make_folder(home / "skills")
        copied += _merge_folder(home / "skills", session_skills)
    if plan.session.env_mode == "mount":
        text = plan.session.env_file.read_text(encoding="utf-8")
        atomic_write(folders.env_copy, text, mode=0o600)
        owned.append(folders.env_copy)
    if os.geteuid() == 0:
        uid, gid = (int(part) for part in plan.user.split(":"))
        for path in [*owned, *(item for tree in copied for item in _walk(tree))]:
            os.lchown(path, uid, gid)
    if not os.access(folders.transcript_dir, os.W_OK):
        raise InputError(
            f"session {plan.session.id!r}: transcript_dir {folders.transcript_dir} is not writable"
        )


def remove_secrets(state_dir: Path) -> None:
    """Delete what holds secrets once the container is gone: the SSH folder and the env copy."""
    shutil.rmtree(state_dir / "ssh", ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "env").unlink()


def _make_folder(folder: Path, mode: int = 0o700) -> list[Path]:
    if folder.is_symlink():
        _remove(folder)
    if not folder.is_dir():
        try:
            folder.mkdir(mode=mode, parents=True)
        except OSError as exc:
            raise InputError(f"cannot create {folder}: {exc.strerror}") from None
    return [folder]


def _configuration_files(source: Path) -> list[Path]:
    """The user's other top-level configuration files (`*.toml`, `*.json`); `auth.json` is
    copied by its own rule."""
    try:
        entries = sorted(source.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [
        entry
        for entry in entries
        if entry.suffix in CONFIG_SUFFIXES
        and entry.name not in {"config.toml", AUTH_FILE}
        and entry.is_file()
    ]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _replace_file(folder: Path, name: str, text: str, mode: int) -> list[Path]:
    """Put `text` at `folder/name` by renaming over whatever is there (a link included)."""
    target = folder / name
    if not text:
        _remove(target)
        return []
    atomic_write(target, text, mode=mode)
    return [target]


def _copy_auth(source: Path, home: Path) -> list[Path]:
    target = home / AUTH_FILE
    try:
        newer = source.stat().st_mtime_ns
    except FileNotFoundError:
        return []
    try:
        current = target.lstat()
    except FileNotFoundError:
        current = None
    if current is not None and stat.S_ISREG(current.st_mode) and current.st_mtime_ns >= newer:
        return []
    atomic_write(target, source.read_text(encoding="utf-8"), mode=0o600)
    os.utime(target, ns=(newer, newer), follow_symlinks=False)
    return [target]


def _replace_folder(home: Path, name: str, source_home: Path) -> list[Path]:
    target, source = home / name, source_home / name
    _remove(target)
    if not source.is_dir():
        return []
    shutil.copytree(source, target)
    return [target]


def _merge_folder(target: Path, source: Path) -> list[Path]:
    """Copy each entry of `source` into `target`, replacing same-named ones."""
    made = []
    for entry in sorted(source.iterdir()):
        _remove(target / entry.name)
        if entry.is_dir():
            shutil.copytree(entry, target / entry.name)
        else:
            shutil.copy2(entry, target / entry.name)
        made.append(target / entry.name)
    return made


def _remove(path: Path) -> None:
    """Remove a file, a link (not what it points at) or a folder, without following links."""
    try:
        status = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(status.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _walk(path: Path) -> Iterator[Path]:
    """`path` and everything under it, links not followed."""
    yield path
    if path.is_dir() and not path.is_symlink():
        for root, folders, files in os.walk(path, followlinks=False):
            for name in (*folders, *files):
                yield Path(root) / name
