"""list-8-engines and start-8-engines: sessions spread over two engines against the same on one."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from scripts.benchmark.common import Bench, Record, pair
from scripts.benchmark.figures import Measurement
from scripts.benchmark.lifecycle import manifest_text
from scripts.benchmark.process import BenchError, run
from scripts.benchmark.send import FAKE_MODEL_PATH
from scripts.benchmark.settings import SMOKE_TAG

# The bench's own test engine (index of `filare_testing.engines.OwnEngine`) and its context.
ENGINE_INDEX = 13


ENGINE_CONTEXT = f"filare-test-{ENGINE_INDEX}"


ENGINES_SESSIONS = 8


@dataclass(frozen=True)
class Spread:
    """The engines group: the same sessions in two manifests, one on the current engine, one
    placed over it and a second engine; a registry each."""

    one: Path
    two: Path
    one_registry: Path
    two_registry: Path


def prepare_engines(bench: Bench, stack: contextlib.ExitStack) -> Spread:
    """Start the bench's own engine (removed at the end), name it by a context, copy the smoke
    image in, and write both manifests; each is started and stopped once, untimed, so the
    workspaces are seeded before anything is timed."""
    sys.path.insert(0, str(FAKE_MODEL_PATH))
    from filare_testing.engines import OwnEngine

    engine = OwnEngine(ENGINE_INDEX)
    engine.stop()
    stack.callback(engine.stop)
    engine.start()
    run(["docker", "context", "rm", "--force", ENGINE_CONTEXT], check=False)
    run(["docker", "context", "create", ENGINE_CONTEXT, "--docker", f"host={engine.host}"])
    stack.callback(run, ["docker", "context", "rm", "--force", ENGINE_CONTEXT], check=False)
    engine.load_image(SMOKE_TAG)
    half = ENGINES_SESSIONS // 2
    pool = (
        "  engines:\n"
        f"    - {{context: default, max_sessions: 10000}}\n"
        f"    - {{context: {ENGINE_CONTEXT}, max_sessions: {half}}}\n"
    )
    spread = Spread(
        bench.project / "spread-one.yml",
        bench.project / "spread-two.yml",
        bench.root / "state-spread-one",
        bench.root / "state-spread-two",
    )
    # Ids of their own: container names are per engine, and both sides share the current one.
    spread.one.write_text(manifest_text("one", ENGINES_SESSIONS))
    two = manifest_text("two", ENGINES_SESSIONS)
    spread.two.write_text(two.replace("sessions:\n", pool + "sessions:\n", 1))
    for manifest, registry in (
        (spread.one, spread.one_registry),
        (spread.two, spread.two_registry),
    ):
        engines_start(bench, manifest, registry)
        bench.inv_run("session.stop", "--manifest", str(manifest), state=registry)
    return spread


def engines_start(bench: Bench, manifest: Path, registry: Path) -> Measurement:
    result = bench.inv_run("session.start", "--manifest", str(manifest), state=registry)
    started = sum("  started  " in line for line in result.stdout.splitlines())
    if started != ENGINES_SESSIONS:
        raise BenchError(f"session.start of {manifest.name}: {started} started")
    return result.measurement


def engines_list(bench: Bench, registry: Path) -> Measurement:
    result = bench.inv_run("session.list", "--json", state=registry)
    rows = json.loads(result.stdout)
    if sum(row["status"] == "running" for row in rows) != ENGINES_SESSIONS:
        raise BenchError(f"session.list does not show {ENGINES_SESSIONS} running sessions")
    return result.measurement


def round_engines(bench: Bench, spread: Spread, tool_first: bool, record: Record) -> None:
    """start-8-engines, then list-8-engines on what it started; both stopped untimed."""
    two = partial(engines_start, bench, spread.two, spread.two_registry)
    one = partial(engines_start, bench, spread.one, spread.one_registry)
    pair("start-8-engines", two, one, tool_first=tool_first, record=record)
    two_list = partial(engines_list, bench, spread.two_registry)
    one_list = partial(engines_list, bench, spread.one_registry)
    pair("list-8-engines", two_list, one_list, tool_first=tool_first, record=record)
    for manifest, registry in (
        (spread.one, spread.one_registry),
        (spread.two, spread.two_registry),
    ):
        bench.inv_run("session.stop", "--manifest", str(manifest), state=registry)
