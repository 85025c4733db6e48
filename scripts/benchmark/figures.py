"""The pure figures: measurements, medians, ratios against targets, floors, and their table rows."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from scripts.benchmark.cases import Case


@dataclass(frozen=True)
class Measurement:
    """Wall time of one command (or one sequence) and the peak RSS of its process tree."""

    seconds: float
    max_rss_kb: int


@dataclass
class Samples:
    """The counted measurements of one case, per side, in round order."""

    tool: list[Measurement] = field(default_factory=list)
    baseline: list[Measurement] = field(default_factory=list)


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return statistics.median(values)


def ratio(tool: float, baseline: float) -> float:
    """tool / baseline; infinite when the baseline took no measurable time."""
    return tool / baseline if baseline > 0 else math.inf


@dataclass(frozen=True)
class Row:
    """One line of the report: both medians, their ratio, the target and whether it is met."""

    case: Case
    tool_seconds: tuple[float, ...]
    baseline_seconds: tuple[float, ...]
    tool_max_rss_kb: int
    baseline_max_rss_kb: int
    floor: float | None = None  # the best ratio Invoke's start-up leaves, when known

    @classmethod
    def from_samples(cls, case: Case, samples: Samples) -> Row:
        return cls(
            case,
            tuple(m.seconds for m in samples.tool),
            tuple(m.seconds for m in samples.baseline),
            max((m.max_rss_kb for m in samples.tool), default=0),
            max((m.max_rss_kb for m in samples.baseline), default=0),
        )

    @property
    def tool_median(self) -> float:
        return median(self.tool_seconds)

    @property
    def baseline_median(self) -> float:
        return median(self.baseline_seconds)

    @property
    def ratio(self) -> float:
        return ratio(self.tool_median, self.baseline_median)

    @property
    def met(self) -> bool | None:
        """None when the case has no target."""
        return None if self.case.target is None else self.ratio <= self.case.target

    def markdown(self) -> str:
        target = "-" if self.case.target is None else f"≤ {format_target(self.case.target)}"
        met = {None: "-", True: "yes", False: "**no**"}[self.met]
        cells = [
            self.case.name,
            f"{self.tool_median:.3f}",
            f"{self.baseline_median:.3f}",
            format_ratio(self.ratio),
            "-" if self.floor is None else format_ratio(self.floor),
            target,
            met,
            f"{self.tool_max_rss_kb / 1024:.1f} / {self.baseline_max_rss_kb / 1024:.1f}",
        ]
        return "| " + " | ".join(cells) + " |"

    def as_json(self) -> dict[str, object]:
        return {
            "case": self.case.name,
            "tool": self.case.tool,
            "baseline": self.case.baseline,
            "tool_seconds": list(self.tool_seconds),
            "baseline_seconds": list(self.baseline_seconds),
            "tool_median_seconds": self.tool_median,
            "baseline_median_seconds": self.baseline_median,
            "ratio": self.ratio if math.isfinite(self.ratio) else None,
            "floor": self.floor if self.floor is None or math.isfinite(self.floor) else None,
            "target": self.case.target,
            "met": self.met,
            "tool_max_rss_kb": self.tool_max_rss_kb,
            "baseline_max_rss_kb": self.baseline_max_rss_kb,
        }


def format_target(value: float) -> str:
    """1.8 → "1.8", 1.15 → "1.15", 1.0 → "1.0"."""
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def format_ratio(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "∞"


RESULT_HEADER = (
    "| case | tool, median s | baseline, median s | ratio | floor | target | met "
    "| peak RSS MB, tool / baseline |\n|---|---:|---:|---:|---:|---:|---|---:|"
)


SCALING_HEADER = (
    "| sessions | tool, median s | tool s/session | baseline, median s | baseline s/session "
    "| ratio |\n|---:|---:|---:|---:|---:|---:|"
)


def results_table(rows: Sequence[Row]) -> str:
    """Every case as a Markdown table, except those kept for the scaling table only."""
    shown = (row for row in rows if row.case.target is not None or not row.case.sessions)
    return "\n".join([RESULT_HEADER, *(row.markdown() for row in shown)])


def scaling_table(rows: Sequence[Row]) -> str:
    """Seconds per session when one command starts 1, 8 and 32 sessions."""
    lines = [SCALING_HEADER]
    for row in sorted((r for r in rows if r.case.sessions), key=lambda r: r.case.sessions):
        n = row.case.sessions
        lines.append(
            f"| {n} | {row.tool_median:.3f} | {row.tool_median / n:.3f} "
            f"| {row.baseline_median:.3f} | {row.baseline_median / n:.3f} "
            f"| {format_ratio(row.ratio)} |"
        )
    return "\n".join(lines)


def with_floors(rows: Sequence[Row]) -> list[Row]:
    """Rows with their floor, when `inv-list` measured Invoke's start-up: a floored case's is
    Invoke's start-up plus the baseline; a case with `engine_calls` measured, Invoke's start-up
    plus the tool's own engine calls."""
    startup = next((r.baseline_median for r in rows if r.case.name == "inv-list"), None)
    if startup is None:
        return list(rows)
    by_name = {r.case.name: r for r in rows}

    def floor(row: Row) -> float | None:
        if row.case.floored:
            return ratio(startup + row.baseline_median, row.baseline_median)
        calls = by_name.get(row.case.engine_calls or "")
        if calls is not None:
            return ratio(startup + calls.tool_median, row.baseline_median)
        return None

    return [dataclasses.replace(r, floor=floor(r)) for r in rows]


def legend(rows: Sequence[Row]) -> str:
    return "\n".join(f"- `{r.case.name}`: {r.case.tool} vs {r.case.baseline}" for r in rows)


def missed(rows: Iterable[Row]) -> list[Row]:
    return [row for row in rows if row.met is False]
