"""Benchmark the session commands against plain Docker on the tiny offline image.

Each case times the command a user types (`inv ...` from this virtualenv) against a baseline that
does the same container work with Docker alone. The baseline's `docker run` argv is the one
`inv session.start --dry-run` prints, so both sides use the same flags, labels, mounts, env file
and user; only the container name, the `filare.registry` label value and the SSH folder differ
(so the two sides never see each other's containers), and the baseline carries one extra
`bench.run` label.

The `collect` group brings the small changes of 8 sessions on the real Codex image home with one
`inv session.collect --all`, against eight `docker exec … git bundle create` of the same
branches typed one after another (the bundle a person would make to carry the work out by hand).

The `send` group runs real Codex turns in sessions on the real Codex image (`--codex-image`),
against a scripted model this process serves (`agents/src/orchestrator/scripted_model.py`);
the baseline types the same `codex exec` by hand in the same containers. The `memory` group
reads what a warm session on that image holds (its container's memory, and each process's RSS)
after each turn; it has no baseline: its target is in MB. Without `--only`, the groups on the
real image are left out, with a note, when that image is absent.

The `engines` group (`--only engines`; root: it starts a Docker engine of its own, as the agent
tests do) times eight sessions spread over two engines against the same eight on one: the
tool on both sides, since spreading is what is measured.

Tool and baseline alternate within every round, and the side that goes first alternates from
round to round; one warm-up round is not counted. The report compares medians as ratios: absolute
times depend on the machine and are never judged.

    uv run python scripts/bench.py [--rounds 5] [--only GROUP]... [--check] [--codex-image TAG]
    uv run nox -s bench -- --rounds 7 --check

Writes outputs/bench/results.md and results.json and prints the table. Exit code 0 whatever the
figures (it is a measurement, not a test); with --check, 1 when a target is missed; 2 when the
benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
LAUNCH_SCRIPT = REPOSITORY / "scripts" / "run_codex_container.sh"
DEFAULT_OUTPUT = REPOSITORY / "outputs" / "bench"
SMOKE_TAG = "filare-codex:smoke"
SMOKE_DOCKERFILE = "docker/Dockerfile.smoke"
CODEX_TAG = "filare-codex"  # what `inv codex.build` makes
ROLE = "bench"
RUN_LABEL = "bench.run"
REGISTRY_LABEL = "filare.registry"
PROXY_REGISTRY_LABEL = "filare.egress-registry"
COMMAND_TIMEOUT = 600.0
SEED_FILES = 5_000
SEED_BYTES = 100_000_000
SEED_FOLDERS = 50
# The send group: the message of every turn, what the scripted model answers, how many sessions.
SEND_MESSAGE = "Answer in one word."
SEND_REPLY = "ok"  # FakeModel's default reply, given to every turn
SEND_SESSIONS = 8
# The `transcript` group: a transcript as big as a turn's may be, of lines that are no events.
TRANSCRIPT_BYTES = 64 << 20
TRANSCRIPT_SESSIONS = ("big", "small")
COLLECT_SESSIONS = 8
CONTAINER_WORKSPACE = "/home/agent/workspace"
# The flags docker/filare-turn gives `codex exec`; the baseline types the same ones.
CODEX_EXEC_FLAGS = ("--json", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check")
FAKE_MODEL_PATH = REPOSITORY / "agents" / "testing"


# --- what is measured --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One comparison: what the tool runs, what the baseline runs, and the ratio to stay under."""

    name: str
    tool: str
    baseline: str
    target: float | None  # None: reported (scaling), not judged
    sessions: int = 0  # sessions started by one command, for the scaling table
    # The tool is one `inv` command doing the baseline's work: its best possible ratio is
    # (Invoke's start-up + baseline) / baseline, with the start-up measured by `inv-list`.
    floored: bool = False


