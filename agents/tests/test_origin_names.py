"""The Filare project's library names for the queue and the dashboard, on real sessions: what an
agent asks with `filare-ask` reaches them, and the statuses are the containers' own."""

from __future__ import annotations

import json

import pytest
from agent_helpers import MakeManifest, docker, inv

from orchestrator.dashboard import DashboardEntry, collect_dashboard, to_json
from orchestrator.feedback import list_prompts, resolve_prompt
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent


def test_the_origins_names_see_what_agents_ask_and_what_runs(
    registry: Registry, make_manifest: MakeManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FILARE_STATE_DIR", str(registry.root))
    manifest = make_manifest(ids=("asker", "quiet"), name="origin.yml")
    assert inv("session.start", "--manifest", str(manifest), state=registry.root).returncode == 0
    docker("exec", "filare-coder-asker", "agent-entrypoint", "filare-ask", "--reason", "May I?")

    def board() -> list[tuple[str, str, int]]:
        return [(e.session_id, e.status, e.prompts_pending) for e in collect_dashboard()]

    assert board() == [("asker", "running", 1), ("quiet", "running", 0)]
    (question,) = list_prompts(registry.root / "prompts.json")
    assert (question.session_id, question.role, question.reason) == ("asker", "coder", "May I?")
    resolved = resolve_prompt(registry.root / "prompts.json", question.id, "rejected", "no")
    assert (resolved.decision, resolved.reply) == ("rejected", "no")
    listed = inv("feedback.list", "--json", state=registry.root)
    assert json.loads(listed.stdout) == [resolved.to_dict()]

    docker("stop", "--time", "1", "filare-coder-quiet")
    entries = collect_dashboard()
    assert [(e.session_id, e.status, e.prompts_pending) for e in entries] == [
        ("asker", "running", 0),
        ("quiet", "exited", 0),
    ]
    assert all(isinstance(e, DashboardEntry) for e in entries)
    assert [row["workspace"] for row in json.loads(to_json(entries))] == [
        str(manifest.parent / "outputs" / "ws" / name) for name in ("asker", "quiet")
    ]
    assert inv("session.stop", "--all", state=registry.root).returncode == 0
    assert [e.status for e in collect_dashboard()] == ["stopped", "stopped"]
