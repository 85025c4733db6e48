"""`demo`: the first thing to run; starts the example sessions and shows them.

`demo --codex` shows a real Codex turn with no account (a scripted model on this machine);
`demo.stop` ends what that started.
"""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING

from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from tasks.catalog_task import CatalogTask
from tasks.locations import REPOSITORY, manifest_path, session_registry, shown

if TYPE_CHECKING:
    from orchestrator.registry import Registry
    from orchestrator.spec import SessionSpec

DEMO_MANIFEST = "agents/manifests/demo.yml"
CODEX_DEMO_MANIFEST = "agents/manifests/codex-demo.yml"
# How long the demo waits for its turn: Codex's start-up and two scripted model requests.
TURN_SECONDS = 300.0


@task(
    klass=CatalogTask,
    default=True,
    category="session",
    safe_for_agents=True,
    runs_in="host",
    example="just demo-run --manifest agents/manifests/demo.yml",
    help={
        "manifest": (
            "example manifest to run (default: agents/manifests/demo.yml, or with --codex "
            "agents/manifests/codex-demo.yml; the real image: agents/manifests/codex.yml)"
        ),
        "codex": (
            "a real Codex turn with no account: the Codex image (built if absent), a scripted "
            "model on this machine, a session sent its goal; the answers are scripted"
        ),
    },
)
def run(c: Context, manifest: str = "", codex: bool = False) -> None:
    """Create throwaway keys and env files, build the smoke image if absent, start and list.

    With --codex: build the Codex image if absent, serve a scripted model on this machine, start
    the session, send it its goal and show the turn: Codex answers and runs a command in its
    workspace. The model's answers are scripted; no OpenAI account is used. demo.stop ends it.
    """
    from orchestrator import demo, report, runtime
    from orchestrator.manifest import load_manifest
    from orchestrator.plan import container_name

    typed = manifest or (CODEX_DEMO_MANIFEST if codex else DEMO_MANIFEST)
    sessions = load_manifest(manifest_path(typed))
    registry = session_registry()
    if codex:
        _prepare_codex(sessions, registry)
    for made in demo.ensure_throwaway_files(sessions, env=_scripted_env() if codex else None):
        print(f"created throwaway {shown(made)}")
    for image in sorted({s.image for s in sessions}):
        if codex:
            built = demo.ensure_codex_image(image, REPOSITORY, echo=print)
        else:
            built = demo.ensure_image(image, REPOSITORY)
        if built is not None:
            print(built.summary())
    outcomes = runtime.start_sessions(sessions, registry)
    for line in report.warnings_text(outcomes):
        print(line, file=sys.stderr)
    print(report.start_table(outcomes))
    print()
    codes = [o.error.exit_code for o in outcomes if o.error is not None]
    if codex:
        codes += _show_a_turn([o.session for o in outcomes if o.error is None], registry)
        _say_how_to_go_on(sessions, typed)
    else:
        print(report.sessions_table(runtime.list_sessions(registry)))
        print()
        first = container_name(sessions[0].role, sessions[0].id)
        print(f"Open a shell in one:  docker exec -it {first} sh")
        print(f"Stop them all:        uv run inv session.stop --manifest {shlex.quote(typed)}")
    if codes:
        raise Exit(code=max(codes))


def _scripted_env() -> dict[str, str]:
    from orchestrator.scripted_model import API_KEY_ENV

    # The scripted model's provider reads its key from this variable: any text does, none is
    # a secret.
    return {API_KEY_ENV: "scripted-demo-no-account"}


def _prepare_codex(sessions: list[SessionSpec], registry: Registry) -> None:
    """Serve the scripted model and point each session's own Codex home at it."""
    from orchestrator import demo

    model = demo.start_model(demo.model_folder(registry.root))
    how = "started" if model.started else "already running"
    print(
        f"scripted model: {how}, port {model.port} (pid {model.pid}); its answers are scripted, "
        "no OpenAI account is used"
    )
    for session in sessions:
        demo.write_scripted_codex_home(session.codex_dir, model.port)


def _show_a_turn(sessions: list[SessionSpec], registry: Registry) -> list[int]:
    """Send each session its goal, wait, and print the turn as session.log would."""
    from orchestrator import conversation
    from orchestrator.transcript import render

    if not sessions:
        return []
    messages = {s.id: conversation.goal_message(s) for s in sessions}
    print(f"Sending each session its goal and waiting for the turn (at most {TURN_SECONDS:g} s)…")
    results = conversation.send_each(registry, messages, kind="goal", wait=TURN_SECONDS)
    for sent in results:
        if sent.turn is None:
            continue
        print()
        print(f"--- session {sent.session_id}, turn {sent.turn} (uv run inv session.log) ---")
        for event in conversation.log(registry, sent.session_id):
            if event.turn == sent.turn:
                print(render(event))
    print()
    for sent in results:
        print(f"{sent.session_id}: turn {sent.turn or '-'} {sent.result}")
    return [1 for sent in results if sent.result != "completed"]


def _say_how_to_go_on(sessions: list[SessionSpec], typed: str) -> None:
    first = sessions[0].id
    stop = "uv run inv demo.stop"
    if typed != CODEX_DEMO_MANIFEST:
        stop += f" --manifest {shlex.quote(typed)}"
    print()
    print(
        "The agent's answers above are scripted (a model on this machine, no OpenAI account); "
        "Codex ran the command for real, in the session's container and workspace."
    )
    print(f"Talk to it:    uv run inv session.send --session {first} --message 'Hello' --wait")
    print(f"Read its log:  uv run inv session.log --session {first}")
    print(f"Stop it all:   {stop}")


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=False,
    runs_in="host",
    example="just demo-stop",
    confirm="that the example sessions of the manifest and the scripted demo model may stop",
    help={"manifest": "the example manifest demo --codex ran"},
)
def stop(c: Context, manifest: str = CODEX_DEMO_MANIFEST) -> None:
    """Stop what demo --codex started: the manifest's sessions and the scripted model."""
    from orchestrator import demo, report, runtime

    registry = session_registry()
    path = manifest_path(manifest).resolve()
    if any(view.manifest == path for view in runtime.list_sessions(registry)):
        print(report.stop_text(runtime.stop_report(registry, manifest=path)))
    else:
        print(f"no sessions of {shown(path)}")
    model = demo.stop_model(demo.model_folder(registry.root))
    if model is None:
        print("scripted model: not running")
    else:
        print(f"scripted model: stopped (pid {model.pid})")
