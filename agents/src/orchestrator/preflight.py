"""Checks of the files a session names, run for every selected session before any of them starts.

Docker reads `--env-file` itself and, on a bad line, prints the line back (values included). We
apply Docker's own rules first so that a typo costs one line naming the file and the line number,
and the values stay private.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import ManifestError

if TYPE_CHECKING:
    from orchestrator.manifest import SessionSpec

# Docker's bufio.Scanner gives up on longer lines.
_MAX_ENV_LINE = 64 * 1024
_BOM = b"\xef\xbb\xbf"


def check_inputs(sessions: Iterable[SessionSpec]) -> None:
    """Raise `ManifestError` for the first session whose files cannot be used as they are."""
    for session in sessions:
        _check_file(session, "env_file", session.env_file)
        _check_file(session, "ssh_key", session.ssh_key)
        for line_error in env_file_problems(session.env_file):
            raise _error(session, "env_file", f"{session.env_file}: {line_error}")
        for field in ("workspace", "codex_dir"):
            path: Path = getattr(session, field)
            if path.exists() and not path.is_dir():
                raise _error(session, field, f"{path} exists and is not a folder")


def env_file_problems(path: Path) -> list[str]:
    """Lines Docker would reject, described by number only (never by content)."""
    problems: list[str] = []
    data = path.read_bytes()
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.removeprefix(_BOM) if number == 1 else raw
        if len(line) >= _MAX_ENV_LINE:
            problems.append(f"line {number}: longer than {_MAX_ENV_LINE} bytes")
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
        elif any(c in name for c in " \t"):
            problems.append(f"line {number}: variable name contains whitespace")
    return problems


def _check_file(session: SessionSpec, field: str, path: Path) -> None:
    if not path.exists():
        raise _error(session, field, f"{path} does not exist")
    if path.is_dir():
        raise _error(session, field, f"{path} is a folder, not a file")
    if not os.access(path, os.R_OK):
        raise _error(session, field, f"{path} is not readable")


def _error(session: SessionSpec, field: str, message: str) -> ManifestError:
    return ManifestError(
        f"{session.manifest_path}: session {session.id!r}: field {field!r}: {message}"
    )
