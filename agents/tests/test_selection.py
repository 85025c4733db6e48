"""What a newcomer meets on a real engine: selectors, others' sessions, hidden and stale ones.

Session ids carry a prefix of their own: container names are global on an engine, and other
test runs may use it at the same time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import docker, inv, our_containers

from filare_testing.commands import results
from orchestrator import egress
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent

Sessions = dict[str, str]  # session id -> role


def write_manifest(
    project: Path, image: str, sessions: Sessions, name: str, **defaults: Any
) -> Path:
    """A manifest in `project` of the given sessions, each with its own env file."""
    entries = []
    for session_id, role in sessions.items():
        (project / "outputs" / f"{session_id}.env").write_text(f"SESSION_NAME={session_id}\n")
        entries.append(
            {
                "id": session_id,
                "role": role,
                "branch": f"agent/{session_id}",
                "workspace": f"outputs/ws/{name}-{session_id}",
                "env_file": f"outputs/{session_id}.env",
            }
        )
    manifest = project / f"{name}.yml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "image": image,
                    "ssh_key": "outputs/keys/id_test",
                    "codex_dir": "outputs/codex-home",
                    **defaults,
                },
                "sessions": entries,
            },
            sort_keys=False,
        )
    )
    return manifest


@pytest.fixture
def demo_fleet(registry: Registry, project: Path, smoke_image: str) -> Path:
    """Two running sessions of owner 'demo' (not the user running the tests), as `inv demo`
    starts them."""
    manifest = write_manifest(
        project,
        smoke_image,
        {"sel-charlie": "planner", "sel-delta": "coder"},
        "demo",
        owner="demo",
    )
    started = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert started.returncode == 0, started.stderr
    return manifest


def test_stop_says_which_selector_excluded_a_session(registry: Registry, demo_fleet: Path) -> None:
    state = registry.root
    both = inv("session.stop", "--session", "sel-charlie", "--role", "coder", state=state)
    assert both.returncode == 2
    assert both.stderr.strip().splitlines() == [
        "error: session 'sel-charlie' has role 'planner', not 'coder': selectors combine, and a "
        "session is stopped only when every one matches"
    ]
    unknown = inv("session.stop", "--role", "tester", state=state)
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        f"error: no session with role 'tester' in {state} (roles recorded: 'coder', 'planner')"
    ]
    assert len(our_containers(registry, all_states=False)) == 2

    matching = inv("session.stop", "--session", "sel-charlie", "--role", "planner", state=state)
    assert matching.returncode == 0, matching.stderr
    assert results(matching.stdout) == {"sel-charlie": "stopped"}
    again = inv("session.stop", "--session", "sel-charlie", state=state)
    assert results(again.stdout) == {"sel-charlie": "already stopped"}


def test_stop_all_stops_only_your_own_and_says_what_it_left(
    registry: Registry, demo_fleet: Path
) -> None:
    result = inv("session.stop", "--all", state=registry.root)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "no matching sessions",
        "left alone: 2 sessions of owner 'demo' (--all stops your own; select them with "
        "--session, --role or --manifest)",
    ]
    assert len(our_containers(registry, all_states=False)) == 2
    stopped = inv("session.stop", "--manifest", str(demo_fleet), state=registry.root)
    assert results(stopped.stdout) == {"sel-charlie": "stopped", "sel-delta": "stopped"}


def test_stop_all_with_no_sessions_is_a_quiet_success(registry: Registry) -> None:
    result = inv("session.stop", "--all", state=registry.root)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.strip() == "no matching sessions"


def test_list_shows_owners_and_hides_ended_sessions_unless_all(
    registry: Registry, demo_fleet: Path
) -> None:
    state = registry.root
    assert inv("session.stop", "--session", "sel-delta", state=state).returncode == 0

    table = inv("session.list", state=state).stdout.splitlines()
    assert table[0].split() == [
        "SESSION",
        "ROLE",
        "OWNER",
        "STATUS",
        "AGENT",
        "CONTAINER",
        "IMAGE",
        "AGE",
        "WORKSPACE",
    ]
    assert [row.split()[:4] for row in table[1:-1]] == [
        ["sel-charlie", "planner", "demo", "running"]
    ]
    assert table[-1] == "(1 stopped or failed session hidden: --all)"
    everything = inv("session.list", "--all", state=state).stdout.splitlines()
    assert [row.split()[:4] for row in everything[1:]] == [
        ["sel-delta", "coder", "demo", "stopped"],
        ["sel-charlie", "planner", "demo", "running"],
    ]
    listed = json.loads(inv("session.list", "--json", state=state).stdout)
    assert [(one["session"], one["owner"]) for one in listed] == [("sel-charlie", "demo")]
    every = json.loads(inv("session.list", "--json", "--all", state=state).stdout)
    assert [(one["session"], one["status"]) for one in every] == [
        ("sel-delta", "stopped"),
        ("sel-charlie", "running"),
    ]
    assert inv("session.stop", "--manifest", str(demo_fleet), state=state).returncode == 0


def test_prune_marks_a_stale_record_stopped_and_records_deletes_folders(
    registry: Registry, demo_fleet: Path
) -> None:
    state = registry.root
    docker("rm", "-f", "filare-planner-sel-charlie")  # gone behind the tool's back
    listed = {
        v["session"]: v["status"]
        for v in json.loads(inv("session.list", "--json", state=state).stdout)
    }
    assert listed["sel-charlie"] == "stale"

    pruned = inv("session.prune", state=state)
    assert pruned.returncode == 0, pruned.stderr
    assert "planner/sel-charlie  marked stopped record  (stale: no container)" in pruned.stdout
    assert "removed record" not in pruned.stdout
    record = json.loads((state / "planner" / "sel-charlie" / "state.json").read_text())
    assert record["status"] == "stopped"
    assert our_containers(registry) == ["filare-coder-sel-delta"]

    assert inv("session.stop", "--session", "sel-delta", state=state).returncode == 0
    deleted = inv("session.prune", "--records", state=state)
    assert deleted.returncode == 0, deleted.stderr
    # The stopped session's network, kept for its next start, goes with it.
    network = egress.network_name("filare-coder-sel-delta", state)
    assert deleted.stdout.splitlines() == [
        "coder/sel-delta  deleted session folder  (stopped)",
        "planner/sel-charlie  deleted session folder  (stopped)",
        f"coder/sel-delta  removed network {network}  (no running session)",
    ]
    assert not (state / "planner" / "sel-charlie").exists()
    assert not (state / "coder" / "sel-delta").exists()


def test_an_id_running_from_another_manifest_is_refused(
    registry: Registry, demo_fleet: Path, project: Path, smoke_image: str
) -> None:
    other = write_manifest(project, smoke_image, {"sel-charlie": "planner"}, "other")
    result = inv("session.start", "--manifest", str(other), state=registry.root)
    assert result.returncode == 2
    assert results(result.stdout) == {"sel-charlie": "failed"}
    assert (
        f"{other}: session 'sel-charlie': already running from another manifest, {demo_fleet} "
        f"(workspace {project / 'outputs' / 'ws' / 'demo-sel-charlie'})"
    ) in result.stdout
    assert not (project / "outputs" / "ws" / "other-sel-charlie").exists()
    assert inv("session.stop", "--manifest", str(demo_fleet), state=registry.root).returncode == 0


def test_a_container_of_the_name_from_another_state_folder_is_named(
    registry: Registry, demo_fleet: Path, tmp_path: Path
) -> None:
    elsewhere = Registry(tmp_path / "other-state")
    result = inv(
        "session.start",
        "--manifest",
        str(demo_fleet),
        "--session",
        "sel-delta",
        state=elsewhere.root,
    )
    assert result.returncode == 1
    assert (
        f"container name 'filare-coder-sel-delta' is taken by this session as recorded in another "
        f"state folder, {registry.root}; reach it with FILARE_STATE_DIR={registry.root}"
    ) in result.stdout
    assert our_containers(elsewhere) == []
    assert inv("session.stop", "--manifest", str(demo_fleet), state=registry.root).returncode == 0
    # The failed start's egress proxy (the other state folder's own) goes with its prune.
    assert inv("session.prune", state=elsewhere.root).returncode == 0
