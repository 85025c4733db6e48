"""Egress policies: the manifest's field, the default profile, and the proxy's decisions."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import pytest

from orchestrator.denials import remove_denials
from orchestrator.egress import (
    AllowEntry,
    Provider,
    git_remote_hosts,
    model_provider,
    parse_allow_entry,
    resolve_policy,
)
from orchestrator.manifest import load_manifest
from tests.conftest import WriteManifest, session

REPOSITORY = Path(__file__).resolve().parents[1]


def proxy_module() -> ModuleType:
    """docker/filare-egress, the proxy the image runs, imported as a module."""
    path = REPOSITORY / "docker" / "filare-egress"
    loader = importlib.machinery.SourceFileLoader("filare_egress", str(path))
    spec = importlib.util.spec_from_loader("filare_egress", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        ("api.openai.com", AllowEntry("api.openai.com")),
        ("GitHub.com:22", AllowEntry("github.com", False, 22)),
        (".pythonhosted.org", AllowEntry(".pythonhosted.org", True)),
    ],
)
def test_allow_entries_are_names_suffixes_and_ports(text: str, entry: AllowEntry) -> None:
    assert parse_allow_entry(text) == entry


@pytest.mark.parametrize("text", ["10.0.0.1", "*.example.org", "10.0.0.0/8", "a..b", "x:0", "x:y"])
def test_patterns_ranges_and_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_allow_entry(text)


def test_the_manifest_field_one_line_per_problem(write_manifest: WriteManifest) -> None:
    from orchestrator.errors import ManifestError

    manifest = write_manifest(
        [
            session("a", egress="closed"),
            session("b", egress={"allow": ["1.2.3.4"], "hosts": {"m.internal": "nope"}}),
            session("c", runtime="gvisor"),
        ]
    )
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest)
    text = str(caught.value)
    assert "session 'a': field 'egress': 'closed': must be 'open', 'none' or a mapping" in text
    assert "session 'b': field 'egress.allow.0': '1.2.3.4': an IP address" in text
    assert "session 'b': field 'egress.hosts': 'm.internal': 'nope' is not an IP address" in text
    assert "session 'c': field 'runtime': must be 'runc' or 'runsc'" in text


def codex_home(tmp_path: Path, config: str) -> Path:
    home = tmp_path / "codex"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(config)
    return home


def test_the_provider_is_the_configured_base_url_else_openai(tmp_path: Path) -> None:
    home = codex_home(
        tmp_path,
        'model_provider = "fake"\n[model_providers.fake]\nbase_url = "http://host.docker.internal:4321/v1"\n',
    )
    assert model_provider(home) == (
        Provider("host.docker.internal", 4321),
        ("host.docker.internal:4321",),
    )
    assert model_provider(tmp_path / "none")[0] == Provider("api.openai.com", 443)


def test_git_remotes_give_ssh_and_https_hosts(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for name, url in [
        ("a", "git@github.com:org/x.git"),
        ("b", "ssh://git@git.example.org:2222/x"),
        ("c", "https://gitlab.example.com/x.git"),
        ("d", "/srv/local/x"),
    ]:
        subprocess.run(["git", "-C", str(repo), "remote", "add", name, url], check=True)
    assert git_remote_hosts(repo) == [
        ("github.com", 22),
        ("git.example.org", 2222),
        ("gitlab.example.com", None),
    ]


def test_default_profile_and_an_explicit_allow(write_manifest: WriteManifest) -> None:
    folder = write_manifest([session("x")]).parent
    codex_home(folder, 'openai_base_url = "https://llm.internal:8443/v1"\n')
    manifest = write_manifest(
        [
            session("default"),
            session("listed", egress={"allow": ["llm.internal", "pypi.org"]}),
            session("unlisted", egress={"allow": ["pypi.org"]}),
            session("open", egress="open"),
        ]
    )
    default, listed, unlisted, opened = load_manifest(manifest)
    policy = resolve_policy(default, None)
    assert policy.profile == "default"
    assert [e.text() for e in policy.allow] == [
        "llm.internal:8443",
        "pypi.org",
        ".pythonhosted.org",
        "registry.npmjs.org",
    ]
    assert policy.provider == Provider("llm.internal", 8443)
    assert resolve_policy(listed, None).provider == Provider("llm.internal", 8443)
    assert resolve_policy(unlisted, None).provider is None
    assert resolve_policy(opened, None).lines() == ["open: direct access to any address"]


def policy(**fields: Any) -> dict[str, Any]:
    return {"subnet": "10.213.0.0/28", "allow": [], "hosts": {}, "provider": None, **fields}


def entry(text: str) -> dict[str, Any]:
    return parse_allow_entry(text).to_dict()


def test_the_proxy_decides_by_name_port_and_address() -> None:
    proxy = proxy_module()
    rules = policy(
        allow=[entry("allowed.test"), entry("git.test:22"), entry(".mirror.test")],
        hosts={"allowed.test": "10.9.9.9", "git.test": "10.9.9.9", "a.mirror.test": "10.1.1.1"},
        provider={"host": "host.docker.internal", "port": 4321},
    )
    assert proxy.decide(rules, "allowed.test", 443) == (["10.9.9.9"], "")
    assert proxy.decide(rules, "ALLOWED.test.", 80) == (["10.9.9.9"], "")
    assert proxy.decide(rules, "allowed.test", 22)[1] == "port 22 is not allowed for this host"
    assert proxy.decide(rules, "git.test", 22) == (["10.9.9.9"], "")
    assert proxy.decide(rules, "git.test", 443)[1] == "host not allowed"
    assert proxy.decide(rules, "a.mirror.test", 443) == (["10.1.1.1"], "")
    assert proxy.decide(rules, "denied.test", 80)[1] == "host not allowed"
    assert proxy.decide(rules, "10.9.9.9", 80) == (["10.9.9.9"], "")  # pinned to allowed.test
    assert proxy.decide(rules, "10.9.9.8", 80)[1].startswith("an IP address")
    assert proxy.decide(rules, "::1", 443)[1].startswith("an IP address")
    assert proxy.decide(rules, "localhost", 443)[1] == "host not allowed"
    # The provider: its host and port, even on a private address; no other port of it.
    assert proxy.decide(rules, "host.docker.internal", 4321)[1] in {"", *_resolve_failures()}
    assert proxy.decide(rules, "host.docker.internal", 22)[1] == "host not allowed"


def _resolve_failures() -> set[str]:
    # Outside a container the name may not resolve; what matters is that it is not refused.
    import socket

    try:
        socket.getaddrinfo("host.docker.internal", 80)
    except OSError as exc:
        return {f"cannot resolve: {exc.strerror or exc}"}
    return set()


def test_the_proxy_refuses_names_that_resolve_to_private_addresses() -> None:
    proxy = proxy_module()
    rules = policy(allow=[entry("localhost")])
    addresses, why = proxy.decide(rules, "localhost", 443)
    assert addresses == [] and why.startswith("resolves to a non-public address")


def test_a_runtime_the_engine_lacks_is_refused_before_anything_is_written(
    write_manifest: WriteManifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import engine, launch
    from orchestrator.errors import EngineError
    from orchestrator.registry import Registry

    monkeypatch.setattr(engine, "require_cli", lambda: None)
    monkeypatch.setattr(engine, "runtimes", lambda **_: {"runc", "io.containerd.runc.v2"})
    (one,) = load_manifest(write_manifest([session("sandboxed", runtime="runsc")]))
    registry = Registry(tmp_path / "state")
    with pytest.raises(EngineError) as caught:
        launch.start_sessions([one], registry)
    assert str(caught.value).startswith(
        "session 'sandboxed': the engine has no runtime 'runsc': install and register it with "
        "'sudo scripts/register_runsc.sh'"
    )
    assert list(registry.root.rglob("state.json")) == []


def test_denials_are_read_bounded_and_printed_as_hostile_text(tmp_path: Path) -> None:
    from orchestrator.denials import denial_count, denials_json, denials_table, read_denials

    folder = tmp_path / ".egress" / "denials" / "coder"
    folder.mkdir(parents=True)
    lines = [
        '{"time": "2026-12-04T10:00:00Z", "host": "evil\\u001b]52;c;aGk=\\u0007.test", '
        '"port": 443, "reason": "host not allowed"}',
        "not json",
        '{"time": "2026-12-04T10:00:01Z", "host": "x.test", "port": "22", "reason": "r"}',
    ]
    (folder / "a.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "a.count").write_text("7\n")
    denials = read_denials(tmp_path, "coder", "a")
    assert [(d.host[:4], d.port) for d in denials] == [("evil", 443), ("x.te", 0)]
    assert "\x1b" not in denials_table(denials) and "\x07" not in denials_table(denials)
    assert "\\u001b" in denials_json(denials)
    assert denial_count(tmp_path, "coder", "a") == 7
    assert denial_count(tmp_path, "coder", "missing") == 0


def test_a_record_past_its_bound_is_refused_and_links_are_not_followed(tmp_path: Path) -> None:
    from orchestrator.errors import InputError
    from orchestrator.record_bound import check_record, record_size

    record = tmp_path / "agent"
    (record / "transcript").mkdir(parents=True)
    with (record / "transcript" / "0001.jsonl").open("wb") as handle:
        handle.truncate(3 * 1024 * 1024)  # sparse: its size counts, not its blocks
    elsewhere = tmp_path / "big"
    with elsewhere.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    (record / "link").symlink_to(elsewhere)
    (record / "dir-link").symlink_to(tmp_path)
    assert record_size([record], 10**9) == 3 * 1024 * 1024
    check_record("fine", [record], limit=4 * 1024 * 1024)
    with pytest.raises(InputError) as caught:
        check_record("flood", [record], limit=2 * 1024 * 1024)
    assert str(caught.value).startswith(
        "session 'flood': its record (transcripts, questions) holds more than 2 MB"
    )


def test_removing_denials_never_follows_a_link_the_proxy_made(tmp_path: Path) -> None:
    """The proxy owns `<state>/.egress/denials` and may have replaced a role's folder there by
    a link: `session.prune --records` deletes the session's files, never a file it points to."""
    denials = tmp_path / "state" / ".egress" / "denials"
    (denials / "coder").mkdir(parents=True)
    for name in ("a.jsonl", "a.count", "b.jsonl"):
        (denials / "coder" / name).write_text("{}\n")
    remove_denials(tmp_path / "state", "coder", "a")
    assert sorted(p.name for p in (denials / "coder").iterdir()) == ["b.jsonl"]
    remove_denials(tmp_path / "state", "coder", "b")
    assert not (denials / "coder").exists()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("a.jsonl", "a.count", "a.count.tmp"):
        (elsewhere / name).write_text("keep\n")
    (denials / "coder").symlink_to(elsewhere)
    remove_denials(tmp_path / "state", "coder", "a")
    assert sorted(p.name for p in elsewhere.iterdir()) == ["a.count", "a.count.tmp", "a.jsonl"]
    assert (denials / "coder").is_symlink()