CASES = (
    Case(
        "start-1",
        "inv session.start, 1 session, workspace already seeded",
        "docker run -d with the argv --dry-run prints",
        1.8,
        sessions=1,
        floored=True,
    ),
    Case(
        "start-8",
        "inv session.start, 8 sessions in one command",
        "8 docker run -d, one after another",
        0.8,
        sessions=8,
    ),
    Case(
        "stop-8",
        "inv session.stop --manifest, 8 running (graceful)",
        "8 docker rm -f, one after another",
        1.0,
    ),
    Case(
        "list-8",
        "inv session.list, 8 running",
        "docker ps --all --no-trunc --filter label=filare.registry=…",
        2.5,
        floored=True,
    ),
    Case(
        "send-1",
        "inv session.send --wait, 1 turn in a running session (real Codex, scripted model)",
        "docker exec … codex exec resume --json … THREAD - in the same container",
        1.15,
        floored=True,
    ),
    Case(
        "send-8",
        "inv session.send --wait, 8 sessions' turns in one command",
        "8 docker exec … codex exec resume …, one after another",
        0.5,
    ),
    Case(
        "send-8-par",
        "the same inv session.send --wait of 8 turns (send-8's tool run)",
        "8 docker exec … codex exec resume … at once",
        None,
    ),
    Case("inv-list", "inv --list, this project", "inv --list, an empty Invoke collection", 1.3),
    Case(
        "seed",
        "run_codex_container.sh --seed-only, 5,000 files / 100 MB",
        "rsync -a of the same repository",
        1.1,
    ),
    Case(
        "list-64mb",
        "inv session.list, 2 sessions, one with a 64 MB transcript of `{}` lines",
        "inv session.list, the same 2 sessions with one-line transcripts",
        1.3,
    ),
    Case(
        "log-64mb",
        "inv session.log --tail 3 of the 64 MB transcript",
        "inv session.log --tail 3 of a one-line transcript",
        None,
    ),
    Case(
        "list-8-engines",
        "inv session.list, 8 running over two engines (4 + 4)",
        "inv session.list, the same 8 running on one engine",
        1.2,
    ),
    Case(
        "start-8-engines",
        "inv session.start, 8 sessions placed over two engines (a pool)",
        "inv session.start, the same 8 sessions on one engine",
        None,
    ),
    Case(
        "collect-8",
        "inv session.collect --all, 8 sessions with a small commit and a new file each",
        "8 docker exec … git bundle create of the session's branch, one after another",
        2.0,
    ),
    Case(
        "start-egress",
        "inv session.start, 1 session, default egress (own network, through the proxy)",
        "the same inv session.start with egress: open (the shared bridge)",
        1.1,
    ),
    Case(
        "send-egress",
        "inv session.send --wait, 1 turn, the model reached through the egress proxy",
        "the same inv session.send --wait in a session with egress: open",
        1.05,
    ),
    Case(
        "start-runsc",
        "inv session.start, 1 session with runtime: runsc (gVisor)",
        "the same inv session.start with the engine's default runtime (runc)",
        None,
    ),
    Case(
        "send-runsc",
        "inv session.send --wait, 1 turn in a session under runsc",
        "the same inv session.send --wait in a session under runc",
        None,
    ),
    Case(
        "start-32",
        "inv session.start, 32 sessions in one command",
        "32 docker run -d, one after another",
        None,
        sessions=32,
    ),
)
CASE_BY_NAME = {case.name: case for case in CASES}

# Cases measured together share a lifecycle (start-8 leaves the sessions that list-8 lists and
# stop-8 stops), so --only selects groups.
GROUPS: dict[str, tuple[str, ...]] = {
    "start-1": ("start-1",),
    "fleet": ("start-8", "list-8", "stop-8"),
    "scale": ("start-32",),
    "send": ("send-1", "send-8", "send-8-par"),
    "memory": (),  # no ratio: a figure in MB, kept by its MemoryProbe
    "inv-list": ("inv-list",),
    "seed": ("seed",),
    "transcript": ("list-64mb", "log-64mb"),
    "engines": ("start-8-engines", "list-8-engines"),
    "collect": ("collect-8",),
    "contain": ("start-egress", "send-egress", "start-runsc", "send-runsc"),
}
# Groups that run the smoke image (built when absent), and those that need the real Codex image.
SMOKE_GROUPS = frozenset({"start-1", "fleet", "scale", "engines", "contain"})
CODEX_GROUPS = frozenset({"send", "collect", "memory", "contain"})
# Groups measured only when asked for with --only: `engines` needs root (an engine of its
# own), `contain` a registered runsc and the real image.
ASKED_ONLY = frozenset({"engines", "contain"})
# The bench's own test engine (index of `filare_testing.engines.OwnEngine`) and its context.
ENGINE_INDEX = 13
ENGINE_CONTEXT = f"filare-test-{ENGINE_INDEX}"
ENGINES_SESSIONS = 8
# What a warm session may hold: the memory group's target, in MB (MiB, as `docker stats` counts).
MEMORY_TARGET_MB = 120.0


@dataclass(frozen=True)
class Measurement:
    """Wall time of one command (or one sequence) and the peak RSS of its process tree."""

    seconds: float
    max_rss_kb: int


@dataclass
class Samples:
    """The counted measurements of one case, per side, in round order."""

    tool: list[Measurement] = field(default_factory=list)
    baseline: list[Measurement] = field(default_factory=list)


# --- pure parts: figures and their rendering ---------------------------------------------------


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return statistics.median(values)


def ratio(tool: float, baseline: float) -> float:
    """tool / baseline; infinite when the baseline took no measurable time."""
    return tool / baseline if baseline > 0 else math.inf


