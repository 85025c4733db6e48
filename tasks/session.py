"""`session.*`: start, stop, list and prune Codex agent sessions."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from tasks.catalog_task import EXIT_INTERRUPTED, CatalogTask
from tasks.locations import manifest_path, session_registry

if TYPE_CHECKING:
    from orchestrator.registry import Registry
    from orchestrator.spec import SessionSpec


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    legacy_names=["codex-session-start", "codex-container-run"],
    example="just session-start --manifest agents/manifests/demo.yml",
    iterable=["session"],
    help={
        "manifest": "YAML manifest of the sessions to start",
        "session": "only start this session id (repeatable; default: every session)",
        "dry_run": "print the docker command of each session and change nothing",
        "parallel": "how many sessions to start at once",
        "send_goal": "then start each session's first turn with its goal, framed by its role",
    },
)
def start(
    c: Context,
    manifest: str,
    session: list[str] | None = None,
    dry_run: bool = False,
    parallel: int = 8,
    send_goal: bool = False,
) -> None:
    """Start the sessions of a manifest, one detached container each; running ones are kept.

    Every selected session is checked first (every problem one line, exit 2, nothing started);
    then they start concurrently, one line each: id, result (started, already running or
    failed), container, and workspace or why it failed. Exit code non-zero when any failed; the
    others keep running. --dry-run prints each docker run as one shell line and writes nothing.
    """
    from orchestrator.early import ask_images
    from orchestrator.manifest import default_cache_dir, load_checked, select_sessions

    registry = session_registry()
    every = load_checked(manifest_path(manifest), registry, cache_dir=default_cache_dir())
    sessions = select_sessions(every, session or None)
    # The engine is asked for the images while the start's modules load (not `runtime`, which
    # loads stop and list too).
    images = None if dry_run else ask_images(sessions)
    from orchestrator import launch, report

    if dry_run:
        launch.check_start(sessions, registry, engine_too=False)
        _warn_without_login(sessions)
        for one in sessions:
            running = launch.running_container(one, registry)
            if running is not None:
                print(
                    f"# {one.id}: already running ({running.name}): a start keeps it, runs nothing"
                )
            else:
                print(f"# {one.id}: {launch.dry_run(one, registry, manifest_sessions=every)}")
        return
    try:
        outcomes = launch.start_sessions(
            sessions,
            registry,
            parallel=parallel,
            manifest_sessions=every,
            progress=_progress,
            images=images,
        )
    except KeyboardInterrupt:
        raise Exit(
            "interrupted: what this start had begun is undone and recorded as interrupted; "
            "run it again to start the sessions",
            code=EXIT_INTERRUPTED,
        ) from None
    for line in report.warnings_text(outcomes):
        print(line, file=sys.stderr)
    _warn_without_login([o.session for o in outcomes if o.error is None])
    print(report.start_table(outcomes))
    codes = [o.error.exit_code for o in outcomes if o.error is not None]
    if send_goal:
        codes += _send_goals([o.session for o in outcomes if o.error is None], registry)
    if codes:
        raise Exit(code=max(codes))


def _progress(line: str) -> None:
    """How an image copy to a session's engine goes, on stderr as it goes."""
    print(line, file=sys.stderr, flush=True)


def _warn_without_login(sessions: list[SessionSpec]) -> None:
    from orchestrator.preflight import login_warnings

    for line in login_warnings(sessions):
        print(line, file=sys.stderr)


