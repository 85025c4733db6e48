"""Benchmark the session commands against plain Docker: the entry point of `scripts/benchmark`.

    uv run python scripts/bench.py [--rounds 5] [--only GROUP]... [--check] [--codex-image TAG]

See the package's docstring and docs/benchmark.md.
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    # Run as a script, Python puts scripts/ on the path; the package is imported from the root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from scripts.benchmark.cli import main

    sys.exit(main())
