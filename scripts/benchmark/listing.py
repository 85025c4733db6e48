"""inv-list: Invoke's own start-up, the floor under every command the tool runs through `inv`."""

from __future__ import annotations

from pathlib import Path

from scripts.benchmark.common import Bench, Record, pair
from scripts.benchmark.figures import Measurement
from scripts.benchmark.process import BenchError


def make_empty_collection(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "tasks.py").write_text("from invoke import Collection\n\nns = Collection()\n")
    return folder


def round_inv_list(bench: Bench, empty: Path, tool_first: bool, record: Record) -> None:
    def tool() -> Measurement:
        return bench.inv_run("--list").measurement

    def baseline() -> Measurement:
        # Invoke lists an empty collection by saying so and exiting 1, after the same work.
        result = bench.inv_run("--list", cwd=empty, check=False)
        if result.returncode != 0 and "No tasks found" not in result.stderr:
            raise BenchError(f"inv --list of an empty collection: {result.stderr.strip()}")
        return result.measurement

    pair("inv-list", tool, baseline, tool_first=tool_first, record=record)
