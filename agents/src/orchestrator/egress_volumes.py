"""The egress proxy on an engine that does not see this machine's files (ssh://, tcp://).

There the proxy cannot bind `<state>/.egress/policies` and `<state>/.egress/denials`: it gets
two named volumes instead, labelled like the proxy (`filare.egress-registry`), initialised from
its image's `/egress` folders (owned by the proxy's user). The host still writes each policy
into `<state>/.egress/policies` first (the kept network's subnet is read back from there), then
hands the same bytes to the proxy through the engine: `docker exec -i` runs a few lines of the
image's python3, as the proxy's user, that write a temporary file and rename it into the folder.
The proxy reloads its policies when the folder changes, so it never reads half a file; a policy
left by a session whose network went (same subnet) is removed in the same step, so it can never
shadow the new one.

What the proxy refused comes home at the points it is read (`session.egress`, `session.list`,
`session.log`): `docker cp PROXY:/egress/denials -` through `orchestrator.untar`'s bounded
reader, then each known session's list and count renamed into `<state>/.egress/denials`. The
last copy is kept when the engine cannot be reached. `prune` removes the proxy and its volumes
with the last network, after one last copy home; `prune --records` removes the denials of each
session whose record it deletes from the volume as well.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Collection
from pathlib import Path

from orchestrator import engine
from orchestrator.denials import denials_folder
from orchestrator.errors import EngineError, OrchestratorError

# The proxy's user where no folder of this machine is shared: its image owns /egress/* for it.
REMOTE_USER = "10001:10001"
PARTS = ("policies", "denials")
VOLUME_LABEL = "filare.egress"
EXEC_TIMEOUT = 60.0
COPY_TIMEOUT = 120.0
# What one copy home may hold: about 1 MB of denials per session the proxy served.
COPY_LIMIT = 256 * 1024 * 1024
COPY_ENTRIES = 20000

# Run by the image's python3 inside the proxy: the policy on stdin, its network as argv[1].
_WRITE_POLICY = """\
import json, os, sys
folder, name = "/egress/policies", sys.argv[1]
data = sys.stdin.buffer.read(1 << 20)
subnet = json.loads(data)["subnet"]
for other in os.listdir(folder):
    if not other.endswith(".json") or other == name + ".json":
        continue
    try:
        with open(os.path.join(folder, other)) as stream:
            stale = json.load(stream).get("subnet") == subnet
    except (OSError, ValueError, AttributeError):
        stale = False
    if stale:
        os.unlink(os.path.join(folder, other))
tmp = os.path.join(folder, "." + name + ".tmp")
with open(tmp, "wb") as out:
    out.write(data)
os.chmod(tmp, 0o644)
os.replace(tmp, os.path.join(folder, name + ".json"))
"""


def volume_name(proxy: str, part: str) -> str:
    return f"{proxy}-{part}"


def volume_args(proxy: str) -> list[str]:
    """The proxy's `--mount` options: its two named volumes, the policies writable (the host
    writes them through `docker exec`)."""
    return [
        arg
        for part in PARTS
        for arg in (
            "--mount",
            f"type=volume,source={volume_name(proxy, part)},target=/egress/{part}",
        )
    ]


def create_volume_argv(proxy: str, registry_root: Path, part: str) -> list[str]:
    from orchestrator.egress_proxy import PROXY_REGISTRY_LABEL

    return [
        "volume", "create",
        "--label", f"{PROXY_REGISTRY_LABEL}={registry_root}",
        "--label", f"{VOLUME_LABEL}=proxy-{part}",
        volume_name(proxy, part),
    ]  # fmt: skip


def write_policy_argv(proxy: str, network: str) -> list[str]:
    return ["exec", "-i", "--user", REMOTE_USER, proxy, "python3", "-c", _WRITE_POLICY, network]


def drop_policy_argv(proxy: str, network: str) -> list[str]:
    path = f"/egress/policies/{network}.json"
    return ["exec", "--user", REMOTE_USER, proxy, "rm", "-f", "--", path]


def drop_denials_argv(proxy: str, role: str, session_id: str) -> list[str]:
    base = f"/egress/denials/{role}/{session_id}"
    paths = [f"{base}.jsonl", f"{base}.count", f"{base}.count.tmp"]
    return ["exec", "--user", REMOTE_USER, proxy, "rm", "-f", "--", *paths]


def create_volumes(proxy: str, registry_root: Path, context: str | None) -> None:
    for part in PARTS:
        engine.docker(*create_volume_argv(proxy, registry_root, part), context=context)


def remove_volumes(proxy: str, context: str | None) -> None:
    for part in PARTS:
        try:
            engine.docker("volume", "rm", volume_name(proxy, part), context=context)
        except EngineError as exc:
            if "no such volume" not in str(exc).lower():
                raise


def push_policy(proxy: str, network: str, policy: bytes, context: str | None) -> None:
    """The policy (the bytes written here) into the proxy's volume, renamed into place."""
    engine.docker_bytes(
        *write_policy_argv(proxy, network),
        about=f"cannot hand the egress policy {network} to {proxy}",
        stdin=policy,
        timeout=EXEC_TIMEOUT,
        context=context,
    )