def test_a_policy_rewritten_within_one_clock_tick_is_read_again(tmp_path: Path) -> None:
    """The proxy reads the policies again when their folder's mtime changes. A rewrite (a
    temporary file made, then renamed over the policy) can leave the folder with the stamp a
    reload between the two already saw (both in one tick of the kernel's clock): a changed
    `egress` would never take effect. A stamp that recent is not trusted."""
    proxy = proxy_module()
    folder = tmp_path / "policies"
    folder.mkdir()
    path = folder / "n.json"
    path.write_text('{"subnet": "10.9.0.0/28", "allow": ["a.test"]}')
    policies = proxy.Policies(folder)
    assert policies.for_address("10.9.0.2")["allow"] == ["a.test"]
    stamp = folder.stat().st_mtime_ns
    fresh = folder / ".n.json.tmp"
    fresh.write_text('{"subnet": "10.9.0.0/28", "allow": ["b.test"]}')
    fresh.replace(path)
    os.utime(folder, ns=(stamp, stamp))
    assert policies.for_address("10.9.0.2")["allow"] == ["b.test"]


def test_a_failed_remake_of_the_kept_network_is_the_error_the_start_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kept network was gone (the proxy's join failed on it), and making it again failed:
    that failure, not the stale join's, is what `wait` raises after the start gives up."""
    from orchestrator import egress_proxy, engine
    from orchestrator.egress import EgressPolicy
    from orchestrator.errors import EngineError
    from orchestrator.registry import Registry
    from orchestrator.spec import SessionSpec

    def ensure_proxy(*_: object, **__: object) -> tuple[str, frozenset[str]]:
        return "proxy", frozenset()

    def connect(*args: str, **_: object) -> str:
        raise EngineError(f"network {args[-2]} not found")

    def make_network(*_: object) -> None:
        raise EngineError("no free /28 in the egress pool")

    monkeypatch.setattr(egress_proxy, "ensure_proxy", ensure_proxy)
    monkeypatch.setattr(engine, "docker", connect)
    monkeypatch.setattr(egress_proxy, "_make_network", make_network)
    spec = cast("SessionSpec", SimpleNamespace(engine=None, role="coder", id="a"))
    joining = egress_proxy.Joining(
        Registry(tmp_path / "state"), spec, "n", cast("EgressPolicy", None)
    )
    with pytest.raises(EngineError, match="no free"):
        joining.remake()
    joining.wait()


def _fresh_start_fakes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, create: Any
) -> tuple[list[str], Any]:
    """`prepare` for a session with no kept network, the engine faked: the events in order."""
    from orchestrator import egress_proxy, engine
    from orchestrator.registry import Registry

    events: list[str] = []
    registry = Registry(tmp_path / "state")
    registry.root.mkdir(parents=True)

    def ensure_proxy(*_: object, **__: object) -> tuple[str, frozenset[str]]:
        # Prune would wait here: the join holds the egress lock while it looks at the proxy.
        assert registry_lock_taken(registry)
        events.append("proxy looked at")
        return "proxy", frozenset()

    def docker(*args: str, **_: object) -> str:
        events.append(" ".join(args[:2]))
        return ""

    monkeypatch.setattr(egress_proxy, "ensure_proxy", ensure_proxy)
    monkeypatch.setattr(egress_proxy, "_create_network", create)
    monkeypatch.setattr(engine, "docker", docker)
    return events, registry


