"""Containment on a real engine: egress through the proxy, the host out of reach, limits.

A fake internet of the tests' own: a network the test creates, with one web server on it that
two names (`allowed.test`, `denied.test`) are pinned to, and an SSH-like banner on port 22.
The sessions' proxy is connected to that network by the test, as the proxy's outside network
would lead to the internet.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import MakeManifest, docker, inspect, inv

from conftest import BuiltCodexImage
from filare_testing.engines import claimed_engine
from filare_testing.fake_model import API_KEY_ENV, FakeModel, message, shell
from filare_testing.fake_model import write_codex_home as write_fake_codex_home
from orchestrator import egress_proxy
from orchestrator.egress_proxy import denials_file, proxy_name
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent

PAGE = "hello from the fake internet"


@dataclass(frozen=True)
class Internet:
    network: str
    address: str


@pytest.fixture
def internet(smoke_image: str) -> Iterator[Internet]:
    """A web server (port 80) and an SSH banner (port 22) on a network of the test's own."""
    network = f"filare-test-internet-{uuid.uuid4().hex[:8]}"
    docker("network", "create", "--label", "filare.test=egress", network)
    server = f"{network}-server"
    script = (
        f"mkdir -p /tmp/www && echo '{PAGE}' > /tmp/www/index.html && httpd -p 80 -h /tmp/www "
        "&& while true; do echo SSH-2.0-fake_internet | nc -l -p 22; done"
    )
    docker(
        "run", "-d", "--name", server, "--label", "filare.test=egress", "--network", network,
        "--user", "0:0", "--entrypoint", "/bin/busybox", smoke_image, "sh", "-c", script,
    )  # fmt: skip
    address = inspect(server)["NetworkSettings"]["Networks"][network]["IPAddress"]
    try:
        yield Internet(network, address)
    finally:
        docker("rm", "-f", server)
        attached = json.loads(docker("network", "inspect", network))[0]["Containers"] or {}
        for endpoint in attached:
            docker("network", "disconnect", "--force", network, endpoint, check=False)
        docker("network", "rm", network)


def started(manifest: Path, registry: Registry) -> None:
    result = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert result.returncode == 0, result.stdout + result.stderr


def run_in(container: str, script: str) -> str:
    """`script` in the session's container, as its agent would run it; output and exit code."""
    return docker("exec", container, "sh", "-c", f"{{ {script}; }} 2>&1; echo rc=$?", check=False)


def pins(internet: Internet, *names: str) -> dict[str, str]:
    return {name: internet.address for name in names}


