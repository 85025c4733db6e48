"""`session.*`: start, stop, list and prune Codex agent sessions."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from tasks.catalog_task import CatalogTask
from tasks.locations import session_registry


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
    },
)
def start(
    c: Context,
    manifest: str,
    session: list[str] | None = None,
    dry_run: bool = False,
    parallel: int = 8,
) -> None:
    """Start the sessions of a manifest, one detached container each; running ones are kept."""
    from orchestrator import report, runtime
    from orchestrator.manifest import default_cache_dir, load_manifest, select_sessions

    registry = session_registry()
    every = load_manifest(manifest, cache_dir=default_cache_dir())
    sessions = select_sessions(every, session or None)
    if dry_run:
        runtime.check_start(sessions, registry, engine_too=False)
        for one in sessions:
            print(f"# {one.id}: {runtime.dry_run(one, registry, manifest_sessions=every)}")
        return
    outcomes = runtime.start_sessions(
        sessions, registry, parallel=parallel, manifest_sessions=every
    )
    for line in report.warnings_text(outcomes):
        print(line, file=sys.stderr)
    print(report.start_table(outcomes))
    failed = [o.error for o in outcomes if o.error is not None]
    if failed:
        raise Exit(code=max(error.exit_code for error in failed))


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
    """Stop and remove session containers (matched by label) and delete their secret copies."""
    from orchestrator import report, runtime

    stopped = runtime.stop_report(
        session_registry(),
        session_ids=session or (),
        role=role,
        manifest=Path(manifest) if manifest else None,
        everything=all_,
        timeout=timeout,
    )
    print(report.stop_text(stopped))


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
    """List sessions from container labels and state files, with orphans and stale records."""
    from orchestrator import listing, report

    fleet = listing.survey(session_registry())
    views = [v for v in fleet.sessions if all_ or v.status not in listing.ENDED]
    if json:
        print(report.sessions_json(views))
    else:
        print(report.sessions_table(views, hidden=len(fleet.sessions) - len(views)))
    for line in fleet.foreign:
        print(f"warning: {line}", file=sys.stderr)


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
    from orchestrator.manifest import load_manifest, select_sessions

    registry = session_registry()
    sessions = select_sessions(load_manifest(manifest), session or None)
    runtime.check_start(sessions, registry, engine_too=False)
    resolved = [runtime.resolved_session(one, registry) for one in sessions]
    print(report.resolved_json(resolved) if json else report.resolved_yaml(resolved), end="")
