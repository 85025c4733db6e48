"""Where a session's collect is kept in its record, and reading its last result back.

Apart from the rest of the homecoming so that `session.list` and the dashboard, which read the
last result of every session on each refresh, import nothing but this.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.registry import Registry, SessionState, atomic_write
from orchestrator.untrusted import loads, read_limited

COLLECT_FOLDER = "collect"
RESULT_FILE = "result.json"
MAX_RESULT_BYTES = 1 << 20


def collect_folder(registry: Registry, state: SessionState) -> Path:
    """`<registry>/<role>/<id>/collect`: host-only, never mounted in the session's container."""
    return registry.session_dir(state.role, state.session_id) / COLLECT_FOLDER


def write_result(registry: Registry, state: SessionState, result: dict[str, Any]) -> None:
    atomic_write(collect_folder(registry, state) / RESULT_FILE, json.dumps(result, indent=2) + "\n")


def last_result(registry: Registry, state: SessionState) -> dict[str, object] | None:
    """The session's last collect as `session.list --json` shows it; None before the first."""
    path = collect_folder(registry, state) / RESULT_FILE
    data = loads(read_limited(path, MAX_RESULT_BYTES), max_bytes=MAX_RESULT_BYTES)
    return data if isinstance(data, dict) else None
