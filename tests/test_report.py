"""Rendering of command output."""

from __future__ import annotations

from orchestrator.registry import now
from orchestrator.report import human_age, table


def test_table_aligns_all_but_the_last_column() -> None:
    assert table(("A", "BB", "C"), [("xxx", "y", "last one")]) == "A    BB  C\nxxx  y   last one"


def test_human_age() -> None:
    assert [human_age(s) for s in (None, 5, 61, 7200, 90000)] == ["-", "5s", "1m", "2h", "1d"]


def test_the_agent_column_names_the_state_as_the_json_does() -> None:
    """`none` where `--json` says `none`, not a dash (docs/operating-a-fleet.md)."""
    from orchestrator.report import agent_cell

    assert agent_cell({}) == "none"
    assert agent_cell({"agent": "none"}) == "none"
    assert agent_cell({"agent": "failed", "agent_reason": "x"}) == "failed"
    assert agent_cell({"agent": "working", "agent_since": now().isoformat()}) == "working 0s"
