"""`inv demo --codex`: a real Codex turn with no account, end to end on the real image.

The demo serves its scripted model from a process of its own, starts the session, sends it its
goal and shows the turn; the session's Codex really runs the scripted command in its workspace.
Marked `image` (the real Codex image, built by the `codex_image` fixture).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from agent_helpers import REPOSITORY, inv, our_containers, sh

from conftest import BuiltCodexImage
from orchestrator.demo import MODEL_FILE, model_folder, running_model
from orchestrator.demo_model import COMMAND
from orchestrator.registry import Registry

pytestmark = [pytest.mark.agent, pytest.mark.image]

ONE_FORMAT = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00"


def test_demo_codex_shows_a_scripted_turn_and_stops_it_all(
    tmp_path: Path, registry: Registry, codex_image: BuiltCodexImage
) -> None:
    manifest = tmp_path / "agents" / "manifests" / "codex-demo.yml"
    manifest.parent.mkdir(parents=True)
    data = yaml.safe_load((REPOSITORY / "agents/manifests/codex-demo.yml").read_text())
    data["sessions"][0]["image"] = codex_image.tag  # the tag the tests build, not filare-codex
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    sh("git", "init", "-q", str(tmp_path))  # the manifest's repository seeds the workspace
    sh("git", "-C", str(tmp_path), "add", ".")
    sh("git", "-C", str(tmp_path), "-c", "user.email=t@t", "-c", "user.name=t", "commit",
       "-qm", "demo repository")  # fmt: skip
    folder = model_folder(registry.root)
    try:
        result = inv("demo", "--codex", "--manifest", str(manifest), state=registry.root)
        out = result.stdout
        assert result.returncode == 0, out + result.stderr
        assert "scripted model: started" in out
        assert "no OpenAI account" in out
        assert f"$ {COMMAND}" in out or COMMAND in out  # the command Codex ran
        assert "/home/agent/workspace" in out  # what `pwd` printed, in the session's container
        assert "demo repository" in out  # `git log` in the seeded workspace
        assert "This answer is scripted" in out
        assert "completed" in out
        assert f"Stop it all:   uv run inv demo.stop --manifest {manifest}" in out
        assert our_containers(registry) == ["filare-coder-codex-demo"]
        model = running_model(folder)
        assert model is not None
        # The Codex home is the session's own, pointed at the scripted model: no login needed.
        codex_home = tmp_path / "outputs" / "demo" / "scripted-codex-home"
        assert f":{model.port}/v1" in (codex_home / "config.toml").read_text()
        assert (
            inv("session.validate", "--manifest", str(manifest), state=registry.root).stderr == ""
        )

        # The model keeps serving after the demo returns: a later turn is answered too.
        again = inv(
            "session.send", "--session", "codex-demo", "--message", "Once more", "--wait",
            "--json", state=registry.root,
        )  # fmt: skip
        assert again.returncode == 0, again.stdout + again.stderr
        (sent,) = json.loads(again.stdout)
        assert sent["status"] == "completed" and "scripted" in sent["final_message"]

        # One time format in the transcript and the listing, whoever wrote the time.
        log = inv("session.log", "--session", "codex-demo", "--json", state=registry.root)
        times = [json.loads(line).get("at") for line in log.stdout.splitlines()]
        listed = json.loads(inv("session.list", "--json", state=registry.root).stdout)
        times = [t for t in [*times, listed[0]["agent_since"]] if t is not None]
        assert len(times) >= 3 and all(re.fullmatch(ONE_FORMAT, t) for t in times), times

        stop = inv("demo.stop", "--manifest", str(manifest), state=registry.root)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert f"scripted model: stopped (pid {model.pid})" in stop.stdout
        assert our_containers(registry) == []
        assert running_model(folder) is None
        assert (
            not Path(f"/proc/{model.pid}").exists()
            or b"demo_model" not in Path(f"/proc/{model.pid}/cmdline").read_bytes()
        )
    finally:
        inv("demo.stop", "--manifest", str(manifest), state=registry.root)
        leftover = running_model(folder)
        if leftover is not None:
            os.kill(leftover.pid, 15)
    assert (folder / MODEL_FILE).exists()
