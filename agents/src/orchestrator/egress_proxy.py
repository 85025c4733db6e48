"""The egress proxy and the sessions' own networks, on the engine.

A session whose `egress` goes through the proxy sits alone on a network of its own, made
`--internal` (no route out) with the host's address on the bridge inhibited (nothing of the
host answers there), and with a subnet of its own from a pool (`FILARE_EGRESS_SUBNETS`, default
10.213.0.0/16, cut into /28s: 4096 sessions, never Docker's default pools, which hold about
thirty bridges). The proxy joins that network under the name `filare-egress`, and one outside
network (Docker's default bridge). One proxy serves a state folder: like the sessions, it
carries the registry's path (`filare.egress-registry`), so two checkouts sharing an engine never
touch each other's.

The proxy reads each session's policy from `<state>/.egress/policies/<network>.json` and appends
what it refuses to `<state>/.egress/denials/<role>/<id>.jsonl`. Its image is built here, on first
need, from `docker/Dockerfile.egress` (tag: a hash of that file and the proxy), with no
registry: the same base as the Codex image.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from orchestrator import egress, engine
from orchestrator.denials import denials_folder
from orchestrator.egress import PROXY_ALIAS, EgressPolicy
from orchestrator.errors import EngineError, InputError
from orchestrator.plan import (
    REGISTRY_LABEL,
    ROLE_LABEL,
    SESSION_LABEL,
    container_name,
    tool_checkout,
)
from orchestrator.registry import Registry, atomic_write
from orchestrator.spec import SessionSpec

EGRESS_LABEL = "filare.egress"
# The proxy's own registry label: not `filare.registry`, which marks a state folder's sessions
# (a container with it and no session would be listed as one left alone).
PROXY_REGISTRY_LABEL = "filare.egress-registry"
POOL_ENV = "FILARE_EGRESS_SUBNETS"
DEFAULT_POOL = "10.213.0.0/16"
SUBNET_PREFIX = 28
MAX_PROBES = 64
IMAGE_REPOSITORY = "filare-egress"
BASE_DEFAULT = "debian:bookworm-slim"
BUILD_TIMEOUT = 1800.0
# The proxy's own bounds: it holds no state but a few hundred connections' buffers.
PROXY_LIMITS = ("--memory", "256m", "--pids-limit", "512")


def network_name(registry: Registry, role: str, session_id: str) -> str:
    return egress.network_name(container_name(role, session_id), registry.root)


def proxy_name(registry_root: Path) -> str:
    digest = hashlib.sha256(str(registry_root).encode()).hexdigest()[:10]
    return f"filare-egress-{digest}"


def egress_dir(registry_root: Path) -> Path:
    """`<state>/.egress`: a name no role can have, so the registry never reads it as one."""
    return registry_root / ".egress"


def denials_file(registry_root: Path, role: str, session_id: str) -> Path:
    return denials_folder(registry_root, role) / f"{session_id}.jsonl"


def _policy_file(registry_root: Path, network: str) -> Path:
    return egress.policy_path(registry_root, network)


def _proxy_sources() -> tuple[Path, Path]:
    docker_dir = tool_checkout() / "docker"
    return docker_dir / "Dockerfile.egress", docker_dir / "filare-egress"


def image_tag() -> str:
    """The proxy's image: named by what it is built from, so a changed proxy is rebuilt."""
    digest = hashlib.sha256()
    for path in _proxy_sources():
        digest.update(path.read_bytes())
    return f"{IMAGE_REPOSITORY}:{digest.hexdigest()[:12]}"


def subnet_pool() -> ipaddress.IPv4Network:
    text = os.environ.get(POOL_ENV, DEFAULT_POOL)
    try:
        pool = ipaddress.IPv4Network(text)
    except ValueError:
        raise InputError(
            f"{POOL_ENV}={text!r} is not an IPv4 network (like {DEFAULT_POOL})"
        ) from None
    if pool.prefixlen > SUBNET_PREFIX:
        raise InputError(f"{POOL_ENV}={text!r} is smaller than one /{SUBNET_PREFIX}")
    return pool


