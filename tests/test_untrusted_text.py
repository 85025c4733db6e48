"""The sanitizer and bounded reader every command uses for what a session wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path

from orchestrator import untrusted


def test_printable_removes_terminal_controls() -> None:
    hostile = "ok\x1b]52;c;aGVsbG8=\x07\x1b]0;title\x1b\\\x1b[31mred\x9b2J\u202eevil\ud800"
    shown = untrusted.printable(hostile)
    assert "\x1b" not in shown and "\x07" not in shown and "\x9b" not in shown
    assert "\u202e" not in shown and "\ud800" not in shown
    assert shown.startswith("ok?]52;c;aGVsbG8=?")
    shown.encode("utf-8")


def test_printable_keeps_text_and_line_breaks_on_request() -> None:
    assert untrusted.printable("héllo wörld ✓") == "héllo wörld ✓"
    assert untrusted.printable("a\nb\tc") == "a b c"
    assert untrusted.printable("a\nb\tc", newlines=True) == "a\nb\tc"
    assert untrusted.printable("abcdef", limit=4) == "abc…"


def test_json_text_escapes_instead_of_removing() -> None:
    value = {"reason": "x\x1b]52;c;Zm9v\x07y\x9b\u202e\ud800 é"}
    text = untrusted.json_text(value)
    assert text.isascii() or all(c.isprintable() for c in text)
    for raw in ("\x1b", "\x07", "\x9b", "\u202e", "\ud800"):
        assert raw not in text
    text.encode("utf-8")
    back = json.loads(text)
    assert back["reason"].startswith("x\x1b]52;c;Zm9v\x07y\x9b\u202e")
    assert "é" in text


def test_json_text_escapes_astral_format_characters_as_pairs() -> None:
    text = untrusted.json_text(["\U000e0041"])
    assert text == '["\\udb40\\udc41"]'
    assert json.loads(text) == ["\U000e0041"]


def test_loads_refuses_what_would_crash_a_reader() -> None:
    assert untrusted.loads(b"[" * 100_000) is None
    assert untrusted.loads(b'{"exit_code": 1e999}') is None
    assert untrusted.loads(b'{"exit_code": NaN}') is None
    assert untrusted.loads(b'{"n": ' + b"9" * 100 + b"}") is None
    assert untrusted.loads(b"\xff\xfe") is None
    assert untrusted.loads(b'{"a": 1}', max_bytes=3) is None
    brackets = "[" * 200
    assert untrusted.loads(json.dumps({"s": brackets}).encode()) == {"s": brackets}
    assert untrusted.loads(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}


def test_loads_replaces_lone_surrogates() -> None:
    value = untrusted.loads(b'{"reason": "a\\ud800b"}')
    assert value == {"reason": "a\ufffdb"}


def test_read_limited_never_follows_links_or_blocks(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("secret")
    (tmp_path / "link").symlink_to(target)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    assert untrusted.read_limited(tmp_path / "link", 100) == b""
    assert untrusted.read_limited(tmp_path / "fifo", 100) == b""
    assert untrusted.read_limited(tmp_path / "dir", 100) == b""
    assert untrusted.read_limited(tmp_path / "absent", 100) == b""
    assert untrusted.read_limited(target, 3) == b"sec"


def test_read_tail_starts_at_a_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"first line\nsecond\nthird\n")
    assert untrusted.read_tail(path, 12) == b"third\n"
    assert untrusted.read_tail(path, 100) == b"first line\nsecond\nthird\n"
    assert untrusted.file_size(path) == 24
