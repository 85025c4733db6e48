"""A Docker engine reached over ssh, as a team reaches a build box: the tests' own engine in a
network namespace of its own, an sshd of the tests' own there, and a Docker context
`ssh://root@…` that only the tests' environment knows (filare_testing.ssh_engine)."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from agent_helpers import MakeManifest, inv, our_containers, sh

from conftest import SSH_ENGINE_INDICES
from filare_testing.ssh_engine import SshEngine, claimed_ssh_engine
from orchestrator import engine
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent


def test_docker_info_and_run_go_over_ssh_to_the_tests_engine(
    ssh_engine: SshEngine, ssh_engine_smoke_image: str
) -> None:
    root = ssh_engine.docker("info", "--format", "{{.DockerRootDir}}")
    assert root == str(ssh_engine.engine.data_root)
    name = f"over-ssh-{uuid.uuid4().hex[:8]}"
    said = ssh_engine.docker("run", "--name", name, ssh_engine_smoke_image, "echo", "over ssh")
    try:
        assert said == "over ssh"
        # There, seen through the engine's socket; not on the machine's engine.
        assert ssh_engine.engine.docker("inspect", "--format", "{{.State.Status}}", name) == (
            "exited"
        )
        assert sh("docker", "inspect", name, check=False).returncode != 0
    finally:
        ssh_engine.docker("rm", "-f", name, check=False)
    log = ssh_engine.log.read_text()
    assert "Accepted publickey for root" in log


def test_the_context_is_the_tests_own_and_needs_the_tests_ssh_setup(
    ssh_engine: SshEngine,
) -> None:
    """Without the test environment the context does not exist; with `DOCKER_CONFIG` alone
    (the wrapper off `PATH`) ssh has neither key nor host key and the engine is out of reach."""
    plain = {k: v for k, v in os.environ.items() if k not in {"DOCKER_HOST", "DOCKER_CONTEXT"}}
    unknown = subprocess.run(
        ["docker", "--context", ssh_engine.context, "info"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=plain,
    )
    assert unknown.returncode != 0
    assert "not found" in unknown.stderr
    without_wrapper = subprocess.run(
        ["docker", "--context", ssh_engine.context, "version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**plain, "DOCKER_CONFIG": str(ssh_engine.docker_config)},
    )
    assert without_wrapper.returncode != 0, without_wrapper.stdout


def test_context_hosts_reports_the_ssh_endpoint(ssh_environment: SshEngine) -> None:
    ssh = ssh_environment
    socket_context = f"{ssh.context}-socket"
    ssh.add_context(socket_context, ssh.engine.host)
    hosts = engine.context_hosts([ssh.context, socket_context])
    assert hosts == {
        ssh.context: f"ssh://root@{ssh.engine.engine_address}",
        socket_context: ssh.engine.host,
    }
    assert not engine.shares_files(hosts[ssh.context])
    assert engine.shares_files(hosts[socket_context])
    # Engine calls on the context go over ssh to the tests' engine.
    assert engine.runtimes(context=ssh.context) >= {"runc"}


def test_a_session_on_the_ssh_engine_is_refused_before_anything_is_written(
    ssh_engine: SshEngine,
    ssh_engine_smoke_image: str,
    registry: Registry,
    make_manifest: MakeManifest,
) -> None:
    """A session with its env file mounted cannot run on an engine that does not see this
    machine's files: refused as bad input, with nothing written anywhere (no proxy, volume or
    network made there first). Sessions there run on volumes (test_remote_storage.py)."""
    volumes = ssh_engine.engine.docker("volume", "ls", "-q")
    networks = ssh_engine.engine.docker("network", "ls", "-q")
    manifest = make_manifest(("alpha",), engine=ssh_engine.context, env_mode="mount")
    result = inv(
        "session.start", "--manifest", str(manifest), state=registry.root,
        environment=ssh_engine.env,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"engine {ssh_engine.context!r} is at {ssh_engine.host}" in result.stderr
    assert "field 'env_mode'" in result.stderr and "field 'egress'" not in result.stderr
    assert "Traceback" not in result.stderr
    assert not registry.root.exists()
    assert not (manifest.parent / "outputs" / "ws" / "alpha").exists()
    assert our_containers(registry, host=ssh_engine.engine.host) == []
    assert ssh_engine.engine.docker("volume", "ls", "-q") == volumes
    assert ssh_engine.engine.docker("network", "ls", "-q") == networks


def _stat(path: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under `path` (itself included), with its mtime, inode and size: a file
    changed inside a folder (a context's meta.json, a known_hosts line) leaves the folder's
    own mtime as it was."""
    found = {}
    for entry in [path, *(path.rglob("*") if path.is_dir() else ())]:
        try:
            status = entry.lstat()
        except FileNotFoundError:
            continue
        found[str(entry)] = (status.st_mtime_ns, status.st_ino, status.st_size)
    return found