@dataclass(frozen=True)
class Row:
    """One line of the report: both medians, their ratio, the target and whether it is met."""

    case: Case
    tool_seconds: tuple[float, ...]
    baseline_seconds: tuple[float, ...]
    tool_max_rss_kb: int
    baseline_max_rss_kb: int
    floor: float | None = None  # the best ratio Invoke's start-up leaves, when known

    @classmethod
    def from_samples(cls, case: Case, samples: Samples) -> Row:
        return cls(
            case,
            tuple(m.seconds for m in samples.tool),
            tuple(m.seconds for m in samples.baseline),
            max((m.max_rss_kb for m in samples.tool), default=0),
            max((m.max_rss_kb for m in samples.baseline), default=0),
        )

    @property
    def tool_median(self) -> float:
        return median(self.tool_seconds)

    @property
    def baseline_median(self) -> float:
        return median(self.baseline_seconds)

    @property
    def ratio(self) -> float:
        return ratio(self.tool_median, self.baseline_median)

    @property
    def met(self) -> bool | None:
        """None when the case has no target."""
        return None if self.case.target is None else self.ratio <= self.case.target

    def markdown(self) -> str:
        target = "-" if self.case.target is None else f"≤ {format_target(self.case.target)}"
        met = {None: "-", True: "yes", False: "**no**"}[self.met]
        cells = [
            self.case.name,
            f"{self.tool_median:.3f}",
            f"{self.baseline_median:.3f}",
            format_ratio(self.ratio),
            "-" if self.floor is None else format_ratio(self.floor),
            target,
            met,
            f"{self.tool_max_rss_kb / 1024:.1f} / {self.baseline_max_rss_kb / 1024:.1f}",
        ]
        return "| " + " | ".join(cells) + " |"

    def as_json(self) -> dict[str, object]:
        return {
            "case": self.case.name,
            "tool": self.case.tool,
            "baseline": self.case.baseline,
            "tool_seconds": list(self.tool_seconds),
            "baseline_seconds": list(self.baseline_seconds),
            "tool_median_seconds": self.tool_median,
            "baseline_median_seconds": self.baseline_median,
            "ratio": self.ratio if math.isfinite(self.ratio) else None,
            "floor": self.floor if self.floor is None or math.isfinite(self.floor) else None,
            "target": self.case.target,
            "met": self.met,
            "tool_max_rss_kb": self.tool_max_rss_kb,
            "baseline_max_rss_kb": self.baseline_max_rss_kb,
        }


def format_target(value: float) -> str:
    """1.8 → "1.8", 1.15 → "1.15", 1.0 → "1.0"."""
    text = f"{value:.2f}"
    return text[:-1] if text.endswith("0") else text


def format_ratio(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "∞"


RESULT_HEADER = (
    "| case | tool, median s | baseline, median s | ratio | floor | target | met "
    "| peak RSS MB, tool / baseline |\n|---|---:|---:|---:|---:|---:|---|---:|"
)
SCALING_HEADER = (
    "| sessions | tool, median s | tool s/session | baseline, median s | baseline s/session "
    "| ratio |\n|---:|---:|---:|---:|---:|---:|"
)


def results_table(rows: Sequence[Row]) -> str:
    """Every case as a Markdown table, except those kept for the scaling table only."""
    shown = (row for row in rows if row.case.target is not None or not row.case.sessions)
    return "\n".join([RESULT_HEADER, *(row.markdown() for row in shown)])


def scaling_table(rows: Sequence[Row]) -> str:
    """Seconds per session when one command starts 1, 8 and 32 sessions."""
    lines = [SCALING_HEADER]
    for row in sorted((r for r in rows if r.case.sessions), key=lambda r: r.case.sessions):
        n = row.case.sessions
        lines.append(
            f"| {n} | {row.tool_median:.3f} | {row.tool_median / n:.3f} "
            f"| {row.baseline_median:.3f} | {row.baseline_median / n:.3f} "
            f"| {format_ratio(row.ratio)} |"
        )
    return "\n".join(lines)


def with_floors(rows: Sequence[Row]) -> list[Row]:
    """Rows of floored cases with their floor, when `inv-list` measured Invoke's start-up."""
    startup = next((r.baseline_median for r in rows if r.case.name == "inv-list"), None)
    if startup is None:
        return list(rows)
    return [
        dataclasses.replace(r, floor=ratio(startup + r.baseline_median, r.baseline_median))
        if r.case.floored
        else r
        for r in rows
    ]


def legend(rows: Sequence[Row]) -> str:
    return "\n".join(f"- `{r.case.name}`: {r.case.tool} vs {r.case.baseline}" for r in rows)


def missed(rows: Iterable[Row]) -> list[Row]:
    return [row for row in rows if row.met is False]


# --- pure parts: the memory of a warm session ---------------------------------------------------


@dataclass(frozen=True)
class ProcessMemory:
    """One process of the session: its command ("codex app-server", "python3 filare-agentd"),
    its RSS and the anonymous part of it, in MB. The rest of the RSS is file pages (program
    code), which every session on the image shares through the page cache."""

    command: str
    rss_mb: float
    anon_mb: float


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
# RssAnon (kB) from /proc, as JSON. Kernel threads (no VmRSS) and processes gone meanwhile are
# left out, and so is this reader itself.
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
    if "VmRSS" in fields and "RssAnon" in fields:
        kb = [int(fields[k].split()[0]) for k in ("VmRSS", "RssAnon")]
        found.append([argv, *kb])
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
            case [list() as argv, int(rss), int(anon)] if all(isinstance(a, str) for a in argv):
                command = " ".join(Path(word).name for word in argv[:2]) or "?"
                processes.append(ProcessMemory(command, rss / 1024, anon / 1024))
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
        return "\n".join(lines)

    def as_json(self) -> dict[str, object]:
        return {
            "rss_mb": [s.rss_mb for s in self.samples],
            "rss_median_mb": self.rss_median,
            "anon_median_mb": self.anon_median,
            "container_mb": [s.container_mb for s in self.samples],
            "container_median_mb": self.container_median,
            "processes_median_mb": {
                name: {"rss": rss, "anon": anon} for name, rss, anon in self.process_medians()
            },
            "target_mb": self.target_mb,
            "met": self.met,
        }


# --- pure parts: the baseline's argv -----------------------------------------------------------


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


# --- pure parts: a Codex turn typed by hand, and what each side printed -----------------------


def codex_turn_argv(container: str, thread: str | None) -> list[str]:
    """One Codex turn as a person types it: `docker exec` into the session's container, in its
    workspace, `codex exec` with the flags `filare-turn` gives it and the prompt on stdin;
    `thread` continues that conversation (`codex exec resume`), as `filare-turn` does."""
    resume = ["resume"] if thread else []
    conversation = [thread] if thread else []
    return [
        *("docker", "exec", "-i", "-w", CONTAINER_WORKSPACE, container),
        *("codex", "exec", *resume, *CODEX_EXEC_FLAGS, *conversation, "-"),
    ]


@dataclass(frozen=True)
class CodexTurn:
    """What `codex exec --json` printed of one turn."""

    thread_id: str | None
    final_message: str | None
    completed: bool


def parse_codex_events(output: str) -> CodexTurn:
    """The conversation, the last agent message and whether the turn completed, from the JSON
    lines `codex exec --json` prints (anything else on stdout is skipped)."""
    thread = message = None
    completed = False
    for line in output.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        kind, item = event.get("type"), event.get("item")
        if kind == "thread.started" and isinstance(event.get("thread_id"), str):
            thread = event["thread_id"]
        elif kind == "item.completed" and isinstance(item, dict):
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                message = item["text"]
        elif kind in {"turn.completed", "turn.failed"}:
            completed = kind == "turn.completed"
    return CodexTurn(thread, message, completed)


def sent_results(output: str) -> dict[str, tuple[str, str]]:
    """Session id → (RESULT, MESSAGE), from the table `session.send` prints."""
    found: dict[str, tuple[str, str]] = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip(), maxsplit=3)
        if len(cells) >= 3 and cells[0] != "SESSION":
            found[cells[0]] = (cells[2], cells[3] if len(cells) > 3 else "")
    return found


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


