"""seed: the launch script's seeding of a workspace against `rsync -a`."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

from scripts.benchmark.common import Bench, Record, git, pair
from scripts.benchmark.figures import Measurement
from scripts.benchmark.process import BenchError, run
from scripts.benchmark.settings import LAUNCH_SCRIPT

SEED_FILES = 5_000


SEED_BYTES = 100_000_000


SEED_FOLDERS = 50


def make_seed_repository(folder: Path) -> Path:
    """A committed repository of SEED_FILES files totalling SEED_BYTES, random (incompressible)."""
    rng = random.Random(20_240_101)  # noqa: S311 (file contents, not secrets)
    size = SEED_BYTES // SEED_FILES
    for n in range(SEED_FILES):
        path = folder / f"d{n % SEED_FOLDERS:02d}" / f"f{n:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
    git("init", "-q", "-b", "main", cwd=folder)
    git("add", ".", cwd=folder)
    git("commit", "-qm", "seed tree", cwd=folder)
    return folder


def tool_seed(workspace: Path, repository: Path) -> Measurement:
    argv = ["bash", str(LAUNCH_SCRIPT), "--seed-only", "--workspace", str(workspace)]
    argv += ["--seed-from", str(repository), "--branch", "bench/seed"]
    return seeded(run(argv).measurement, workspace)


def baseline_seed(workspace: Path, repository: Path) -> Measurement:
    return seeded(run(["rsync", "-a", f"{repository}/", f"{workspace}/"]).measurement, workspace)


def seeded(measurement: Measurement, workspace: Path) -> Measurement:
    last = SEED_FILES - 1
    if not (workspace / f"d{last % SEED_FOLDERS:02d}" / f"f{last:04d}.bin").is_file():
        raise BenchError(f"{workspace} was not seeded")
    return measurement


def round_seed(bench: Bench, repository: Path, tool_first: bool, record: Record) -> None:
    """Seed an empty workspace each way, each side starting with no dirty pages (`sync`).

    The seeded workspaces are moved aside, not deleted, until the run ends: on a file system
    mounted with `discard` (as here), deleting 400 MB slows whatever writes next, which would
    charge it to the side that happens to go first.
    """
    ours, theirs = bench.root / "seed-tool", bench.root / "seed-rsync"

    def flushed(seed: Callable[[Path, Path], Measurement], workspace: Path) -> Measurement:
        run(["sync"])
        return seed(workspace, repository)

    tool = partial(flushed, tool_seed, ours)
    baseline = partial(flushed, baseline_seed, theirs)
    pair("seed", tool, baseline, tool_first=tool_first, record=record)
    trash = Path(tempfile.mkdtemp(prefix="seeded-", dir=bench.root))
    for workspace in (ours, theirs):
        workspace.rename(trash / workspace.name)
