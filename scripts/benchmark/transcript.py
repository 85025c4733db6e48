"""list-64mb and log-64mb: what one 64 MB transcript costs the operator's commands."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from scripts.benchmark.common import Bench, Record, pair
from scripts.benchmark.settings import ROLE, SMOKE_TAG

# The `transcript` group: a transcript as big as a turn's may be, of lines that are no events.
TRANSCRIPT_BYTES = 64 << 20


TRANSCRIPT_SESSIONS = ("big", "small")


def make_transcript_registry(folder: Path, *, hostile: bool) -> Path:
    """A registry of two sessions with no container (`stale`), one turn each: with `hostile`,
    the first one's transcript is 64 MB of `{}` lines (what a session can write to slow the
    host's reads), else one line like the other's."""
    message = {"type": "item.completed", "item": {"type": "agent_message", "text": "done"}}
    for session_id in TRANSCRIPT_SESSIONS:
        session = folder / ROLE / session_id
        (session / "turns").mkdir(parents=True)
        (session / "agent" / "transcript").mkdir(parents=True)
        record = {
            "session_id": session_id,
            "role": ROLE,
            "owner": "bench",
            "status": "running",
            "container_name": f"filare-{ROLE}-{session_id}",
            "image": SMOKE_TAG,
            "workspace": str(folder / "ws"),
            "ssh_dir": str(session / "ssh"),
        }
        (session / "state.json").write_text(json.dumps(record))
        turn = {
            "session_id": session_id,
            "role": ROLE,
            "number": "0001",
            "kind": "message",
            "started_at": "2026-01-01T00:00:00+00:00",
            "container_id": "0" * 64,
            "thread_id": None,
        }
        (session / "turns" / "0001.json").write_text(json.dumps(turn))
        with (session / "agent" / "transcript" / "0001.jsonl").open("wb") as out:
            if hostile and session_id == TRANSCRIPT_SESSIONS[0]:
                out.write(b"{}\n" * (TRANSCRIPT_BYTES // 3))
            out.write(json.dumps(message).encode() + b"\n")
        (session / "agent" / "transcript" / "0001.exit").write_text('{"exit_code": 0}\n')
    return folder


def round_transcript(
    bench: Bench, hostile: Path, plain: Path, tool_first: bool, record: Record
) -> None:
    """The same commands on the two registries: what a 64 MB transcript costs them."""
    big = TRANSCRIPT_SESSIONS[0]
    for case, args in (
        ("list-64mb", ("session.list",)),
        ("log-64mb", ("session.log", "--session", big, "--tail", "3")),
    ):
        tool = partial(lambda a, s: bench.inv_run(*a, state=s).measurement, args, hostile)
        baseline = partial(lambda a, s: bench.inv_run(*a, state=s).measurement, args, plain)
        pair(case, tool, baseline, tool_first=tool_first, record=record)
