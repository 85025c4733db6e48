"""A session's own folders on the host, made before its container starts.

Each session has its own Codex home: Codex's local databases break when several Codex processes
share one (`database is locked`, lost threads), and a shared home would let one session write
what every other session, and the user's own Codex, loads next (an `[mcp_servers]` entry, say).
The user's `codex_dir` stays the source of authentication and configuration. What a session
needs of it, and nothing else, is copied in at every start (`COPIED_FILES`, `COPIED_FOLDERS`):
`auth.json`, `config.toml` (with what sessions need appended), `AGENTS.md`,
`AGENTS.override.md`, `skills/`, `rules/`, and the model catalog that `config.toml` names
(`model_catalog_json`) when it lies in the Codex folder. Never its other files: not
`.credentials.json` (Codex's tokens for MCP servers), not its state (conversations, databases,
history, logs); and nothing is ever copied back.

`auth.json` is copied when the user's copy changed since the host last gave it to the session
(its digest is kept in the session's host-only folder), or when the session has none: a token
that Codex refreshed inside the session stays there, and a new `codex login` on the host reaches
every session at its next start. Contents are compared, never times, which the session can set
on its own copy. A session's token is never written back to the user's folder, since a session
is not trusted to hand the host credentials.

The Codex home, the agent folder and the transcripts are writable by the session, so the host
treats what it finds there as hostile: whatever stands at a path it rewrites (a file, a link, a
folder) is removed first without following a link, or renamed over, and it never reads through
a link there.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from orchestrator.errors import InputError
from orchestrator.plan import CONTAINER_CODEX_HOME, LaunchPlan
from orchestrator.registry import atomic_write

# What a session's Codex home takes from the user's Codex folder (with the model catalog that
# `config.toml` names): an explicit list, so that nothing else of the user's reaches a session.
AUTH_FILE = "auth.json"
CONFIG_FILE = "config.toml"
COPIED_FILES = (AUTH_FILE, CONFIG_FILE, "AGENTS.md", "AGENTS.override.md")
COPIED_FOLDERS = ("skills", "rules")
CATALOG_KEY = "model_catalog_json"
# In the session's host-only folder: the digest of the `auth.json` the host last gave it.
AUTH_DIGEST_FILE = "auth.sha256"
# What earlier versions copied besides the list (every top-level `*.toml` and `*.json`): such a
# copy, still the same as the user's file, is removed from a session's Codex home.
EARLIER_SUFFIXES = (".toml", ".json")
MAX_EARLIER_COPY_BYTES = 4 << 20


def prepare(plan: LaunchPlan, *, session_skills: Path | None, session_config: str) -> None:
    """Make the session's folders and fill its Codex home, owned by the session's user.

    `session_skills` (skills a session can use) join the user's skills; `session_config` (TOML)
    is appended to the user's `config.toml`.
    """
    folders = plan.folders
    for folder in (folders.codex_home, folders.agent_dir, folders.transcript_dir):
        _make_folder(folder)
    _make_folder(folders.inbox, mode=0o755)
    # Whatever the umask: the session's user reads its turns there (the launch script leaves an
    # existing inbox as it is).
    folders.inbox.chmod(0o755)
    home = folders.codex_home
    source = plan.session.codex_dir
    user_config = config = _read_text(source / CONFIG_FILE)
    if session_config:
        config = f"{config.rstrip()}\n\n{session_config}" if config.strip() else session_config
    # The session's user owns its folders and what is copied in; the inbox stays the host's.
    owned = [home, folders.agent_dir, folders.transcript_dir]
    owned += _replace_file(home, CONFIG_FILE, config, 0o600)
    for name in ("AGENTS.md", "AGENTS.override.md"):
        owned += _replace_file(home, name, _read_text(source / name), 0o644)
    catalog = model_catalog(source, user_config)
    if catalog is not None:
        owned += _replace_file(home, catalog, _read_text(source / catalog), 0o600)
    _remove_earlier_copies(source, home, keep={*COPIED_FILES, catalog})
    owned += _copy_auth(source / AUTH_FILE, home, folders.state_dir / AUTH_DIGEST_FILE)
    copied = [tree for name in COPIED_FOLDERS for tree in _replace_folder(home, name, source)]
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


def model_catalog(source: Path, config: str) -> str | None:
    """The name of the model catalog `config.toml` names (`model_catalog_json`, at the top or
    in a profile), when it is a file at the top of the user's Codex folder; else None.

    The path is taken as the session's Codex sees it (`/home/agent/.codex/…`) or as the user's
    (`~/.codex/…`, the folder itself): either names a file of that folder.
    """
    if CATALOG_KEY not in config and "\\" not in config:
        return None  # not named, not even in an escaped key: no TOML parser loaded
    import tomllib

    try:
        data = tomllib.loads(config)
    except tomllib.TOMLDecodeError:
        return None
    profiles = data.get("profiles")
    tables = [data]
    if isinstance(profiles, dict):
        tables += [table for table in profiles.values() if isinstance(table, dict)]
    homes = {CONTAINER_CODEX_HOME, "~/.codex", str(source), str(source.absolute())}
    for table in tables:
        named = table.get(CATALOG_KEY)
        if not isinstance(named, str):
            continue
        parent, _, name = named.rstrip("/").rpartition("/")
        usable = parent in homes and name not in {"", ".", "..", *COPIED_FILES}
        if usable and (source / name).is_file() and not (source / name).is_symlink():
            return name
    return None


def remove_secrets(state_dir: Path) -> None:
    """Delete what holds secrets once the container is gone: the SSH folder and the env copy."""
    shutil.rmtree(state_dir / "ssh", ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (state_dir / "env").unlink()


def _make_folder(folder: Path, mode: int = 0o700) -> list[Path]:
    if folder.is_symlink() or (os.path.lexists(folder) and not folder.is_dir()):
        _remove(folder)
    if not folder.is_dir():
        try:
            folder.mkdir(mode=mode, parents=True)
        except OSError as exc:
            raise InputError(f"cannot create {folder}: {exc.strerror}") from None
    return [folder]


def _read_text(path: Path) -> str:
    """A file of the user's Codex folder, or "" when there is none."""
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return ""
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None


