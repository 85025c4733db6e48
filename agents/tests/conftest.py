"""Fixtures for tests on a real Docker engine (marker `agent`).

They fail, never skip, when no engine answers: in CI a green run must mean the lifecycle really
ran. Each test gets its own registry folder, and containers are told apart by the
`filare.registry` label, so tests never see (or remove) anyone else's containers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import (
    CODEX_TEST_IMAGE,
    REPOSITORY,
    SMOKE_TAG,
    MakeManifest,
    inv,
    remove_ours,
    sh,
)

from filare_testing.engines import OwnEngine, claimed_engine
from filare_testing.fake_model import FakeModel
from filare_testing.ssh_engine import SshEngine, claimed_ssh_engine
from orchestrator.registry import Registry


@pytest.fixture
def fake() -> Iterator[FakeModel]:
    """A scripted model server of the test's own, for the real Codex to talk to."""
    with FakeModel() as model:
        yield model


@pytest.fixture(scope="session")
def docker_engine() -> None:
    try:
        sh("docker", "info", timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.fail(
            f"agent tests need a running Docker engine ({exc}); see README, Troubleshooting"
        )


@pytest.fixture(scope="session")
def smoke_image(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny offline image, built through the real `codex.build` task."""
    result = inv(
        "codex.build",
        "--dockerfile",
        "docker/Dockerfile.smoke",
        "--tag",
        SMOKE_TAG,
        state=tmp_path_factory.mktemp("build-state"),
    )
    assert result.returncode == 0, result.stderr
    assert f"built {SMOKE_TAG}" in result.stdout
    # Docker's banner for a machine without buildx reads like a failure: it is left out.
    assert "legacy builder" not in result.stdout + result.stderr
    return SMOKE_TAG


# Test engines these tests may start (others on the machine use other indices).
TEST_ENGINE_INDICES = range(1, 10)


@pytest.fixture(scope="session")
def test_engine(docker_engine: None) -> Iterator[OwnEngine]:
    """A Docker engine of the tests' own, for tests that restart an engine: never the machine's.

    The tool is pointed at it with `DOCKER_HOST=test_engine.host`; its containers reach this
    machine (a fake model server, say) at `host.docker.internal`, as on the machine's engine.
    """
    with claimed_engine(TEST_ENGINE_INDICES) as engine:
        yield engine


@pytest.fixture(scope="session")
def test_engine_smoke_image(test_engine: OwnEngine, smoke_image: str) -> str:
    """The smoke image, copied into the test engine."""
    test_engine.load_image(smoke_image)
    return smoke_image


# Test engines reached over ssh (an sshd in the engine's network namespace).
SSH_ENGINE_INDICES = range(20, 30)


@pytest.fixture(scope="session")
def ssh_engine(docker_engine: None) -> Iterator[SshEngine]:
    """A Docker engine of the tests' own reached as a remote one: Docker context
    `ssh_engine.context` (`ssh://root@10.77.N.2`), through an sshd of the tests' own.

    The context exists only in `ssh_engine.env` (its own `DOCKER_CONFIG`, and a `PATH` whose
    `ssh` uses the test key and pinned host key): give that to the tool (`inv(...,
    environment=ssh_engine.env)`), or use `ssh_environment` for calls in this process.
    `ssh_engine.engine` is the `OwnEngine` behind it (its socket, for quick setup and checks).
    """
    with claimed_ssh_engine(SSH_ENGINE_INDICES) as ssh:
        yield ssh


@pytest.fixture(scope="session")
def ssh_engine_smoke_image(ssh_engine: SshEngine, smoke_image: str) -> str:
    """The smoke image, copied into the ssh engine."""
    ssh_engine.load_image(smoke_image)
    return smoke_image


@pytest.fixture
def ssh_environment(ssh_engine: SshEngine, monkeypatch: pytest.MonkeyPatch) -> SshEngine:
    """This process's environment set to reach `ssh_engine.context` (for library calls made
    here rather than in a subprocess), restored after the test."""
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in ssh_engine.env.items():
        monkeypatch.setenv(name, value)
    return ssh_engine


# The smoke image under a kind of its own: the tool refuses a turn on the smoke image (it has
# no Codex), while tests of the host's side of a turn (its record, its transcript folder, the
# inbox) need one recorded; on this image its runner then fails at `codex`, as they expect.
TURNS_SMOKE_TAG = "filare-codex:smoke-turns"


@pytest.fixture(scope="session")
def turn_smoke_image(smoke_image: str) -> str:
    build = subprocess.run(
        ["docker", "build", "--quiet", "--tag", TURNS_SMOKE_TAG, "-"],
        input=f"FROM {smoke_image}\nLABEL org.filare.image.kind=turn-test\n",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    return TURNS_SMOKE_TAG


@pytest.fixture
def registry(tmp_path: Path, docker_engine: None) -> Iterator[Registry]:
    registry = Registry(tmp_path / "state")
    yield registry
    remove_ours(registry.root)


@pytest.fixture
def host_listener() -> Iterator[int]:
    """A TCP port bound on 0.0.0.0 of the host, answering `host` to whoever connects: what
    a session must (or must not) reach of this machine."""
    server = socket.create_server(("0.0.0.0", 0))  # noqa: S104 - on every address a session might try
    server.settimeout(60)

    def answer() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.sendall(b"host\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    server.close()
    thread.join(timeout=5)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small git repository that manifests live in, so workspaces are seeded from it."""
    repo = tmp_path / "project"
    (repo / "src").mkdir(parents=True)
    (repo / ".gitignore").write_text("outputs/\n")
    (repo / "src" / "main.py").write_text("print('hello')\n")
    sh("git", "-C", str(repo), "init", "-q", "-b", "main")
    sh("git", "-C", str(repo), "add", ".")
    sh("git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "i")
    keys = repo / "outputs" / "keys"
    keys.mkdir(parents=True)
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(keys / "id_test"))
    return repo


@pytest.fixture
def make_manifest(project: Path, smoke_image: str) -> MakeManifest:
    """Write a manifest of the given session ids in the project, with an env file each."""

    def make(
        ids: tuple[str, ...] = ("alpha", "beta"), name: str = "sessions.yml", **overrides: Any
    ) -> Path:
        sessions = []
        for session_id in ids:
            env_file = project / "outputs" / f"{session_id}.env"
            env_file.write_text(f"SESSION_NAME={session_id}\nONLY_{session_id.upper()}=yes\n")
            sessions.append(
                {
                    "id": session_id,
                    "role": "coder" if session_id != "beta" else "reviewer",
                    "branch": f"agent/{session_id}",
                    "workspace": f"outputs/ws/{session_id}",
                    "env_file": f"outputs/{session_id}.env",
                    **overrides,
                }
            )
        manifest = project / name
        manifest.write_text(
            yaml.safe_dump(
                {
                    "defaults": {
                        "image": smoke_image,
                        "ssh_key": "outputs/keys/id_test",
                        "codex_dir": "outputs/codex-home",
                    },
                    "sessions": sessions,
                },
                sort_keys=False,
            )
        )
        return manifest

    return make


BUILD_TIMEOUT = 1800.0
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def run_task(*args: str, timeout: float = BUILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """`inv ARGS` from the checkout, output captured (pytest shows it when a test fails)."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPOSITORY,
        check=False,
    )


def explain(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"


@dataclass(frozen=True)
class BuiltCodexImage:
    tag: str
    base: str
    output: str


@pytest.fixture(scope="session")
def codex_image(docker_engine: None) -> BuiltCodexImage:
    """The real Codex image, built through the tasks exactly as docs/codex-image.md says, once
    per run (seconds from Docker's layer cache after the first build on a machine).

    With no registry: `inv codex.base` (kept when it exists), then `inv codex.build`, which picks
    that base up when the default one is absent. Behind a TLS-intercepting proxy the build needs
    the proxy's CA: the host's bundle is passed (`$FILARE_CA_BUNDLE` overrides it).
    """
    base = run_task("codex.base")
    assert base.returncode == 0, explain(base)
    args = ["codex.build", "--tag", CODEX_TEST_IMAGE]
    bundle = os.environ.get("FILARE_CA_BUNDLE") or (
        str(HOST_CA_BUNDLE) if HOST_CA_BUNDLE.is_file() else ""
    )
    if bundle:
        args += ["--ca-bundle", bundle]
    build = run_task(*args)
    assert build.returncode == 0, explain(build)
    lines = build.stdout.splitlines()
    assert lines[0].startswith("base image: "), explain(build)
    assert lines[-1].startswith(f"built {CODEX_TEST_IMAGE}  id sha256:"), explain(build)
    return BuiltCodexImage(CODEX_TEST_IMAGE, lines[0].split()[2], build.stdout)


@pytest.fixture(scope="session")
def test_engine_codex_image(test_engine: OwnEngine, codex_image: BuiltCodexImage) -> str:
    """The real Codex image, copied into the test engine."""
    test_engine.load_image(codex_image.tag)
    return codex_image.tag
