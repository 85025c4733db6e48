"""What the egress proxy refused a session: read back, bounded, as hostile text.

The proxy appends one JSON line per refused request to `<state>/.egress/denials/<role>/<id>.jsonl`
(bounded at about 1 MB) and keeps the running count in `<id>.count`, so that `session.list` and
the dashboard read a few bytes per session. The host names in it are whatever the session asked
for: every field goes through `orchestrator.untrusted` before a terminal sees it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import InputError, did_you_mean
from orchestrator.registry import Registry, SessionState
from orchestrator.untrusted import json_text, loads, printable, read_limited, read_tail

# What `session.egress` and `session.log` read of one session's denials: the newest ones.
READ_LIMIT = 512 * 1024
COUNT_LIMIT = 32


@dataclass(frozen=True)
class Denial:
    time: str
    host: str
    port: int
    reason: str

    def as_json(self) -> dict[str, Any]:
        return {"time": self.time, "host": self.host, "port": self.port, "reason": self.reason}


def denials_folder(registry_root: Path, role: str) -> Path:
    return registry_root / ".egress" / "denials" / role


def remove_denials(registry_root: Path, role: str, session_id: str) -> None:
    """What the proxy recorded of the session (its list and count), gone with its record; the
    role's folder too once no session of it has any.

    The proxy owns the denials folder and makes the role folders in it: one that is a link (a
    proxy subverted by what it parses) is not followed, and nothing is removed through it.
    """
    folder = denials_folder(registry_root, role)
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for name in (f"{session_id}.jsonl", f"{session_id}.count", f"{session_id}.count.tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)
    with contextlib.suppress(OSError):
        folder.rmdir()


def read_denials(registry_root: Path, role: str, session_id: str) -> list[Denial]:
    """The session's denials, oldest first (the newest `READ_LIMIT` bytes of them)."""
    raw = read_tail(denials_folder(registry_root, role) / f"{session_id}.jsonl", READ_LIMIT)
    found = []
    for line in raw.splitlines():
        entry = loads(line, max_bytes=4096)
        if not isinstance(entry, dict):
            continue
        port = entry.get("port")
        found.append(
            Denial(
                str(entry.get("time", "")),
                str(entry.get("host", "")),
                port if isinstance(port, int) else 0,
                str(entry.get("reason", "")),
            )
        )
    return found


def denial_count(registry_root: Path, role: str, session_id: str) -> int:
    """How many requests the proxy refused the session (its count file: a few bytes)."""
    raw = read_limited(denials_folder(registry_root, role) / f"{session_id}.count", COUNT_LIMIT)
    text = raw.decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else 0


def session_denials(registry: Registry, session_id: str) -> list[Denial]:
    """The denials of the recorded session `session_id`; an unknown id is bad input."""
    if not session_id:
        raise InputError("--session needs a session id")
    states = {state.session_id: state for state in registry.states()}
    state = states.get(session_id)
    if state is None:
        hint = did_you_mean(session_id, states)
        raise InputError(f"no session with id {session_id!r} in {registry.root}{hint}")
    refresh_states(registry, [state])
    return read_denials(registry.root, state.role, session_id)


def refresh_states(registry: Registry, states: Iterable[SessionState]) -> None:
    """What the proxy refused sessions on engines without this machine's files, brought home
    from its volume there (one copy per engine); the others' are already here."""
    from orchestrator import egress_volumes, volumes

    by_engine: dict[str | None, set[tuple[str, str]]] = {}
    for state in states:
        if volumes.uses_volumes(state.labels):
            by_engine.setdefault(state.engine, set()).add((state.role, state.session_id))
    if by_engine:
        egress_volumes.refresh(registry.root, by_engine)


def denials_table(denials: list[Denial]) -> str:
    """TIME, HOST, PORT, REASON: the session's own text made safe for a terminal."""
    from orchestrator.report import table

    if not denials:
        return "no requests denied"
    rows = [
        (printable(d.time, limit=32), printable(d.host, limit=80), str(d.port), printable(d.reason))
        for d in denials
    ]
    return table(("TIME", "HOST", "PORT", "REASON"), rows)


def denials_json(denials: list[Denial]) -> str:
    return json_text([d.as_json() for d in denials], indent=2)
