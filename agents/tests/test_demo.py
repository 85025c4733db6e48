"""The newcomer's first command, `inv demo`, on a copy of the example manifest."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from agent_helpers import REPOSITORY, inv, our_containers, sh

from filare_testing.commands import results
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent


def test_demo_makes_its_inputs_starts_lists_and_says_how_to_stop(
    tmp_path: Path, registry: Registry, smoke_image: str
) -> None:
    manifest = tmp_path / "agents" / "manifests" / "demo.yml"
    manifest.parent.mkdir(parents=True)
    shutil.copy(REPOSITORY / "agents" / "manifests" / "demo.yml", manifest)
    sh("git", "init", "-q", str(tmp_path))  # the manifest's repository seeds the workspaces

    result = inv("demo", "--manifest", str(manifest), state=registry.root)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "outputs" / "demo" / "keys" / "id_demo").exists()
    for session_id in ("alpha", "bravo", "charlie"):
        assert results(result.stdout).get(session_id) == "started"
        assert (tmp_path / "outputs" / "demo" / "env" / f"{session_id}.env").exists()
    assert f"Stop them all:        uv run inv session.stop --manifest {manifest}\n" in result.stdout
    assert our_containers(registry) == [
        "filare-coder-bravo",
        "filare-planner-alpha",
        "filare-reviewer-charlie",
    ]

    again = inv("demo", "--manifest", str(manifest), state=registry.root)
    assert again.returncode == 0, again.stderr
    assert "created throwaway" not in again.stdout
    assert again.stdout.count("already running") == 3

    stop = inv("session.stop", "--manifest", str(manifest), state=registry.root)
    assert stop.returncode == 0, stop.stderr
    assert our_containers(registry) == []