def registry_lock_taken(registry: Any) -> bool:
    from orchestrator.registry import held

    return held(registry.root / ".egress.lock")


def test_a_fresh_network_is_made_while_the_proxy_is_looked_at_and_joined_once_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_manifest: WriteManifest
) -> None:
    """The look at the proxy no longer waits for the network; the join does. Until the network
    exists the egress lock stays held, so prune cannot remove the proxy in between."""
    import ipaddress
    import threading

    from orchestrator import egress_proxy

    looked = threading.Event()

    def create(registry: Any, *_: object) -> ipaddress.IPv4Network:
        assert looked.wait(5), "the proxy was not looked at while the network was made"
        assert registry_lock_taken(registry)
        events.append("network made")
        return ipaddress.IPv4Network("10.9.0.0/28")

    events, registry = _fresh_start_fakes(tmp_path, monkeypatch, create)
    seen = egress_proxy.ensure_proxy

    def ensure_proxy(*args: Any, **kwargs: Any) -> tuple[str, frozenset[str]]:
        found = seen(*args, **kwargs)
        looked.set()
        return found

    monkeypatch.setattr(egress_proxy, "ensure_proxy", ensure_proxy)
    (spec,) = load_manifest(write_manifest([session("a", egress={"allow": ["a.test"]})]))
    joining = egress_proxy.prepare(spec, registry, resolve_policy(spec, None))
    joining.wait()
    assert events == ["proxy looked at", "network made", "network connect"]
    assert not registry_lock_taken(registry)


