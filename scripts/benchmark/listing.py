"""inv-list: Invoke's own start-up, the floor under every command the tool runs through `inv`."""

from __future__ import annotations

from functools import partial

from scripts.benchmark.common import Bench, Record, invoke_startup, pair
from scripts.benchmark.figures import Measurement


def round_inv_list(bench: Bench, tool_first: bool, record: Record) -> None:
    def tool() -> Measurement:
        return bench.inv_run("--list").measurement

    pair("inv-list", tool, partial(invoke_startup, bench), tool_first=tool_first, record=record)
