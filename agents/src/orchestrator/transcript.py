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

Every object also has `session`, `turn` (the turn's number) and `type`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.untrusted import read_limited

# Bounds for what is read from a folder the session can write.
MAX_TURN_BYTES = 64 << 20
MAX_EXIT_BYTES = 4096
MAX_OUTPUT_CHARS = 2000


@dataclass(frozen=True)
class TurnEnd:
    """How a turn ended, as `filare-turn` recorded it in `N.exit`."""

    exit_code: int
    interrupted: bool
    ended_at: str | None


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


def turn_end(folder: Path, turn: str) -> TurnEnd | None:
    """How the turn ended, or None while it has not (or its record is unreadable)."""
    raw = read_limited(folder / f"{turn}.exit", MAX_EXIT_BYTES)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        return TurnEnd(
            int(data["exit_code"]), bool(data.get("interrupted")), _text(data.get("ended_at"))
        )
    except (ValueError, KeyError, TypeError):
        return TurnEnd(-1, False, None)


def codex_events(folder: Path, turn: str) -> Iterator[dict[str, Any]]:
    """Codex's events of a turn, as JSON objects; lines that are not are skipped."""
    for line in read_limited(folder / f"{turn}.jsonl", MAX_TURN_BYTES).splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


def last_error_line(folder: Path, turn: str) -> str:
    """The last line Codex (or the runner) wrote on stderr: why a turn that says nothing failed."""
    raw = read_limited(folder / f"{turn}.stderr", 1 << 20)
    lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
    return _printable(lines[-1]) if lines else ""


def thread_id(folder: Path, turn: str) -> str | None:
    """The conversation a turn belongs to, from its `thread.started` event."""
    for event in codex_events(folder, turn):
        if event.get("type") == "thread.started":
            value = event.get("thread_id")
            if isinstance(value, str) and re.fullmatch(r"[0-9A-Za-z-]{8,64}", value):
                return value
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


def _printable(text: str) -> str:
    """Text without terminal control sequences: what a session wrote must not drive a terminal."""
    return "".join(c if c.isprintable() or c in "\n\t" else "?" for c in text)


def render(event: TranscriptEvent) -> str:
    """One readable line (or block) for a person."""
    f = event.fields
    prefix = f"[{event.turn}]"
    if event.type == "turn_started":
        return f"{prefix} > {_printable(_first_line(f.get('message', '')))}"
    if event.type == "agent_message":
        return f"{prefix} agent: {_printable(f['text'])}"
    if event.type == "reasoning":
        return f"{prefix} thinking: {_printable(_first_line(f['text']))}"
    if event.type == "command":
        code = "running" if f["exit_code"] is None else f"exit {f['exit_code']}"
        return f"{prefix} $ {_printable(f['command'])}  ({code})"
    if event.type == "file_change":
        changed = ", ".join(f"{c['kind']} {c['path']}" for c in f["changes"]) or "(none)"
        return f"{prefix} files: {_printable(changed)}"
    if event.type == "tool_call":
        return f"{prefix} tool {_printable(f['server'])}.{_printable(f['tool'])} ({f['status']})"
    if event.type == "todo":
        done = sum(1 for i in f["items"] if i["completed"])
        return f"{prefix} plan: {done}/{len(f['items'])} done"
    if event.type == "error":
        return f"{prefix} error: {_printable(f['message'])}"
    if event.type == "turn_completed":
        return f"{prefix} turn completed"
    if event.type == "egress_denied":
        where = f"{_printable(f['host'])}:{f['port']}"
        return f"[egress] denied {where} at {_printable(f['time'])}: {_printable(f['reason'])}"
    if event.type == "turn_failed":
        return f"{prefix} turn failed: {_printable(f['message'])}"
    if event.type == "turn_interrupted":
        return f"{prefix} turn interrupted: {_printable(f['message'])}"
    if event.type == "turn_ended":
        return f"{prefix} turn ended (exit {f['exit_code']})"
    return f"{prefix} {event.type}"


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    more = " …" if len(lines) > 1 else ""
    return (lines[0] if lines else "") + more
