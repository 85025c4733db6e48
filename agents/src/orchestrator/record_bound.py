"""A bound on what a session may write into its record (transcripts, questions, learnt keys).

The session's agent folder (and its transcript folder, when the manifest puts it elsewhere) is
bound into the container and written by it: a runaway or hostile agent could fill the host's
disk through it. Past the bound, the session's next turns fail with the reason, before anything
is sent; other sessions are untouched. The walk that measures it follows no link and stops as
soon as the bound (or a count of entries) is passed, so it costs little on any record.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from orchestrator.errors import InputError

# Transcripts of thousands of turns fit well under it; `FILARE_RECORD_LIMIT_MB` changes it.
DEFAULT_LIMIT_MB = 512
LIMIT_ENV = "FILARE_RECORD_LIMIT_MB"
MAX_ENTRIES = 200_000


def record_limit() -> int:
    """The bound in bytes."""
    text = os.environ.get(LIMIT_ENV, "")
    megabytes = int(text) if text.isdigit() and int(text) > 0 else DEFAULT_LIMIT_MB
    return megabytes * 1024 * 1024


def record_size(folders: Iterable[Path], limit: int) -> int:
    """Bytes under `folders` (links not followed), counted until past `limit`; a record with more
    than `MAX_ENTRIES` entries counts as past it."""
    total, entries = 0, 0
    pending = [str(folder) for folder in dict.fromkeys(folders)]
    while pending:
        try:
            scanner = os.scandir(pending.pop())
        except OSError:
            continue
        with scanner:
            for entry in scanner:
                entries += 1
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    pending.append(entry.path)
                elif stat.S_ISREG(info.st_mode):
                    total += info.st_size
                if total > limit or entries > MAX_ENTRIES:
                    return max(total, limit + 1)
    return total


def check_record(session_id: str, folders: Iterable[Path], limit: int | None = None) -> None:
    """Refuse a turn of a session whose record is past the bound, saying so."""
    limit = record_limit() if limit is None else limit
    if record_size(folders, limit) > limit:
        raise InputError(
            f"session {session_id!r}: its record (transcripts, questions) holds more than "
            f"{limit // (1024 * 1024)} MB, the bound on what a session may write there; no "
            f"turn starts until it is smaller (session.prune --records removes a stopped "
            f"session's; {LIMIT_ENV} raises the bound)"
        )
