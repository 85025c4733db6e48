"""The command line: `python scripts/bench.py [--rounds N] [--only GROUP]... [--check] ...`."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from scripts.benchmark.cases import ASKED_ONLY, CODEX_GROUPS, GROUPS
from scripts.benchmark.common import image_id
from scripts.benchmark.figures import missed
from scripts.benchmark.process import BenchError
from scripts.benchmark.report import write_reports
from scripts.benchmark.runner import measure, select_groups
from scripts.benchmark.settings import CODEX_TAG, DEFAULT_OUTPUT


def summary() -> str | None:
    """The first paragraph of the package's docstring: what `--help` says the benchmark does."""
    import scripts.benchmark

    doc = scripts.benchmark.__doc__
    return doc.split("\n\n")[0] if doc else None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=summary())
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds (default 5)")
    parser.add_argument(
        "--only",
        action="append",
        choices=list(GROUPS),
        help="measure only this group of cases (repeatable; default: all but engines and contain, "
        "which need root and runsc)",
    )
    parser.add_argument(
        "--codex-image",
        default=CODEX_TAG,
        help=f"the real Codex image the send and memory groups run (default {CODEX_TAG}, what "
        "'inv codex.build' makes); without it, both are skipped unless --only asks for one",
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT, help="report folder")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="where to keep workspaces, state and the seed tree (default: the system's temporary "
        "folder; /dev/shm takes a noisy disk out of the figures)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)  # clean up on `kill` as on Ctrl-C
    try:
        wanted = args.only or [g for g in GROUPS if g not in ASKED_ONLY]
        codex = bool(set(wanted) & set(CODEX_GROUPS))
        present = codex and image_id(args.codex_image) is not None
        groups, note = select_groups(
            args.only, codex_image=args.codex_image, codex_image_present=present
        )
        if note:
            print(note, file=sys.stderr)
        rows, memory, context = measure(args.rounds, groups, args.work_dir, args.codex_image)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(write_reports(rows, context, args.output_dir, memory))
    print(f"written to {args.output_dir}", file=sys.stderr)
    failed = missed(rows) or (memory is not None and not memory.met)
    return 1 if args.check and failed else 0


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)
