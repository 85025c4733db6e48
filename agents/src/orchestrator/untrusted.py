"""What a session wrote, made safe to read and to show: one sanitizer and one bounded reader.

An agent can write its workspace, its Codex home, its transcripts, its questions and its ready
file. Every byte of those is hostile input to the host: it may hold terminal escape sequences
(OSC 52 writes the operator's clipboard, OSC 0 the window title), lone surrogates that make
`print` raise, JSON nested deep enough to exhaust Python's stack, numbers that overflow, links
and FIFOs where files should be, and files of any size. Every command that reads or prints such
text goes through this module, so there is one place to get it right:

- `printable` for text shown in a terminal: control characters (C0, DEL, C1, escape), lone
  surrogates and the invisible format characters (bidi overrides, zero-width) become `?`;
- `json_text` for `--json` output: the same characters escaped by JSON (`\\u001b`), never removed,
  so a program reading the JSON sees exactly what the session wrote;
- `read_limited`/`read_tail` read at most a bound, never through a link, never from a FIFO;
  `read_lines` streams a file's lines in bounded chunks, from an offset, up to a bound;
- `loads` parses one JSON document with bounds: too deep, not finite, too big or not UTF-8 is None.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

# A line's JSON may nest this deep; Codex's events nest five or six levels.
MAX_JSON_DEPTH = 64
# Integers longer than this are no count, turn number or exit code of ours.
MAX_INT_DIGITS = 40
# How much `read_lines` reads at a time.
READ_CHUNK = 1 << 20

_JSON_ESCAPE = re.compile(r"[^\n -~]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(value: object, *, newlines: bool = False, limit: int | None = None) -> str:
    """Text a terminal shows as text: every character that could drive it becomes `?`.

    `newlines` keeps line breaks (and tabs) for multi-line renderings such as a diff or an agent's
    message; otherwise they become spaces, so one value can never break its line of a table.
    `limit` cuts the result to that many characters, marking the cut with `…`.
    """
    text = value if isinstance(value, str) else str(value)
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    if text.isascii() and text.isprintable():
        return text
    out = []
    for char in text:
        if char.isprintable():
            out.append(char)
        elif char in "\n\t":
            out.append(char if newlines else " ")
        else:
            out.append("?")
    return "".join(out)


def json_text(value: Any, *, indent: int | None = None) -> str:
    """`value` as JSON that is safe to print: anything but printable ASCII escaped as `\\uXXXX`.

    Control characters are kept (escaped), so a reader of the JSON sees what a session wrote;
    a lone surrogate is escaped too, so printing never raises `UnicodeEncodeError`.
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _JSON_ESCAPE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char.isprintable() and not 0xD800 <= ord(char) <= 0xDFFF:
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def clean_surrogates(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD, so it can be encoded as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


def read_limited(path: Path, limit: int, offset: int = 0) -> bytes:
    """Up to `limit` bytes of a regular file from `offset`; b"" if absent, a link or not a file.

    Opened with no-follow and non-blocking, so a link cannot redirect the read and a FIFO cannot
    stall it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        return os.pread(fd, limit, offset)
    except OSError:
        return b""
    finally:
        os.close(fd)


def file_size(path: Path) -> int:
    """The size of a regular file, never through a link; 0 when absent or not a regular file."""
    try:
        info = path.lstat()
    except OSError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def read_tail(path: Path, limit: int) -> bytes:
    """The last `limit` bytes of a regular file, starting at a line boundary when it was cut."""
    size = file_size(path)
    if size <= limit:
        return read_limited(path, limit)
    raw = read_limited(path, limit, size - limit)
    cut = raw.find(b"\n")
    return raw[cut + 1 :] if cut >= 0 else b""


class Lines(NamedTuple):
    """One chunk's worth of `read_lines`."""

    # Whole lines, each with its line break (one bytes object: a million short lines need not
    # be a million objects).
    data: bytes
    # Lines longer than the bound, left out: each counted once.
    dropped: int
    # Where to read on from.
    end: int
    # `end` is inside a line already counted as too long: pass it back to skip the line's rest.
    in_long_line: bool = False


def read_lines(
    path: Path,
    *,
    offset: int = 0,
    limit: int,
    max_line: int,
    partial: bool = True,
    in_long_line: bool = False,
) -> Iterator[Lines]:
    """The whole lines of a regular file from `offset`, never more than `limit` bytes in all,
    read a chunk at a time.

    A line longer than `max_line` is never held whole, only counted. `partial` gives a last
    line with no line break too (with one added); without it (a file still being written),
    reading stops before that line, and the last `end` says where to go on next time (past a
    line already too long: it is not read again).
    """
    end = min(file_size(path), offset + max(limit, 0))
    pending = b""
    overlong = counted = in_long_line
    position = offset
    while position < end:
        chunk = read_limited(path, min(READ_CHUNK, end - position), position)
        if not chunk:
            break
        position += len(chunk)
        cut = chunk.rfind(b"\n")
        if cut < 0:
            if not overlong:
                pending += chunk
            if len(pending) > max_line:
                pending, overlong = b"", True
            continue
        data, pending = pending + chunk[: cut + 1], chunk[cut + 1 :]
        dropped = 0
        if overlong:
            # The rest of a line already too long: not a line of its own.
            data, dropped = data[data.find(b"\n") + 1 :], 0 if counted else 1
            overlong = counted = False
        if len(data) > max_line:
            lines = data.split(b"\n")[:-1]
            kept = [line for line in lines if len(line) <= max_line]
            dropped += len(lines) - len(kept)
            data = b"".join(line + b"\n" for line in kept)
        yield Lines(data, dropped, position - len(pending))
        if len(pending) > max_line:
            pending, overlong = b"", True
    if overlong:
        yield Lines(b"", 0 if counted else 1, position, in_long_line=not partial)
    elif partial and pending:
        yield Lines(pending + b"\n", 0, position)


def loads(
    raw: bytes | str, *, max_bytes: int | None = None, lone_surrogates: bool = True
) -> Any | None:
    """One JSON document written by a session, or None when it is not a safe one.

    None for: invalid UTF-8 or JSON, nesting deeper than `MAX_JSON_DEPTH` (checked before parsing,
    so a line of `[[[[…` never reaches the parser's recursion), `NaN`/`Infinity` and numbers that
    overflow to them, integers of more than `MAX_INT_DIGITS` digits, more than `max_bytes` bytes.
    Lone surrogates (`"\\ud800"`) are replaced by U+FFFD, so the result can always be printed;
    with `lone_surrogates=False` a document holding one is None (for what is kept as written).
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if max_bytes is not None and len(data) > max_bytes:
        return None
    if _too_deep(data):
        return None
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except (ValueError, RecursionError):
        return None
    clean = _without_surrogates(value)
    if not lone_surrogates and clean != value:
        return None
    return clean


def _too_deep(data: bytes) -> bool:
    """Whether the brackets of `data` could nest deeper than allowed (a cheap upper bound)."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return False
    depth = 0
    for token in re.finditer(rb'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', data):
        first = token.group()[:1]
        if first in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif first in (b"]", b"}"):
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a session may write")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError("integer out of range")
    return int(text)


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return clean_surrogates(value)
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {clean_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value
