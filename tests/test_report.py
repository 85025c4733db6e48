"""Rendering of command output."""

from __future__ import annotations

from orchestrator.report import human_age, table


def test_table_aligns_all_but_the_last_column() -> None:
    assert table(("A", "BB", "C"), [("xxx", "y", "last one")]) == "A    BB  C\nxxx  y   last one"


def test_human_age() -> None:
    assert [human_age(s) for s in (None, 5, 61, 7200, 90000)] == ["-", "5s", "1m", "2h", "1d"]
