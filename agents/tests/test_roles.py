"""Roles as the Filare project writes them (`role: FEATURE`) through the whole lifecycle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from agent_helpers import inspect, inv, our_containers

from filare_testing.commands import results
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent

ROLES = {"feat": "FEATURE", "check": "VALIDATOR"}


@pytest.fixture
def upper_case_manifest(project: Path, smoke_image: str) -> Path:
    for session_id in ROLES:
        (project / "outputs" / f"{session_id}.env").write_text(f"SESSION_NAME={session_id}\n")
    manifest = project / "roles.yml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "image": smoke_image,
                    "ssh_key": "outputs/keys/id_test",
                    "codex_dir": "outputs/codex-home",
                    "tags": ["fast", "demo"],
                },
                "sessions": [
                    {
                        "id": session_id,
                        "role": role,
                        "branch": f"agent/{session_id}",
                        "workspace": f"outputs/ws/{session_id}",
                        "env_file": f"outputs/{session_id}.env",
                    }
                    for session_id, role in ROLES.items()
                ],
            },
            sort_keys=False,
        )
    )
    return manifest


def test_roles_of_upper_case_start_list_stop_and_prune_as_written(
    registry: Registry, upper_case_manifest: Path
) -> None:
    state = registry.root
    started = inv("session.start", "--manifest", str(upper_case_manifest), state=state)
    assert started.returncode == 0, started.stderr
    assert results(started.stdout) == {"feat": "started", "check": "started"}
    assert our_containers(registry) == ["filare-FEATURE-feat", "filare-VALIDATOR-check"]

    for session_id, role in ROLES.items():
        labels = inspect(f"filare-{role}-{session_id}")["Config"]["Labels"]
        assert labels["filare.role"] == role
        assert labels["filare.tags"] == "fast,demo"
        record = json.loads((state / role / session_id / "state.json").read_text())
        assert (record["role"], record["status"]) == (role, "running")
    assert sorted(path.name for path in state.iterdir() if not path.name.startswith(".")) == [
        "FEATURE",
        "VALIDATOR",
    ]

    table = inv("session.list", state=state)
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert (rows["feat"][1], rows["check"][1]) == ("FEATURE", "VALIDATOR")
    listed = json.loads(inv("session.list", "--json", state=state).stdout)
    assert [(one["session"], one["role"], one["status"]) for one in listed] == [
        ("feat", "FEATURE", "running"),
        ("check", "VALIDATOR", "running"),
    ]

    # A role is matched as written: another spelling names the roles there are.
    other_case = inv("session.stop", "--role", "validator", state=state)
    assert other_case.returncode == 2
    assert "roles recorded: 'FEATURE', 'VALIDATOR'" in other_case.stderr
    assert len(our_containers(registry)) == 2

    stopped = inv("session.stop", "--role", "VALIDATOR", state=state)
    assert stopped.returncode == 0, stopped.stderr
    assert results(stopped.stdout) == {"check": "stopped"}
    assert our_containers(registry) == ["filare-FEATURE-feat"]
    record = json.loads((state / "VALIDATOR" / "check" / "state.json").read_text())
    assert record["status"] == "stopped"

    assert inv("session.stop", "--all", state=state).returncode == 0
    pruned = inv("session.prune", "--records", state=state)
    assert pruned.returncode == 0, pruned.stderr
    assert "FEATURE/feat  deleted session folder" in pruned.stdout
    assert "VALIDATOR/check  deleted session folder" in pruned.stdout
    assert not (state / "FEATURE" / "feat").exists()
    assert not (state / "VALIDATOR" / "check").exists()
    assert our_containers(registry) == []
    assert json.loads(inv("session.list", "--json", "--all", state=state).stdout) == []