def test_only_allowed_names_leave_through_the_proxy_and_the_rest_is_recorded(
    registry: Registry, make_manifest: MakeManifest, internet: Internet, host_listener: int
) -> None:
    egress = {
        "allow": ["allowed.test", "git.test:22"],
        "hosts": pins(internet, "allowed.test", "denied.test", "git.test"),
    }
    started(make_manifest(ids=("in-a", "in-b"), egress=egress), registry)
    proxy = proxy_name(registry.root)
    docker("network", "connect", internet.network, proxy)
    alpha, beta = "filare-coder-in-a", "filare-coder-in-b"

    assert PAGE in run_in(alpha, "wget -q -O- http://allowed.test/")
    refused = run_in(alpha, "wget -q -O- http://denied.test/")
    assert "403 Forbidden" in refused and "rc=1" in refused
    assert "403" in run_in(alpha, "wget -q -O- http://git.test/")  # allowed on port 22 only
    # An IP literal no allowed name is pinned to; the fake internet's own is, as allowed.test.
    assert "403" in run_in(alpha, "wget -q -O- http://198.51.100.7/")
    # Nothing leaves but through the proxy: no route to the internet, the host or a sibling.
    (network,) = inspect(alpha)["NetworkSettings"]["Networks"].values()
    beta_address = next(iter(inspect(beta)["NetworkSettings"]["Networks"].values()))["IPAddress"]
    docker("exec", "-d", beta, "sh", "-c", "echo sibling | nc -l -p 8000")
    gateway = docker(
        "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Gateway}}"
    )
    targets = [
        (internet.address, 80),
        (gateway.strip(), host_listener),
        (network["Gateway"] or "", host_listener),
        (beta_address, 8000),
        ("filare-egress", 22),
        *[(address, host_listener) for address in host_addresses()],
    ]
    with ThreadPoolExecutor(max_workers=8) as pool:
        tries = {
            target: pool.submit(run_in, alpha, f"echo | nc -w 3 {target[0]} {target[1]}")
            for target in targets
            if target[0]
        }
    for target, reached in tries.items():
        output = reached.result()
        assert not {"host", "sibling"} & set(output.splitlines()), (target, output)
        assert "rc=0" not in output, (target, output)
    assert "403" in run_in(alpha, f"wget -q -O- http://host.docker.internal:{host_listener}/")
    assert "rc=1" in run_in(
        alpha, "getent hosts host.docker.internal || nslookup host.docker.internal"
    )

    denied = [json.loads(line) for line in denials_file(registry.root, "coder", "in-a").open()]
    assert {(d["host"], d["port"]) for d in denied} >= {
        ("denied.test", 80),
        ("git.test", 80),
        ("198.51.100.7", 80),
        ("host.docker.internal", host_listener),
    }
    assert all(d["time"] and d["reason"] for d in denied)
    assert not denials_file(registry.root, "coder", "in-b").exists()

    listed = inv("session.egress", "--session", "in-a", "--json", state=registry.root)
    assert listed.returncode == 0, listed.stderr
    assert {(d["host"], d["port"]) for d in json.loads(listed.stdout)} == {
        (d["host"], d["port"]) for d in denied
    }
    log = inv("session.log", "--session", "in-a", state=registry.root)
    assert "[egress] denied denied.test:80" in log.stdout, log.stdout + log.stderr
    fleet = inv("session.list", "--json", state=registry.root)
    counts = {row["session"]: row.get("egress_denied") for row in json.loads(fleet.stdout)}
    assert counts == {"in-a": len(denied), "in-b": 0}, fleet.stdout

    networks = json.loads(docker("network", "inspect", network_names(registry)[0]))[0]
    assert networks["Internal"] is True
    assert networks["EnableIPv6"] is False
    assert networks["Options"]["com.docker.network.bridge.inhibit_ipv4"] == "true"
    assert networks["Labels"]["filare.registry"] == str(registry.root)
    assert len(network_names(registry)) == 2
    assert_no_ipv6(alpha)
    # Names are the proxy's to resolve: Docker's embedded DNS forwards no other name anywhere.
    assert inspect(alpha)["HostConfig"]["Dns"] == ["192.0.2.53"]
    assert "403" in run_in(beta, "wget -q -O- http://denied.test/")

    # A stopped session keeps its network; its next start takes a changed `egress`.
    kept = network_id(alpha_network := network_names(registry, "in-a")[0])
    stop = inv("session.stop", "--session", "in-a", state=registry.root)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert network_id(alpha_network) == kept
    wider = {**egress, "allow": [*egress["allow"], "denied.test"]}
    started(make_manifest(ids=("in-a", "in-b"), egress=wider), registry)
    assert network_id(alpha_network) == kept
    assert PAGE in run_in(alpha, "wget -q -O- http://denied.test/")
    assert attached(alpha_network) == {alpha, proxy}
    # A kept network removed behind the tool's back is made again at the next start.
    inv("session.stop", "--session", "in-a", state=registry.root)
    docker("network", "disconnect", "--force", alpha_network, proxy)
    docker("network", "rm", alpha_network)
    started(make_manifest(ids=("in-a", "in-b"), egress=egress), registry)
    assert attached(alpha_network) == {alpha, proxy}
    assert PAGE in run_in(alpha, "wget -q -O- http://allowed.test/")
    assert "403" in run_in(alpha, "wget -q -O- http://denied.test/")

    # Pruning the stopped session's records takes its network, policy and denials, nothing of
    # the running one's.
    stop = inv("session.stop", "--session", "in-a", state=registry.root)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    pruned = inv("session.prune", "--records", state=registry.root)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert network_names(registry) == network_names(registry, "in-b") != []
    policies = registry.root / ".egress" / "policies"
    assert [p.stem for p in policies.iterdir()] == network_names(registry, "in-b")
    denials = registry.root / ".egress" / "denials" / "coder"
    assert sorted(p.name for p in denials.iterdir()) == ["in-b.count", "in-b.jsonl"]
    assert docker("ps", "-q", "--filter", f"name=^{proxy}$") != ""

    stop = inv("session.stop", "--all", state=registry.root)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert network_names(registry) == network_names(registry, "in-b") != []
    pruned = inv("session.prune", state=registry.root)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert network_names(registry) == []
    assert list(policies.iterdir()) == []
    assert docker("ps", "-aq", "--filter", f"name=^{proxy}$") == ""


