"""A session's transcript: the events of its turns, read from its transcript folder, rendered.

Inside the container, `filare-turn` appends Codex's JSON events for turn N to `N.jsonl` in the
session's transcript folder (a folder on the host, mounted into the container) and writes
`N.exit` when the turn ends. That file is the record; nothing keeps a second copy of what
happened. The session can write there too, so everything is read as untrusted input: never
through a link, never more than a bounded number of bytes, and a line that is not an event is
skipped.

Codex's events are turned into a small, stable vocabulary (`TranscriptEvent`), which is what
`session.log --json` prints, one JSON object per line:

- `turn_started`: `message` (the turn's text, as sent), `at`
- `agent_message`: `text`
- `reasoning`: `text`
- `command`: `command`, `exit_code`, `status`, `output` (the last 2000 characters)
- `file_change`: `changes` (a list of `{path, kind}`)
- `tool_call`: `server`, `tool`, `status`
- `todo`: `items` (a list of `{text, completed}`)
- `error`: `message`
- `turn_completed`: `usage` (Codex's token counts, cumulative for the conversation)
- `turn_failed`: `message`
- `turn_interrupted`: `message`, `at`
- `turn_ended`: `exit_code`, `at` (a turn that ended without Codex saying how)
- `lines_skipped`: `lines`, `file` (lines of the turn's transcript that were not well-formed
  events, counted and shown once, at the end of the turn)

Every object also has `session`, `turn` (the turn's number) and `type`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.untrusted import loads, printable, read_limited, read_lines, read_tail

# Bounds for what is read from a folder the session can write.
MAX_TURN_BYTES = 64 << 20
# One event (one line): far more than any event Codex writes; a longer line is skipped unread.
MAX_EVENT_BYTES = 8 << 20
# What a session's line in `session.list` and the dashboard reads of a turn: its end.
MAX_TAIL_BYTES = 256 << 10
# The start of a turn, where its `thread.started` event is.
MAX_HEAD_BYTES = 64 << 10
MAX_EXIT_BYTES = 4096
MAX_STDERR_TAIL_BYTES = 64 << 10
MAX_OUTPUT_CHARS = 2000
# A Codex conversation id: a UUID. Anything else (`--help-x`) never reaches a record or an argv.
THREAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Every Codex event names its type; a line without this is no event, and is not parsed.
_TYPE_KEY = b'"type"'
_TYPED_LINE = re.compile(rb'^[^\n]*"type"[^\n]*$', re.MULTILINE)


@dataclass(frozen=True)
class TurnEnd:
    """How a turn ended, as `filare-turn` recorded it in `N.exit`."""

    exit_code: int
    interrupted: bool
    ended_at: str | None
    # Why the record could not be read: the turn then counts as failed, for that reason.
    problem: str | None = None
    # A limit that ended it, as the agent daemon says: `over budget` or `timed out` (else None).
    reason: str | None = None


@dataclass(frozen=True)
class TranscriptEvent:
    session: str
    turn: str
    type: str
    fields: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"session": self.session, "turn": self.turn, "type": self.type, **self.fields}


def turns(folder: Path) -> list[str]:
    """The turn numbers that have a transcript, oldest first."""
    return numbered(folder, "jsonl")


def numbered(folder: Path, suffix: str) -> list[str]:
    """The turn numbers N of the `N.<suffix>` files in `folder`, oldest first."""
    try:
        # Names only, no Path per entry: a waiting command lists the folder at every poll.
        names = os.listdir(folder)  # noqa: PTH208
    except (FileNotFoundError, NotADirectoryError):
        return []
    pattern = re.compile(rf"([0-9]{{4,9}})\.{re.escape(suffix)}")
    return sorted((m.group(1) for m in map(pattern.fullmatch, names) if m), key=int)


def is_thread_id(value: object) -> bool:
    """Whether `value` has the shape of a Codex conversation id (it becomes an argv element)."""
    return isinstance(value, str) and THREAD_ID.fullmatch(value) is not None


def turn_end(folder: Path, turn: str) -> TurnEnd | None:
    """How the turn ended, or None while it has not; an unreadable record says so."""
    raw = read_limited(folder / f"{turn}.exit", MAX_EXIT_BYTES)
    if not raw:
        return None
    data = loads(raw)
    code = data.get("exit_code") if isinstance(data, dict) else None
    if not isinstance(data, dict) or type(code) is not int or not -(1 << 31) <= code < 1 << 31:
        return TurnEnd(-1, False, None, f"{turn}.exit is not a well-formed end record")
    ended = data.get("ended_at")
    reason = data.get("reason")
    return TurnEnd(
        code,
        data.get("interrupted") is True,
        ended if isinstance(ended, str) else None,
        reason=reason if reason in {"over budget", "timed out"} else None,
    )


class EventReader:
    """Codex's events of one turn, read from where the last read stopped, in bounded chunks.

    A line that is not a well-formed event (not JSON, too deep, numbers out of range, longer
    than `MAX_EVENT_BYTES`, not an object with a type) is skipped and counted in `skipped`.
    Never more than `MAX_TURN_BYTES` of a turn are read.
    """

    def __init__(self, folder: Path, turn: str) -> None:
        self.path = folder / f"{turn}.jsonl"
        self.offset = 0
        self.skipped = 0
        self.in_long_line = False

    def read(self, *, final: bool = True) -> Iterator[dict[str, Any]]:
        """The events written since the last read; without `final` (the turn still works), a
        last line with no line break yet is left for the next read."""
        chunks = read_lines(
            self.path,
            offset=self.offset,
            limit=MAX_TURN_BYTES - self.offset,
            max_line=MAX_EVENT_BYTES,
            partial=final,
            in_long_line=self.in_long_line,
        )
        for chunk in chunks:
            self.offset, self.in_long_line = chunk.end, chunk.in_long_line
            self.skipped += chunk.dropped
            yield from self._events(chunk.data)

    def tail(self, limit: int = MAX_TAIL_BYTES) -> list[dict[str, Any]]:
        """The events in the last `limit` bytes of the turn (what a listing needs: its end)."""
        raw = read_tail(self.path, limit)
        # A last line with no line break yet is being written: not read.
        return list(self._events(raw[: raw.rfind(b"\n") + 1]))

    def _events(self, block: bytes) -> Iterator[dict[str, Any]]:
        """The events of `block`, whole lines each ending with a line break. Lines without a
        type are counted without being parsed; a block with no type at all is counted whole,
        so millions of `{}` cost a scan, not millions of parses."""
        lines = block.count(b"\n")
        events = 0
        if _TYPE_KEY in block:
            for match in _TYPED_LINE.finditer(block):
                event = loads(match.group())
                if isinstance(event, dict) and isinstance(event.get("type"), str):
                    events += 1
                    yield event
        self.skipped += lines - events


def codex_events(folder: Path, turn: str) -> Iterator[dict[str, Any]]:
    """Codex's events of a turn, as JSON objects; lines that are not are skipped."""
    return EventReader(folder, turn).read()


