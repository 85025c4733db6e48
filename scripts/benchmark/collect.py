"""collect-8: bringing the work of eight sessions home against eight `git bundle create`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from scripts.benchmark.common import Bench, Record, pair, session_containers
from scripts.benchmark.figures import Measurement
from scripts.benchmark.process import BenchError, run, run_each
from scripts.benchmark.send import send_manifest_text
from scripts.benchmark.settings import CONTAINER_WORKSPACE

COLLECT_SESSIONS = 8


@dataclass(frozen=True)
class Homecoming:
    """The collect group's sessions, running on the real image, and their containers."""

    registry: Path
    containers: Mapping[str, str]  # session id → container name
    changes: list[int] = field(default_factory=lambda: [0])


def prepare_collect(bench: Bench, image: str) -> Homecoming:
    """Start the sessions (untimed) and collect them once, so every round brings home one small
    change per session, as an operator collecting a fleet now and then does."""
    outputs = bench.project / "outputs"
    (outputs / "codex-collect").mkdir(exist_ok=True)
    (outputs / "collect.env").write_text("BENCH=1\n")
    tag = bench.run_id[:6]
    ids = [f"home-{tag}-{n:02d}" for n in range(1, COLLECT_SESSIONS + 1)]
    manifest = bench.project / "collect.yml"
    text = send_manifest_text(ids, image).replace("outputs/codex-send", "outputs/codex-collect")
    manifest.write_text(text.replace("outputs/model.env", "outputs/collect.env"))
    registry = bench.root / "state-collect"
    bench.inv_run("session.start", "--manifest", str(manifest), state=registry)
    containers = session_containers(registry)
    if sorted(containers) != sorted(ids):
        raise BenchError(f"session.start of the collect group: {len(containers)} running")
    home = Homecoming(registry, containers)
    change_each(home)
    tool_collect(bench, home)
    return home


def change_each(home: Homecoming) -> None:
    """One small commit and one new uncommitted file in every session, as its agent would."""
    home.changes[0] += 1
    number = home.changes[0]
    script = (
        f"printf 'change {number}\\n' >> notes.txt && git add notes.txt && "
        f"git -c user.name=agent -c user.email=agent@localhost commit -qm 'change {number}' && "
        f"printf 'draft {number}\\n' > draft.txt"
    )
    for container in home.containers.values():
        run(["docker", "exec", "--workdir", CONTAINER_WORKSPACE, container, "sh", "-c", script])


def tool_collect(bench: Bench, home: Homecoming) -> Measurement:
    result = bench.inv_run("session.collect", "--all", state=home.registry)
    collected = sum("  collected  " in line for line in result.stdout.splitlines())
    if collected != len(home.containers):
        raise BenchError(f"session.collect --all collected {collected}: {result.stdout}")
    return result.measurement


def baseline_collect(home: Homecoming) -> Measurement:
    """What a person types to carry each session's branch out: a bundle of it, one by one."""
    argvs = [
        ["docker", "exec", "--workdir", CONTAINER_WORKSPACE, container, "git", "bundle",
         "create", "-q", "/home/agent/.filare/bench.bundle", f"refs/heads/bench/{sid}"]
        for sid, container in sorted(home.containers.items())
    ]  # fmt: skip
    return run_each(argvs)


def round_collect(bench: Bench, home: Homecoming, tool_first: bool, record: Record) -> None:
    """A new change in every session (untimed), then both sides bring it out."""
    change_each(home)
    pair(
        "collect-8",
        partial(tool_collect, bench, home),
        partial(baseline_collect, home),
        tool_first=tool_first,
        record=record,
    )
