"""start-egress, start-egress-first, send-egress, start-runsc, send-runsc: what containment
costs the tool."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from scripts.benchmark.common import Bench, Record, pair
from scripts.benchmark.figures import Measurement
from scripts.benchmark.lifecycle import Fleet, make_fleet, manifest_text, tool_start, tool_stop
from scripts.benchmark.send import FAKE_MODEL_PATH, send_manifest_text, tool_send


@dataclass(frozen=True)
class Contain:
    """The contain group: one-session fleets on the smoke image (default egress, open, runsc,
    runc) and running sessions on the real image (through the proxy, open, runsc, runc)."""

    proxied: Fleet
    opened: Fleet
    first: Fleet  # a proxied session whose network each timed start makes (a keeper beside it)
    gvisor: Fleet
    runc: Fleet
    registry: Path
    turns: Mapping[str, str]  # case side -> session id


def prepare_contain(bench: Bench, image: str, stack: contextlib.ExitStack) -> Contain:
    """The fleets (seeded, stopped) and four sessions on the real image, each with a first turn
    given untimed."""
    proxied = make_fleet(bench, "proxied", 1, "")
    first = make_fleet(bench, "first", 1, "")
    # A session of another manifest keeps a network in the first fleet's state folder, so that
    # its prune leaves the proxy running, as it does for a fleet where other sessions run.
    keeper = bench.project / "keeper.yml"
    keeper.write_text(manifest_text(f"keeper-{bench.run_id[:6]}-", 1, ""))
    bench.inv_run("session.start", "--manifest", str(keeper), state=first.registry)
    opened = make_fleet(bench, "opened", 1)
    gvisor = make_fleet(bench, "gvisor", 1, "runtime: runsc")
    runc = make_fleet(bench, "runc", 1)
    if str(FAKE_MODEL_PATH) not in sys.path:
        sys.path.insert(0, str(FAKE_MODEL_PATH))
    from filare_testing.fake_model import API_KEY_ENV, FakeModel, write_codex_home

    fake = stack.enter_context(FakeModel(keep_bodies=False))
    outputs = bench.project / "outputs"
    write_codex_home(outputs / "codex-send", fake.container_url)
    (outputs / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    tag = bench.run_id[:6]
    turns = {side: f"contain-{tag}-{side}" for side in ("proxy", "open", "runsc", "runc")}
    extra = {turns["proxy"]: "egress: {allow: [host.docker.internal]}"}
    extra[turns["runsc"]] = "runtime: runsc"
    manifest = bench.project / "contain.yml"
    manifest.write_text(send_manifest_text(list(turns.values()), image, extra=extra))
    registry = bench.root / "state-contain"
    bench.inv_run("session.start", "--manifest", str(manifest), state=registry)
    tool_send(bench, registry, list(turns.values()))
    return Contain(proxied, opened, first, gvisor, runc, registry, turns)


def round_contain(bench: Bench, contain: Contain, tool_first: bool, record: Record) -> None:
    """Each case's two sides are both the tool: with the containment, and without it."""
    for case, contained, plain in (
        ("start-egress", contain.proxied, contain.opened),
        ("start-runsc", contain.gvisor, contain.runc),
    ):
        tool = partial(tool_start, bench, contained)
        pair(case, tool, partial(tool_start, bench, plain), tool_first=tool_first, record=record)
        tool_stop(bench, contained)
        tool_stop(bench, plain)
    pair(
        "start-egress-first",
        partial(first_start, bench, contain.first, others=1),
        partial(first_start, bench, contain.opened),
        tool_first=tool_first,
        record=record,
    )
    tool_stop(bench, contain.first, others=1)
    tool_stop(bench, contain.opened)
    for case, with_it, without in (
        ("send-egress", "proxy", "open"),
        ("send-runsc", "runsc", "runc"),
    ):
        pair(
            case,
            partial(tool_send, bench, contain.registry, [contain.turns[with_it]]),
            partial(tool_send, bench, contain.registry, [contain.turns[without]]),
            tool_first=tool_first,
            record=record,
        )


def first_start(bench: Bench, fleet: Fleet, others: int = 0) -> Measurement:
    """A start after `session.prune` (untimed) removed what the stopped session kept: its
    egress network, made again by the start."""
    bench.inv_run("session.prune", state=fleet.registry)
    return tool_start(bench, fleet, others)
