"""The pure parts of the benchmark (`scripts/bench.py`): figures, rendering and the baseline argv.

No Docker engine: the one test that runs the tool only asks it for its `--dry-run` argv.
"""

from __future__ import annotations

import math
import shlex
from pathlib import Path

import pytest

from filare_testing.commands import inv
from scripts import bench
from tests.conftest import WriteManifest, session

CASE = bench.Case("start-8", "inv session.start", "8 docker run -d", 0.8, sessions=8)


def row(tool: tuple[float, ...], baseline: tuple[float, ...], case: bench.Case = CASE) -> bench.Row:
    return bench.Row(case, tool, baseline, tool_max_rss_kb=44_032, baseline_max_rss_kb=20_480)


def test_median_and_ratio() -> None:
    assert bench.median([3.0, 1.0, 2.0, 100.0, 2.5]) == 2.5
    assert bench.ratio(3.0, 2.0) == 1.5
    assert bench.ratio(1.0, 0.0) == math.inf
    with pytest.raises(ValueError):
        bench.median([])


def test_row_compares_medians_with_the_target() -> None:
    fast = row((1.0, 9.0, 2.0), (4.0, 3.0, 0.1))
    assert (fast.tool_median, fast.baseline_median, fast.ratio, fast.met) == (2.0, 3.0, 2 / 3, True)
    slow = row((2.5,), (3.0,))
    assert slow.met is False  # 0.83 > 0.8
    untargeted = row((1.0,), (1.0,), bench.Case("start-32", "t", "b", None, sessions=32))
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
    listed = row((0.4,), (0.03,), bench.CASE_BY_NAME["list-8"])
    stop = row((1.2,), (1.3,), bench.CASE_BY_NAME["stop-8"])
    assert bench.with_floors([listed, stop]) == [listed, stop]  # no inv-list: no floor known
    startup = row((0.31,), (0.27,), bench.CASE_BY_NAME["inv-list"])
    floored, unfloored, _ = bench.with_floors([listed, stop, startup])
    assert floored.floor == pytest.approx(10.0)
    assert unfloored.floor is None
    assert "| 13.33 | 10.00 | ≤ 2.5 | **no** |" in floored.markdown()
    assert floored.as_json()["floor"] == pytest.approx(10.0)


def test_tables_judge_targeted_cases_and_scale_per_session() -> None:
    scale = bench.Case("start-32", "t", "b", None, sessions=32)
    rows = [row((2.0,), (4.0,)), row((8.0,), (16.0,), scale)]
    results = bench.results_table(rows).splitlines()
    assert len(results) == 3  # header, rule, start-8 only
    scaling = bench.scaling_table(rows).splitlines()
    assert scaling[2] == "| 8 | 2.000 | 0.250 | 4.000 | 0.500 | 0.50 |"
    assert scaling[3] == "| 32 | 8.000 | 0.250 | 16.000 | 0.500 | 0.50 |"
    assert bench.missed([*rows, row((5.0,), (4.0,))]) == [row((5.0,), (4.0,))]


DRY_RUN = """\
# a: docker run --detach --name filare-coder-a --label filare.registry=/s --volume \
/s/coder/a/ssh:/home/agent/.ssh:ro --volume /w/with\\ space:/home/agent/workspace img sleep infinity
"""


def test_parse_dry_run_reads_shell_quoted_argv() -> None:
    argv = bench.parse_dry_run(DRY_RUN)["a"]
    assert argv[:2] == ["docker", "run"]
    assert "/w/with space:/home/agent/workspace" in argv
    with pytest.raises(ValueError, match="not a docker run"):
        bench.parse_dry_run("# a: rm -rf /\n")
    with pytest.raises(ValueError, match="no '# <id>"):
        bench.parse_dry_run("nothing\n")


def test_baseline_argv_changes_only_name_registry_and_ssh_folder() -> None:
    argv = bench.parse_dry_run(DRY_RUN)["a"]
    out = bench.baseline_argv(
        argv, name="bench-x-a", tool_registry=Path("/s"), registry=Path("/b"), run_id="r1"
    )
    assert out[:4] == ["docker", "run", "--label", "bench.run=r1"]
    changed = {(a, b) for a, b in zip(argv[2:], out[4:], strict=True) if a != b}
    assert changed == {
        ("filare-coder-a", "bench-x-a"),
        ("filare.registry=/s", "filare.registry=/b"),
        ("/s/coder/a/ssh:/home/agent/.ssh:ro", "/b/coder/a/ssh:/home/agent/.ssh:ro"),
    }
    with pytest.raises(ValueError, match="no --name"):
        bench.baseline_argv(
            ["docker", "run", "img"],
            name="n",
            tool_registry=Path("/s"),
            registry=Path("/b"),
            run_id="r",
        )


def test_the_tools_dry_run_is_what_the_baseline_parses(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    """The contract with `session.start --dry-run`: one parsable line per session."""
    manifest = write_manifest([session("a"), session("b", workspace="ws/with space")])
    state = tmp_path / "state"
    result = inv(
        "session.start", "--manifest", str(manifest), "--dry-run", FILARE_STATE_DIR=str(state)
    )
    assert result.returncode == 0, result.stderr
    argvs = bench.parse_dry_run(result.stdout)
    assert sorted(argvs) == ["a", "b"]
    assert f"{tmp_path}/ws/with space:/home/agent/workspace" in argvs["b"]
    out = bench.baseline_argv(
        argvs["b"], name="n", tool_registry=state, registry=tmp_path / "base", run_id="r"
    )
    assert shlex.join(out).count(str(state)) == 0