def missing_codex_image(tag: str) -> str:
    build = "uv run inv codex.build" + ("" if tag == CODEX_TAG else f" --tag {tag}")
    return (
        f"the send, collect and memory groups need the real Codex image {tag!r}, which the "
        f"engine does not have: build it with '{build}' ('uv run inv codex.base' first when "
        "there is no registry), or name another with --codex-image"
    )


def send_manifest_text(
    session_ids: Sequence[str],
    image: str,
    codex_dir: str = "outputs/codex-send",
    extra: Mapping[str, str] | None = None,
) -> str:
    """Sessions on the real image whose Codex talks to the scripted model (its Codex home is
    `codex_dir`, which names that model's address), with `egress: open` (the send group
    measures the tool, not containment); `extra` adds fields to a session (`egress: ...`,
    `runtime: runsc`) by id."""
    lines = [
        "defaults:",
        f"  image: {image}",
        "  ssh_key: outputs/id",
        "  env_file: outputs/model.env",
        f"  codex_dir: {codex_dir}",
        "  egress: open",
        "sessions:",
    ]
    lines += [
        f"  - {{id: {sid}, role: {ROLE}, branch: bench/{sid}, workspace: outputs/ws/{sid}"
        f"{(', ' + extra[sid]) if extra and sid in extra else ''}}}"
        for sid in session_ids
    ]
    return "\n".join(lines) + "\n"


# --- running commands ----------------------------------------------------------------------------


class BenchError(Exception):
    """A command the benchmark relies on failed: the figures would mean nothing."""


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    measurement: Measurement


def run(
    argv: Sequence[str],
    *,
    cwd: Path = REPOSITORY,
    env: Mapping[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
    stdin: Path | None = None,
) -> Completed:
    """Run argv (no shell) to completion, timing it and reading its peak RSS from wait4(2).

    The RSS is the largest of the process and the descendants it waited for (as `time -f %M`
    reports it): for `inv` that is Python itself unless a docker CLI it ran grew larger. It is
    never below this process's own peak RSS, which a child counts until it execs (about 17 MB,
    25 MB once the scripted model's HTTP server is imported), so the benchmark must stay small.
    Its stdin is the file `stdin` (read to its end, then closed), else nothing.
    """
    expired = threading.Event()
    with contextlib.ExitStack() as files:
        out = files.enter_context(tempfile.TemporaryFile())
        err = files.enter_context(tempfile.TemporaryFile())
        source = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=source,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _expire, (process.pid, expired))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C: end the command (it runs in its own session) first
            _kill_group(process.pid)
            os.wait4(process.pid, 0)
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Completed(
            tuple(argv),
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            Measurement(seconds, usage.ru_maxrss),
        )
    if expired.is_set():
        raise BenchError(f"{shlex.join(argv)}: no answer within {timeout:g} s")
    if check and result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        raise BenchError(f"{shlex.join(argv)}: {reason[0]}")
    return result


