"""The operator loop: agents ask (`filare-ask`), people answer (`feedback.answer`), one screen
shows the fleet (`session.dashboard`), and sessions come back after a restart (`session.resume`).

The question round trip and the restart run the real Codex on the real image against a fake
model; the queue under eight agents asking at once needs no Codex, so it runs on the smoke image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import REPOSITORY, MakeManifest, docker, wait_until

from conftest import BuiltCodexImage
from filare_testing.commands import inv, results
from filare_testing.engines import OwnEngine
from filare_testing.fake_model import API_KEY_ENV, FakeModel, message, shell
from filare_testing.fake_model import write_codex_home as write_fake_codex_home
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent


def task(
    registry: Registry, *args: str, health_interval: str = "", **env: str
) -> tuple[int, str, str]:
    if health_interval:
        env["FILARE_HEALTH_INTERVAL"] = health_interval
    result = inv(*args, state=registry.root, environment=env)
    return result.returncode, result.stdout, result.stderr


def without_age(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of two listings made a moment apart, without what the moment changes."""
    return [{k: v for k, v in row.items() if k != "age_seconds"} for row in rows]


def as_json(registry: Registry, *args: str, **env: str) -> Any:
    code, out, err = task(registry, *args, "--json", **env)
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def codex_manifest(project: Path, codex_image: BuiltCodexImage, fake: FakeModel) -> Iterator[Path]:
    """A manifest of two sessions on the real image, whose Codex talks to `fake`."""
    write_fake_codex_home(project / "outputs" / "codex-home", fake.container_url)
    (project / "outputs" / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    manifest = project / "operators.yml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "defaults": {
                    "image": codex_image.tag,
                    "role": "operated",
                    "ssh_key": "outputs/keys/id_test",
                    "env_file": "outputs/model.env",
                    "codex_dir": "outputs/codex-home",
                },
                "sessions": [
                    {"id": name, "branch": f"agent/{name}", "workspace": f"outputs/ws/{name}"}
                    for name in ("asker", "other")
                ],
            }
        )
    )
    yield manifest