def skipped_note(session: str, turn: str, skipped: int) -> TranscriptEvent:
    """The one line that says a turn's transcript had lines that are no events."""
    return TranscriptEvent(
        session, turn, "lines_skipped", {"lines": skipped, "file": f"{turn}.jsonl"}
    )


def last_error_line(folder: Path, turn: str) -> str:
    """The last line Codex (or the runner) wrote on stderr: why a turn that says nothing failed."""
    raw = read_tail(folder / f"{turn}.stderr", MAX_STDERR_TAIL_BYTES)
    lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def thread_id(folder: Path, turn: str) -> str | None:
    """The conversation a turn belongs to, from its `thread.started` event (its first)."""
    head = read_limited(folder / f"{turn}.jsonl", MAX_HEAD_BYTES)
    for line in head.splitlines():
        event = loads(line) if _TYPE_KEY in line else None
        if isinstance(event, dict) and event.get("type") == "thread.started":
            value = event.get("thread_id")
            return value if is_thread_id(value) else None
    return None


def normalize(session: str, turn: str, event: dict[str, Any]) -> TranscriptEvent | None:
    """One Codex event in the transcript's vocabulary; None for events a reader need not see."""
    kind = event.get("type")
    if kind == "item.completed" and isinstance(event.get("item"), dict):
        return _item(session, turn, event["item"])
    if kind == "turn.completed":
        usage = event.get("usage")
        return TranscriptEvent(
            session, turn, "turn_completed", {"usage": usage if isinstance(usage, dict) else {}}
        )
    if kind == "turn.failed":
        error = event.get("error")
        message = error.get("message") if isinstance(error, dict) else None
        return TranscriptEvent(session, turn, "turn_failed", {"message": _text(message) or ""})
    if kind == "error":
        return TranscriptEvent(session, turn, "error", {"message": _text(event.get("message"))})
    return None