def network_id(name: str) -> str:
    return docker("network", "inspect", "--format", "{{.Id}}", name)


def attached(network: str) -> set[str]:
    """Names of the containers on `network`."""
    found = json.loads(docker("network", "inspect", network))[0]["Containers"] or {}
    return {endpoint["Name"] for endpoint in found.values()}


def assert_no_ipv6(container: str) -> None:
    """No IPv6 in the session: disabled on every interface (the network has none), no address,
    no route, and the session cannot turn it on."""
    assert run_in(container, "cat /proc/sys/net/ipv6/conf/all/disable_ipv6").split() == [
        "1",
        "rc=0",
    ]
    assert run_in(container, "ip -6 addr; ip -6 route").split() == ["rc=0"]
    turned_on = run_in(container, "echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6")
    assert "rc=0" not in turned_on, turned_on


def test_none_has_no_network_and_open_reaches_the_internet_directly(
    registry: Registry, make_manifest: MakeManifest, internet: Internet
) -> None:
    started(make_manifest(ids=("cut",), name="none.yml", egress="none"), registry)
    assert inspect("filare-coder-cut")["HostConfig"]["NetworkMode"] == "none"
    interfaces = run_in("filare-coder-cut", "ls /sys/class/net")
    assert interfaces.split() == ["lo", "rc=0"]
    started(make_manifest(ids=("wide",), name="open.yml", egress="open"), registry)
    docker("network", "connect", internet.network, "filare-coder-wide")
    env = run_in("filare-coder-wide", "env")
    assert "PROXY" not in env.upper().replace("NO_PROXY", "")
    assert PAGE in run_in("filare-coder-wide", f"wget -q -O- http://{internet.address}/")
    docker("network", "disconnect", internet.network, "filare-coder-wide")
    assert network_names(registry) == []