def _remove_earlier_copies(source: Path, home: Path, keep: set[str | None]) -> None:
    """Remove what an earlier version copied from the user's folder and this one no longer
    does (`.credentials.json`, say): a top-level file of the session's Codex home with the name
    and the very content of a user's `*.toml` or `*.json` off the list. What Codex wrote there
    itself differs, and stays."""
    from orchestrator.untrusted import read_limited

    try:
        entries = [e for e in source.iterdir() if e.suffix in EARLIER_SUFFIXES]
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        copy = home / entry.name
        if entry.name in keep or not entry.is_file() or not copy.is_file():
            continue
        theirs = read_limited(copy, MAX_EARLIER_COPY_BYTES + 1)
        if len(theirs) <= MAX_EARLIER_COPY_BYTES and theirs == entry.read_bytes():
            _remove(copy)


def _replace_file(folder: Path, name: str, text: str, mode: int) -> list[Path]:
    """Put `text` at `folder/name` by renaming over whatever is there (a file or a link); a
    folder there is removed first, links in it not followed."""
    target = folder / name
    if not text or _is_folder(target):
        _remove(target)
    if not text:
        return []
    atomic_write(target, text, mode=mode)
    return [target]


def _copy_auth(source: Path, home: Path, digest_file: Path) -> list[Path]:
    """Give the session the user's `auth.json` when it changed since it was last given, or when
    the session has no regular file there; else keep the session's (refreshed) one."""
    target = home / AUTH_FILE
    try:
        data = source.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return []
    digest = hashlib.sha256(data).hexdigest()
    try:
        given = digest_file.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        given = ""
    try:
        present = stat.S_ISREG(target.lstat().st_mode)
    except FileNotFoundError:
        present = False
    if present and given == digest:
        return []
    if _is_folder(target):
        _remove(target)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{source}: not UTF-8 text") from None
    atomic_write(target, text, mode=0o600)
    atomic_write(digest_file, digest + "\n", mode=0o600)
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
        remove_tree(path)
    else:
        path.unlink()


def remove_tree(path: Path) -> None:
    """Remove a folder a session could write, whatever its depth, never following a link.

    `shutil.rmtree` recurses once per level and fails (`RecursionError`) on a tree a thousand
    folders deep, which an agent can make in a moment; here the entries of each subfolder are
    moved up into `path` and the emptied subfolder removed, one folder open at a time.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    top = os.open(path, flags)
    lifted = 0
    try:
        while entries := list(os.scandir(top)):
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.name, dir_fd=top)
                    continue
                folder = os.open(entry.name, flags, dir_fd=top)
                try:
                    for inner in list(os.scandir(folder)):
                        while _exists_in(top, name := f".filare-removing-{lifted}"):
                            lifted += 1
                        os.rename(inner.name, name, src_dir_fd=folder, dst_dir_fd=top)
                finally:
                    os.close(folder)
                os.rmdir(entry.name, dir_fd=top)
    finally:
        os.close(top)
    path.rmdir()


def _exists_in(folder_fd: int, name: str) -> bool:
    try:
        os.lstat(name, dir_fd=folder_fd)
    except FileNotFoundError:
        return False
    return True


def _is_folder(path: Path) -> bool:
    """A real folder at `path` (not a link to one)."""
    return path.is_dir() and not path.is_symlink()


def _walk(path: Path) -> Iterator[Path]:
    """`path` and everything under it, links not followed."""
    yield path
    if path.is_dir() and not path.is_symlink():
        for root, folders, files in os.walk(path, followlinks=False):
            for name in (*folders, *files):
                yield Path(root) / name