def _send_goals(sessions: list[SessionSpec], registry: Registry) -> list[int]:
    """Start the first turn of each started session that has a goal; the exit codes it earns."""
    from orchestrator import conversation, report

    without = [s.id for s in sessions if not (s.goal or "").strip()]
    for session_id in without:
        print(f"{session_id}: no goal in the manifest, no turn sent", file=sys.stderr)
    # The goal is a conversation's first turn: a session that has had turns already keeps going.
    begun = [s.id for s in sessions if conversation.turn_records(registry, s.role, s.id)]
    for session_id in begun:
        print(f"{session_id}: its conversation has begun, goal not sent again", file=sys.stderr)
    messages = {
        s.id: conversation.goal_message(s)
        for s in sessions
        if s.id not in without and s.id not in begun
    }
    if not messages:
        return []
    results = conversation.send_each(registry, messages, kind="goal")
    print()
    print(report.sent_table(results))
    return [r.error.exit_code for r in results if r.error is not None]


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=False,
    runs_in="host",
    legacy_names=["codex-session-stop"],
    example="just session-stop --manifest agents/manifests/demo.yml",
    confirm=(
        "which sessions will be stopped (the selectors: --session, --role, --manifest or --all) "
        "and that nobody still works in them; a stopped session's container and SSH folder are "
        "gone, its workspace stays"
    ),
    iterable=["session"],
    help={
        "session": "stop this session id (repeatable)",
        "role": "stop every session of this role",
        "manifest": "stop every session started from this manifest",
        "all_": "stop every session of the current owner",
        "timeout": "seconds to wait for a graceful stop before killing",
    },
)
def stop(
    c: Context,
    session: list[str] | None = None,
    role: str | None = None,
    manifest: str | None = None,
    all_: bool = False,
    timeout: float = 10.0,
) -> None:
    """Stop and remove session containers (matched by label) and delete their secret copies.

    Selectors combine as AND: a session is stopped only when every one given matches it. --all
    means every session of the current owner. A selector that matches nothing is an error that
    names what exists. One line each: stopped or already stopped.
    """
    registry = session_registry()
    from orchestrator.early import ask_sessions

    with ask_sessions(registry.root) as asked:  # answered while the rest loads
        from orchestrator import report
        from orchestrator.stopping import stop_report

        stopped = stop_report(
            registry,
            session_ids=session or (),
            role=role,
            manifest=manifest_path(manifest) if manifest else None,
            everything=all_,
            timeout=timeout,
            asked=asked,
        )
    print(report.stop_text(stopped))
    if stopped.unreachable:
        raise Exit(code=1)


