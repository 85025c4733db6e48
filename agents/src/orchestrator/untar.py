"""A bounded reader of tar streams a session's engine sends home (`docker cp CONTAINER:PATH -`).

What comes out of a session's volume is the session's to write, so the stream is hostile: it may
hold links, devices, names that climb out (`..`, absolute paths), millions of entries or a file
larger than the disk. Only regular files and folders are unpacked; links, devices and FIFOs are
skipped and counted; a name that leaves the target, or a stream past its bounds, fails the whole
unpack before anything outside the target could be touched. Files are created with fixed modes
(0644, folders 0755) owned by whoever unpacks, whatever the archive says.

`docker cp` names every entry under the copied folder's own name (`.filare/transcript/…`): the
first component is dropped, so the folder's contents land in `target`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

from orchestrator.errors import EngineError, InputError

if TYPE_CHECKING:
    from orchestrator.engine import Engine

# A path deeper than this, or a name longer, is no record a session needs.
MAX_DEPTH = 32
MAX_NAME_BYTES = 1024
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Unpacked:
    """What an unpack wrote: files and folders (relative paths) and what it left out."""

    files: frozenset[str]
    folders: frozenset[str]
    skipped: int
    size: int


def relative_name(name: str) -> str | None:
    """The entry's path below the copied folder, or None for the folder itself; raises
    `InputError` for a name that is absolute, climbs out or is not a plain path."""
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES or "\0" in name:
        raise InputError(f"tar entry {name[:80]!r}: name too long or not a path")
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        raise InputError(f"tar entry {name[:80]!r}: absolute name")
    parts = [part for part in path.parts if part != "."]
    if any(part == ".." for part in parts):
        raise InputError(f"tar entry {name[:80]!r}: climbs out of its folder")
    if len(parts) > MAX_DEPTH + 1:
        raise InputError(f"tar entry {name[:80]!r}: deeper than {MAX_DEPTH} folders")
    if len(parts) <= 1:
        return None
    return "/".join(parts[1:])


def receive(
    where: Engine,
    source: str,
    target: Path,
    *,
    what: str,
    limit: int,
    max_entries: int,
    timeout: float,
) -> Unpacked | None:
    """`docker cp SOURCE -` on `where` (SOURCE: `CONTAINER:PATH`), unpacked into `target`.

    None when the container is gone (what came home before stays as it is). A copy the engine
    refuses is an `EngineError` with its reason, a stream that breaks a rule an `InputError`:
    both one line starting with `what`.
    """
    from orchestrator.engine import describe_failure

    process = subprocess.Popen(
        where.argv("cp", source, "-"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=where.env(),
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    refused: InputError | None = None
    unpacked = None
    try:
        try:
            unpacked = unpack(process.stdout, target, limit=limit, max_entries=max_entries)
        except InputError as exc:
            refused = exc
            process.kill()
        stderr = process.stderr.read().decode("utf-8", "replace")
        code = process.wait()
    finally:
        timer.cancel()
    if "no such container" in stderr.lower():
        return None
    if code != 0 and (refused is None or stderr.strip()):
        raise EngineError(f"{what}: {describe_failure('cp', stderr, context=where.context)}")
    if refused is not None or unpacked is None:
        raise InputError(f"{what}: {refused}")
    return unpacked


def unpack(stream: IO[bytes], target: Path, *, limit: int, max_entries: int) -> Unpacked:
    """Unpack the tar `stream` into the empty folder `target` within `limit` bytes of file
    content and `max_entries` entries; raises `InputError` when the stream breaks a rule."""
    target.mkdir(parents=True, exist_ok=True)
    root = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    files: set[str] = set()
    folders: set[str] = set()
    skipped = size = entries = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in _members(archive):
                entries += 1
                if entries > max_entries:
                    raise InputError(f"more than {max_entries} entries")
                name = relative_name(member.name)
                if name is None:
                    continue
                if member.isdir():
                    _make_folders(root, name)
                    folders.add(name)
                    continue
                if not member.isreg():
                    skipped += 1
                    continue
                size += member.size
                if size > limit:
                    raise InputError(f"more than {limit} bytes")
                parent = name.rpartition("/")[0]
                if parent:
                    _make_folders(root, parent)
                    folders.add(parent)
                source = archive.extractfile(member)
                assert source is not None
                _write(root, name, source, member.size)
                files.add(name)
    except tarfile.TarError as exc:
        raise InputError(f"not a tar stream: {exc}") from None
    finally:
        os.close(root)
    for folder in list(folders):
        # A folder named by an entry deep inside implies its parents.
        while "/" in folder:
            folder = folder.rpartition("/")[0]
            folders.add(folder)
    return Unpacked(frozenset(files), frozenset(folders), skipped, size)


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while (member := archive.next()) is not None:
        yield member


def _make_folders(root: int, name: str) -> None:
    """Each folder of `name` under `root`, made if missing, opened without following a link."""
    fd = os.dup(root)
    try:
        for part in name.split("/"):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            next_fd = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = next_fd
    except NotADirectoryError:
        raise InputError(f"tar entry {name!r}: a file and a folder of one name") from None
    finally:
        os.close(fd)


def _write(root: int, name: str, source: IO[bytes], size: int) -> None:
    parent, _, leaf = name.rpartition("/")
    fd = os.open(
        parent or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root
    )
    try:
        try:
            info = os.lstat(leaf, dir_fd=fd)
        except FileNotFoundError:
            info = None
        if info is not None:
            if stat.S_ISDIR(info.st_mode):
                raise InputError(f"tar entry {name!r}: a file and a folder of one name")
            os.unlink(leaf, dir_fd=fd)
        out = os.open(
            leaf,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
            dir_fd=fd,
        )
        with os.fdopen(out, "wb") as sink:
            left = size
            while left > 0:
                chunk = source.read(min(_CHUNK, left))
                if not chunk:
                    raise InputError(f"tar entry {name!r}: cut short")
                sink.write(chunk)
                left -= len(chunk)
    finally:
        os.close(fd)


def mirror(source: Path, target: Path, unpacked: Unpacked, *, skip: str | None = None) -> None:
    """Make `target` hold what `source` (an unpack of `unpacked`) holds: each file that differs
    renamed into place (readers see the old one or the new one), what is gone removed; nothing
    followed through a link. `skip` names a top folder left as it is (mirrored elsewhere)."""
    from orchestrator.session_folders import remove_tree

    def kept(name: str) -> bool:
        return skip is None or (name != skip and not name.startswith(f"{skip}/"))

    target.mkdir(parents=True, exist_ok=True)
    for folder in sorted(f for f in unpacked.folders if kept(f)):
        path = target / folder
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        path.mkdir(mode=0o755, exist_ok=True)
    for name in sorted(f for f in unpacked.files if kept(f)):
        new, old = source / name, target / name
        data = new.read_bytes()
        if _same(old, data):
            continue
        if old.is_dir() and not old.is_symlink():
            remove_tree(old)
        tmp = old.with_name(f".{old.name}.incoming")
        tmp.unlink(missing_ok=True)
        tmp.write_bytes(data)
        tmp.chmod(0o644)
        tmp.replace(old)
    for root, dirs, names in os.walk(target, topdown=True, followlinks=False):
        relative = Path(root).relative_to(target).as_posix()
        prefix = "" if relative == "." else f"{relative}/"
        for name in names:
            entry = f"{prefix}{name}"
            if kept(entry) and entry not in unpacked.files:
                (Path(root) / name).unlink(missing_ok=True)
        for name in list(dirs):
            entry = f"{prefix}{name}"
            path = Path(root) / name
            if not kept(entry):
                dirs.remove(name)
            elif path.is_symlink():
                path.unlink()
                dirs.remove(name)
            elif entry not in unpacked.folders:
                remove_tree(path)
                dirs.remove(name)


def _same(path: Path, data: bytes) -> bool:
    """Whether the regular file at `path` (never a link) holds exactly `data`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != len(data):
            return False
        return os.pread(fd, len(data) + 1, 0) == data
    finally:
        os.close(fd)