def _expire(pid: int, expired: threading.Event) -> None:
    expired.set()
    _kill_group(pid)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def run_each(argvs: Sequence[Sequence[str]]) -> Measurement:
    """Run commands one after another; the wall time of all, the largest peak RSS."""
    started = time.perf_counter()
    peaks = [run(argv).measurement.max_rss_kb for argv in argvs]
    return Measurement(time.perf_counter() - started, max(peaks, default=0))


def inv_command() -> list[str]:
    """This virtualenv's `inv` script, as a user of the checkout runs it."""
    script = Path(sys.executable).with_name("inv")
    return [str(script)] if script.exists() else [sys.executable, "-m", "invoke"]


# --- the inputs both sides use -------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """Temp folder, `inv` command and run id of one benchmark run."""

    root: Path
    run_id: str
    inv: tuple[str, ...]

    @classmethod
    def create(cls, work_dir: Path | None = None) -> Bench:
        root = Path(tempfile.mkdtemp(prefix="filare-bench-", dir=work_dir))
        return cls(root, uuid.uuid4().hex, tuple(inv_command()))

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def run_label(self) -> str:
        return f"{RUN_LABEL}={self.run_id}"

    def inv_run(
        self, *args: str, state: Path | None = None, cwd: Path = REPOSITORY, check: bool = True
    ) -> Completed:
        """`inv ARGS` from this virtualenv; `state` becomes `FILARE_STATE_DIR`."""
        env = dict(os.environ)
        # Measure what users run: Python with its bytecode caches (written by the warm-up round).
        # An environment that forbids them makes every run recompile every module it imports.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # Its own cache folder, warmed like a user's by the untimed first start, removed at the end.
        env["XDG_CACHE_HOME"] = str(self.root / "cache-home")
        if state is not None:
            env["FILARE_STATE_DIR"] = str(state)
        return run([*self.inv, *args], cwd=cwd, env=env, check=check)


def git(*args: str, cwd: Path) -> None:
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args], cwd=cwd)


def make_project(bench: Bench) -> None:
    """A small git repository for the manifests, with a key and an env file (ignored by git)."""
    project = bench.project
    (project / "src").mkdir(parents=True)
    (project / ".gitignore").write_text("outputs/\n")
    (project / "src" / "main.py").write_text("print('hello')\n")
    private = project / "outputs"
    private.mkdir()
    (private / "bench.env").write_text("BENCH=1\n")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(private / "id")])
    git("init", "-q", "-b", "main", cwd=project)
    git("add", ".", cwd=project)
    git("commit", "-qm", "bench project", cwd=project)


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


def make_empty_collection(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "tasks.py").write_text("from invoke import Collection\n\nns = Collection()\n")
    return folder


def ensure_image(bench: Bench) -> str:
    """The smoke image's id, built with the project's own task when it is absent."""
    found = image_id(SMOKE_TAG)
    if found is None:
        print(f"building {SMOKE_TAG} ...", file=sys.stderr)
        bench.inv_run("codex.build", "--dockerfile", SMOKE_DOCKERFILE, "--tag", SMOKE_TAG)
        found = image_id(SMOKE_TAG)
    if found is None:
        raise BenchError(f"{SMOKE_TAG} is still absent after building it")
    return found


def image_id(tag: str) -> str | None:
    """The image's id; None when the engine has no such image (any other failure is an error)."""
    try:
        found = run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], check=False)
    except OSError as exc:
        raise BenchError(f"docker: {exc.strerror or exc}") from None
    if found.returncode == 0:
        return found.stdout.strip()
    if "no such image" in found.stderr.lower():
        return None
    reason = found.stderr.strip().splitlines()[-1:] or [f"exit code {found.returncode}"]
    raise BenchError(f"docker image inspect {tag}: {reason[0]}")


@dataclass(frozen=True)
class Talk:
    """The send group's sessions, running on the real image, each with two conversations of the
    same length: the tool's (in its record) and the baseline's own (`threads`), which resumes it
    by hand in the same container."""

    registry: Path
    solo: str
    chorus: tuple[str, ...]
    containers: Mapping[str, str]  # session id → container name
    threads: Mapping[str, str]  # session id → the baseline's conversation in that container
    parallel_threads: Mapping[str, str]  # the same, for the turns typed all at once
    prompt: Path  # SEND_MESSAGE, the baseline's stdin