@task(
    klass=CatalogTask,
    name="list",
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-list --json",
    help={
        "json": "print a JSON array instead of a table",
        "all_": "also show stopped and failed sessions",
    },
)
def list_(c: Context, json: bool = False, all_: bool = False) -> None:
    """List sessions from container labels and state files, with orphans and stale records.

    One row each: session, role, owner, status, what its agent does (its state, turns done, last
    message), container, image, age, workspace. Stopped and failed sessions are hidden (the
    table says how many) unless --all; the statuses and --json fields are in the README.
    """
    registry = session_registry()
    from orchestrator.early import ask_sessions

    with ask_sessions(registry.root) as asked:  # answered while the rest loads
        from orchestrator import dashboard, report
        from orchestrator.untrusted import printable

        fleet = dashboard.fleet(registry, include_ended=all_, asked=asked)
    if json:
        print(report.sessions_json(fleet.sessions))
    else:
        print(report.sessions_table(fleet.sessions, hidden=fleet.hidden))
    for line in fleet.foreign:
        print(f"warning: {printable(line)}", file=sys.stderr)
    for why in fleet.unreachable.values():
        print(f"warning: {printable(why)}; its sessions show as unreachable", file=sys.stderr)


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=False,
    runs_in="host",
    example="just session-prune --dry-run",
    confirm="what will be removed: run it with --dry-run first and show them that list",
    help={
        "dry_run": "only print what would be done",
        "records": (
            "also delete stopped and failed sessions entirely: record, Codex home and "
            "transcripts (their conversations cannot be resumed afterwards)"
        ),
    },
)
def prune(c: Context, dry_run: bool = False, records: bool = False) -> None:
    """Remove what is ours and dead (orphan or exited containers, lone SSH folders).

    Stale records are marked stopped; with --records, stopped and failed sessions are deleted.
    Never touches a container without this checkout's labels.
    """
    from orchestrator import report, runtime

    actions = runtime.prune(session_registry(), dry_run=dry_run, records=records)
    for action in actions:
        print(report.prune_line(action, dry_run=dry_run))
    if not actions:
        print("nothing to prune")


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-validate --manifest agents/manifests/demo.yml",
    iterable=["session"],
    help={
        "manifest": "YAML manifest to check",
        "session": "only this session id (default: every session)",
        "json": "print a JSON array instead of YAML",
    },
)
def validate(
    c: Context, manifest: str, session: list[str] | None = None, json: bool = False
) -> None:
    """Check a manifest as session.start would and print each session resolved; starts nothing.

    Defaults are merged and paths resolved; the YAML output is itself a manifest that loads to
    the same sessions.
    """
    from orchestrator import report, runtime
    from orchestrator.egress import resolve_policy
    from orchestrator.manifest import select_sessions

    registry = session_registry()
    every = runtime.load_checked(manifest_path(manifest), registry)
    sessions = select_sessions(every, session or None)
    runtime.check_start(sessions, registry, engine_too=False)
    _warn_without_login(sessions)
    resolved = [runtime.resolved_session(one, registry) for one in sessions]
    policies = [resolve_policy(one, one.seed_from) for one in resolved]
    text = report.resolved_json if json else report.resolved_yaml
    print(text(resolved, policies), end="")


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example='just session-send --session alpha --message "Run the tests and fix what fails" --wait',
    iterable=["session"],
    help={
        "session": "session id to send to (repeatable: the same text to each, in parallel)",
        "message": "the text of the turn",
        "message_file": "read the text of the turn from this file instead",
        "wait": "wait for the turns to end and print each final agent message",
        "timeout": "how long --wait waits, in seconds (default: 600)",
        "json": "print a JSON array instead of a table",
    },
)
def send(
    c: Context,
    session: list[str] | None = None,
    message: str = "",
    message_file: str = "",
    wait: bool = False,
    timeout: float | None = None,
    json: bool = False,
) -> None:
    """Start a Codex turn in sessions: the first starts a conversation, later ones continue it.

    Returns with each turn's number, or with --wait each final agent message. A session still
    working on its previous turn is refused (exit 2): wait for it with session.wait, or end it
    with session.interrupt.
    """
    from orchestrator import conversation, report

    if timeout is not None and not wait:
        raise Exit("error: --timeout is how long --wait waits: give --wait too", code=2)
    text = _message_text(message, message_file)
    registry = session_registry()
    waited = (600.0 if timeout is None else timeout) if wait else None
    with _turns_go_on(session or []):
        results = conversation.send(registry, session or [], text, wait=waited)
    print(report.sent_json(results) if json else report.sent_table(results))
    _exit_unless(all(r.result in ({"completed"} if wait else {"started"}) for r in results))


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-wait --session alpha --session beta --timeout 300",
    iterable=["session"],
    help={
        "session": "session id whose latest turn to wait for (repeatable)",
        "timeout": "seconds to wait before giving up (the turns go on)",
        "json": "print a JSON array instead of a table",
    },
)
def wait(
    c: Context, session: list[str] | None = None, timeout: float = 600.0, json: bool = False
) -> None:
    """Wait for the sessions' latest turns to end and print each final agent message.

    Exit code 0 only when every turn completed; 1 when one failed, was interrupted or is still
    working when the timeout passes.
    """
    from orchestrator import conversation, report

    with _turns_go_on(session or []):
        results = conversation.wait(session_registry(), session or [], timeout=timeout)
    print(report.sent_json(results) if json else report.sent_table(results))
    _exit_unless(all(r.result == "completed" for r in results))


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-log --session alpha --tail 20",
    help={
        "session": "session id whose transcript to print",
        "follow": "keep printing new events until Ctrl-C",
        "tail": "print only the last N events (0: all)",
        "json": "print the events as JSON lines (stable field names, see the README)",
    },
)
def log(c: Context, session: str, follow: bool = False, tail: int = 0, json: bool = False) -> None:
    """Print a session's transcript: its turns, agent messages, commands, file changes, errors.

    --json prints its events as JSON lines (the fields: docs/operating-a-fleet.md).
    """
    from orchestrator import conversation
    from orchestrator.transcript import render
    from orchestrator.untrusted import json_text

    if tail < 0:
        raise Exit(f"error: --tail must be 0 or more, not {tail}", code=2)
    registry = session_registry()
    lines = conversation.log(registry, session, follow=follow, tail=tail)
    printed = 0
    try:
        for event in lines:
            print(json_text(event.as_json()) if json else render(event), flush=follow)
            printed += 1
    except KeyboardInterrupt:
        pass
    if not printed and not json and not follow:
        print(
            f"{session}: no turns yet; 'uv run inv session.send --session {session} --message "
            "TEXT' starts one"
        )


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-egress --session alpha",
    help={
        "session": "session id whose refused requests to list",
        "json": "print a JSON array of {time, host, port, reason}",
    },
)
def egress(c: Context, session: str, json: bool = False) -> None:
    """List what the egress proxy refused a session: time, host, port and why (newest last).

    Allow a host by adding it to the session's `egress: {allow: [...]}` in the manifest; it
    takes effect at the session's next start (docs/egress.md).
    """
    from orchestrator.denials import denials_json, denials_table, session_denials

    denials = session_denials(session_registry(), session)
    print(denials_json(denials) if json else denials_table(denials))


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=False,
    runs_in="host",
    example="just session-attach --session alpha",
    confirm=(
        "that a person, at a terminal, wants to take over the session's conversation "
        "(it is interactive and never meant for an agent)"
    ),
    help={"session": "session id whose conversation to open"},
)
def attach(c: Context, session: str) -> None:
    """Open an interactive Codex terminal on a session's conversation; leaving it keeps the session.

    Needs a terminal. A person at it continues the same conversation that session.send feeds.
    """
    from orchestrator import conversation

    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise Exit(
            "error: session.attach needs a terminal (run it in an interactive shell)", code=2
        )
    import subprocess

    argv = conversation.attach_command(session_registry(), session)
    sys.stdout.flush()
    # The terminal is the person's, through `docker exec -it`, for as long as they stay (no
    # timeout: nothing runs unattended here). Ctrl-C there is theirs, for Codex: keep waiting.
    process = subprocess.Popen(argv)
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            continue
    # Codex prints its own `codex resume <id>` as it leaves, which means nothing on this host.
    print(
        f"\nLeft session {session}; it keeps running. Back to this conversation: "
        f"uv run inv session.attach --session {shlex.quote(session)}"
    )
    if code != 0:
        raise Exit(code=code)


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-interrupt --session alpha",
    help={"session": "session id whose working turn to end"},
)
def interrupt(c: Context, session: str) -> None:
    """End a session's working turn; the container and the conversation stay."""
    from orchestrator import conversation
    from orchestrator.untrusted import printable

    status = conversation.interrupt(session_registry(), session)
    print(printable(f"{session}  turn {status.record.number}  {status.status}"))


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=False,
    confirm="a person decides how many more tokens a session may spend: ask before raising it",
    runs_in="host",
    example="just session-budget --session alpha --tokens 400000",
    help={
        "session": "session id whose token budget to set",
        "tokens": "the conversation's new budget, in tokens (more than it has spent)",
    },
)
def budget(c: Context, session: str, tokens: int = 0) -> None:
    """Raise a session's token budget; its conversation goes on, with its history."""
    from orchestrator import limits

    chosen = limits.set_budget(session_registry(), session, tokens)
    print(f"{session}  token budget {chosen.tokens}")


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-watch --json",
    help={
        "json": "print each event as one JSON object per line",
        "interval": "seconds between looks at the sessions' records",
        "notify_timeout": "seconds a notify command may run before it is stopped",
    },
)
def watch(
    c: Context, json: bool = False, interval: float = 2.0, notify_timeout: float = 10.0
) -> None:
    """Print each event of the fleet as it happens and run the manifests' notify commands.

    Events: a question (waiting), a turn completed (idle), failed, timed out or over budget, a
    stalled turn. Each is delivered once, also across restarts of the watcher; Ctrl-C ends it.
    """
    from orchestrator import watch as watching
    from orchestrator.untrusted import json_text

    def emit(event: watching.Event) -> None:
        print(json_text(event.as_json()) if json else event.line(), flush=True)

    try:
        watching.watch(
            session_registry(), interval=interval, notify_timeout=notify_timeout, emit=emit
        )
    except KeyboardInterrupt:
        return