@pytest.mark.image
def test_an_agent_asks_and_the_answer_comes_back_in_its_conversation(
    registry: Registry, codex_manifest: Path, fake: FakeModel
) -> None:
    assert task(registry, "session.start", "--manifest", str(codex_manifest))[0] == 0
    try:
        ask = (
            "filare-ask --reason 'May I push to main?' --requested-action 'git push' "
            "--suggested-reply yes --severity block"
        )
        fake.enqueue(shell(ask), message("I asked my operator and wait for the answer."))
        code, out, err = task(
            registry, "session.send", "--session", "asker", "--message", "push it", "--wait"
        )
        assert code == 0, out + err
        assert "Question " in fake.model_requests[1].tool_outputs()[0]["output"]

        (question,) = as_json(registry, "feedback.list")
        assert question["session_id"] == "asker" and question["reason"] == "May I push to main?"
        assert (question["severity"], question["decision"]) == ("block", None)
        assert question["requested_action"] == "git push"
        queue = registry.root / "prompts.json"
        assert sorted(json.loads(queue.read_text())[0]) == sorted(
            [
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
        )
        rows = {row["session"]: row for row in as_json(registry, "session.list")}
        assert rows["asker"]["agent"] == "waiting" and rows["asker"]["questions_waiting"] == 1
        assert rows["other"]["agent"] == "none"
        board = as_json(registry, "session.dashboard")
        assert without_age(board["sessions"]) == without_age(as_json(registry, "session.list"))
        assert board["questions"] == as_json(registry, "feedback.list", "--pending")

        before = queue.read_bytes()
        for args, expected in [
            (["--id", "nope", "--decision", "approved"], "no question with id 'nope'"),
            (["--id", question["id"], "--decision", "maybe"], "must be approved or rejected"),
        ]:
            code, _, err = task(registry, "feedback.answer", *args)
            assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
        assert queue.read_bytes() == before

        fake.enqueue(message("Pushing now."))
        answer = ["feedback.answer", "--id", question["id"], "--decision", "approved"]
        code, out, err = task(registry, *answer, "--reply", "Yes, push to main")
        assert code == 0, err
        assert "delivered as turn 0002 of asker" in out
        code, out, err = task(registry, "session.wait", "--session", "asker", "--timeout", "60")
        assert code == 0, out + err
        delivered = fake.model_requests[-1]
        assert "Yes, push to main" in delivered.texts("user")[-1]
        assert "approved" in delivered.texts("user")[-1]
        assert "push it" in delivered.texts("user")  # the same conversation
        requests = len(fake.requests)

        code, out, err = task(registry, *answer, "--reply", "Yes, push to main")
        assert code == 0, err
        assert "already delivered in turn 0002" in out
        code, _, err = task(registry, *answer[:-1], "rejected")
        decided_at = as_json(registry, "feedback.list")[0]["decided_at"]
        assert code == 2 and err.strip() == (
            f"error: question {question['id']!r} was already answered: approved at "
            f"{decided_at}, delivered in turn 0002 of asker"
        )
        code, _, err = task(
            registry, "feedback.add", "--session", "asker", "--reason", "x", "--severity", "urgent"
        )
        assert code == 2
        assert err.strip() == "error: --severity must be info, warn or block, not 'urgent'"
        assert len(fake.requests) == requests
        (answered,) = as_json(registry, "feedback.list")
        assert (answered["decision"], answered["reply"]) == ("approved", "Yes, push to main")
        assert as_json(registry, "feedback.list", "--pending") == []
        rows = {row["session"]: row for row in as_json(registry, "session.list")}
        assert rows["asker"]["agent"] == "idle" and rows["asker"]["questions_waiting"] == 0
    finally:
        task(registry, "session.stop", "--manifest", str(codex_manifest), "--timeout", "1")


def test_eight_agents_asking_at_once_give_eight_questions(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    ids = tuple(f"ask{n}" for n in range(8))
    manifest = make_manifest(ids=ids, name="askers.yml")
    assert task(registry, "session.start", "--manifest", str(manifest))[0] == 0

    def ask(session_id: str) -> None:
        name = f"filare-coder-{session_id}"
        docker("exec", name, "agent-entrypoint", "filare-ask", "--reason", f"from {session_id}")

    threads = [threading.Thread(target=ask, args=(session_id,)) for session_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    gatherers = [
        subprocess.Popen(
            [sys.executable, "-m", "invoke", "feedback.list", "--json"],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
            env={**os.environ, "FILARE_STATE_DIR": str(registry.root)},
        )
        for _ in range(2)
    ]
    for gatherer in gatherers:
        gatherer.wait(timeout=120)
        assert gatherer.returncode == 0
    queue = json.loads((registry.root / "prompts.json").read_text())
    assert sorted(q["reason"] for q in queue) == sorted(f"from {s}" for s in ids)
    assert len({q["id"] for q in queue}) == 8
    for session_id in ids:
        folder = registry.session_dir("coder", session_id) / "agent" / "questions"
        assert list(folder.iterdir()) == []

    # A question of a session that is gone is not answered; the queue stays as it was.
    assert task(registry, "session.stop", "--session", "ask0")[0] == 0
    assert task(registry, "session.prune", "--records")[0] == 0
    before = (registry.root / "prompts.json").read_bytes()
    gone = next(q["id"] for q in queue if q["session_id"] == "ask0")
    code, _, err = task(registry, "feedback.answer", "--id", gone, "--decision", "rejected")
    assert code == 2 and "no session with id 'ask0'" in err
    assert (registry.root / "prompts.json").read_bytes() == before


def test_a_planted_question_is_read_as_untrusted_input(
    registry: Registry, make_manifest: MakeManifest, tmp_path: Path
) -> None:
    manifest = make_manifest(ids=("planter",), name="planter.yml")
    assert task(registry, "session.start", "--manifest", str(manifest))[0] == 0
    folder = registry.session_dir("coder", "planter") / "agent" / "questions"
    secret = tmp_path / "host-secret.json"
    secret.write_text(json.dumps({"reason": "HOST-SECRET"}))
    docker(
        "exec",
        "filare-coder-planter",
        "sh",
        "-c",
        f"mkdir -p ~/.filare/questions && ln -s {secret} ~/.filare/questions/link.json "
        "&& printf 'not json' > ~/.filare/questions/bad.json",
    )
    code, out, err = task(registry, "feedback.list", "--json")
    assert code == 0, err
    assert json.loads(out) == []
    assert "HOST-SECRET" not in out + err
    assert "bad.json: left alone" in err
    assert sorted(p.name for p in folder.iterdir()) == ["bad.json", "link.json"]


@pytest.mark.image
def test_sessions_come_back_after_a_daemon_restart_and_continue_their_conversations(
    registry: Registry,
    codex_manifest: Path,
    fake: FakeModel,
    test_engine: OwnEngine,
    test_engine_codex_image: str,
) -> None:
    """On the tests' own engine, which the test restarts (never the machine's); its Codex
    reaches the fake model on this machine at `host.docker.internal`, as on any engine."""
    on = {"DOCKER_HOST": test_engine.host}
    # Open egress: the egress proxy's image is the machine engine's, not this one's.
    data = yaml.safe_load(codex_manifest.read_text())
    data["defaults"]["egress"] = "open"
    codex_manifest.write_text(yaml.safe_dump(data))
    assert task(registry, "session.start", "--manifest", str(codex_manifest), **on)[0] == 0
    try:
        fake.enqueue(message("first answer"), message("first answer"))
        code, out, err = task(
            registry,
            "session.send",
            "--session",
            "asker",
            "--session",
            "other",
            "--message",
            "remember the word tangerine",
            "--wait",
            **on,
        )
        assert code == 0, out + err
        test_engine.restart()
        rows = {row["session"]: row["status"] for row in as_json(registry, "session.list", **on)}
        assert rows == {"asker": "exited", "other": "exited"}

        code, out, err = task(registry, "session.resume", "--all", **on)
        assert code == 0, out + err
        assert results(out) == {"asker": "started", "other": "started"}
        code, out, err = task(registry, "session.resume", "--all", **on)
        assert code == 0 and "no sessions to resume" in out
        code, out, err = task(registry, "session.resume", "--session", "asker", **on)
        assert code == 0 and results(out) == {"asker": "already running"}

        fake.enqueue(message("tangerine"))
        code, out, err = task(
            registry,
            "session.send",
            "--session",
            "asker",
            "--message",
            "which word?",
            "--wait",
            **on,
        )
        assert code == 0, out + err
        assert "remember the word tangerine" in fake.model_requests[-1].texts("user")
    finally:
        task(registry, "session.stop", "--manifest", str(codex_manifest), "--timeout", "1", **on)


@pytest.mark.image
def test_a_session_whose_codex_does_not_answer_is_unhealthy(
    registry: Registry, codex_manifest: Path
) -> None:
    code, out, err = task(
        registry,
        "session.start",
        "--manifest",
        str(codex_manifest),
        "--session",
        "asker",
        health_interval="1",
    )
    assert code == 0, out + err
    try:

        def status() -> str:
            rows = {row["session"]: row for row in as_json(registry, "session.list")}
            return str(rows["asker"]["status"])

        name = "filare-operated-asker"

        def health() -> str:
            return docker("inspect", "--format", "{{.State.Health.Status}}", name)

        wait_until(lambda: health() == "healthy", "the first health check", 60)
        assert status() == "running"
        # Codex stops answering: taken away by root, which the session itself is not.
        docker("exec", "--user", "0", name, "mv", "/usr/local/bin/codex", "/tmp/codex.away")
        wait_until(lambda: status() == "unhealthy", "the session to show unhealthy", 60)
        board = as_json(registry, "session.dashboard")
        assert {"session": "asker", "what": "unhealthy", "why": "unhealthy"} in board["failures"]
    finally:
        task(registry, "session.stop", "--manifest", str(codex_manifest), "--timeout", "1")