def drop_policy(proxy: str, network: str, context: str | None) -> None:
    """The policy gone from the proxy's volume; nothing to do when the proxy is gone."""
    _in_proxy(drop_policy_argv(proxy, network), context)


def drop_denials(proxy: str, role: str, session_id: str, context: str | None) -> None:
    """What the proxy recorded of a session whose record goes, gone from its volume too: the
    proxy may serve other sessions long after, and a later session of that id must not be shown
    this one's denials when they are next brought home."""
    _in_proxy(drop_denials_argv(proxy, role, session_id), context)


def _in_proxy(argv: list[str], context: str | None) -> None:
    """A docker exec in the proxy; nothing to do when the proxy is gone."""
    try:
        engine.docker(*argv, context=context)
    except EngineError as exc:
        text = str(exc).lower()
        if "no such container" not in text and "is not running" not in text:
            raise


def bring_home(
    registry_root: Path, proxy: str, context: str | None, sessions: Collection[tuple[str, str]]
) -> None:
    """Each of `sessions`' (role, id) denial list and count, copied from the proxy's volume into
    `<state>/.egress/denials`; nothing when the proxy is gone. Names come from the known
    sessions, never from the stream."""
    from orchestrator import untar

    wanted = {(role, f"{sid}{suffix}") for role, sid in sessions for suffix in (".jsonl", ".count")}
    if not wanted:
        return
    home = registry_root / ".egress"
    home.mkdir(parents=True, exist_ok=True)
    where = engine.Engine(context)
    with tempfile.TemporaryDirectory(prefix=".denials-incoming-", dir=home) as tmp:
        staging = Path(tmp) / "denials"
        unpacked = untar.receive(
            where,
            f"{proxy}:/egress/denials",
            staging,
            what=f"the egress denials of {proxy}",
            limit=COPY_LIMIT,
            max_entries=COPY_ENTRIES,
            timeout=COPY_TIMEOUT,
        )
        if unpacked is None:
            return
        for name in sorted(unpacked.files):
            role, _, file = name.partition("/")
            if (role, file) not in wanted:
                continue
            folder = denials_folder(registry_root, role)
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / file
            incoming = folder / f".{file}.incoming"
            incoming.write_bytes((staging / name).read_bytes())
            incoming.chmod(0o644)
            incoming.replace(target)


def refresh(registry_root: Path, by_engine: dict[str | None, set[tuple[str, str]]]) -> None:
    """`bring_home` for sessions on volumes, one copy per engine; an engine that fails keeps
    what came home last (reading goes on)."""
    from orchestrator.egress_proxy import proxy_name

    proxy = proxy_name(registry_root)
    for context, sessions in by_engine.items():
        with contextlib.suppress(OrchestratorError, OSError, subprocess.TimeoutExpired):
            bring_home(registry_root, proxy, context, sessions)
