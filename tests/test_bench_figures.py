"""The benchmark's figures: medians, ratios against targets, floors and the tables.

No Docker engine: pure parts of `scripts/benchmark`, and the tool asked only for its `--dry-run`.
"""

from __future__ import annotations

import math

import pytest

from scripts.benchmark import cases, figures

CASE = cases.Case("start-8", "inv session.start", "8 docker run -d", 0.8, sessions=8)


def row(
    tool: tuple[float, ...], baseline: tuple[float, ...], case: cases.Case = CASE
) -> figures.Row:
    return figures.Row(case, tool, baseline, tool_max_rss_kb=44_032, baseline_max_rss_kb=20_480)


def test_median_and_ratio() -> None:
    assert figures.median([3.0, 1.0, 2.0, 100.0, 2.5]) == 2.5
    assert figures.ratio(3.0, 2.0) == 1.5
    assert figures.ratio(1.0, 0.0) == math.inf
    with pytest.raises(ValueError):
        figures.median([])


def test_row_compares_medians_with_the_target() -> None:
    fast = row((1.0, 9.0, 2.0), (4.0, 3.0, 0.1))
    assert (fast.tool_median, fast.baseline_median, fast.ratio, fast.met) == (2.0, 3.0, 2 / 3, True)
    slow = row((2.5,), (3.0,))
    assert slow.met is False  # 0.83 > 0.8
    untargeted = row((1.0,), (1.0,), cases.Case("start-32", "t", "b", None, sessions=32))
    assert untargeted.met is None


def test_row_markdown_and_json() -> None:
    line = row((2.0,), (4.0,)).markdown()
    assert line == "| start-8 | 2.000 | 4.000 | 0.50 | - | ≤ 0.8 | yes | 43.0 / 20.0 |"
    assert "| 1.25 | - | ≤ 0.8 | **no** |" in row((5.0,), (4.0,)).markdown()
    data = row((1.0, 2.0), (0.0, 0.0)).as_json()
    assert data["ratio"] is None  # infinite: JSON has no value for it
    assert data["tool_seconds"] == [1.0, 2.0]
    assert data["met"] is False


def test_floors_add_invokes_start_up_to_the_baseline() -> None:
    listed = row((0.4,), (0.03,), cases.CASE_BY_NAME["send-1"])
    stop = row((1.2,), (1.3,), cases.CASE_BY_NAME["stop-8"])
    assert figures.with_floors([listed, stop]) == [listed, stop]  # no inv-list: no floor known
    startup = row((0.31,), (0.27,), cases.CASE_BY_NAME["inv-list"])
    floored, unfloored, _ = figures.with_floors([listed, stop, startup])
    assert floored.floor == pytest.approx(10.0)
    assert unfloored.floor is None
    assert "| 13.33 | 10.00 | ≤ 1.15 | **no** |" in floored.markdown()
    assert floored.as_json()["floor"] == pytest.approx(10.0)


def test_stop_8s_floor_is_invokes_start_up_and_its_own_engine_calls() -> None:
    stop = row((0.70,), (0.80,), cases.CASE_BY_NAME["stop-8"])
    calls = row((0.58,), (0.80,), cases.CASE_BY_NAME["stop-8-engine"])
    startup = row((0.10,), (0.11,), cases.CASE_BY_NAME["inv-list"])
    floored, unfloored, _ = figures.with_floors([stop, calls, startup])
    assert floored.floor == pytest.approx((0.11 + 0.58) / 0.80)
    assert unfloored.floor is None and unfloored.met is None
    (alone,) = figures.with_floors([stop])
    assert alone.floor is None


def test_the_lifecycle_cases_carry_the_issues_targets_and_units() -> None:
    """start-1 and list-8 against the docker command plus Invoke's start-up; start-8 and stop-8
    against eight docker commands in a row; a floor only where the baseline has no start-up."""
    targets = {
        name: cases.CASE_BY_NAME[name] for name in ("start-1", "start-8", "stop-8", "list-8")
    }
    assert {n: c.target for n, c in targets.items()} == {
        "start-1": 1.1,
        "start-8": 0.7,
        "stop-8": 0.8,
        "list-8": 1.1,
    }
    assert {n for n, c in targets.items() if c.startup} == {"start-1", "list-8"}
    assert not any(c.startup and c.floored for c in cases.CASES)


def test_tables_judge_targeted_cases_and_scale_per_session() -> None:
    scale = cases.Case("start-32", "t", "b", None, sessions=32)
    rows = [row((2.0,), (4.0,)), row((8.0,), (16.0,), scale)]
    results = figures.results_table(rows).splitlines()
    assert len(results) == 3  # header, rule, start-8 only
    scaling = figures.scaling_table(rows).splitlines()
    assert scaling[2] == "| 8 | 2.000 | 0.250 | 4.000 | 0.500 | 0.50 |"
    assert scaling[3] == "| 32 | 8.000 | 0.250 | 16.000 | 0.500 | 0.50 |"
    assert figures.missed([*rows, row((5.0,), (4.0,))]) == [row((5.0,), (4.0,))]


def test_targets_show_their_hundredths() -> None:
    assert [figures.format_target(t) for t in (0.8, 1.15, 1.0, 2.5)] == [
        "0.8",
        "1.15",
        "1.0",
        "2.5",
    ]
    assert "| ≤ 1.15 |" in row((1.0,), (1.0,), cases.CASE_BY_NAME["send-1"]).markdown()


def test_the_results_table_shows_reference_rows_but_not_the_scaling_only_ones() -> None:
    reference = row((5.0,), (4.0,), cases.CASE_BY_NAME["send-8-par"])
    scale = row((8.0,), (16.0,), cases.CASE_BY_NAME["start-32"])
    lines = figures.results_table([reference, scale]).splitlines()
    assert lines[2:] == ["| send-8-par | 5.000 | 4.000 | 1.25 | - | - | - | 43.0 / 20.0 |"]
    assert figures.missed([reference]) == []
