"""Reconciling records with containers: running, orphan, stale and exited sessions."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from filare_testing.commands import REPOSITORY
from orchestrator.engine import Container
from orchestrator.listing import STATUSES
from orchestrator.listing import reconcile as _reconcile
from tests.test_registry import state


def container(session_id: str, cid: str, status: str = "running") -> Container:
    labels = {"filare.session": session_id, "filare.role": "coder", "filare.owner": "me"}
    return Container(cid, f"filare-coder-{session_id}", status, "img", datetime.now(UTC), labels)


def test_statuses() -> None:
    records = [
        state("ok").replace(container_id="c1"),
        state("stale").replace(container_id="c2"),
        state("gone", status="stopped"),
        state("exited").replace(container_id="c4"),
        state("replaced").replace(container_id="old"),
    ]
    containers = [
        container("ok", "c1"),
        container("orphan", "c3"),
        container("exited", "c4", status="exited"),
        container("replaced", "new"),
    ]
    views = {v.session_id: v for v in _reconcile(records, containers)}
    assert {k: v.status for k, v in views.items()} == {
        "ok": "running",
        "stale": "stale",
        "gone": "stopped",
        "orphan": "orphan",
        "exited": "exited",
        "replaced": "orphan",
    }
    assert views["orphan"].owner == "me"
    assert views["ok"].as_json()["container_id"] == "c1"


def test_running_container_is_preferred_over_an_exited_twin() -> None:
    record = state("a").replace(container_id="live")
    views = _reconcile([record], [container("a", "dead", "exited"), container("a", "live")])
    assert [(v.session_id, v.status, v.container_id) for v in views] == [("a", "running", "live")]


JSON_FIELDS = [
    "session",
    "role",
    "owner",
    "status",
    "branch",
    "manifest",
    "tags",
    "container_id",
    "container",
    "image",
    "workspace",
    "started_at",
    "stopped_at",
    "age_seconds",
    "error",
    "engine",
]


def test_session_list_json_fields_are_a_stable_interface() -> None:
    record = state("a").replace(container_id="c1", tags=["x"], branch="agent/a")
    records = [record, state("b", status="error").replace(error="image missing")]
    views = {v.session_id: v for v in _reconcile(records, [container("a", "c1")])}
    running, failed = views["a"].as_json(), views["b"].as_json()
    assert list(running) == JSON_FIELDS
    assert list(failed) == JSON_FIELDS
    assert (running["session"], running["status"], running["tags"]) == ("a", "running", ["x"])
    assert (running["branch"], running["container"]) == ("agent/a", "filare-coder-a")
    assert (failed["status"], failed["error"]) == ("error", "image missing")
    json.dumps([running, failed])  # plain JSON types only


AGENT_FIELDS = [
    "agent",
    "agent_since",
    "agent_reason",
    "turns",
    "last_message",
    "questions_waiting",
    "tokens_last_turn",
    "tokens_conversation",
    "tokens_budget",
    "turn_elapsed_seconds",
    "stalled_since",
]


def test_the_readme_documents_every_json_field_and_status() -> None:
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    for name in [*JSON_FIELDS, *AGENT_FIELDS]:
        assert f"`{name}`" in readme, name
    for status in STATUSES:
        assert f"| `{status}` |" in readme, status
