"""start-1, start-8, stop-8, list-8 and start-32: the tool's
lifecycle against the `docker run` it makes."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from scripts.benchmark.cases import CASE_BY_NAME
from scripts.benchmark.common import Bench, Record, after_startup, pair, running_containers
from scripts.benchmark.figures import Measurement
from scripts.benchmark.process import BenchError, run, run_each
from scripts.benchmark.settings import REGISTRY_LABEL, ROLE, RUN_LABEL, SMOKE_TAG


def parse_dry_run(output: str) -> dict[str, list[str]]:
    """Session id → docker argv, from the `# <id>: docker run ...` lines of `--dry-run`."""
    argvs: dict[str, list[str]] = {}
    for line in output.splitlines():
        if not line.startswith("# "):
            continue
        session_id, separator, command = line[2:].partition(": ")
        if not separator:
            raise ValueError(f"dry-run line without '<id>: ': {line!r}")
        argv = shlex.split(command)
        if argv[:2] != ["docker", "run"]:
            raise ValueError(f"dry-run line is not a docker run command: {line!r}")
        argvs[session_id] = argv
    if not argvs:
        raise ValueError("the dry-run printed no '# <id>: docker run ...' line")
    return argvs


def baseline_argv(
    argv: Sequence[str], *, name: str, tool_registry: Path, registry: Path, run_id: str
) -> list[str]:
    """The tool's `docker run` argv, made the baseline's: another container name, its own
    `filare.registry` (and SSH folder under it) and a `bench.run` label; every other flag,
    label, mount, env file and the user stay as the tool would run them."""
    tool_label = f"{REGISTRY_LABEL}={tool_registry}"
    tool_prefix = f"{tool_registry}/"
    out = [*argv[:2], "--label", f"{RUN_LABEL}={run_id}"]
    renamed = relabelled = False
    rest = list(argv[2:])
    for index, arg in enumerate(rest):
        if index > 0 and rest[index - 1] == "--name":
            out.append(name)
            renamed = True
        elif arg == tool_label:
            out.append(f"{REGISTRY_LABEL}={registry}")
            relabelled = True
        elif arg.startswith(tool_prefix):
            out.append(f"{registry}/{arg.removeprefix(tool_prefix)}")
        else:
            out.append(arg)
    if not (renamed and relabelled):
        raise ValueError(f"no --name or {tool_label} label in {shlex.join(argv)}")
    return out


@dataclass(frozen=True)
class Fleet:
    """A manifest of sessions with a registry of its own (so `session.list` shows exactly them),
    and the baseline's container name and argv for each session."""

    manifest: Path
    registry: Path
    baseline_registry: Path
    baseline_names: tuple[str, ...]
    baseline_argvs: tuple[tuple[str, ...], ...]

    @property
    def size(self) -> int:
        return len(self.baseline_names)

    @property
    def label(self) -> str:
        return f"label={REGISTRY_LABEL}={self.registry}"

    @property
    def baseline_label(self) -> str:
        return f"label={REGISTRY_LABEL}={self.baseline_registry}"


def manifest_text(prefix: str, size: int, contain: str = "egress: open") -> str:
    """Sessions on the smoke image; `egress: open` unless `contain` says otherwise (the
    baseline's `docker run` joins the shared bridge, which needs no network made for it)."""
    lines = [
        "defaults:",
        f"  image: {SMOKE_TAG}",
        "  ssh_key: outputs/id",
        "  env_file: outputs/bench.env",
        "  codex_dir: outputs/codex-home",
        "  resources: {cpus: 0.5, memory: 256m}",
        *([f"  {contain}"] if contain else []),
        "sessions:",
    ]
    for n in range(1, size + 1):
        sid = f"{prefix}{n:02d}"
        lines.append(
            f"  - {{id: {sid}, role: {ROLE}, branch: bench/{sid}, workspace: outputs/ws/{sid}}}"
        )
    return "\n".join(lines) + "\n"


def make_fleet(bench: Bench, prefix: str, size: int, contain: str = "egress: open") -> Fleet:
    """Write the manifest, ask the tool for its docker argv (`--dry-run`), derive the baseline's."""
    manifest = bench.project / f"{prefix}.yml"
    manifest.write_text(manifest_text(prefix, size, contain))
    registry = bench.root / f"state-{prefix}"
    baseline_registry = bench.root / f"baseline-{prefix}"
    dry_run = bench.inv_run(
        "session.start", "--manifest", str(manifest), "--dry-run", state=registry
    )
    names, argvs = [], []
    for sid, argv in parse_dry_run(dry_run.stdout).items():
        name = f"bench-{bench.run_id[:8]}-{sid}"
        names.append(name)
        argvs.append(
            tuple(
                baseline_argv(
                    argv,
                    name=name,
                    tool_registry=registry,
                    registry=baseline_registry,
                    run_id=bench.run_id,
                )
            )
        )
        fill_ssh_dir(baseline_registry / ROLE / sid / "ssh", bench.project / "outputs" / "id")
    if len(names) != size:
        raise BenchError(f"--dry-run printed {len(names)} commands for {size} sessions")
    fleet = Fleet(manifest, registry, baseline_registry, tuple(names), tuple(argvs))
    # Seed the workspaces (and make the Codex home) before anything is timed, so that neither
    # side seeds and Docker never creates a bind-mount source itself.
    tool_start(bench, fleet)
    tool_stop(bench, fleet)
    return fleet