def prepare_send(bench: Bench, image: str, stack: contextlib.ExitStack) -> Talk:
    """Serve the scripted model, start the sessions (untimed), and give each side's first turn
    in each session, untimed too: the tool's starts the session's conversation, the baseline's
    starts its own, so both sides resume a conversation from then on."""
    if str(FAKE_MODEL_PATH) not in sys.path:
        sys.path.insert(0, str(FAKE_MODEL_PATH))
    from filare_testing.fake_model import API_KEY_ENV, FakeModel, write_codex_home

    # Every request gets its default reply, a plain "ok"; bodies are not kept, so the benchmark
    # (whose memory a child starts with, see `run`) does not grow with every turn.
    fake = stack.enter_context(FakeModel(keep_bodies=False))
    outputs = bench.project / "outputs"
    write_codex_home(outputs / "codex-send", fake.container_url)
    (outputs / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    prompt = bench.root / "prompt.txt"
    prompt.write_text(SEND_MESSAGE)
    # Ids of this run only: container names are global to the engine.
    tag = bench.run_id[:6]
    solo = f"send-{tag}-solo"
    chorus = tuple(f"send-{tag}-{n:02d}" for n in range(1, SEND_SESSIONS + 1))
    manifest = bench.project / "send.yml"
    manifest.write_text(send_manifest_text([solo, *chorus], image))
    registry = bench.root / "state-send"
    started = bench.inv_run("session.start", "--manifest", str(manifest), state=registry)
    count = sum("  started  " in line for line in started.stdout.splitlines())
    containers = session_containers(registry)
    if count != 1 + SEND_SESSIONS or sorted(containers) != sorted([solo, *chorus]):
        raise BenchError(f"session.start of the send group: {count} started, {len(containers)} run")
    tool_send(bench, registry, [solo, *chorus])

    def conversation(sid: str) -> str:
        result = run(codex_turn_argv(containers[sid], None), stdin=prompt)
        turn = parse_codex_events(result.stdout)
        if not (turn.completed and turn.final_message == SEND_REPLY and turn.thread_id):
            raise BenchError(f"codex exec in {containers[sid]}: {turn} ({result.stderr[-200:]})")
        return turn.thread_id

    threads = {sid: conversation(sid) for sid in [solo, *chorus]}
    parallel = {sid: conversation(sid) for sid in chorus}
    return Talk(registry, solo, chorus, containers, threads, parallel, prompt)


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
    """Serve the scripted model, start one session on the real image and give it a first turn
    (untimed): from then on its agent daemon keeps Codex running, as a warm session does."""
    if str(FAKE_MODEL_PATH) not in sys.path:
        sys.path.insert(0, str(FAKE_MODEL_PATH))
    from filare_testing.fake_model import API_KEY_ENV, FakeModel, write_codex_home

    fake = stack.enter_context(FakeModel(keep_bodies=False))
    outputs = bench.project / "outputs"
    write_codex_home(outputs / "codex-memory", fake.container_url)
    (outputs / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    sid = f"memory-{bench.run_id[:6]}"
    manifest = bench.project / "memory.yml"
    manifest.write_text(send_manifest_text([sid], image, codex_dir="outputs/codex-memory"))
    registry = bench.root / "state-memory"
    bench.inv_run("session.start", "--manifest", str(manifest), state=registry)
    containers = session_containers(registry)
    if sid not in containers:
        raise BenchError(f"session.start of the memory group left no running {sid}")
    tool_send(bench, registry, [sid])
    return MemoryProbe(registry, sid, containers[sid])


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


def session_containers(registry: Path) -> dict[str, str]:
    """Session id → name of its running container, for the sessions of `registry`."""
    listing = '{{.Label "filare.session"}}\t{{.Names}}'
    argv = ["docker", "ps", "--filter", f"label={REGISTRY_LABEL}={registry}", "--format", listing]
    lines = run(argv).stdout.splitlines()
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


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


# --- one side of each case -----------------------------------------------------------------------


def running_containers(label_filter: str) -> int:
    return len(run(["docker", "ps", "-q", "--filter", label_filter]).stdout.split())


def tool_start(bench: Bench, fleet: Fleet) -> Measurement:
    result = bench.inv_run("session.start", "--manifest", str(fleet.manifest), state=fleet.registry)
    started = sum("  started  " in line for line in result.stdout.splitlines())
    running = running_containers(fleet.label)
    if started != fleet.size or running != fleet.size:
        raise BenchError(f"session.start: {started} started, {running} running, not {fleet.size}")
    return result.measurement


def tool_list(bench: Bench, fleet: Fleet) -> Measurement:
    result = bench.inv_run("session.list", state=fleet.registry)
    if sum("  running  " in line for line in result.stdout.splitlines()) != fleet.size:
        raise BenchError(f"session.list does not show {fleet.size} running sessions")
    return result.measurement


def tool_stop(bench: Bench, fleet: Fleet) -> Measurement:
    result = bench.inv_run("session.stop", "--manifest", str(fleet.manifest), state=fleet.registry)
    if running_containers(fleet.label):
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


def tool_send(bench: Bench, registry: Path, session_ids: Sequence[str]) -> Measurement:
    """One `inv session.send --wait` of a turn in each session; each must complete with the
    scripted reply."""
    sessions = [arg for sid in session_ids for arg in ("--session", sid)]
    result = bench.inv_run(
        "session.send", *sessions, "--message", SEND_MESSAGE, "--wait", state=registry
    )
    got = sent_results(result.stdout)
    if got != {sid: ("completed", SEND_REPLY) for sid in session_ids}:
        raise BenchError(
            f"session.send --wait did not complete every turn with {SEND_REPLY!r}: {got}"
        )
    return result.measurement


def baseline_send(talk: Talk, session_ids: Sequence[str], *, at_once: bool = False) -> Measurement:
    """The same turns typed by hand, each resuming a conversation of the baseline's own in the
    session's container: one after another, or `at_once` (each in a thread, resuming a third
    conversation kept for that); checked once all have run."""
    threads = talk.parallel_threads if at_once else talk.threads

    def turn(sid: str) -> Completed:
        return run(codex_turn_argv(talk.containers[sid], threads[sid]), stdin=talk.prompt)

    started = time.perf_counter()
    if at_once:
        with ThreadPoolExecutor(max_workers=len(session_ids)) as pool:
            results = list(pool.map(turn, session_ids))
    else:
        results = [turn(sid) for sid in session_ids]
    seconds = time.perf_counter() - started
    for sid, result in zip(session_ids, results, strict=True):
        got = parse_codex_events(result.stdout)
        expected = CodexTurn(threads[sid], SEND_REPLY, completed=True)
        if got != expected:
            raise BenchError(f"codex exec resume in {talk.containers[sid]}: {got}, not {expected}")
    return Measurement(seconds, max(r.measurement.max_rss_kb for r in results))


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


# --- rounds --------------------------------------------------------------------------------------

Record = Callable[[str, str, Measurement], None]
Round = Callable[[bool, Record], None]


def pair(
    case: str,
    tool: Callable[[], Measurement],
    baseline: Callable[[], Measurement],
    *,
    tool_first: bool,
    record: Record,
) -> None:
    """Both sides of a case back to back, in the order this round asks for."""
    sides = [("tool", tool), ("baseline", baseline)]
    for side, action in sides if tool_first else sides[::-1]:
        record(case, side, action())


def round_start(bench: Bench, fleet: Fleet, case: str, tool_first: bool, record: Record) -> None:
    """Start the fleet on both sides; the untimed clean-up is what the other side would do."""
    tool = partial(tool_start, bench, fleet)
    pair(case, tool, partial(baseline_start, fleet), tool_first=tool_first, record=record)
    tool_stop(bench, fleet)
    baseline_remove(fleet)


def round_fleet(bench: Bench, fleet: Fleet, tool_first: bool, record: Record) -> None:
    """start-8, list-8 and stop-8, each a pair, on the sessions the previous pair left."""
    cases: list[tuple[str, Callable[[], Measurement], Callable[[], Measurement]]] = [
        ("start-8", partial(tool_start, bench, fleet), partial(baseline_start, fleet)),
        ("list-8", partial(tool_list, bench, fleet), partial(baseline_list, fleet)),
        ("stop-8", partial(tool_stop, bench, fleet), partial(baseline_remove, fleet)),
    ]
    for case, tool, baseline in cases:
        pair(case, tool, baseline, tool_first=tool_first, record=record)


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


def round_inv_list(bench: Bench, empty: Path, tool_first: bool, record: Record) -> None:
    def tool() -> Measurement:
        return bench.inv_run("--list").measurement

    def baseline() -> Measurement:
        # Invoke lists an empty collection by saying so and exiting 1, after the same work.
        result = bench.inv_run("--list", cwd=empty, check=False)
        if result.returncode != 0 and "No tasks found" not in result.stderr:
            raise BenchError(f"inv --list of an empty collection: {result.stderr.strip()}")
        return result.measurement

    pair("inv-list", tool, baseline, tool_first=tool_first, record=record)


def round_send(bench: Bench, talk: Talk, tool_first: bool, record: Record) -> None:
    """send-1 in the solo session, then send-8 in the eight others; each pair adds one turn to
    each side's conversation in every session it uses."""
    pair(
        "send-1",
        partial(tool_send, bench, talk.registry, [talk.solo]),
        partial(baseline_send, talk, [talk.solo]),
        tool_first=tool_first,
        record=record,
    )
    # send-8's tool run is also send-8-par's: the reference row compares it with the same turns
    # typed by hand all at once, which is as fast as this machine runs eight turns.
    sides: list[tuple[str, str, Callable[[], Measurement]]] = [
        ("send-8", "tool", partial(tool_send, bench, talk.registry, talk.chorus)),
        ("send-8", "baseline", partial(baseline_send, talk, talk.chorus)),
        ("send-8-par", "baseline", partial(baseline_send, talk, talk.chorus, at_once=True)),
    ]
    for case, side, action in sides if tool_first else sides[::-1]:
        measured = action()
        record(case, side, measured)
        if side == "tool":
            record("send-8-par", side, measured)


def make_transcript_registry(folder: Path, *, hostile: bool) -> Path:
    """A registry of two sessions with no container (`stale`), one turn each: with `hostile`,
    the first one's transcript is 64 MB of `{}` lines (what a session can write to slow the
    host's reads), else one line like the other's."""
    message = {"type": "item.completed", "item": {"type": "agent_message", "text": "done"}}
    for session_id in TRANSCRIPT_SESSIONS:
        session = folder / ROLE / session_id
        (session / "turns").mkdir(parents=True)
        (session / "agent" / "transcript").mkdir(parents=True)
        record = {
            "session_id": session_id,
            "role": ROLE,
            "owner": "bench",
            "status": "running",
            "container_name": f"filare-{ROLE}-{session_id}",
            "image": SMOKE_TAG,
            "workspace": str(folder / "ws"),
            "ssh_dir": str(session / "ssh"),
        }
        (session / "state.json").write_text(json.dumps(record))
        turn = {
            "session_id": session_id,
            "role": ROLE,
            "number": "0001",
            "kind": "message",
            "started_at": "2026-01-01T00:00:00+00:00",
            "container_id": "0" * 64,
            "thread_id": None,
        }
        (session / "turns" / "0001.json").write_text(json.dumps(turn))
        with (session / "agent" / "transcript" / "0001.jsonl").open("wb") as out:
            if hostile and session_id == TRANSCRIPT_SESSIONS[0]:
                out.write(b"{}\n" * (TRANSCRIPT_BYTES // 3))
            out.write(json.dumps(message).encode() + b"\n")
        (session / "agent" / "transcript" / "0001.exit").write_text('{"exit_code": 0}\n')
    return folder


def round_transcript(
    bench: Bench, hostile: Path, plain: Path, tool_first: bool, record: Record
) -> None:
    """The same commands on the two registries: what a 64 MB transcript costs them."""
    big = TRANSCRIPT_SESSIONS[0]
    for case, args in (
        ("list-64mb", ("session.list",)),
        ("log-64mb", ("session.log", "--session", big, "--tail", "3")),
    ):
        tool = partial(lambda a, s: bench.inv_run(*a, state=s).measurement, args, hostile)
        baseline = partial(lambda a, s: bench.inv_run(*a, state=s).measurement, args, plain)
        pair(case, tool, baseline, tool_first=tool_first, record=record)


def round_memory(bench: Bench, probe: MemoryProbe, tool_first: bool, record: Record) -> None:
    """One more turn in the warm session, then what it holds; no side is timed (no `record`)."""
    tool_send(bench, probe.registry, [probe.session])
    probe.samples.append(read_memory(probe.container))


@dataclass(frozen=True)
class Contain:
    """The contain group: one-session fleets on the smoke image (default egress, open, runsc,
    runc) and running sessions on the real image (through the proxy, open, runsc, runc)."""

    proxied: Fleet
    opened: Fleet
    gvisor: Fleet
    runc: Fleet
    registry: Path
    turns: Mapping[str, str]  # case side -> session id


def prepare_contain(bench: Bench, image: str, stack: contextlib.ExitStack) -> Contain:
    """The fleets (seeded, stopped) and four sessions on the real image, each with a first turn
    given untimed."""
    proxied = make_fleet(bench, "proxied", 1, "")
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
    return Contain(proxied, opened, gvisor, runc, registry, turns)


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
            empty = make_empty_collection(bench.root / "empty-collection")
            rounds[group] = partial(round_inv_list, bench, empty)
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


# --- report --------------------------------------------------------------------------------------


def markdown_report(
    rows: Sequence[Row], context: Mapping[str, object], memory: MemoryRow | None = None
) -> str:
    parts = [
        "# Benchmark: the tool against plain Docker",
        "",
        f"Medians of {context['rounds']} rounds after one warm-up round, tool and baseline "
        f"interleaved; {context['cpus']} CPUs, load average "
        f"{fmt_load(context['loadavg_before'])} before and "
        f"{fmt_load(context.get('loadavg_after'))} after; Docker {context['docker_server']}, "
        f"{fmt_images(context.get('images'))}; files under {context['work_dir']}.",
    ]
    if rows:
        parts += ["", results_table(rows), "", legend(rows)]
    if any(row.floor is not None for row in rows):
        parts += [
            "",
            "`floor`: the ratio of a tool that did nothing but start Invoke and then the "
            "baseline's work, (`inv-list` baseline + baseline) / baseline.",
        ]
    if any(row.case.sessions for row in rows):
        parts += ["", "## Cost per session, started by one command", "", scaling_table(rows)]
    if rows:
        peak = max(rows, key=lambda r: r.tool_max_rss_kb)
        parts += [
            "",
            f"Peak RSS of the tool's process: {peak.tool_max_rss_kb / 1024:.1f} MB "
            f"(`{peak.case.name}`), from wait4(2): the largest of `inv` and the commands it "
            "waited for.",
        ]
    if memory is not None:
        parts += [
            "",
            "## Memory of a warm session",
            "",
            "One session on the real image, read after each round's turn (`inv session.send "
            "--wait`), its agent daemon keeping Codex running between turns:",
            "",
            memory.markdown(),
        ]
    return "\n".join(parts) + "\n"


def fmt_images(value: object) -> str:
    names = list(value) if isinstance(value, dict) else []
    return ("image " if len(names) == 1 else "images ") + (" and ".join(names) or "none")


def fmt_load(value: object) -> str:
    if not isinstance(value, list):
        return "?"
    return "/".join(f"{v:.2f}" for v in value)


def write_reports(
    rows: Sequence[Row],
    context: Mapping[str, object],
    folder: Path,
    memory: MemoryRow | None = None,
) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    markdown = markdown_report(rows, context, memory)
    (folder / "results.md").write_text(markdown)
    data = {**context, "rows": [row.as_json() for row in rows]}
    if memory is not None:
        data["memory"] = memory.as_json()
    (folder / "results.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return markdown


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
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


if __name__ == "__main__":
    sys.exit(main())
