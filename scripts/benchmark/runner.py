"""A run: preparing each selected group, interleaved rounds, and removing what the run made."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path

from scripts.benchmark.cases import ASKED_ONLY, CASES, CODEX_GROUPS, GROUPS, SMOKE_GROUPS
from scripts.benchmark.collect import COLLECT_SESSIONS, prepare_collect, round_collect
from scripts.benchmark.common import Bench, Round, ensure_image, image_id, make_project
from scripts.benchmark.contain import prepare_contain, round_contain
from scripts.benchmark.engines import ENGINE_CONTEXT, prepare_engines, round_engines
from scripts.benchmark.figures import Measurement, Row, Samples, with_floors
from scripts.benchmark.lifecycle import Fleet, make_fleet, round_fleet, round_start
from scripts.benchmark.listing import round_inv_list
from scripts.benchmark.memory import MemoryProbe, MemoryRow, prepare_memory, round_memory
from scripts.benchmark.process import BenchError, run
from scripts.benchmark.seed import SEED_FILES, make_seed_repository, round_seed
from scripts.benchmark.send import (
    SEND_SESSIONS,
    codex_turn_argv,
    missing_codex_image,
    prepare_send,
    round_send,
)
from scripts.benchmark.settings import CODEX_TAG, PROXY_REGISTRY_LABEL, REGISTRY_LABEL, SMOKE_TAG
from scripts.benchmark.transcript import make_transcript_registry, round_transcript


def select_groups(
    only: Sequence[str] | None, *, codex_image: str, codex_image_present: bool
) -> tuple[list[str], str | None]:
    """The groups to measure, in their fixed order, and a note when some were left out.

    Without `--only`, every group runs, except those on the real Codex image (`send`,
    `collect`, `memory`) when it is absent (the note says so); asking for one without the
    image is an error.
    """
    groups = [g for g in GROUPS if (g in only if only is not None else g not in ASKED_ONLY)]
    if not set(groups) & set(CODEX_GROUPS) or codex_image_present:
        return groups, None
    if only is not None:
        raise BenchError(missing_codex_image(codex_image))
    note = f"note: skipping the send, collect and memory groups: {missing_codex_image(codex_image)}"
    return [g for g in groups if g not in CODEX_GROUPS], note


def prepare(
    bench: Bench,
    groups: Sequence[str],
    stack: contextlib.ExitStack,
    context: dict[str, object],
    codex_image: str = CODEX_TAG,
) -> tuple[dict[str, Round], list[Fleet], MemoryProbe | None]:
    """Inputs of every selected group (manifests, seed tree, empty collection, sessions with a
    scripted model), and its round; what must be closed at the end goes on `stack`."""
    make_project(bench)
    rounds: dict[str, Round] = {}
    fleets: list[Fleet] = []
    probe = None
    for group in groups:
        if group == "start-1":
            fleets.append(make_fleet(bench, "solo", 1))
            rounds[group] = partial(round_start, bench, fleets[-1], "start-1")
        elif group == "fleet":
            fleets.append(make_fleet(bench, "fleet", 8))
            rounds[group] = partial(round_fleet, bench, fleets[-1])
        elif group == "scale":
            fleets.append(make_fleet(bench, "scale", 32))
            rounds[group] = partial(round_start, bench, fleets[-1], "start-32")
        elif group == "send":
            print(f"starting {1 + SEND_SESSIONS} sessions on {codex_image} ...", file=sys.stderr)
            talk = prepare_send(bench, codex_image, stack)
            rounds[group] = partial(round_send, bench, talk)
            context["send_baseline_argv"] = shlex.join(
                codex_turn_argv(talk.containers[talk.solo], talk.threads[talk.solo])
            )
        elif group == "collect":
            print(f"starting {COLLECT_SESSIONS} sessions on {codex_image} ...", file=sys.stderr)
            home = prepare_collect(bench, codex_image)
            rounds[group] = partial(round_collect, bench, home)
        elif group == "memory":
            print(f"starting a session on {codex_image} ...", file=sys.stderr)
            probe = prepare_memory(bench, codex_image, stack)
            rounds[group] = partial(round_memory, bench, probe)
        elif group == "contain":
            print(f"starting the contain group's sessions on {codex_image} ...", file=sys.stderr)
            rounds[group] = partial(
                round_contain, bench, prepare_contain(bench, codex_image, stack)
            )
        elif group == "inv-list":
            rounds[group] = partial(round_inv_list, bench)
        elif group == "transcript":
            hostile = make_transcript_registry(bench.root / "transcript-64mb", hostile=True)
            plain = make_transcript_registry(bench.root / "transcript-plain", hostile=False)
            rounds[group] = partial(round_transcript, bench, hostile, plain)
        elif group == "engines":
            print(f"starting a second engine ({ENGINE_CONTEXT}) ...", file=sys.stderr)
            rounds[group] = partial(round_engines, bench, prepare_engines(bench, stack))
        elif group == "seed":
            print(f"making the {SEED_FILES}-file seed repository ...", file=sys.stderr)
            repository = make_seed_repository(bench.root / "seed-repository")
            rounds[group] = partial(round_seed, bench, repository)
    return rounds, fleets, probe


def clean_up(bench: Bench, attempts: int = 3, pause: float = 5.0) -> None:
    """Remove every container this run created, found by label, whatever state it was left in:
    the baseline's by `bench.run`, the tool's by a `filare.registry` inside this run's folder.

    An engine that does not answer (a daemon restarting) is asked again `attempts` times in all,
    `pause` seconds apart; after that, a warning says what may be left.
    """
    for attempt in range(1, attempts + 1):
        try:
            remove_containers(bench)
            break
        except BenchError as exc:
            if attempt < attempts:
                time.sleep(pause)
                continue
            print(
                f"warning: containers of this run may be left ({exc}): those labelled "
                f"{bench.run_label} and those whose {REGISTRY_LABEL} label is under {bench.root}",
                file=sys.stderr,
            )
    shutil.rmtree(bench.root, ignore_errors=True)


def remove_containers(bench: Bench) -> None:
    listing = f'{{{{.ID}}}} {{{{.Label "{REGISTRY_LABEL}"}}}}'
    listed = run(["docker", "ps", "-a", "--filter", f"label={REGISTRY_LABEL}", "--format", listing])
    ids = {
        cid
        for cid, _, registry in (line.partition(" ") for line in listed.stdout.splitlines())
        if Path(registry).is_relative_to(bench.root)
    }
    ids |= set(run(["docker", "ps", "-aq", "--filter", f"label={bench.run_label}"]).stdout.split())
    listing = f'{{{{.ID}}}} {{{{.Label "{PROXY_REGISTRY_LABEL}"}}}}'
    listed = run(
        ["docker", "ps", "-a", "--filter", f"label={PROXY_REGISTRY_LABEL}", "--format", listing]
    )
    ids |= {
        cid
        for cid, _, registry in (line.partition(" ") for line in listed.stdout.splitlines())
        if Path(registry).is_relative_to(bench.root)
    }
    if ids:
        run(["docker", "rm", "-f", *sorted(ids)])
    # The sessions' own networks (egress), found like the tool's containers.
    listing = f'{{{{.Name}}}} {{{{.Label "{REGISTRY_LABEL}"}}}}'
    listed = run(
        ["docker", "network", "ls", "--filter", f"label={REGISTRY_LABEL}", "--format", listing]
    )
    names = [
        name
        for name, _, registry in (line.partition(" ") for line in listed.stdout.splitlines())
        if Path(registry).is_relative_to(bench.root)
    ]
    if names:
        run(["docker", "network", "rm", *names])


def measure(
    rounds: int,
    groups: Sequence[str],
    work_dir: Path | None = None,
    codex_image: str = CODEX_TAG,
) -> tuple[list[Row], MemoryRow | None, dict[str, object]]:
    """Every selected case: one warm-up round, then `rounds` counted ones, all groups per round;
    the memory group's figures apart (they are not ratios)."""
    bench = Bench.create(work_dir)
    try:
        with contextlib.ExitStack() as stack:
            images = {}
            if any(g in SMOKE_GROUPS for g in groups):
                images[SMOKE_TAG] = ensure_image(bench)
            if set(groups) & set(CODEX_GROUPS):
                images[codex_image] = image_id(codex_image) or "absent"
            context = describe_machine(bench, images, rounds)
            context["work_dir"] = str(bench.root.parent)
            plans, fleets, probe = prepare(bench, groups, stack, context, codex_image)
            context["baseline_argv"] = {
                f.manifest.stem: shlex.join(f.baseline_argvs[0]) for f in fleets
            }
            samples = run_rounds(rounds, groups, plans)
            context["loadavg_after"] = list(os.getloadavg())
    finally:
        clean_up(bench)
    rows = [Row.from_samples(case, samples[case.name]) for case in CASES if case.name in samples]
    return with_floors(rows), probe.row() if probe else None, context


def run_rounds(
    rounds: int, groups: Sequence[str], plans: Mapping[str, Round]
) -> dict[str, Samples]:
    samples = {case: Samples() for group in groups for case in GROUPS[group]}
    for number in range(rounds + 1):
        record = partial(keep, samples, number > 0)
        for group, round_ in plans.items():
            label = "warm-up" if number == 0 else f"round {number}/{rounds}"
            print(f"{label}: {group}", file=sys.stderr)
            round_(number % 2 == 1, record)
    return samples


def keep(
    samples: Mapping[str, Samples], counted: bool, case: str, side: str, measured: Measurement
) -> None:
    """Record one side's measurement, unless the round is the warm-up."""
    if counted:
        getattr(samples[case], side).append(measured)


def describe_machine(bench: Bench, images: Mapping[str, str], rounds: int) -> dict[str, object]:
    server = run(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip()
    return {
        "rounds": rounds,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "loadavg_before": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "docker_server": server,
        "images": dict(images),
        "inv": shlex.join(bench.inv),
    }