def fill_ssh_dir(folder: Path, key: Path) -> None:
    """The baseline's SSH folder, filled once as the launch script fills the tool's each start."""
    folder.mkdir(parents=True, mode=0o700)
    shutil.copyfile(key, folder / "id_rsa")
    (folder / "id_rsa").chmod(0o600)
    (folder / "config").write_text("Host *\n  IdentityFile /home/agent/.ssh/id_rsa\n")
    (folder / "config").chmod(0o600)


def tool_start(bench: Bench, fleet: Fleet, others: int = 0) -> Measurement:
    """`others`: sessions of another manifest running in the fleet's state folder."""
    result = bench.inv_run("session.start", "--manifest", str(fleet.manifest), state=fleet.registry)
    started = sum("  started  " in line for line in result.stdout.splitlines())
    running = running_containers(fleet.label) - others
    if started != fleet.size or running != fleet.size:
        raise BenchError(f"session.start: {started} started, {running} running, not {fleet.size}")
    return result.measurement


def tool_list(bench: Bench, fleet: Fleet) -> Measurement:
    result = bench.inv_run("session.list", state=fleet.registry)
    if sum("  running  " in line for line in result.stdout.splitlines()) != fleet.size:
        raise BenchError(f"session.list does not show {fleet.size} running sessions")
    return result.measurement


def tool_stop(bench: Bench, fleet: Fleet, others: int = 0) -> Measurement:
    result = bench.inv_run("session.stop", "--manifest", str(fleet.manifest), state=fleet.registry)
    if running_containers(fleet.label) != others:
        raise BenchError("session.stop left containers running")
    return result.measurement


def baseline_start(fleet: Fleet) -> Measurement:
    measurement = run_each(fleet.baseline_argvs)
    if running_containers(fleet.baseline_label) != fleet.size:
        raise BenchError(f"the baseline's docker run did not leave {fleet.size} running")
    return measurement


def baseline_list(fleet: Fleet) -> Measurement:
    result = run(["docker", "ps", "--all", "--no-trunc", "--filter", fleet.baseline_label])
    if len(result.stdout.splitlines()) != fleet.size + 1:
        raise BenchError(f"docker ps does not show {fleet.size} containers")
    return result.measurement


def baseline_remove(fleet: Fleet) -> Measurement:
    measurement = run_each([["docker", "rm", "-f", name] for name in fleet.baseline_names])
    if running_containers(fleet.baseline_label):
        raise BenchError("the baseline's docker rm -f left containers running")
    return measurement


def engine_stop(fleet: Fleet) -> Measurement:
    """The two calls `session.stop` makes (`engine.stop_containers`), on the tool's running
    containers of the fleet, found untimed."""
    listed = run(["docker", "ps", "-q", "--no-trunc", "--filter", fleet.label])
    ids = listed.stdout.split()
    if len(ids) != fleet.size:
        raise BenchError(f"{len(ids)} of the fleet's {fleet.size} containers are running")
    measurement = run_each(
        [["docker", "stop", "--time", "10", *ids], ["docker", "rm", "--force", "--volumes", *ids]]
    )
    if running_containers(fleet.label):
        raise BenchError("docker stop and docker rm left containers running")
    return measurement


def round_start(bench: Bench, fleet: Fleet, case: str, tool_first: bool, record: Record) -> None:
    """Start the fleet on both sides; the untimed clean-up is what the other side would do.
    A case whose baseline counts Invoke's start-up (start-1) runs it before the docker runs."""
    tool = partial(tool_start, bench, fleet)
    baseline: Callable[[], Measurement] = partial(baseline_start, fleet)
    if CASE_BY_NAME[case].startup:
        baseline = partial(after_startup, bench, baseline)
    pair(case, tool, baseline, tool_first=tool_first, record=record)
    tool_stop(bench, fleet)
    baseline_remove(fleet)


def round_fleet(bench: Bench, fleet: Fleet, tool_first: bool, record: Record) -> None:
    """start-8, list-8 and stop-8, each a pair, on the sessions the previous pair left; then
    stop-8's engine calls alone."""
    cases: list[tuple[str, Callable[[], Measurement], Callable[[], Measurement]]] = [
        ("start-8", partial(tool_start, bench, fleet), partial(baseline_start, fleet)),
        (
            "list-8",
            partial(tool_list, bench, fleet),
            partial(after_startup, bench, partial(baseline_list, fleet)),
        ),
        ("stop-8", partial(tool_stop, bench, fleet), partial(baseline_remove, fleet)),
    ]
    for case, tool, baseline in cases:
        pair(case, tool, baseline, tool_first=tool_first, record=record)
    # stop-8's engine calls alone, on the fleet started again (untimed); `session.stop` then
    # records the sessions stopped, their containers gone already.
    tool_start(bench, fleet)
    baseline_start(fleet)
    pair(
        "stop-8-engine",
        partial(engine_stop, fleet),
        partial(baseline_remove, fleet),
        tool_first=tool_first,
        record=record,
    )
    tool_stop(bench, fleet)
