"""`demo`: the first thing to run; starts the example sessions and shows them."""

from __future__ import annotations

import shlex
import sys

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from tasks.catalog_task import CatalogTask
from tasks.locations import REPOSITORY, manifest_path, session_registry, shown

DEMO_MANIFEST = "agents/manifests/demo.yml"


@task(
    klass=CatalogTask,
    default=True,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just demo-run --manifest agents/manifests/demo.yml",
    help={"manifest": "example manifest to run (the real image: agents/manifests/codex.yml)"},
)
def run(c: Context, manifest: str = DEMO_MANIFEST) -> None:
    """Create throwaway keys and env files, build the smoke image if absent, start and list."""
    from orchestrator import demo, report, runtime
    from orchestrator.manifest import load_manifest
    from orchestrator.plan import container_name

    sessions = load_manifest(manifest_path(manifest))
    for made in demo.ensure_throwaway_files(sessions):
        print(f"created throwaway {shown(made)}")
    for image in sorted({s.image for s in sessions}):
        built = demo.ensure_image(image, REPOSITORY)
        if built is not None:
            print(built.summary())
    sessions_registry = session_registry()
    outcomes = runtime.start_sessions(sessions, sessions_registry)
    for line in report.warnings_text(outcomes):
        print(line, file=sys.stderr)
    print(report.start_table(outcomes))
    print()
    print(report.sessions_table(runtime.list_sessions(sessions_registry)))
    print()
    first = container_name(sessions[0].role, sessions[0].id)
    print(f"Open a shell in one:  docker exec -it {first} sh")
    print(f"Stop them all:        uv run inv session.stop --manifest {shlex.quote(manifest)}")
    failed = [o.error for o in outcomes if o.error is not None]
    if failed:
        raise Exit(code=max(error.exit_code for error in failed))