def _item(session: str, turn: str, item: dict[str, Any]) -> TranscriptEvent | None:
    kind = item.get("type")
    if kind == "agent_message":
        return TranscriptEvent(session, turn, "agent_message", {"text": _text(item.get("text"))})
    if kind == "reasoning":
        return TranscriptEvent(session, turn, "reasoning", {"text": _text(item.get("text"))})
    if kind == "command_execution":
        output = _text(item.get("aggregated_output"))
        code = item.get("exit_code")
        return TranscriptEvent(
            session,
            turn,
            "command",
            {
                "command": _text(item.get("command")),
                "exit_code": code if isinstance(code, int) else None,
                "status": _text(item.get("status")),
                "output": output[-MAX_OUTPUT_CHARS:],
            },
        )
    if kind == "file_change":
        changes = _list(item.get("changes"))
        return TranscriptEvent(
            session,
            turn,
            "file_change",
            {
                "changes": [
                    {"path": _text(c.get("path")), "kind": _text(c.get("kind"))}
                    for c in changes
                    if isinstance(c, dict)
                ]
            },
        )
    if kind == "mcp_tool_call":
        return TranscriptEvent(
            session,
            turn,
            "tool_call",
            {
                "server": _text(item.get("server")),
                "tool": _text(item.get("tool")),
                "status": _text(item.get("status")),
            },
        )
    if kind == "todo_list":
        items = _list(item.get("items"))
        return TranscriptEvent(
            session,
            turn,
            "todo",
            {
                "items": [
                    {"text": _text(i.get("text")), "completed": bool(i.get("completed"))}
                    for i in items
                    if isinstance(i, dict)
                ]
            },
        )
    if kind == "error":
        return TranscriptEvent(session, turn, "error", {"message": _text(item.get("message"))})
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: object) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def render(event: TranscriptEvent) -> str:
    """One readable line (or block) for a person; every value a session wrote goes through
    `untrusted.printable`."""
    f = {key: _shown(value) for key, value in event.fields.items()}
    prefix = f"[{printable(event.turn)}]"
    if event.type == "turn_started":
        return f"{prefix} > {printable(_first_line(str(event.fields.get('message', ''))))}"
    if event.type == "agent_message":
        return f"{prefix} agent: {printable(event.fields['text'], newlines=True)}"
    if event.type == "reasoning":
        return f"{prefix} thinking: {printable(_first_line(str(event.fields['text'])))}"
    if event.type == "command":
        code = "running" if event.fields["exit_code"] is None else f"exit {f['exit_code']}"
        return f"{prefix} $ {f['command']}  ({code})"
    if event.type == "file_change":
        changes = event.fields["changes"]
        changed = ", ".join(f"{c['kind']} {c['path']}" for c in changes) or "(none)"
        return f"{prefix} files: {printable(changed)}"
    if event.type == "tool_call":
        return f"{prefix} tool {f['server']}.{f['tool']} ({f['status']})"
    if event.type == "todo":
        items = event.fields["items"]
        done = sum(1 for i in items if i["completed"])
        return f"{prefix} plan: {done}/{len(items)} done"
    if event.type == "error":
        return f"{prefix} error: {f['message']}"
    if event.type == "turn_completed":
        return f"{prefix} turn completed"
    if event.type == "egress_denied":
        return f"[egress] denied {f['host']}:{f['port']} at {f['time']}: {f['reason']}"
    if event.type == "turn_failed":
        return f"{prefix} turn failed: {f['message']}"
    if event.type == "turn_interrupted":
        return f"{prefix} turn interrupted: {f['message']}"
    if event.type == "turn_ended":
        return f"{prefix} turn ended (exit {f['exit_code']})"
    if event.type == "lines_skipped":
        return f"{prefix} {f['lines']} line(s) of {f['file']} skipped: not well-formed events"
    return f"{prefix} {printable(event.type)}"


def _shown(value: object) -> str:
    return printable("" if value is None else value)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    more = " …" if len(lines) > 1 else ""
    return (lines[0] if lines else "") + more