def _message_text(message: str, message_file: str) -> str:
    if message and message_file:
        raise Exit("error: give --message or --message-file, not both", code=2)
    if not (message or message_file):
        raise Exit("error: give the turn's text: --message TEXT or --message-file PATH", code=2)
    if not message_file:
        return message
    try:
        return Path(message_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise Exit(f"error: --message-file: {message_file} does not exist", code=2) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise Exit(f"error: --message-file: cannot read {message_file}: {exc}", code=2) from None


@contextlib.contextmanager
def _turns_go_on(session_ids: list[str]) -> Iterator[None]:
    """A Ctrl-C while waiting ends the wait, not the turns: say so, and how to wait again."""
    try:
        yield
    except KeyboardInterrupt:
        selected = " ".join(f"--session {shlex.quote(s)}" for s in session_ids)
        raise Exit(
            f"interrupted: the turns go on; wait again with: uv run inv session.wait {selected}",
            code=EXIT_INTERRUPTED,
        ) from None


def _exit_unless(ok: bool) -> None:
    if not ok:
        raise Exit(code=1)


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-resume --all",
    iterable=["session"],
    help={
        "all_": "every session a daemon restart, reboot or docker stop took down",
        "session": "this session id, even one stopped on purpose",
        "manifest": "every recorded session of this manifest",
        "parallel": "how many sessions to start at once",
    },
)
def resume(
    c: Context,
    all_: bool = False,
    session: list[str] | None = None,
    manifest: str | None = None,
    parallel: int = 8,
) -> None:
    """Bring recorded sessions back after a restart: same workspace, Codex home and conversation.

    A session whose container runs is reported as already running, never started twice.
    """
    from orchestrator import launch, report

    outcomes = launch.resume_sessions(
        session_registry(),
        everything=all_,
        session_ids=session or (),
        manifest=manifest_path(manifest) if manifest else None,
        parallel=parallel,
        progress=_progress,
    )
    for line in report.warnings_text(outcomes):
        print(line, file=sys.stderr)
    print(report.start_table(outcomes) if outcomes else "no sessions to resume")
    codes = [o.error.exit_code for o in outcomes if o.error is not None]
    if codes:
        raise Exit(code=max(codes))


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-dashboard --json",
    help={
        "watch": "redraw until Ctrl-C (plain lines when not on a terminal)",
        "interval": "seconds between redraws with --watch",
        "json": "print one JSON object: sessions, questions waiting, failures",
        "all_": "also show stopped sessions (failed starts are always shown)",
    },
)
def dashboard(
    c: Context, watch: bool = False, interval: float = 2.0, json: bool = False, all_: bool = False
) -> None:
    """One screen for the fleet: every session and its agent, the questions waiting, what failed.

    What failed: failed starts, exited or unhealthy containers, failed or interrupted turns.
    """
    import time

    from orchestrator import dashboard as board

    if interval <= 0:
        raise Exit(f"error: --interval must be more than 0, not {interval:g}", code=2)
    registry = session_registry()
    redraw = watch and sys.stdout.isatty() and not json
    try:
        while True:
            snapshot = board.fleet(registry, include_ended=all_, failed_starts=True)
            text = board.render_json(snapshot) if json else board.render(snapshot)
            if redraw:
                # Home the cursor and clear the screen, then draw: the view redraws in place.
                sys.stdout.write("\x1b[H\x1b[2J")
            print(text, flush=True)
            if not watch:
                return
            time.sleep(interval)
            if not redraw:
                print(flush=True)
    except KeyboardInterrupt:
        return


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-collect --all",
    iterable=["session"],
    help={
        "session": "collect this session id (repeatable)",
        "manifest": "collect every recorded session of this manifest",
        "all_": "collect every recorded session",
        "json": "print a JSON array instead of a table",
    },
)
def collect(
    c: Context,
    session: list[str] | None = None,
    manifest: str | None = None,
    all_: bool = False,
    json: bool = False,
) -> None:
    """Bring sessions' work into their seed repository, under refs/agents/<id>/ only.

    The session's own git makes a bundle in its container; the host checks every object of it
    before fetching. Exit code 2 when a session's input is bad (no git, no repository, its
    branch gone, a refused bundle), 1 for an engine fault; the other sessions are still collected.
    """
    from orchestrator.homecoming import collect as collecting
    from orchestrator.homecoming import report as shown

    registry = session_registry()
    states = collecting.find_sessions(
        registry,
        session_ids=session or (),
        manifest=Path(manifest) if manifest else None,
        everything=all_,
    )
    results = collecting.collect_sessions(registry, states)
    print(shown.collected_json(results) if json else shown.collected_table(results))
    codes = [r.exit_code for r in results if r.result == "failed"]
    if codes:
        raise Exit(code=max(codes))


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-diff --session alpha --stat",
    help={
        "session": "session id whose collected work to show",
        "stat": "only the files changed and their line counts",
        "committed": "leave out the uncommitted work",
        "json": "print one JSON object: files with their flags, and the patch",
    },
)
def diff(
    c: Context, session: str, stat: bool = False, committed: bool = False, json: bool = False
) -> None:
    """What a session changed since its base, read from its collected refs (session.collect)."""
    from orchestrator.homecoming import collect as collecting
    from orchestrator.homecoming import report as shown
    from orchestrator.homecoming import review

    registry = session_registry()
    (state,) = collecting.find_sessions(registry, session_ids=[session])
    work = review.collected_work(state)
    print(shown.diff(work, stat=stat, committed=committed, as_json=json), end="")


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just session-conflicts",
    iterable=["session"],
    help={
        "session": "only these session ids (repeatable; default: every collected session)",
        "json": "print a JSON array instead of a table",
    },
)
def conflicts(c: Context, session: list[str] | None = None, json: bool = False) -> None:
    """Whether collected sessions' work merges: every pair, and each against its start branch.

    Exit code 0 when every merge is clean, 1 when any conflicts, 2 for bad input.
    """
    from orchestrator.homecoming import collect as collecting
    from orchestrator.homecoming import report as shown
    from orchestrator.homecoming import review

    registry = session_registry()
    if session:
        states = collecting.find_sessions(registry, session_ids=session)
        works = [review.collected_work(state) for state in states]
    else:
        works = review.works_of(registry.states())
    pairs = review.conflicts(works)
    print(shown.conflicts_json(pairs) if json else shown.conflicts_table(pairs))
    _exit_unless(not any(pair.conflicts for pair in pairs))


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=False,
    runs_in="host",
    example="just session-accept --session alpha --into review/alpha",
    confirm=(
        "which session's work lands on which branch (show session.diff first); the branch is "
        "created or moved, no working tree is touched"
    ),
    help={
        "session": "session id whose collected work to land",
        "into": "the local branch to land it on (default: the session's own branch name)",
        "squash": "one commit with the work's changes instead of a merge commit",
        "committed": "leave out the uncommitted work",
    },
)
def accept(
    c: Context,
    session: str,
    into: str | None = None,
    squash: bool = False,
    committed: bool = False,
) -> None:
    """Land a session's collected work on a local branch as a merge or squash commit.

    A conflict is refused (exit 2, naming the files); so is the branch checked out in a working
    tree: accept never changes a working tree or an index.
    """
    from orchestrator.homecoming import collect as collecting
    from orchestrator.homecoming import review

    registry = session_registry()
    (state,) = collecting.find_sessions(registry, session_ids=[session])
    work = review.collected_work(state)
    done = review.accept(work, into=into, squash=squash, committed=committed)
    verb = "created" if done.created else "moved"
    print(f"{session}  accepted into {done.branch} ({verb}) at {done.commit[:12]}")
