"""Sessions on an engine that does not share this machine's files: the whole loop on named
volumes, through the engine only, with no bind mount.

The engine is a test engine of the tests' own reached over ssh (`ssh_engine`: an sshd in the
engine's network namespace, a context `ssh://root@…` in a DOCKER_CONFIG of its own), running the
real Codex image against the fake model on this host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import inv, sh, wait_until

from conftest import BuiltCodexImage
from filare_testing.fake_model import API_KEY_ENV, FakeModel, message
from filare_testing.fake_model import write_codex_home as write_fake_codex_home
from filare_testing.ssh_engine import SshEngine
from orchestrator.registry import Registry

pytestmark = [pytest.mark.agent, pytest.mark.image]


class Remote:
    """The ssh engine as these tests use it: the tool runs with its environment."""

    def __init__(self, ssh: SshEngine) -> None:
        self.ssh = ssh
        self.engine = ssh.engine
        self.context = ssh.context

    def docker(self, *args: str, check: bool = True) -> str:
        return self.engine.docker(*args, check=check)

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.engine.docker("inspect", name))
        return data[0]

    def volumes(self, registry: Registry) -> list[str]:
        found = self.docker(
            "volume", "ls", "-q", "--filter", f"label=filare.registry={registry.root}"
        )
        return sorted(found.split())

    def inv(self, *args: str, state: Path) -> Any:
        return inv(*args, state=state, environment=self.ssh.env)


@pytest.fixture(scope="module")
def remote(ssh_engine: SshEngine, codex_image: BuiltCodexImage) -> Remote:
    """The ssh engine, holding the real Codex image."""
    ssh_engine.load_image(codex_image.tag)
    return Remote(ssh_engine)


def _manifest(
    project: Path,
    remote: Remote,
    image: str,
    fake: FakeModel,
    ids: tuple[str, ...] = ("far",),
    **extra: object,
) -> Path:
    url = f"http://{remote.engine.host_address}:{fake.port}/v1"
    write_fake_codex_home(project / "outputs" / "codex-home", url)
    (project / "outputs" / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    (project / "agents").mkdir(exist_ok=True)
    (project / "agents" / "AGENT.coder.md").write_text("Work carefully, far away.\n")
    sh("git", "-C", str(project), "add", "agents")
    sh("git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "r")
    manifest = project / "far.yml"
    defaults = {
        "image": image,
        "engine": remote.context,
        "egress": "open",
        "ssh_key": "outputs/keys/id_test",
        "env_file": "outputs/model.env",
        "codex_dir": "outputs/codex-home",
        **extra,
    }
    sessions = [
        {"id": sid, "role": "coder", "branch": f"agent/{sid}", "workspace": f"ws/{sid}"}
        for sid in ids
    ]
    manifest.write_text(yaml.safe_dump({"defaults": defaults, "sessions": sessions}))
    return manifest


def test_the_whole_loop_on_volumes_with_no_bind_mount(
    registry: Registry,
    project: Path,
    codex_image: BuiltCodexImage,
    fake: FakeModel,
    remote: Remote,
) -> None:
    manifest = _manifest(project, remote, codex_image.tag, fake)
    state = registry.root
    try:
        dry = remote.inv("session.start", "--manifest", str(manifest), "--dry-run", state=state)
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert f"docker --context {remote.context} run --detach" in dry.stdout
        assert "--mount type=volume,source=filare-coder-far-" in dry.stdout
        assert "--volume" not in dry.stdout and not state.exists()

        start = remote.inv("session.start", "--manifest", str(manifest), state=state)
        assert start.returncode == 0, start.stdout + start.stderr[-3000:]

        # Nothing of this machine is mounted: four volumes, the SSH folder a tmpfs.
        data = remote.inspect("filare-coder-far")
        mounts = {m["Destination"]: m for m in data["Mounts"]}
        assert {m["Type"] for m in mounts.values()} == {"volume"}, mounts
        assert set(mounts) == {
            "/home/agent/workspace",
            "/home/agent/.codex",
            "/home/agent/.filare",
            "/run/filare/inbox",
        }
        assert "/home/agent/.ssh" in data["HostConfig"]["Tmpfs"]
        assert data["HostConfig"]["Binds"] in (None, [])
        assert remote.volumes(registry) == sorted(m["Name"] for m in mounts.values())
        # The key is in the tmpfs, 0600, the session's; the workspace was seeded, the session's.
        listing = remote.docker(
            "exec", "filare-coder-far", "stat", "-c", "%a %u %n",
            "/home/agent/.ssh", "/home/agent/.ssh/id_rsa", "/home/agent/workspace/src/main.py",
        ).splitlines()  # fmt: skip
        assert listing == [
            "700 10001 /home/agent/.ssh",
            "600 10001 /home/agent/.ssh/id_rsa",
            "644 10001 /home/agent/workspace/src/main.py",
        ]
        key = (project / "outputs" / "keys" / "id_test").read_text()
        mounted = remote.docker("exec", "filare-coder-far", "cat", "/home/agent/.ssh/id_rsa")
        assert mounted.strip() == key.strip()
        assert not (project / "ws" / "far").exists()
        # The session cannot write its inbox (root's); the host can, through the engine.
        refused = remote.docker(
            "exec", "filare-coder-far", "touch", "/run/filare/inbox/x", check=False
        )
        assert "x" not in remote.docker("exec", "filare-coder-far", "ls", "/run/filare/inbox")
        del refused

        # A Codex turn: the message goes into the inbox volume, the transcript comes home.
        fake.enqueue(message("Hello from far away."))
        sent = remote.inv(
            "session.send", "--session", "far", "--message", "Say hello.", "--wait",
            state=state,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "Hello from far away." in sent.stdout
        assert "Say hello." in fake.model_requests[-1].texts("user")
        assert "Work carefully, far away." in json.dumps(fake.model_requests[-1].body)
        transcripts = registry.session_dir("coder", "far") / "agent" / "transcript"
        assert (transcripts / "0001.exit").is_file()
        log = remote.inv("session.log", "--session", "far", "--json", state=state)
        assert log.returncode == 0, log.stderr
        kinds = [json.loads(line)["type"] for line in log.stdout.splitlines()]
        assert kinds[0] == "turn_started" and "turn_completed" in kinds, kinds

        # Ask and answer: the question comes home, is taken from the volume, the answer is a turn.
        remote.docker(
            "exec", "filare-coder-far", "agent-entrypoint", "filare-ask", "--reason", "May I?"
        )
        listed = remote.inv("feedback.list", "--json", state=state)
        assert listed.returncode == 0, listed.stderr
        (question,) = json.loads(listed.stdout)
        assert (question["session_id"], question["reason"]) == ("far", "May I?")
        left = remote.docker("exec", "filare-coder-far", "ls", "/home/agent/.filare/questions")
        assert left == ""
        fake.enqueue(message("Thanks, doing it."))
        answered = remote.inv(
            "feedback.answer", "--id", question["id"], "--decision", "approved", state=state
        )
        assert answered.returncode == 0, answered.stdout + answered.stderr
        waited = remote.inv("session.wait", "--session", "far", state=state)
        assert waited.returncode == 0 and "Thanks, doing it." in waited.stdout, waited.stdout

        # Collect: the agent's commit comes home as the session's refs.
        remote.docker(
            "exec", "--user", "10001:10001", "filare-coder-far", "git", "-C",
            "/home/agent/workspace", "-c", "user.name=a", "-c", "user.email=a@a", "commit",
            "--allow-empty", "-qm", "far work",
        )  # fmt: skip
        collected = remote.inv("session.collect", "--session", "far", state=state)
        assert collected.returncode == 0, collected.stdout + collected.stderr
        assert collected.stdout.splitlines()[1].split()[:3] == ["far", "collected", "1"]

        # Stop keeps the volumes; the transcript is still read here; prune --records removes all.
        stop = remote.inv("session.stop", "--session", "far", state=state)
        assert stop.returncode == 0, stop.stderr
        assert len(remote.volumes(registry)) == 4
        again = remote.inv("session.log", "--session", "far", "--json", state=state)
        assert again.returncode == 0 and "Thanks, doing it." in again.stdout
        pruned = remote.inv("session.prune", "--records", state=state)
        assert pruned.returncode == 0, pruned.stdout + pruned.stderr
        assert remote.volumes(registry) == []
        assert not registry.session_dir("coder", "far").exists()
    finally:
        remote.inv("session.stop", "--all", state=state)
        remote.inv("session.prune", "--records", state=state)


def test_the_engine_stopped_marks_its_session_unreachable_then_it_resumes_on_its_volumes(
    registry: Registry,
    project: Path,
    codex_image: BuiltCodexImage,
    fake: FakeModel,
    remote: Remote,
) -> None:
    manifest = _manifest(project, remote, codex_image.tag, fake)
    state = registry.root
    try:
        start = remote.inv("session.start", "--manifest", str(manifest), state=state)
        assert start.returncode == 0, start.stdout + start.stderr[-3000:]
        fake.enqueue(message("First."))
        sent = remote.inv(
            "session.send", "--session", "far", "--message", "One.", "--wait", state=state
        )
        assert sent.returncode == 0 and "First." in sent.stdout, sent.stdout + sent.stderr

        remote.engine.stop_daemon()
        listed = remote.inv("session.list", "--json", state=state)
        assert listed.returncode == 0, listed.stderr
        (view,) = json.loads(listed.stdout)
        assert view["status"] == "unreachable"

        remote.engine.start()
        resume = remote.inv("session.resume", "--all", state=state)
        assert resume.returncode == 0, resume.stdout + resume.stderr
        # The same volumes: the workspace not seeded again, the conversation goes on.
        fake.enqueue(message("Second."))
        sent = remote.inv(
            "session.send", "--session", "far", "--message", "Two.", "--wait", state=state
        )
        assert sent.returncode == 0 and "Second." in sent.stdout, sent.stdout + sent.stderr
        assert "One." in json.dumps(fake.model_requests[-1].body)
        wait_until(lambda: len(remote.volumes(registry)) == 4, "the session's four volumes")
    finally:
        remote.inv("session.stop", "--all", state=state)
        remote.inv("session.prune", "--records", state=state)


def test_a_first_start_that_fails_there_leaves_no_volume_and_the_next_one_seeds_again(
    registry: Registry,
    project: Path,
    codex_image: BuiltCodexImage,
    fake: FakeModel,
    remote: Remote,
) -> None:
    """`docker run` refuses the session after its volumes were seeded (a memory limit below
    Docker's minimum): no container, no volume is left, and a start that can run seeds again and
    records its base."""
    manifest = _manifest(project, remote, codex_image.tag, fake, resources={"memory": "1m"})
    state = registry.root
    try:
        failed = remote.inv("session.start", "--manifest", str(manifest), state=state)
        assert failed.returncode != 0, failed.stdout + failed.stderr
        assert "Minimum memory limit" in failed.stdout + failed.stderr, failed.stdout
        assert remote.volumes(registry) == []
        assert remote.docker("ps", "-aq", "--filter", f"label=filare.registry={state}") == ""

        data = yaml.safe_load(manifest.read_text())
        del data["defaults"]["resources"]
        manifest.write_text(yaml.safe_dump(data))
        start = remote.inv("session.start", "--manifest", str(manifest), state=state)
        assert start.returncode == 0, start.stdout + start.stderr[-3000:]
        record = registry.read("coder", "far")
        assert record is not None and record.base_commit is not None
        assert len(remote.volumes(registry)) == 4
    finally:
        remote.inv("session.stop", "--all", state=state)
        remote.inv("session.prune", "--records", state=state)


def test_the_egress_proxy_there_runs_on_volumes_and_its_denials_come_home(
    registry: Registry,
    project: Path,
    codex_image: BuiltCodexImage,
    fake: FakeModel,
    remote: Remote,
) -> None:
    """The default egress on an engine without this machine's files: the proxy there, its
    policies handed over and its denials brought home through the engine, no bind mount. A
    session whose record is pruned while the proxy serves another leaves no denial there."""
    from orchestrator.egress_proxy import denials_file, proxy_name

    manifest = _manifest(
        project,
        remote,
        codex_image.tag,
        fake,
        ids=("far", "near"),
        egress={"allow": ["host.docker.internal"]},
    )
    # The model on "this host": host.docker.internal is the engine's host, this machine here.
    write_fake_codex_home(
        project / "outputs" / "codex-home", f"http://host.docker.internal:{fake.port}/v1"
    )
    state = registry.root
    proxy = proxy_name(state)
    try:
        start = remote.inv("session.start", "--manifest", str(manifest), state=state)
        assert start.returncode == 0, start.stdout + start.stderr[-3000:]
        for name in ("filare-coder-far", proxy):
            data = remote.inspect(name)
            assert data["HostConfig"]["Binds"] in (None, []), (name, data["HostConfig"]["Binds"])
            assert {m["Type"] for m in data["Mounts"]} <= {"volume"}, data["Mounts"]
        proxy_volumes = sorted(
            remote.docker(
                "volume", "ls", "-q", "--filter", f"label=filare.egress-registry={state}"
            ).split()
        )
        assert proxy_volumes == [f"{proxy}-denials", f"{proxy}-policies"]
        written = remote.docker("exec", proxy, "sh", "-c", "cat /egress/policies/*.json")
        assert '"host.docker.internal"' in written and '"session": "far"' in written

        # The model is reached through the proxy only because its host is allowed.
        fake.enqueue(message("Hello through the proxy."))
        sent = remote.inv(
            "session.send", "--session", "far", "--message", "Say hello.", "--wait", state=state
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "Hello through the proxy." in sent.stdout
        # A host not allowed: refused there, the denial brought home.
        for container in ("filare-coder-far", "filare-coder-near"):
            refused = remote.docker(
                "exec", container, "sh", "-c",
                "python3 -c \"import urllib.request as u; u.urlopen('http://denied.test/')\" 2>&1",
                check=False,
            )  # fmt: skip
            assert "403" in refused, refused
        denied = remote.inv("session.egress", "--session", "far", "--json", state=state)
        assert denied.returncode == 0, denied.stderr
        rows = json.loads(denied.stdout)
        assert [(r["host"], r["port"], r["reason"]) for r in rows] == [
            ("denied.test", 80, "host not allowed")
        ], rows
        listed = remote.inv("session.list", "--json", state=state)
        assert listed.returncode == 0, listed.stderr
        assert '"egress_denied": 1' in listed.stdout

        stop = remote.inv("session.stop", "--session", "far", state=state)
        assert stop.returncode == 0, stop.stderr
        pruned = remote.inv("session.prune", "--records", state=state)
        assert pruned.returncode == 0, pruned.stdout + pruned.stderr
        # The proxy still serves near: far's denials are gone from its volume, near's stay.
        kept = remote.docker("exec", proxy, "ls", "-A", "/egress/denials/coder").split()
        assert sorted(kept) == ["near.count", "near.jsonl"], kept
        assert not denials_file(state, "coder", "far").exists()

        stop = remote.inv("session.stop", "--session", "near", state=state)
        assert stop.returncode == 0, stop.stderr
        pruned = remote.inv("session.prune", "--records", state=state)
        assert pruned.returncode == 0, pruned.stdout + pruned.stderr
        assert remote.docker("ps", "-aq", "--filter", f"name={proxy}") == ""
        assert (
            remote.docker("volume", "ls", "-q", "--filter", f"label=filare.egress-registry={state}")
            == ""
        )
    finally:
        remote.inv("session.stop", "--all", state=state)
        remote.inv("session.prune", "--records", state=state)