def candidate_subnets(key: str, pool: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    """Subnets to try for one session, starting at a place its key decides, so that sessions
    rarely try the same subnet twice; Docker refuses an overlapping one, and the next is tried."""
    count = 2 ** (SUBNET_PREFIX - pool.prefixlen)
    start = int(hashlib.sha256(key.encode()).hexdigest(), 16) % count
    size = 2 ** (32 - SUBNET_PREFIX)
    base = int(pool.network_address)
    return [
        ipaddress.IPv4Network((base + ((start + i) % count) * size, SUBNET_PREFIX))
        for i in range(min(MAX_PROBES, count))
    ]


class _Abandoned(Exception):
    """The session's network could not be made: its join ends there."""


class Joining:
    """The proxy (made first when it is missing or runs an older image) joining a session's
    network, in the background: it is looked at while the network is made, and joins it while
    the session's container starts (the container needs the proxy only at its first request).
    `wait` raises what the join raised."""

    def __init__(
        self,
        registry: Registry,
        session: SessionSpec,
        network: str,
        policy: EgressPolicy,
        *,
        made: bool = True,
    ) -> None:
        self.registry, self.session, self.network, self.policy = registry, session, network, policy
        self.error: BaseException | None = None
        self._made = threading.Event()
        self._abandoned = False
        if made:
            self._made.set()
        self.thread = self._started()

    def _started(self) -> threading.Thread:
        self.error = None
        thread = threading.Thread(target=self._join, daemon=True)
        thread.start()
        return thread

    def _join(self) -> None:
        context = self.session.engine
        try:
            # The egress lock is held until the network exists: prune removes the proxy only
            # when no network is left for it to serve.
            with self.registry.named_lock("egress"):
                # A proxy to make (the first session here, a new image) is made once the
                # network exists, as before this look ran beside its making.
                proxy, joined = ensure_proxy(self.registry, context, before_making=self._network)
                self._network()
            if _remote(context):  # its policy, through the engine, before the session needs it
                from orchestrator import egress_volumes

                policy = _policy_file(self.registry.root, self.network).read_bytes()
                egress_volumes.push_policy(proxy, self.network, policy, context)
            if self.network in joined:  # a kept network: joined at an earlier start
                return
            try:
                engine.docker(
                    "network", "connect", "--alias", PROXY_ALIAS, self.network, proxy,
                    context=context,
                )  # fmt: skip
            except EngineError as exc:
                # A kept network: the proxy joined it at an earlier start.
                if "already exists in network" not in str(exc):
                    raise
        except _Abandoned:
            return
        except BaseException as exc:  # handed to `wait`
            self.error = exc

    def _network(self) -> None:
        """Wait for the network; a start that could not make it wants no proxy made for it."""
        self._made.wait()
        if self._abandoned:
            raise _Abandoned

    def network_made(self) -> None:
        """The network exists and its policy is written: the proxy may join it."""
        self._made.set()

    def abandon(self) -> None:
        """The network could not be made: the join ends without joining, its lock let go."""
        self._abandoned = True
        self._made.set()
        self.thread.join()

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error

    def remake(self) -> None:
        """The kept network was gone when the container started (removed by hand, or the
        engine's data reset): made again, its policy written, the proxy joining it anew. What
        the first join raised is dropped: it failed on the network that was gone, and should
        the remaking fail, that is the start's error, not one `wait` raises over it."""
        self.thread.join()
        self.error = None
        _make_network(self.registry, self.session, self.network, self.policy)
        self.thread = self._started()


def prepare(session: SessionSpec, registry: Registry, policy: EgressPolicy) -> Joining:
    """The session's network and its policy, the proxy joining it in the background
    (`Joining.wait`; the proxy and its image made first when missing).

    The network is kept from one start to the next (`session.prune` removes it once the
    session has no running container): a start finds it through the policy the last start
    wrote, rewrites that policy (a changed `egress` takes effect now), and needs no engine call
    before `docker run`. Making a network is a `docker network create` on the start's path; the
    proxy is looked at meanwhile, so that it joins the network as soon as it is made.
    """
    name = network_name(registry, session.role, session.id)
    subnet = _kept_subnet(registry, session, name)
    if subnet is not None:
        write_policy(registry, session, name, subnet, policy)
        return Joining(registry, session, name, policy)
    joining = Joining(registry, session, name, policy, made=False)
    try:
        _leave_other_engine(registry, session, name)
        # Not under the egress lock here: the join takes it for its look at the proxy and keeps
        # it until the network is made. A prune that took it first and removed the proxy (no
        # network yet) comes before that look, which makes the proxy again.
        _make_network(registry, session, name, policy, lock=False)
    except BaseException:
        joining.abandon()
        raise
    joining.network_made()
    return joining


def _make_network(
    registry: Registry,
    session: SessionSpec,
    name: str,
    policy: EgressPolicy,
    *,
    lock: bool = True,
) -> None:
    # Under the egress lock (taken here, or held by the join waiting for this network), the
    # network exists before the lock is let go: prune removes the proxy only when no network
    # is left.
    with registry.named_lock("egress") if lock else contextlib.nullcontext():
        subnet = _create_network(registry, session, name)
    try:
        write_policy(registry, session, name, subnet, policy)
    except BaseException:
        remove_network(registry, session.role, session.id, session.engine)
        raise


def _leave_other_engine(registry: Registry, session: SessionSpec, network: str) -> None:
    """A network kept on the engine the session ran on before it moved: removed there, since
    prune looks on the engines sessions run on now."""
    try:
        kept = json.loads(_policy_file(registry.root, network).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    before = kept.get("engine") if isinstance(kept, dict) else None
    if before != session.engine and (before is None or isinstance(before, str)):
        with contextlib.suppress(EngineError):
            remove_network(registry, session.role, session.id, before)


def _kept_subnet(
    registry: Registry, session: SessionSpec, network: str
) -> ipaddress.IPv4Network | None:
    """The subnet of the network an earlier start made on this session's engine, from the
    policy it wrote (the tool's own file, in the state folder); None when there is none."""
    try:
        kept = json.loads(_policy_file(registry.root, network).read_text(encoding="utf-8"))
        if kept.get("engine") != session.engine:
            return None
        return ipaddress.IPv4Network(kept["subnet"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def ensure_image(context: str | None = None) -> str:
    """The proxy's image on the engine: built on the current one, copied to a named one."""
    tag = image_tag()
    if engine.image_exists(tag, context=context):
        return tag
    if context:
        engine.copy_image(ensure_image(), target=context)
        return tag
    from orchestrator.base_image import resolve_base

    base = resolve_base(None, BASE_DEFAULT).image
    dockerfile, proxy = _proxy_sources()
    engine.docker_bytes(
        "build",
        "--quiet",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "--label",
        f"{EGRESS_LABEL}=proxy",
        "--tag",
        tag,
        "--file",
        dockerfile.name,
        "-",
        about=f"cannot build the egress proxy's image {tag}",
        stdin=_build_context(dockerfile, proxy),
        timeout=BUILD_TIMEOUT,
    )
    return tag


def _build_context(*files: Path) -> bytes:
    """The build's context as the tar `docker build -` reads on its standard input: no folder
    on disk that a start killed during the build would leave behind."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in files:
            data = path.read_bytes()
            member = tarfile.TarInfo(path.name)
            member.size, member.mode = len(data), 0o644
            tar.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


def ensure_proxy(
    registry: Registry,
    context: str | None = None,
    *,
    before_making: Callable[[], object] | None = None,
) -> tuple[str, frozenset[str]]:
    """The registry's proxy, running the current image ((re)made, its image built, when not),
    and the networks it is on. `before_making` is called first when it must be made; what it
    raises stops the making."""
    name = proxy_name(registry.root)
    tag = image_tag()
    try:
        state = engine.docker(
            "container",
            "inspect",
            "--format",
            "{{.State.Running}} {{.Config.Image}}"
            "{{range $name, $_ := .NetworkSettings.Networks}} {{$name}}{{end}}",
            name,
            context=context,
        ).split()
    except EngineError as exc:
        if "No such" not in str(exc):
            raise
        state = []
    if state[:2] == ["true", tag]:
        return name, frozenset(state[2:])
    if before_making is not None:
        before_making()
    ensure_image(context)
    if state:
        engine.remove_containers([name], context=context)
    if _remote(context):
        from orchestrator import egress_volumes

        user = egress_volumes.REMOTE_USER
        egress_volumes.create_volumes(name, registry.root, context)
        mounts = egress_volumes.volume_args(name)
    else:
        user = _proxy_user()
        mounts = _bind_args(registry.root, user)
    engine.docker(
        "run",
        "--detach",
        "--name",
        name,
        "--label",
        f"{PROXY_REGISTRY_LABEL}={registry.root}",
        "--label",
        f"{EGRESS_LABEL}=proxy",
        "--restart",
        "unless-stopped",
        "--user",
        user,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        *PROXY_LIMITS,
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=10m",
        "--log-opt",
        "max-file=3",
        # The proxy joins every session's network: it forwards bytes it chose to, never packets.
        "--sysctl",
        "net.ipv4.ip_forward=0",
        "--add-host",
        "host.docker.internal:host-gateway",
        *mounts,
        tag,
        context=context,
    )
    return name, frozenset()


def _remote(context: str | None) -> bool:
    from orchestrator import volumes

    return volumes.remote(context)


def _bind_args(registry_root: Path, user: str) -> list[str]:
    """`<state>/.egress/policies` (read-only) and `denials`, bound into the proxy."""
    folder = egress_dir(registry_root)
    for sub in ("policies", "denials"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    if os.getuid() == 0:
        os.chown(folder / "denials", *(int(part) for part in user.split(":")))
    return [
        "--volume", f"{folder / 'policies'}:/egress/policies:ro",
        "--volume", f"{folder / 'denials'}:/egress/denials",
    ]  # fmt: skip


def _proxy_user() -> str:
    return "10001:10001" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"


def _create_network(registry: Registry, session: SessionSpec, name: str) -> ipaddress.IPv4Network:
    """A fresh network: one an earlier start left (killed before its stop) is removed first."""
    pool = subnet_pool()
    key = f"{registry.root}/{session.role}/{session.id}"
    candidates = candidate_subnets(key, pool)
    retried = False
    while candidates:
        subnet = candidates[0]
        try:
            engine.docker(
                "network",
                "create",
                "--driver",
                "bridge",
                "--internal",
                "--subnet",
                str(subnet),
                "--opt",
                "com.docker.network.bridge.inhibit_ipv4=true",
                "--opt",
                "com.docker.network.bridge.enable_icc=true",
                "--label",
                f"{REGISTRY_LABEL}={registry.root}",
                "--label",
                f"{SESSION_LABEL}={session.id}",
                "--label",
                f"{ROLE_LABEL}={session.role}",
                "--label",
                f"{EGRESS_LABEL}=network",
                name,
                context=session.engine,
            )
        except EngineError as exc:
            if "already exists" in str(exc) and not retried:
                retried = True
                remove_network(registry, session.role, session.id, session.engine)
                continue
            if "overlaps" in str(exc):
                candidates.pop(0)
                continue
            raise
        return subnet
    raise EngineError(
        f"session {session.id!r}: no free /{SUBNET_PREFIX} in the egress pool {pool} after "
        f"{MAX_PROBES} tries; set {POOL_ENV} to a larger or other range"
    )


def write_policy(
    registry: Registry,
    session: SessionSpec,
    network: str,
    subnet: ipaddress.IPv4Network,
    policy: EgressPolicy,
) -> None:
    content = {
        "session": session.id,
        "role": session.role,
        "network": network,
        "subnet": str(subnet),
        "engine": session.engine,
        **policy.to_dict(),
    }
    path = _policy_file(registry.root, network)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(content, indent=2) + "\n", mode=0o644)


def remove_network(
    registry: Registry, role: str, session_id: str, context: str | None = None
) -> None:
    """The session's network and policy, gone; the proxy leaves the network first."""
    name = network_name(registry, role, session_id)
    with contextlib.suppress(FileNotFoundError):
        _policy_file(registry.root, name).unlink()
    proxy = proxy_name(registry.root)
    if _remote(context):
        from orchestrator import egress_volumes

        egress_volumes.drop_policy(proxy, name, context)
    try:
        engine.docker("network", "disconnect", "--force", name, proxy, context=context)
    except EngineError as exc:
        if (
            "No such" not in str(exc)
            and "not connected" not in str(exc)
            and "not found" not in str(exc)
        ):
            raise
    try:
        engine.docker("network", "rm", name, context=context)
    except EngineError as exc:
        if "No such network" not in str(exc) and "not found" not in str(exc):
            raise


def our_networks(registry: Registry, context: str | None = None) -> list[tuple[str, str, str]]:
    """(name, role, session id) of every session network this registry made."""
    lines = engine.docker(
        "network",
        "ls",
        "--filter",
        f"label={REGISTRY_LABEL}={registry.root}",
        "--filter",
        f"label={EGRESS_LABEL}=network",
        "--format",
        f'{{{{.Name}}}}\t{{{{.Label "{ROLE_LABEL}"}}}}\t{{{{.Label "{SESSION_LABEL}"}}}}',
        context=context,
    ).splitlines()
    return [tuple(line.split("\t")) for line in lines if line.count("\t") == 2]  # type: ignore[misc]


def proxy_exists(registry: Registry, context: str | None = None) -> bool:
    return _exists("container", proxy_name(registry.root), context)


def _exists(kind: str, name: str, context: str | None) -> bool:
    try:
        engine.docker(kind, "inspect", "--format", "{{.Id}}", name, context=context)
    except EngineError as exc:
        if "No such" in str(exc) or "not found" in str(exc):
            return False
        raise
    return True


def remove_proxy(registry: Registry, context: str | None = None) -> bool:
    """Remove the registry's proxy when it exists; whether it did. On an engine without this
    machine's files its volumes go too, once what it refused the known sessions came home."""
    name = proxy_name(registry.root)
    remote = _remote(context)
    if not proxy_exists(registry, context):
        if remote:
            from orchestrator import egress_volumes

            egress_volumes.remove_volumes(name, context)
        return False
    if remote:
        from orchestrator import egress_volumes

        # One last copy home (kept as it was when it fails: the proxy goes all the same).
        known = {(state.role, state.session_id) for state in registry.states()}
        egress_volumes.refresh(registry.root, {context: known})
        engine.remove_containers([name], context=context)
        egress_volumes.remove_volumes(name, context)
        return True
    engine.remove_containers([name], context=context)
    return True
