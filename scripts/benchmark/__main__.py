"""`python -m scripts.benchmark`, the same as `python scripts/bench.py`."""

import sys

from scripts.benchmark.cli import main

sys.exit(main())
