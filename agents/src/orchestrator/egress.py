"""What a session may reach: its `egress` turned into the policy the egress proxy enforces.

Pure reading and planning (the manifest's field, the session's Codex configuration, the seed
repository's remotes); `orchestrator.egress_proxy` carries the policy out on the engine.

- `open`: the session reaches anything, directly, as before this field existed.
- `none`: no network at all.
- `{allow: [...], hosts: {...}}`: only the names listed, through the proxy.
- absent: the default profile, through the proxy: the model provider's hosts, the seed
  repository's git remote hosts (ssh and https), and the Python and npm package registries.

The model provider that the session's Codex configuration names (its `base_url` host and port)
is reachable under every `egress` but `none` and an explicit `allow` that leaves it out, even
when it is this host or a private address: that one host and port, nothing else of that host.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from orchestrator.spec import Egress, SessionSpec

EgressMode = Literal["open", "none", "proxy"]
# Sessions reach the proxy by this name on their own network (Docker's embedded DNS).
PROXY_ALIAS = "filare-egress"
PROXY_PORT = 3128
PROXY_URL = f"http://{PROXY_ALIAS}:{PROXY_PORT}"
# OpenAI's API and its login hosts: where Codex goes when its configuration names no other
# provider.
OPENAI_HOSTS = ("api.openai.com", "auth.openai.com", "chatgpt.com")
PACKAGE_REGISTRIES = ("pypi.org", ".pythonhosted.org", "registry.npmjs.org")
_NAME = re.compile(r"\.?[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*")
_SCP_LIKE = re.compile(r"^(?:[^@/:]+@)?([^/:\[\]]+):(?!//)")
CONFIG_LIMIT = 1024 * 1024


@dataclass(frozen=True, order=True)
class AllowEntry:
    """One `allow` entry: a host name, or a suffix (`.example.org`: it and names below it), and
    a port (none: 80 and 443)."""

    host: str
    suffix: bool = False
    port: int | None = None

    def text(self) -> str:
        return self.host + (f":{self.port}" if self.port is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "suffix": self.suffix, "port": self.port}


@dataclass(frozen=True)
class Provider:
    """The model provider the session's Codex configuration names: one host and port."""

    host: str
    port: int

    def text(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class EgressPolicy:
    """A session's resolved egress: what `session.validate` prints, what the proxy enforces."""

    mode: EgressMode
    profile: Literal["open", "none", "manifest", "default"]
    allow: tuple[AllowEntry, ...] = ()
    hosts: dict[str, str] = field(default_factory=dict)
    provider: Provider | None = None

    def lines(self) -> list[str]:
        """The allowlist as `session.validate` shows it."""
        if self.mode == "open":
            return ["open: direct access to any address"]
        if self.mode == "none":
            return ["none: no network"]
        lines = [f"through the egress proxy ({self.profile} profile):"]
        lines += [f"  allow {entry.text()}" for entry in self.allow]
        lines += [f"  pin {name} -> {address}" for name, address in sorted(self.hosts.items())]
        if self.provider is not None:
            lines.append(f"  model provider {self.provider.text()} (also when it is private)")
        return lines

    def to_json(self) -> dict[str, Any]:
        """What `session.validate --json` shows."""
        return {
            "mode": self.mode,
            "profile": self.profile,
            "allow": [entry.text() for entry in self.allow],
            "hosts": dict(sorted(self.hosts.items())),
            "provider": self.provider.text() if self.provider is not None else None,
        }

    def to_dict(self) -> dict[str, Any]:
        """The policy file's content (without the subnet and session, added by the proxy's side)."""
        return {
            "allow": [entry.to_dict() for entry in self.allow],
            "hosts": dict(sorted(self.hosts.items())),
            "provider": (
                {"host": self.provider.host, "port": self.provider.port}
                if self.provider is not None
                else None
            ),
        }


def network_name(container: str, registry_root: Path) -> str:
    """A session's own network: `<container name>-egress-<hash of its state folder>`, so that a
    session of another state folder holding the container's name never holds this one too."""
    import hashlib

    return f"{container}-egress-{hashlib.sha256(str(registry_root).encode()).hexdigest()[:6]}"


def policy_path(registry_root: Path, network: str) -> Path:
    """Where the proxy reads the policy of the session on `network`."""
    return registry_root / ".egress" / "policies" / f"{network}.json"


def kept_network(registry_root: Path, session: SessionSpec) -> bool:
    """Whether an earlier start kept a network for the session (its policy is still there)."""
    from orchestrator.plan import container_name

    network = network_name(container_name(session.role, session.id), registry_root)
    return policy_path(registry_root, network).exists()


def egress_mode(session: SessionSpec) -> EgressMode:
    """How the session's container is networked; cheap, for planning its `docker run`."""
    egress = session.egress
    if egress is None:
        return "proxy"
    return egress.mode if egress.mode in {"open", "none"} else "proxy"


def parse_allow_entry(text: str) -> AllowEntry:
    """`host`, `.suffix`, `host:port`; raises `ValueError` saying what is wrong."""
    name, colon, port_text = text.strip().lower().rpartition(":")
    if not colon:
        name, port_text = port_text, ""
    port: int | None = None
    if colon:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    if _is_ip(name.strip("[]")):
        raise ValueError(
            f"{text!r}: an IP address; allow a name and pin it to the address in 'hosts'"
        )
    if not name or len(name) > 253 or not _NAME.fullmatch(name):
        raise ValueError(
            f"{text!r} is not a host name, '.suffix' or either with ':port' (no patterns, no "
            "IP ranges)"
        )
    return AllowEntry(name, name.startswith("."), port)


def check_pin(name: str, address: str) -> tuple[str, str]:
    """A `hosts` entry: a host name and the IP address it is pinned to."""
    host = name.strip().lower().rstrip(".")
    if not host or host.startswith(".") or not _NAME.fullmatch(host):
        raise ValueError(f"{name!r} is not a host name")
    if not _is_ip(str(address)):
        raise ValueError(f"{name!r}: {address!r} is not an IP address")
    return host, str(ipaddress.ip_address(str(address)))


def resolve_policy(session: SessionSpec, seed_repository: Path | None) -> EgressPolicy:
    """The session's egress with every default filled in, read from its files."""
    egress: Egress | None = session.egress
    if egress is not None and egress.mode in {"open", "none"}:
        return EgressPolicy(egress.mode, egress.mode)
    provider, provider_hosts = model_provider(session.codex_dir)
    if egress is not None:
        allow = tuple(dict.fromkeys(parse_allow_entry(text) for text in egress.allow))
        hosts = dict(egress.hosts)
        named = provider is not None and any(
            _matches(entry, provider.host) for entry in allow if entry.port in {None, provider.port}
        )
        return EgressPolicy("proxy", "manifest", allow, hosts, provider if named else None)
    entries = [parse_allow_entry(host) for host in provider_hosts]
    for host, port in git_remote_hosts(seed_repository):
        entries.append(AllowEntry(host, False, port))
        if port is None or port == 22:
            entries.append(AllowEntry(host, False, None))
    entries += [parse_allow_entry(host) for host in PACKAGE_REGISTRIES]
    return EgressPolicy("proxy", "default", tuple(dict.fromkeys(entries)), {}, provider)


def model_provider(codex_dir: Path) -> tuple[Provider | None, tuple[str, ...]]:
    """The provider the Codex configuration names, and the hosts the default profile allows
    for it: its `base_url` host, or OpenAI's API and login hosts."""
    config = _read_codex_config(codex_dir / "config.toml")
    name = config.get("model_provider")
    providers = config.get("model_providers")
    chosen = providers.get(name) if isinstance(providers, dict) and isinstance(name, str) else None
    base_url = chosen.get("base_url") if isinstance(chosen, dict) else None
    if base_url is None and isinstance(config.get("openai_base_url"), str):
        base_url = config["openai_base_url"]
    if isinstance(base_url, str):
        try:
            parts = urlsplit(base_url)
            host = (parts.hostname or "").rstrip(".")
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            host, port = "", 0
        if host:
            return Provider(host, port), () if _is_ip(host) else (f"{host}:{port}",)
    return Provider(OPENAI_HOSTS[0], 443), OPENAI_HOSTS


def git_remote_hosts(repository: Path | None) -> list[tuple[str, int | None]]:
    """Host (and port: 22 for ssh, none for https) of every remote of the seed repository."""
    if repository is None:
        return []
    config = repository / ".git" / "config"
    try:
        text = config.read_text(encoding="utf-8", errors="replace")[:CONFIG_LIMIT]
    except OSError:
        return []
    found: list[tuple[str, int | None]] = []
    for match in re.finditer(r"^\s*url\s*=\s*(\S+)\s*$", text, re.MULTILINE):
        url = match.group(1).strip('"')
        scp = _SCP_LIKE.match(url)
        if "://" not in url and scp:
            found.append((scp.group(1).lower(), 22))
            continue
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            continue
        if not host or parts.scheme not in {"ssh", "git+ssh", "https", "http"}:
            continue
        if parts.scheme in {"ssh", "git+ssh"}:
            found.append((host, port or 22))
        else:
            found.append((host, port))
    return list(dict.fromkeys(found))


def _read_codex_config(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        with path.open("rb") as handle:
            data = handle.read(CONFIG_LIMIT)
        return tomllib.loads(data.decode("utf-8", errors="replace"))
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _matches(entry: AllowEntry, host: str) -> bool:
    if entry.suffix:
        return host == entry.host.lstrip(".") or host.endswith(entry.host)
    return host == entry.host


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