def test_a_network_that_cannot_be_made_ends_the_join_without_joining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_manifest: WriteManifest
) -> None:
    from orchestrator import egress_proxy
    from orchestrator.errors import EngineError

    def create(*_: object) -> None:
        raise EngineError("no free /28 in the egress pool")

    events, registry = _fresh_start_fakes(tmp_path, monkeypatch, create)
    (spec,) = load_manifest(write_manifest([session("a", egress={"allow": ["a.test"]})]))
    with pytest.raises(EngineError, match="no free"):
        egress_proxy.prepare(spec, registry, resolve_policy(spec, None))
    assert "network connect" not in events
    assert not registry_lock_taken(registry)


def test_a_network_that_cannot_be_made_gets_no_proxy_made_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write_manifest: WriteManifest
) -> None:
    """The first session of a state folder whose network fails leaves no proxy behind."""
    from orchestrator import egress_proxy, engine
    from orchestrator.errors import EngineError
    from orchestrator.registry import Registry

    events: list[str] = []

    def docker(*args: str, **_: object) -> str:
        if args[:2] == ("container", "inspect"):
            raise EngineError("Error: No such container: p")
        events.append(" ".join(args[:2]))
        return ""

    def create(*_: object) -> None:
        raise EngineError("no free /28 in the egress pool")

    monkeypatch.setattr(engine, "docker", docker)
    monkeypatch.setattr(egress_proxy, "ensure_image", lambda *_: events.append("image"))
    monkeypatch.setattr(egress_proxy, "_create_network", create)
    registry = Registry(tmp_path / "state")
    registry.root.mkdir(parents=True)
    (spec,) = load_manifest(write_manifest([session("a", egress={"allow": ["a.test"]})]))
    with pytest.raises(EngineError, match="no free"):
        egress_proxy.prepare(spec, registry, resolve_policy(spec, None))
    assert events == []
    assert not registry_lock_taken(registry)


