"""A run: which groups run, its clean-up, and the command line's report and exit code.

No Docker engine: pure parts of `scripts/benchmark`, and the tool asked only for its `--dry-run`.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

from scripts.benchmark import cases, cli, common, figures, memory, process, runner
from tests.test_bench_memory import sample


def test_codex_groups_are_left_out_without_the_real_image_and_refused_when_asked() -> None:
    select = partial(runner.select_groups, codex_image="filare-codex")
    everything, note = select(None, codex_image_present=True)
    # engines needs root (an engine of its own), contain a registered runsc: asked for only.
    assert everything == [g for g in cases.GROUPS if g not in cases.ASKED_ONLY]
    assert {"send", "memory"} <= set(everything) and note is None
    without, note = select(None, codex_image_present=False)
    assert without == [g for g in cases.GROUPS if g not in cases.ASKED_ONLY | cases.CODEX_GROUPS]
    assert select(["engines"], codex_image_present=False) == (["engines"], None)
    assert note is not None and "'uv run inv codex.build'" in note and "\n" not in note
    assert select(["fleet", "seed"], codex_image_present=False) == (["fleet", "seed"], None)
    assert select(["inv-list", "send"], codex_image_present=True) == (["send", "inv-list"], None)
    for group in ("send", "memory"):
        with pytest.raises(process.BenchError, match=r"codex\.build --tag mine:1'"):
            runner.select_groups([group], codex_image="mine:1", codex_image_present=False)


def test_a_run_without_the_send_group_needs_no_codex_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only asking for send looks for the real image; --only without it never does."""
    looked: list[str] = []
    measured: list[list[str]] = []

    def image_id(tag: str) -> str | None:
        looked.append(tag)
        return None

    def measure(rounds: int, groups: list[str], *args: object) -> None:
        measured.append(groups)
        raise process.BenchError("stop here")

    monkeypatch.setattr(cli, "image_id", image_id)
    monkeypatch.setattr(cli, "measure", measure)
    assert cli.main(["--only", "fleet"]) == 2
    assert looked == [] and measured == [["fleet"]]
    assert cli.main(["--only", "send", "--codex-image", "x:1"]) == 2
    assert looked == ["x:1"] and len(measured) == 1
    assert cli.main([]) == 2
    left_out = cases.ASKED_ONLY | cases.CODEX_GROUPS
    assert measured[-1] == [g for g in cases.GROUPS if g not in left_out]


def test_clean_up_asks_a_restarting_engine_again_then_says_what_may_be_left(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers: list[str | None] = ["down", None, "down", "down", "down"]

    def remove(_: common.Bench) -> None:
        answer = answers.pop(0)
        if answer:
            raise process.BenchError(answer)

    monkeypatch.setattr(runner, "remove_containers", remove)
    first = common.Bench(tmp_path / "one", "r1", ("inv",))
    first.root.mkdir()
    runner.clean_up(first, pause=0)
    assert not first.root.exists() and capsys.readouterr().err == ""
    second = common.Bench(tmp_path / "two", "r2", ("inv",))
    second.root.mkdir()
    runner.clean_up(second, pause=0)
    err = capsys.readouterr().err
    assert not second.root.exists() and answers == []
    assert err.startswith("warning: containers of this run may be left (down)")
    assert "bench.run=r2" in err and str(second.root) in err


# --- the memory of a warm session ----------------------------------------------------------------


CONTEXT = {
    "rounds": 5,
    "cpus": 2,
    "loadavg_before": [1.0, 1.0, 1.0],
    "loadavg_after": [1.0, 1.0, 1.0],
    "docker_server": "20.10",
    "images": {"filare-codex:x": "sha256:1"},
    "work_dir": "/tmp",
}


def test_a_memory_only_run_reports_and_checks_its_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    over = memory.MemoryRow((sample(45.0, ("codex app-server", 143.0, 20.0)),))

    def measure(*args: object) -> tuple[list[figures.Row], memory.MemoryRow, dict[str, object]]:
        return [], over, dict(CONTEXT)

    monkeypatch.setattr(cli, "image_id", lambda tag: "sha256:1")
    monkeypatch.setattr(cli, "measure", measure)
    out = tmp_path / "out"
    argv = ["--only", "memory", "--output-dir", str(out)]
    assert cli.main(argv) == 0
    assert cli.main([*argv, "--check"]) == 1
    report = (out / "results.md").read_text()
    assert "## Memory of a warm session" in report and "| case |" not in report
    assert "| the session's processes | 143.0 | 20.0 | ≤ 120 | **no** |" in report
    data = json.loads((out / "results.json").read_text())
    assert data["rows"] == [] and data["memory"]["met"] is False
