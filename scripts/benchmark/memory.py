"""What a warm session holds: each process's RSS in the container, judged against a target in MB,
and its proportional share (PSS) while other warm sessions on the image run beside it."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from scripts.benchmark.common import Bench, Record, session_containers
from scripts.benchmark.figures import median
from scripts.benchmark.process import BenchError, run
from scripts.benchmark.send import FAKE_MODEL_PATH, send_manifest_text, tool_send

# What a warm session may hold: the memory group's target, in MB (MiB, as `docker stats` counts).
MEMORY_TARGET_MB = 120.0
# Warm sessions on the image while the first one is read: its PSS is its share of what they map
# together (Codex's code, the page cache of one image).
FLEET_SIZE = 4


@dataclass(frozen=True)
class ProcessMemory:
    """One process of the session: its command ("codex app-server", "python3 filare-agentd"),
    its RSS and the anonymous part of it, in MB. The rest of the RSS is file pages (program
    code), which every session on the image shares through the page cache. Its PSS counts each
    shared page divided by the number of processes that map it (None where the kernel does not
    say)."""

    command: str
    rss_mb: float
    anon_mb: float
    pss_mb: float | None = None


@dataclass(frozen=True)
class MemorySample:
    """What a warm session holds after one more turn: its processes, and its container's memory
    as `docker stats` shows it (the cgroup's usage less its inactive file cache)."""

    container_mb: float
    processes: tuple[ProcessMemory, ...]

    @property
    def rss_mb(self) -> float:
        return sum(p.rss_mb for p in self.processes)

    @property
    def anon_mb(self) -> float:
        return sum(p.anon_mb for p in self.processes)

    @property
    def pss_mb(self) -> float | None:
        known = [p.pss_mb for p in self.processes if p.pss_mb is not None]
        return sum(known) if known and len(known) == len(self.processes) else None

    def by_command(self) -> dict[str, tuple[float, float]]:
        """(RSS, anonymous) MB per command, the processes of one command added up."""
        totals: dict[str, tuple[float, float]] = {}
        for p in self.processes:
            rss, anon = totals.get(p.command, (0.0, 0.0))
            totals[p.command] = (rss + p.rss_mb, anon + p.anon_mb)
        return totals


DOCKER_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}


DOCKER_SIZE = re.compile(r"\s*([0-9.]+)\s*([KMGT]iB|B)\s*")


def parse_mem_usage(text: str) -> float:
    """MB in use, from `docker stats`'s MEM USAGE column ("97.4MiB / 1.944GiB")."""
    used = DOCKER_SIZE.fullmatch(text.partition("/")[0])
    if used is None:
        raise ValueError(f"not a docker stats memory usage: {text!r}")
    return float(used[1]) * DOCKER_SIZE_UNITS[used[2]] / (1 << 20)


# Run by the image's python3 in the session's container: each other process's argv, VmRSS and
# RssAnon (kB) from /proc, and its Pss (kB) from smaps_rollup or null, as JSON. Kernel threads
# (no VmRSS) and processes gone meanwhile are left out, and so is this reader itself.
PROCESS_READER = """\
import json, os
found = []
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == os.getpid():
        continue
    try:
        with open(f"/proc/{pid}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            argv = [a.decode(errors="replace") for a in cmdline.read().split(b"\\0") if a]
    except OSError:
        continue
    pss = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    if "VmRSS" in fields and "RssAnon" in fields:
        kb = [int(fields[k].split()[0]) for k in ("VmRSS", "RssAnon")]
        found.append([argv, *kb, pss])
print(json.dumps(found))
"""


def parse_processes(output: str) -> tuple[ProcessMemory, ...]:
    """The processes PROCESS_READER printed. A command is shown by the names of its program and
    first argument ("python3 filare-agentd", "codex app-server")."""
    try:
        found = json.loads(output)
    except ValueError:
        raise ValueError(f"not a process list: {output[:80]!r}") from None
    processes = []
    for entry in found if isinstance(found, list) else [found]:
        match entry:
            case [list() as argv, int(rss), int(anon), (int() | None) as pss] if all(
                isinstance(a, str) for a in argv
            ):
                command = " ".join(Path(word).name for word in argv[:2]) or "?"
                share = None if pss is None else pss / 1024
                processes.append(ProcessMemory(command, rss / 1024, anon / 1024, share))
            case _:
                raise ValueError(f"not a process entry: {str(entry)[:80]!r}")
    return tuple(processes)