def test_a_proxy_to_make_waits_for_what_the_caller_asks_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first session's join makes the proxy only once its network exists; a running proxy
    of the current image is only looked at."""
    from orchestrator import egress_proxy, engine
    from orchestrator.errors import EngineError
    from orchestrator.registry import Registry

    events: list[str] = []
    running = False

    def docker(*args: str, **_: object) -> str:
        if args[:2] == ("container", "inspect"):
            if not running:
                raise EngineError("Error: No such container: p")
            return f"true {egress_proxy.image_tag()} bridge"
        events.append(" ".join(args[:1]))
        return ""

    monkeypatch.setattr(engine, "docker", docker)
    monkeypatch.setattr(egress_proxy, "ensure_image", lambda *_: events.append("image"))
    registry = Registry(tmp_path / "state")
    egress_proxy.ensure_proxy(registry, before_making=lambda: events.append("network made"))
    assert events == ["network made", "image", "run"]
    events.clear()
    running = True
    egress_proxy.ensure_proxy(registry, before_making=lambda: events.append("network made"))
    assert events == []


def test_the_proxy_image_is_built_from_a_tar_on_standard_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No build folder on disk: a start killed during the build leaves none behind."""
    import io
    import tarfile

    from orchestrator import base_image, egress_proxy, engine

    calls: list[tuple[tuple[str, ...], bytes]] = []

    def docker_bytes(*args: str, stdin: bytes = b"", **_: object) -> bytes:
        calls.append((args, stdin))
        return b"sha256:0\n"

    monkeypatch.setattr(engine, "image_exists", lambda *_, **__: False)
    monkeypatch.setattr(engine, "docker_bytes", docker_bytes)
    monkeypatch.setattr(base_image, "resolve_base", lambda *_: SimpleNamespace(image="base:1"))
    tag = egress_proxy.ensure_image()
    ((args, stdin),) = calls
    assert args[0] == "build" and args[-1] == "-" and tag in args
    assert args[args.index("--file") + 1] == "Dockerfile.egress"
    with tarfile.open(fileobj=io.BytesIO(stdin)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    dockerfile, proxy = egress_proxy._proxy_sources()
    assert members == {dockerfile.name: dockerfile.read_bytes(), proxy.name: proxy.read_bytes()}
