"""The Filare project's library names for the question queue and the dashboard, kept as thin
adapters over this project's own; and its tmux-era names, which fail saying what replaced them.

The origin's own tests of these names run unchanged in `test_origin_tests.py`; these tests check
that both ways of using the queue are one queue.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from filare_testing.commands import REPOSITORY
from orchestrator import cli, engine, feedback, io, run_container, runtime
from orchestrator.dashboard import DashboardEntry, collect_dashboard, to_json
from orchestrator.errors import InputError
from orchestrator.feedback import (
    Prompt,
    add_prompt,
    list_prompts,
    load_queue,
    resolve_prompt,
    save_queue,
)
from orchestrator.registry import Registry
from tasks.collection import namespace
from tests.test_reconcile import container
from tests.test_registry import state

GUIDE = REPOSITORY / "docs" / "migrating-from-filare.md"
JUSTFILE = REPOSITORY / "agents" / "justfile"


def prompt(prompt_id: str = "p1", session_id: str = "a", **changes: object) -> Prompt:
    made = Prompt(
        id=prompt_id,
        session_id=session_id,
        role="coder",
        workspace="/ws",
        branch="main",
        reason="network",
        requested_action="allow network",
    )
    return dataclasses.replace(made, **changes)  # type: ignore[arg-type]


def ask(registry: Registry, session_id: str, file_id: str, reason: str) -> None:
    """A question as `filare-ask` leaves it in the session's folder, not gathered yet."""
    folder = registry.session_dir("coder", session_id) / "agent" / "questions"
    folder.mkdir(parents=True)
    (folder / f"{file_id}.json").write_text(json.dumps({"reason": reason, "severity": "block"}))


# --- the queue ------------------------------------------------------------------------------------


def test_a_prompt_has_the_origins_fields_and_is_stamped_when_made() -> None:
    made = prompt()
    assert list(made.to_dict()) == [
        "id",
        "session_id",
        "role",
        "workspace",
        "branch",
        "reason",
        "requested_action",
        "suggested_reply",
        "severity",
        "created_at",
        "decision",
        "decided_at",
        "reply",
    ]
    assert (made.severity, made.decision, made.decided_at, made.reply) == ("info", None, None, None)
    assert datetime.fromisoformat(made.created_at).tzinfo is not None


def test_the_origins_functions_and_the_commands_share_one_queue(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write(state("a"))
    queue = tmp_path / "prompts.json"
    add_prompt(queue, prompt("p1"))
    added = feedback.add(registry, state("a"), reason="May I push?", severity="block")

    assert [p.id for p in load_queue(registry)] == ["p1", added.id]
    assert [p.id for p in list_prompts(queue)] == ["p1", added.id]
    assert {p.id for p in feedback.pending_questions(registry)} == {"p1", added.id}
    resolved = resolve_prompt(queue, added.id, "approved", reply="yes")
    assert {p.id for p in feedback.pending_questions(registry)} == {"p1"}
    assert load_queue(registry)[1] == resolved
    assert (resolved.decision, resolved.reply) == ("approved", "yes")


def test_listing_a_registrys_queue_gathers_the_questions_agents_asked(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write(state("a"))
    ask(registry, "a", "q1", "May I push to main?")

    (listed,) = list_prompts(tmp_path / "prompts.json")

    assert (listed.id, listed.session_id, listed.reason) == ("a-q1", "a", "May I push to main?")
    assert [p.id for p in load_queue(tmp_path / "prompts.json")] == ["a-q1"]
    assert not (registry.session_dir("coder", "a") / "agent" / "questions" / "q1.json").exists()
    resolved = resolve_prompt(str(tmp_path / "prompts.json"), "a-q1", "rejected")
    assert resolved.decision == "rejected"


def test_another_queue_file_is_read_as_it_is(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write(state("a"))
    ask(registry, "a", "q1", "not for this queue")
    queue = tmp_path / "queue.json"
    save_queue(queue, [prompt("p1")])

    assert [p.id for p in list_prompts(queue)] == ["p1"]
    assert not (tmp_path / "prompts.json").exists()
    assert json.loads(queue.read_text())[0]["id"] == "p1"


def test_resolving_again_the_same_way_changes_nothing(tmp_path: Path) -> None:
    queue = tmp_path / "queue.json"
    add_prompt(queue, prompt())
    first = resolve_prompt(queue, "p1", "approved", "ok")
    assert resolve_prompt(queue, "p1", "approved", "ok") == first
    assert list_prompts(queue) == [first]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q: resolve_prompt(q, "p2", "approved"), r"Prompt id 'p2' not found in .*queue"),
        (lambda q: resolve_prompt(q, "p1", "maybe"), "decision must be approved or rejected"),  # type: ignore[arg-type]
        (lambda q: resolve_prompt(q, "p1", "rejected", "no"), "p1' was already answered: approved"),
        (lambda q: add_prompt(q, prompt("p1")), "already a question with id 'p1'"),
        (lambda q: add_prompt(q, prompt("p3", severity="high")), "severity must be info, warn"),
        (lambda q: add_prompt(q, prompt("")), "a question needs an id"),
    ],
)
def test_bad_input_is_refused_as_a_value_error_and_the_queue_is_unchanged(
    tmp_path: Path, call: Callable[[Path], object], message: str
) -> None:
    queue = tmp_path / "queue.json"
    add_prompt(queue, prompt("p1"))
    resolve_prompt(queue, "p1", "approved")
    before = queue.read_bytes()
    with pytest.raises(ValueError, match=message) as raised:
        call(queue)
    assert isinstance(raised.value, InputError)
    assert queue.read_bytes() == before