@dataclass(frozen=True)
class MemoryRow:
    """The memory group's figures, medians over the counted rounds. The target judges the RSS of
    all the session's processes: what `ps` shows a session holding."""

    samples: tuple[MemorySample, ...]
    target_mb: float = MEMORY_TARGET_MB

    @property
    def rss_median(self) -> float:
        return median([s.rss_mb for s in self.samples])

    @property
    def anon_median(self) -> float:
        return median([s.anon_mb for s in self.samples])

    @property
    def container_median(self) -> float:
        return median([s.container_mb for s in self.samples])

    @property
    def pss_median(self) -> float | None:
        known = [s.pss_mb for s in self.samples if s.pss_mb is not None]
        return median(known) if known else None

    @property
    def met(self) -> bool:
        return self.rss_median <= self.target_mb

    def process_medians(self) -> list[tuple[str, float, float]]:
        """Each command's median RSS and anonymous MB (0 in a round where it did not run),
        largest RSS first."""
        totals = [s.by_command() for s in self.samples]
        names = dict.fromkeys(name for t in totals for name in t)
        medians = [
            (
                name,
                median([t.get(name, (0.0, 0.0))[0] for t in totals]),
                median([t.get(name, (0.0, 0.0))[1] for t in totals]),
            )
            for name in names
        ]
        return sorted(medians, key=lambda m: -m[1])

    def markdown(self) -> str:
        met = "yes" if self.met else "**no**"
        lines = [
            "| what | RSS, median MB | of it anonymous | target | met |",
            "|---|---:|---:|---:|---|",
            f"| the session's processes | {self.rss_median:.1f} | {self.anon_median:.1f} "
            f"| ≤ {self.target_mb:g} | {met} |",
        ]
        lines += [
            f"| `{name}` | {rss:.1f} | {anon:.1f} | - | - |"
            for name, rss, anon in self.process_medians()
        ]
        lines += [f"| the container (`docker stats`) | {self.container_median:.1f} | - | - | - |"]
        if self.pss_median is not None:
            lines += [
                f"| its share (PSS) with {FLEET_SIZE} warm sessions on the image "
                f"| {self.pss_median:.1f} | - | - | - |"
            ]
        return "\n".join(lines)

    def as_json(self) -> dict[str, object]:
        return {
            "rss_mb": [s.rss_mb for s in self.samples],
            "rss_median_mb": self.rss_median,
            "anon_median_mb": self.anon_median,
            "container_mb": [s.container_mb for s in self.samples],
            "container_median_mb": self.container_median,
            "pss_mb": [s.pss_mb for s in self.samples],
            "pss_median_mb": self.pss_median,
            "fleet_size": FLEET_SIZE,
            "processes_median_mb": {
                name: {"rss": rss, "anon": anon} for name, rss, anon in self.process_medians()
            },
            "target_mb": self.target_mb,
            "met": self.met,
        }


@dataclass
class MemoryProbe:
    """The memory group's session on the real image, and what it held after each of its turns,
    the warm-up round's first."""

    registry: Path
    session: str
    container: str
    samples: list[MemorySample] = field(default_factory=list)

    def row(self) -> MemoryRow:
        """The counted rounds' figures (the warm-up round's sample left out)."""
        return MemoryRow(tuple(self.samples[1:]))


def prepare_memory(bench: Bench, image: str, stack: contextlib.ExitStack) -> MemoryProbe:
    """Serve the scripted model, start `FLEET_SIZE` sessions on the real image and give each a
    first turn (untimed): from then on their agent daemons keep Codex running, as warm sessions
    do. The first one is the one read."""
    if str(FAKE_MODEL_PATH) not in sys.path:
        sys.path.insert(0, str(FAKE_MODEL_PATH))
    from filare_testing.fake_model import API_KEY_ENV, FakeModel, write_codex_home

    fake = stack.enter_context(FakeModel(keep_bodies=False))
    outputs = bench.project / "outputs"
    write_codex_home(outputs / "codex-memory", fake.container_url)
    (outputs / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    fleet = [f"memory-{bench.run_id[:6]}-{n}" for n in range(1, FLEET_SIZE + 1)]
    manifest = bench.project / "memory.yml"
    manifest.write_text(send_manifest_text(fleet, image, codex_dir="outputs/codex-memory"))
    registry = bench.root / "state-memory"
    bench.inv_run("session.start", "--manifest", str(manifest), state=registry)
    containers = session_containers(registry)
    if not set(fleet) <= set(containers):
        raise BenchError(f"session.start of the memory group left not all of {fleet} running")
    tool_send(bench, registry, fleet)
    return MemoryProbe(registry, fleet[0], containers[fleet[0]])


def read_memory(container: str) -> MemorySample:
    """The container's memory as `docker stats` shows it, then each of its processes' memory
    (read from /proc by the image's python3, which leaves itself out)."""
    stats = run(["docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", container])
    listed = run(["docker", "exec", container, "python3", "-c", PROCESS_READER])
    try:
        used = parse_mem_usage(stats.stdout.strip())
        processes = parse_processes(listed.stdout)
    except ValueError as exc:
        raise BenchError(f"{container}: {exc}") from None
    return MemorySample(used, processes)


def round_memory(bench: Bench, probe: MemoryProbe, tool_first: bool, record: Record) -> None:
    """One more turn in the warm session, then what it holds; no side is timed (no `record`)."""
    tool_send(bench, probe.registry, [probe.session])
    probe.samples.append(read_memory(probe.container))