def test_limits_by_default_show_in_docker_inspect(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    started(make_manifest(ids=("bounded",), egress="open"), registry)
    config = inspect("filare-coder-bounded")["HostConfig"]
    assert config["Memory"] == 4 * 1024**3
    assert config["NanoCpus"] == int(min(2.0, float(os.cpu_count() or 1)) * 1e9)
    assert config["PidsLimit"] == 4096
    assert config["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "3", "max-size": "10m"},
    }
    lifted = {"memory": 0, "cpus": 0, "pids": 0}
    started(
        make_manifest(ids=("free",), name="free.yml", egress="open", resources=lifted), registry
    )
    config = inspect("filare-coder-free")["HostConfig"]
    assert (config["Memory"], config["NanoCpus"], config["PidsLimit"] or 0) == (0, 0, 0)


def network_names(registry: Registry, session: str | None = None) -> list[str]:
    only = ["--filter", f"label=filare.session={session}"] if session else []
    return sorted(
        docker(
            "network", "ls", "--filter", f"label=filare.registry={registry.root}", *only,
            "--format", "{{.Name}}",
        ).split()
    )  # fmt: skip


def host_addresses() -> list[str]:
    """The host's own IPv4 addresses (other than loopback), where a service on 0.0.0.0 listens."""
    found = docker("run", "--rm", "--network", "host", "--entrypoint", "/bin/busybox",
                   "filare-codex:smoke", "ip", "-4", "-o", "addr")  # fmt: skip
    return [
        line.split()[3].split("/")[0]
        for line in found.splitlines()
        if len(line.split()) > 3 and not line.split()[3].startswith("127.")
    ]


@pytest.mark.image
def test_a_codex_turn_reaches_the_model_only_when_its_host_is_allowed_and_ssh_goes_through(
    registry: Registry,
    project: Path,
    codex_image: BuiltCodexImage,
    fake: FakeModel,
    internet: Internet,
) -> None:
    write_fake_codex_home(project / "outputs" / "codex-home", fake.container_url)
    reach = {
        "allow": ["host.docker.internal", "git.test:22"],
        "hosts": pins(internet, "git.test", "denied.test"),
    }
    sessions = [
        codex_session(project, codex_image.tag, "reach", egress=reach),
        codex_session(project, codex_image.tag, "refused", egress={"allow": ["pypi.org"]}),
    ]
    manifest = project / "codex.yml"
    manifest.write_text(yaml.safe_dump({"sessions": sessions}))
    started(manifest, registry)
    docker("network", "connect", internet.network, proxy_name(registry.root))

    fake.enqueue(shell("echo tool-ran-through-the-proxy"), message("done through the proxy"))
    row = send(registry, "reach", "run the tool")
    assert (row["status"], row["final_message"]) == ("completed", "done through the proxy"), row
    assert "tool-ran-through-the-proxy" in json.dumps(fake.model_requests[-1].body)
    served = len(fake.model_requests)
    row = send(registry, "refused", "try")
    assert row["status"] == "failed", row
    assert "403" in json.dumps(row), row
    assert len(fake.model_requests) == served  # nothing reached the model
    denied = denials_file(registry.root, "coder", "refused").read_text()
    assert f'"host": "host.docker.internal", "port": {fake.port}' in denied

    # git's ssh goes through the proxy: to a host allowed with :22, and to no other.
    ssh = "ssh -v -o BatchMode=yes -o ConnectTimeout=10 git@{} true"
    reached = run_in("filare-coder-reach", ssh.format("git.test"))
    assert "remote software version fake_internet" in reached, reached
    refused = run_in("filare-coder-reach", ssh.format("denied.test"))
    assert "egress proxy: HTTP/1.1 403 Forbidden" in refused, refused

    # A session past the bound on its record: its turn fails saying so, the other's runs.
    with (registry.session_dir("coder", "refused") / "agent" / "flood").open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    fake.enqueue(message("still here"))
    args = ["session.send", "--session", "reach", "--session", "refused", "--message", "go"]
    both = inv(*args, "--json", "--wait", state=registry.root, FILARE_RECORD_LIMIT_MB="1")
    rows = {row["session"]: row for row in json.loads(both.stdout)}
    assert rows["reach"]["final_message"] == "still here", both.stdout
    assert "its record (transcripts, questions) holds more than 1 MB" in rows["refused"]["error"]


def codex_session(project: Path, image: str, session_id: str, **fields: Any) -> dict[str, Any]:
    (project / "outputs" / f"{session_id}.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    return {
        "id": session_id,
        "role": "coder",
        "branch": f"agent/{session_id}",
        "workspace": f"outputs/ws/{session_id}",
        "image": image,
        "ssh_key": "outputs/keys/id_test",
        "env_file": f"outputs/{session_id}.env",
        "codex_dir": "outputs/codex-home",
        **fields,
    }


def send(registry: Registry, session_id: str, text: str) -> dict[str, Any]:
    args = ["session.send", "--session", session_id, "--message", text, "--json", "--wait"]
    result = inv(*args, "--timeout", "120", state=registry.root)
    assert result.returncode in {0, 1}, result.stdout + result.stderr
    (row,) = json.loads(result.stdout)
    assert isinstance(row, dict)
    return row


def test_under_runsc_the_session_runs_on_gvisor_behind_the_proxy(
    registry: Registry, make_manifest: MakeManifest, internet: Internet
) -> None:
    egress = {"allow": ["allowed.test"], "hosts": pins(internet, "allowed.test", "denied.test")}
    started(make_manifest(ids=("sandboxed",), egress=egress, runtime="runsc"), registry)
    docker("network", "connect", internet.network, proxy_name(registry.root))
    name = "filare-coder-sandboxed"
    assert inspect(name)["HostConfig"]["Runtime"] == "runsc"
    assert "gVisor" in run_in(name, "dmesg")
    # What wget would send to the proxy (busybox's wget meets EAGAIN on gVisor's host network).
    request = "printf 'GET http://{}/ HTTP/1.0\\r\\n\\r\\n' | nc -w 5 filare-egress 3128"
    assert PAGE in run_in(name, request.format("allowed.test"))
    assert "403 Forbidden" in run_in(name, request.format("denied.test"))
    assert "rc=0" not in run_in(name, f"echo | nc -w 3 {internet.address} 80")


@pytest.mark.image
def test_a_codex_turn_with_a_tool_call_works_under_runsc_through_the_proxy(
    registry: Registry, project: Path, codex_image: BuiltCodexImage, fake: FakeModel
) -> None:
    write_fake_codex_home(project / "outputs" / "codex-home", fake.container_url)
    manifest = project / "gvisor.yml"
    session = codex_session(project, codex_image.tag, "gvisor", runtime="runsc")
    manifest.write_text(yaml.safe_dump({"sessions": [session]}))
    started(manifest, registry)
    assert "gVisor" in run_in("filare-coder-gvisor", "dmesg")
    fake.enqueue(shell("uname -a; echo tool-ran-under-gvisor"), message("done under gVisor"))
    row = send(registry, "gvisor", "run the tool")
    assert (row["status"], row["final_message"]) == ("completed", "done under gVisor"), row
    assert "tool-ran-under-gvisor" in json.dumps(fake.model_requests[-1].body)


# Engines of this module's own (the contain range).
DNS_ENGINE_INDICES = range(30, 40)
# Records the first label of every query it gets, answers none.
FAKE_RESOLVER = """
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
server.bind(("127.0.0.1", 53))
with open(sys.argv[1], "ab", buffering=0) as seen:
    while True:
        query = server.recv(4096)[12:]
        seen.write(query[1 : 1 + query[0]] + b"\\n")
"""


def test_a_session_behind_the_proxy_sends_no_query_to_the_hosts_resolver(
    registry: Registry, make_manifest: MakeManifest, smoke_image: str, tmp_path: Path
) -> None:
    """Docker's embedded DNS forwards names it does not know to the host's resolvers, and from
    the host's network namespace when they are on its loopback (Docker before 26): a way out of
    an internal network, through DNS. An engine of the test's own whose host resolver is a fake
    one on its loopback: a container on an ordinary network reaches it; a session does not."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    seen = tmp_path / "queries"
    seen.write_bytes(b"")
    with claimed_engine(DNS_ENGINE_INDICES, resolv) as own:
        resolver = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{own.netns}", sys.executable, "-c", FAKE_RESOLVER,
             str(seen)],
        )  # fmt: skip
        try:
            own.load_image(smoke_image)
            own.load_image(egress_proxy.ensure_image())
            result = inv(
                "session.start",
                "--manifest",
                str(make_manifest(ids=("quiet",), egress={"allow": ["allowed.test"]})),
                state=registry.root,
                DOCKER_HOST=own.host,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            lookup = ["--entrypoint", "/bin/busybox", smoke_image, "nslookup"]
            own.docker("network", "create", "--label", "filare.test=dns", "dns-control")
            own.docker("run", "--rm", "--network", "dns-control", *lookup, "control.test",
                       check=False)  # fmt: skip
            assert set(seen.read_bytes().split()) == {b"control"}  # the fake resolver is the host's

            own.docker("exec", "filare-coder-quiet", "nslookup", "leak.test", check=False)
            assert set(seen.read_bytes().split()) == {b"control"}
        finally:
            resolver.kill()
            resolver.wait()


def test_the_proxy_image_builds_from_its_sources_on_standard_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real build (the engine's layer cache makes it quick), under a tag of the test's own."""
    tag = f"filare-egress:test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(egress_proxy, "image_tag", lambda: tag)
    try:
        assert egress_proxy.ensure_image() == tag
        labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", tag))
        assert labels[egress_proxy.EGRESS_LABEL] == "proxy"
        listing = docker("run", "--rm", "--entrypoint", "ls", tag, "-l", "/usr/local/bin")
        assert "-rwxr-xr-x" in listing and "filare-egress" in listing
    finally:
        docker("image", "rm", tag, check=False)