def test_adding_waits_for_the_lock_the_commands_hold(tmp_path: Path) -> None:
    queue = tmp_path / "prompts.json"
    adding = threading.Thread(target=add_prompt, args=(queue, prompt()))
    with Registry(tmp_path).named_lock("feedback"):
        adding.start()
        adding.join(timeout=0.5)
        assert adding.is_alive()
        assert not queue.exists()
    adding.join(timeout=30)
    assert [p.id for p in load_queue(queue)] == ["p1"]


# --- the dashboard --------------------------------------------------------------------------------


@pytest.fixture
def repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A checkout with two recorded sessions, `a` running in its container and `b` stopped."""
    (tmp_path / ".git").mkdir()
    registry = Registry(tmp_path / "outputs" / "agents")
    registry.write(state("a").replace(container_id="c1", branch="agent/a"))
    registry.write(state("b", status="stopped").replace(branch="agent/b"))
    monkeypatch.delenv("FILARE_STATE_DIR", raising=False)
    mine = f"label=filare.registry={registry.root}"
    monkeypatch.setattr(
        engine, "list_containers", lambda filters: [container("a", "c1")] if mine in filters else []
    )
    return registry


def test_the_dashboard_has_the_origins_entries(repository: Registry) -> None:
    add_prompt(feedback.queue_path(repository), prompt("p1", "a"))
    add_prompt(feedback.queue_path(repository), prompt("p2", "b"))
    resolve_prompt(feedback.queue_path(repository), "p2", "approved")
    ask(repository, "a", "q1", "May I push?")

    entries = collect_dashboard(repository.root.parent.parent / "outputs")

    assert entries == [
        DashboardEntry("a", "coder", "agent/a", "running", "/ws", 2),
        DashboardEntry("b", "coder", "agent/b", "stopped", "/ws", 0),
    ]
    assert json.loads(to_json(entries)) == [
        {
            "session_id": "a",
            "role": "coder",
            "branch": "agent/a",
            "status": "running",
            "workspace": "/ws",
            "prompts_pending": 2,
        },
        {
            "session_id": "b",
            "role": "coder",
            "branch": "agent/b",
            "status": "stopped",
            "workspace": "/ws",
            "prompts_pending": 0,
        },
    ]


def test_the_dashboard_counts_another_queue_when_given(repository: Registry) -> None:
    other = repository.root.parent / "other.json"
    answered = prompt("p3", "a", decision="approved")
    save_queue(other, [prompt("p1", "b"), prompt("p2", "b"), answered])
    ask(repository, "a", "q1", "not in that queue")

    entries = collect_dashboard(repository.root.parent.parent, queue=other)

    assert [(e.session_id, e.prompts_pending) for e in entries] == [("a", 0), ("b", 2)]


def test_the_dashboard_finds_the_registry_as_the_origin_did(
    repository: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path / "outputs")
    assert [e.session_id for e in collect_dashboard()] == ["a", "b"]
    monkeypatch.setenv("FILARE_STATE_DIR", str(tmp_path / "elsewhere"))
    assert collect_dashboard() == []
    assert [e.session_id for e in collect_dashboard(tmp_path)] == ["a", "b"]
    outside = tmp_path / "outputs" / "agents" / "coder"
    monkeypatch.setattr("orchestrator.plan.find_repository", lambda start: None)
    with pytest.raises(InputError, match=r"coder: not in a git repository"):
        collect_dashboard(outside)


# --- the replaced names ---------------------------------------------------------------------------

REPLACED = [
    ("orchestrator.io", "IoTarget", "orchestrator.conversation.send"),
    ("orchestrator.io", "build_send_command", "inv session.send"),
    ("orchestrator.io", "build_snapshot_command", "inv session.log"),
    ("orchestrator.io", "send_message", "inv session.send"),
    ("orchestrator.io", "snapshot_transcript", "inv session.attach"),
    ("orchestrator.runtime", "build_run_command", "scripts/run_codex_container.sh"),
    ("orchestrator.runtime", "launch_session", "orchestrator.runtime.launch_container"),
    ("orchestrator.runtime", "resume_plan", "inv session.resume --all"),
    ("orchestrator.runtime", "SessionRegistry", "orchestrator.registry.Registry"),
    ("orchestrator.runtime", "SessionState", "orchestrator.registry.SessionState"),
    ("orchestrator.runtime", "RegistryError", "orchestrator.errors.OrchestratorError"),
    ("orchestrator.runtime", "find_repo_root", "orchestrator.plan.find_repository"),
    ("orchestrator.cli", "app", "uv run inv --list"),
    ("orchestrator.run_container", "run_container", "scripts/run_codex_container.sh"),
    ("orchestrator.run_container", "app", "inv session.start"),
]


@pytest.mark.parametrize(("module", "name", "replacement"), REPLACED)
def test_importing_a_replaced_name_says_what_replaces_it(
    module: str, name: str, replacement: str
) -> None:
    with pytest.raises(ImportError) as raised:
        exec(f"from {module} import {name}", {})  # noqa: S102 - the import statement is the test
    message = str(raised.value)
    assert message.startswith(f"{module}.{name} of the Filare project was replaced: ")
    assert replacement in message
    assert message.endswith("(see docs/migrating-from-filare.md)")
    assert f"`{name}`" in GUIDE.read_text(), f"{GUIDE.name} does not name {name}"


def test_every_replaced_name_is_tested() -> None:
    tested = {(module, name) for module, name, _ in REPLACED}
    assert tested == {
        (module.__name__, name)
        for module in (cli, io, runtime, run_container)
        for name in module.REPLACED
    }


def test_the_runtime_keeps_its_own_names_and_unknown_names_stay_unknown() -> None:
    from orchestrator.runtime import launch_container, start_sessions

    assert callable(launch_container) and callable(start_sessions)
    assert not hasattr(runtime, "no_such_name")
    assert not hasattr(io, "__path__")
    with pytest.raises(ImportError, match="cannot import name 'no_such_name'"):
        exec("from orchestrator.runtime import no_such_name", {})  # noqa: S102


def test_running_the_origins_container_runner_says_what_replaced_it() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.run_container", "--workspace", "ws"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert re.fullmatch(
        r"error: python -m orchestrator.run_container of the Filare project was replaced: "
        r".*scripts/run_codex_container.sh.*\(see docs/migrating-from-filare.md\)\n",
        result.stderr,
    )


# The commands of the origin's `cli.py`, and its `just` recipes that ran them.
ORIGIN_COMMANDS = [
    "validate",
    "start",
    "resume-all",
    "send",
    "snapshot",
    "feedback-list",
    "feedback-add",
    "feedback-resolve",
    "dashboard",
]
ORIGIN_RECIPES = [
    "codex-container-build",
    "codex-container-sh",
    "codex-container-run",
    *(f"orchestrator-{command}" for command in ORIGIN_COMMANDS),
    "orchestrator-test",
]


@pytest.mark.parametrize("command", ORIGIN_COMMANDS)
def test_running_an_origin_command_names_the_task_that_replaced_it(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", command, "--queue", "q.json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: python -m orchestrator.cli {command} of the Filare project was replaced: "
        f"{cli.COMMANDS[command]} (see docs/migrating-from-filare.md)\n"
    )
    assert f"{cli.COMMANDS[command].split(' --')[0].removeprefix('uv run ')} " in GUIDE.read_text()


def test_the_guide_lists_every_origin_command_and_recipe_and_every_legacy_alias() -> None:
    rows = [line.split(" | ")[0] for line in GUIDE.read_text().splitlines() if line.startswith("|")]
    ns = namespace()
    legacy = {name for path in ns.task_names for name in ns[path].legacy_names}
    assert set(cli.COMMANDS) == set(ORIGIN_COMMANDS)
    assert {"codex-container-build", "codex-container-run"} <= legacy
    for name in [*ORIGIN_COMMANDS, *ORIGIN_RECIPES, *legacy]:
        assert any(re.match(rf"\| `{re.escape(name)}\b", row) for row in rows), name


def test_every_task_and_recipe_the_guide_names_exists() -> None:
    text = GUIDE.read_text()
    ns = namespace()
    recipe = re.compile(r"^(?:alias )?([a-z0-9-]+)(?: \*args:| :=)", re.M)
    recipes = set(recipe.findall(JUSTFILE.read_text()))
    tasks = set(re.findall(r"uv run inv ([a-z]+\.[a-z_]+)", text))
    named = set(re.findall(r"uv run just ([a-z0-9-]+)", text))
    assert tasks and named
    assert tasks <= set(ns.task_names)
    assert named <= recipes
