"""Codex finds the commands: the generated skills, as the real Codex in the real image sees them.

From a copy of this checkout, `codex app-server` lists every generated orchestrator skill, and a
turn sends each skill's name and description to the model. In a session seeded from that copy,
Codex is offered only what it can run there: the session's own skills, never a host-only one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import REPOSITORY, sh

from conftest import BuiltCodexImage
from filare_testing.commands import inv
from filare_testing.fake_model import API_KEY_ENV, FakeModel, message
from filare_testing.fake_model import write_codex_home as write_fake_codex_home
from orchestrator.registry import Registry

pytestmark = [pytest.mark.agent, pytest.mark.image]

WORKSPACE = "/home/agent/workspace"


def generated_skills(root: Path) -> dict[str, dict[str, Any]]:
    """name -> front matter of each generated SKILL.md under `root`."""
    found = {}
    for path in sorted(root.glob("*/SKILL.md")):
        front = yaml.safe_load(path.read_text().split("---")[1])
        found[front["name"]] = front
    return found


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean checkout: the repository's tracked files, as a fresh clone would have them."""
    copy = tmp_path_factory.mktemp("checkout") / "repo"
    listed = sh("git", "-C", str(REPOSITORY), "ls-files", "-z").stdout.split("\0")
    for name in filter(None, listed):
        source = REPOSITORY / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    sh("git", "-C", str(copy), "init", "-q", "-b", "main")
    sh("git", "-C", str(copy), "add", ".")
    sh("git", "-C", str(copy), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    return copy


class AppServer:
    """`codex app-server` over stdio: newline-delimited JSON-RPC."""

    def __init__(self, argv: list[str]) -> None:
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.next_id = 0

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        self._send({"id": self.next_id, "method": method, "params": params})
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline()
            assert line, self.process.stderr.read() if self.process.stderr else "no output"
            answer = json.loads(line)
            if answer.get("id") == self.next_id:
                assert "result" in answer, answer
                result: dict[str, Any] = answer["result"]
                return result

    def notify(self, method: str) -> None:
        self._send({"method": method})

    def _send(self, payload: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(payload) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def skills_listed(argv: list[str], cwd: str) -> list[dict[str, Any]]:
    server = AppServer(argv)
    try:
        server.request("initialize", {"clientInfo": {"name": "filare-tests", "version": "0"}})
        server.notify("initialized")
        result = server.request("skills/list", {"cwds": [cwd]})
    finally:
        server.close()
    (entry,) = result["data"]
    assert entry["errors"] == []
    return [skill for skill in entry["skills"] if skill["scope"] != "system"]


def test_codex_in_the_checkout_lists_every_orchestrator_skill(
    checkout: Path, codex_image: BuiltCodexImage, tmp_path: Path, fake: FakeModel
) -> None:
    home = tmp_path / "home"
    write_fake_codex_home(home, fake.container_url)
    home.chmod(0o777)
    run = [
        "docker",
        "run",
        "--rm",
        "-i",
        "--user",
        "4242:4242",
        "--add-host",
        "host.docker.internal:host-gateway",
        "-e",
        f"{API_KEY_ENV}=x",
        "-v",
        f"{home}:/home/agent/.codex",
        "-v",
        f"{checkout}:{WORKSPACE}",
        "--workdir",
        WORKSPACE,
        codex_image.tag,
    ]
    expected = generated_skills(checkout / ".agents" / "skills")
    assert "session-start" in expected and "commands-check" in expected

    listed = skills_listed([*run, "codex", "app-server"], WORKSPACE)
    assert {s["name"] for s in listed} == set(expected)
    for skill in listed:
        assert skill["scope"] == "repo" and skill["enabled"] is True
        assert skill["description"] == expected[skill["name"]]["description"]

    fake.enqueue(message("ok"))
    turn = sh(
        *run,
        "codex",
        "exec",
        "--json",
        "--dangerously-bypass-approvals-and-sandbox",
        "--skip-git-repo-check",
        "which commands do you know?",
        check=False,
        timeout=120,
    )
    assert turn.returncode == 0, turn.stdout + turn.stderr
    sent = fake.model_requests[0].text()
    for name, front in expected.items():
        assert name in sent
        assert json.dumps(front["description"])[1:-1] in sent


def test_a_sessions_codex_is_offered_only_what_it_can_run(
    checkout: Path,
    codex_image: BuiltCodexImage,
    registry: Registry,
    fake: FakeModel,
) -> None:
    codex_dir = checkout / "outputs" / "codex-home"
    write_fake_codex_home(codex_dir, fake.container_url)
    (checkout / "outputs" / "model.env").write_text(f"{API_KEY_ENV}=x\n")
    key = checkout / "outputs" / "id_test"
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
    manifest = checkout / "outputs" / "skills.yml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "id": "skillcheck",
                "role": "skillcheck",
                "branch": "agent/skillcheck",
                "workspace": "ws",
                "env_file": "model.env",
                "ssh_key": "id_test",
                "codex_dir": "codex-home",
                "image": codex_image.tag,
            }
        )
    )
    started = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        host_only = {
            name
            for name, front in generated_skills(checkout / ".agents" / "skills").items()
            if front["metadata"]["runs-in"] == "host"
        }
        session_side = set(generated_skills(checkout / "agents" / "session" / "skills"))
        workspace = checkout / "outputs" / "ws"
        assert (workspace / ".agents" / "skills" / "session-start" / "SKILL.md").exists()

        container = "filare-skillcheck-skillcheck"
        app_server = ["docker", "exec", "-i", "-w", WORKSPACE, container]
        app_server += ["agent-entrypoint", "codex", "app-server"]
        listed = skills_listed(app_server, WORKSPACE)
        usable = {s["name"] for s in listed if s["enabled"]}
        assert usable.isdisjoint(host_only), usable & host_only
        assert session_side <= usable
        assert {s["name"] for s in listed if not s["enabled"]} >= host_only

        fake.enqueue(message("ok"))
        sent = inv(
            "session.send",
            "--session",
            "skillcheck",
            "--message",
            "which commands?",
            "--wait",
            state=registry.root,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        request = fake.model_requests[0].text()
        assert all(f"- {name}:" in request for name in session_side)
        assert not any(f"- {name}:" in request for name in host_only)
    finally:
        inv("session.stop", "--session", "skillcheck", "--timeout", "1", state=registry.root)
