"""What is measured: each case's two sides and target, and the groups that share a round."""

from __future__ import annotations

from dataclasses import dataclass


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
    # The baseline starts Invoke first (an empty collection's `inv --list`), then does its
    # docker work: the ratio is what the tool costs beyond the two, in the units.
    startup: bool = False
    # The case whose tool side is this case's own engine calls, made without `inv`: the best
    # ratio is then (Invoke's start-up + those calls) / baseline.
    engine_calls: str | None = None


CASES = (
    Case(
        "start-1",
        "inv session.start, 1 session, workspace already seeded",
        "Invoke's start-up + docker run -d with the argv --dry-run prints",
        1.1,
        sessions=1,
        startup=True,
    ),
    Case(
        "start-8",
        "inv session.start, 8 sessions in one command",
        "8 docker run -d with the argvs --dry-run prints, one after another",
        0.7,
        sessions=8,
    ),
    Case(
        "stop-8",
        "inv session.stop --manifest, 8 running (graceful)",
        "8 docker rm -f, one after another",
        0.8,
        engine_calls="stop-8-engine",
    ),
    Case(
        "stop-8-engine",
        "the two engine calls session.stop makes for 8 running sessions, without inv: "
        "docker stop --time 10 <8 ids>, then docker rm --force --volumes <8 ids>",
        "8 docker rm -f, one after another",
        None,
    ),
    Case(
        "list-8",
        "inv session.list, 8 running",
        "Invoke's start-up + docker ps --all --no-trunc --filter label=filare.registry=…",
        1.1,
        startup=True,
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
        "start-egress-first",
        "inv session.start, 1 session, default egress, its network made by this start "
        "(session.prune removed it before)",
        "the same inv session.start with egress: open, after the same prune",
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
        "32 docker run -d with the argvs --dry-run prints, one after another",
        None,
        sessions=32,
    ),
)


CASE_BY_NAME = {case.name: case for case in CASES}


# Cases measured together share a lifecycle (start-8 leaves the sessions that list-8 lists and
# stop-8 stops), so --only selects groups.
GROUPS: dict[str, tuple[str, ...]] = {
    "start-1": ("start-1",),
    "fleet": ("start-8", "list-8", "stop-8", "stop-8-engine"),
    "scale": ("start-32",),
    "send": ("send-1", "send-8", "send-8-par"),
    "memory": (),  # no ratio: a figure in MB, kept by its MemoryProbe
    "inv-list": ("inv-list",),
    "seed": ("seed",),
    "transcript": ("list-64mb", "log-64mb"),
    "engines": ("start-8-engines", "list-8-engines"),
    "collect": ("collect-8",),
    "contain": ("start-egress", "start-egress-first", "send-egress", "start-runsc", "send-runsc"),
}


# Groups that run the smoke image (built when absent), and those that need the real Codex image.
SMOKE_GROUPS = frozenset({"start-1", "fleet", "scale", "engines", "contain"})


CODEX_GROUPS = frozenset({"send", "collect", "memory", "contain"})


# Groups measured only when asked for with --only: `engines` needs root (an engine of its
# own), `contain` a registered runsc and the real image.
ASKED_ONLY = frozenset({"engines", "contain"})