def test_sshd_namespace_and_files_are_gone_after_the_block_and_the_machines_ssh_is_untouched(
    docker_engine: None,
) -> None:
    watched = [Path("/root/.ssh"), Path("/root/.docker"), Path("/etc/ssh/sshd_config")]
    before = {path: _stat(path) for path in watched}
    with claimed_ssh_engine(SSH_ENGINE_INDICES, multiplex=True) as ssh:
        # A connection held open (a shared master and a session behind it) while it ends.
        events = subprocess.Popen(
            ["docker", "--context", ssh.context, "events"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=ssh.env,
        )
        try:
            assert ssh.docker("version", "--format", "{{.Server.Version}}")
            # The listener, the connection's sshd and the client's shared master.
            inode = ssh.netns_inode()
            assert len(ssh.processes()) >= 3
            assert list(ssh.client.glob("control-*"))
            netns = Path("/run/netns") / ssh.engine.netns
            roots = [ssh.root, ssh.engine.root, ssh.engine.data_root]
            assert netns.exists() and all(root.exists() for root in roots)
        finally:
            events.terminate()
            events.wait(timeout=30)
    assert ssh.processes(netns_inode=inode) == []
    assert not netns.exists()
    assert not any(root.exists() for root in roots)
    assert sh("ip", "link", "show", f"fte{ssh.engine.index}a", check=False).returncode != 0
    assert {path: _stat(path) for path in watched} == before


def test_streams_go_both_ways_over_ssh(
    ssh_engine: SshEngine, ssh_engine_smoke_image: str, tmp_path: Path
) -> None:
    """What a session on a remote engine is made of: a tar stream copied into a container, a
    file written through `exec -i`'s standard input, and both copied back out, unchanged."""
    payload = tmp_path / "in"
    payload.mkdir()
    blob = os.urandom(8 << 20)
    (payload / "blob").write_bytes(blob)
    tarball = subprocess.run(
        ["tar", "-C", str(payload), "-c", "blob"], capture_output=True, timeout=60, check=True
    ).stdout
    name = f"streams-{uuid.uuid4().hex[:8]}"
    ssh_engine.docker("create", "--name", name, ssh_engine_smoke_image, "sleep", "300")
    try:
        over = ["docker", "--context", ssh_engine.context]

        def run(*args: str, data: bytes = b"") -> bytes:
            done = subprocess.run(
                [*over, *args], input=data, capture_output=True, timeout=120, env=ssh_engine.env,
                check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr.decode(errors="replace")
            return done.stdout

        run("cp", "-", f"{name}:/tmp", data=tarball)
        run("start", name)
        run("exec", "-i", name, "sh", "-c", "cat > /tmp/typed", data=b"over stdin\n")
        out = tmp_path / "out"
        out.mkdir()
        back = run("cp", f"{name}:/tmp/blob", "-")
        subprocess.run(["tar", "-C", str(out), "-x"], input=back, timeout=60, check=True)
        assert (out / "blob").read_bytes() == blob
        assert run("exec", name, "cat", "/tmp/typed") == b"over stdin\n"
    finally:
        ssh_engine.docker("rm", "-f", name, check=False)
