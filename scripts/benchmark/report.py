"""The Markdown and JSON reports written at the end of a run."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.benchmark.figures import Row, legend, results_table, scaling_table
from scripts.benchmark.memory import MemoryRow


def markdown_report(
    rows: Sequence[Row], context: Mapping[str, object], memory: MemoryRow | None = None
) -> str:
    parts = [
        "# Benchmark: the tool against plain Docker",
        "",
        f"Medians of {context['rounds']} rounds after one warm-up round, tool and baseline "
        f"interleaved; {context['cpus']} CPUs, load average "
        f"{fmt_load(context['loadavg_before'])} before and "
        f"{fmt_load(context.get('loadavg_after'))} after; Docker {context['docker_server']}, "
        f"{fmt_images(context.get('images'))}; files under {context['work_dir']}.",
    ]
    if rows:
        parts += ["", results_table(rows), "", legend(rows)]
    if any(row.floor is not None for row in rows):
        parts += [
            "",
            "`floor`: the ratio of a tool that did nothing but start Invoke and then the "
            "baseline's work, (`inv-list` baseline + baseline) / baseline; for `stop-8`, "
            "Invoke's start-up and then the tool's own two engine calls (`stop-8-engine`).",
        ]
    if any(row.case.sessions for row in rows):
        parts += ["", "## Cost per session, started by one command", "", scaling_table(rows)]
    if rows:
        peak = max(rows, key=lambda r: r.tool_max_rss_kb)
        parts += [
            "",
            f"Peak RSS of the tool's process: {peak.tool_max_rss_kb / 1024:.1f} MB "
            f"(`{peak.case.name}`), from wait4(2): the largest of `inv` and the commands it "
            "waited for.",
        ]
    if memory is not None:
        parts += [
            "",
            "## Memory of a warm session",
            "",
            "One session on the real image, read after each round's turn (`inv session.send "
            "--wait`), its agent daemon keeping Codex running between turns:",
            "",
            memory.markdown(),
        ]
    return "\n".join(parts) + "\n"


def fmt_images(value: object) -> str:
    names = list(value) if isinstance(value, dict) else []
    return ("image " if len(names) == 1 else "images ") + (" and ".join(names) or "none")


def fmt_load(value: object) -> str:
    if not isinstance(value, list):
        return "?"
    return "/".join(f"{v:.2f}" for v in value)


def write_reports(
    rows: Sequence[Row],
    context: Mapping[str, object],
    folder: Path,
    memory: MemoryRow | None = None,
) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    markdown = markdown_report(rows, context, memory)
    (folder / "results.md").write_text(markdown)
    data = {**context, "rows": [row.as_json() for row in rows]}
    if memory is not None:
        data["memory"] = memory.as_json()
    (folder / "results.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return markdown
