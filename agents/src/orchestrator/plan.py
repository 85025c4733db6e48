"""Pure planning: from a validated session to the container name, labels, folders and launch argv.

Nothing here touches files or Docker, so every rule about names, labels and mounts is
unit-tested in milliseconds and the effects layer only carries out a plan it is handed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import __version__

if TYPE_CHECKING:
    from orchestrator.spec import SessionSpec

LABEL_PREFIX = "filare."
SESSION_LABEL = "filare.session"
ROLE_LABEL = "filare.role"
OWNER_LABEL = "filare.owner"
REGISTRY_LABEL = "filare.registry"
WORKSPACE_LABEL = "filare.workspace"
SHARED_WORKSPACE_LABEL = "filare.shared-workspace"
# The Docker context a session runs on, when it is not the current one: it stays there for life.
ENGINE_LABEL = "filare.engine"
CONTAINER_PREFIX = "filare"
CONTAINER_HOME = "/home/agent"
CONTAINER_WORKSPACE = f"{CONTAINER_HOME}/workspace"
CONTAINER_SSH = f"{CONTAINER_HOME}/.ssh"
CONTAINER_CODEX_HOME = f"{CONTAINER_HOME}/.codex"
# The session's own writable folder: learnt SSH host keys, questions to its operator, and (by
# default) its transcripts.
CONTAINER_AGENT_DIR = f"{CONTAINER_HOME}/.filare"
CONTAINER_TRANSCRIPT = f"{CONTAINER_AGENT_DIR}/transcript"
# What the host hands the session and the session must not change: messages of its turns.
CONTAINER_INBOX = "/run/filare/inbox"
# The bridge every session joins: inter-container traffic is off on it, so a session reaches the
# internet and the host but none of its siblings. One network for all (rather than one each)
# because Docker's default address pools hold about thirty bridges, and fleets are larger.
SESSION_NETWORK = "filare-sessions"
# A session's processes, threads included; `resources.pids` overrides it.
DEFAULT_PIDS_LIMIT = 4096
# Memory and CPUs of a session when `resources` gives none: room for Codex (a few hundred MB)
# and a project's test suite; `resources: {memory: 0, cpus: 0}` lifts them. CPUs are capped
# at what the machine has, since Docker refuses more.
DEFAULT_MEMORY = "4g"
DEFAULT_CPUS = 2.0
# The container log (the agent daemon's output) rotates: at most LOG_MAX_FILES of LOG_MAX_SIZE.
LOG_MAX_SIZE = "10m"
LOG_MAX_FILES = 3
# The UID:GID sessions run as when the orchestrator is root: sessions never run as root, and this
# one owns nothing else on the host. `user` in the manifest overrides it.
UNPRIVILEGED_USER = "10001:10001"
SCRIPT_ENV = "FILARE_LAUNCH_SCRIPT"
# Seconds between health checks of the Codex image (its own default: 120); for tests and tuning.
HEALTH_INTERVAL_ENV = "FILARE_HEALTH_INTERVAL"


def tool_checkout() -> Path:
    """The checkout this library runs from (the folder holding `scripts/` and `agents/`)."""
    return Path(__file__).resolve().parents[3]


def launch_script() -> Path:
    """`scripts/run_codex_container.sh` of this checkout (or `$FILARE_LAUNCH_SCRIPT`)."""
    override = os.environ.get(SCRIPT_ENV)
    if override:
        return Path(override)
    return tool_checkout() / "scripts" / "run_codex_container.sh"


def container_name(role: str, session_id: str) -> str:
    """`filare-<role>-<id>`; unique because ids are unique per registry and roles partition them."""
    return f"{CONTAINER_PREFIX}-{role}-{session_id}"


def session_user(session: SessionSpec) -> str:
    """The UID:GID the session's container runs as: never root."""
    if session.user is not None:
        return session.user
    if os.getuid() == 0:
        return UNPRIVILEGED_USER
    return f"{os.getuid()}:{os.getgid()}"


def seed_source(session: SessionSpec) -> Path | None:
    """The repository an empty workspace is seeded from: `seed_from`, else the manifest's."""
    if session.seed_from is not None:
        return session.seed_from
    if session.manifest_path is None:
        return None
    return find_repository(session.manifest_path.parent)


def resolved_session(session: SessionSpec, registry_root: Path) -> SessionSpec:
    """The session with every default a start would use filled in: its user, transcript folder
    and seed source. A manifest of resolved sessions loads to the same resolved sessions."""
    import dataclasses

    return dataclasses.replace(
        session,
        user=session_user(session),
        transcript_dir=session_folders(session, registry_root).transcript_dir,
        seed_from=seed_source(session),
    )


def session_labels(session: SessionSpec, registry_root: Path) -> dict[str, str]:
    """Labels that let any later command find exactly this session's container again.

    `filare.registry` ties the container to the state folder that records it, so two checkouts
    (or two test runs) sharing one engine never list, stop or prune each other's sessions.
    """
    labels = {
        SESSION_LABEL: session.id,
        ROLE_LABEL: session.role,
        OWNER_LABEL: session.owner,
        "filare.branch": session.branch,
        WORKSPACE_LABEL: str(session.workspace),
        "filare.manifest": str(session.manifest_path or ""),
        REGISTRY_LABEL: str(registry_root),
        "filare.version": __version__,
    }
    if session.tags:
        labels["filare.tags"] = ",".join(session.tags)
    if session.shared_workspace:
        labels[SHARED_WORKSPACE_LABEL] = "true"
    if session.engine:
        labels[ENGINE_LABEL] = session.engine
    return labels


def session_filters(registry_root: Path, **labels: str) -> list[str]:
    """`docker ps --filter` values that select this registry's containers, narrowed by labels."""
    filters = [f"label={REGISTRY_LABEL}={registry_root}"]
    filters += [f"label={LABEL_PREFIX}{key}={value}" for key, value in labels.items()]
    return filters


@dataclass(frozen=True)
class SessionFolders:
    """Where one session's things live on the host, under its record's folder.

    Host-only: the record, the SSH folder (mounted read-only), the env file copy (read-only), the
    inbox (read-only). Writable by the session, so never trusted: its Codex home, its agent
    folder and its transcripts.
    """

    state_dir: Path
    ssh_dir: Path
    env_copy: Path
    inbox: Path
    codex_home: Path
    agent_dir: Path
    transcript_dir: Path

    @property
    def seed_record(self) -> Path:
        """Where the launch script writes the commit a fresh workspace was seeded at."""
        return self.state_dir / "seed"


def session_folders(session: SessionSpec, registry_root: Path) -> SessionFolders:
    state_dir = registry_root / session.role / session.id
    agent_dir = state_dir / "agent"
    return SessionFolders(
        state_dir=state_dir,
        ssh_dir=state_dir / "ssh",
        env_copy=state_dir / "env",
        inbox=state_dir / "inbox",
        codex_home=state_dir / "codex",
        agent_dir=agent_dir,
        transcript_dir=session.transcript_dir or agent_dir / "transcript",
    )


@dataclass(frozen=True)
class LaunchPlan:
    """Everything a start will do, decided before it does any of it."""

    session: SessionSpec
    name: str
    labels: dict[str, str]
    folders: SessionFolders
    user: str
    workspace: Path
    argv: list[str]

    @property
    def state_dir(self) -> Path:
        return self.folders.state_dir

    @property
    def ssh_dir(self) -> Path:
        return self.folders.ssh_dir


def plan_launch(
    session: SessionSpec,
    *,
    registry_root: Path,
    script: Path,
    workspace: Path | None = None,
    seed_excludes: tuple[Path, ...] = (),
    seed_secrets: tuple[Path, ...] = (),
    dry_run: bool = False,
) -> LaunchPlan:
    """The launch script's argv for one detached session; the script spells `docker run`.

    `workspace` is the session's workspace with links resolved (what the container will really
    mount); no seeding copies `seed_excludes` (other workspaces) or `seed_secrets` (env files,
    keys), and the script warns about secrets that git does not ignore.
    """
    folders = session_folders(session, registry_root)
    workspace = workspace or session.workspace
    name = container_name(session.role, session.id)
    labels = session_labels(session, registry_root)
    labels[WORKSPACE_LABEL] = str(workspace)
    user = session_user(session)
    env_mount = session.env_mode == "mount"
    argv = [
        "bash",
        str(script),
        "--detach",
        "--name",
        name,
        "--image",
        session.image,
        "--user",
        user,
        "--workspace",
        str(workspace),
        "--branch",
        session.branch,
        "--env-file",
        str(folders.env_copy if env_mount else session.env_file),
        "--ssh-key",
        str(session.ssh_key),
        "--ssh-dir",
        str(folders.ssh_dir),
        "--codex-dir",
        str(folders.codex_home),
        "--agent-dir",
        str(folders.agent_dir),
        "--transcript-dir",
        str(folders.transcript_dir),
        "--inbox-dir",
        str(folders.inbox),
        *_network_args(session, name, registry_root),
        *(["--context", session.engine] if session.engine else []),
        "--log-max-size",
        LOG_MAX_SIZE,
        "--log-max-files",
        str(LOG_MAX_FILES),
    ]
    argv += _resource_args(session)
    source = seed_source(session)
    argv += ["--seed-from", str(source)] if source is not None else ["--no-seed"]
    if source is not None:
        argv += ["--seed-record", str(folders.seed_record)]
    for excluded in seed_excludes:
        argv += ["--exclude", str(excluded)]
    for secret in seed_secrets:
        argv += ["--secret", str(secret)]
    if env_mount:
        argv.append("--env-mount")
    if session.known_hosts is not None:
        argv += ["--known-hosts", str(session.known_hosts)]
    health_interval = os.environ.get(HEALTH_INTERVAL_ENV, "")
    if health_interval:
        argv += ["--health-interval", health_interval]
    if session.runtime is not None:
        argv += ["--runtime", session.runtime]
    for mount in session.mounts:
        suffix = ":ro" if mount.read_only else ""
        argv += ["--mount", f"{mount.source}:{mount.target}{suffix}"]
    for key, value in labels.items():
        argv += ["--label", f"{key}={value}"]
    if dry_run:
        argv.append("--dry-run")
    return LaunchPlan(session, name, labels, folders, user, workspace, argv)


def _network_args(session: SessionSpec, name: str, registry_root: Path) -> list[str]:
    """`open`: the shared bridge; `none`: no network; else the session's own network, whose only
    exit is the egress proxy (made by `orchestrator.egress_proxy` before the run)."""
    from orchestrator import egress

    mode = egress.egress_mode(session)
    if mode == "open":
        return ["--network", SESSION_NETWORK]
    if mode == "none":
        return ["--network", "none"]
    network = egress.network_name(name, registry_root)
    return ["--network", network, "--egress-proxy", egress.PROXY_URL]


def resource_limits(session: SessionSpec) -> tuple[float, str, int]:
    """The session's CPUs, memory and process limits, defaults filled in; 0 means no limit."""
    given = session.resources
    cpus = given.cpus if given.cpus is not None else min(DEFAULT_CPUS, float(os.cpu_count() or 1))
    memory = given.memory if given.memory is not None else DEFAULT_MEMORY
    pids = given.pids if given.pids is not None else DEFAULT_PIDS_LIMIT
    return cpus, memory, pids


def _resource_args(session: SessionSpec) -> list[str]:
    cpus, memory, pids = resource_limits(session)
    argv = []
    if pids:
        argv += ["--pids-limit", str(pids)]
    if cpus:
        argv += ["--cpus", f"{cpus:g}"]
    if float(memory.rstrip("bkmgBKMG")):
        argv += ["--memory", memory]
    return argv


def find_repository(start: Path) -> Path | None:
    """The nearest folder at or above `start` that holds a `.git`, found without running git."""
    for folder in (start, *start.parents):
        if os.path.lexists(folder / ".git"):
            return folder
    return None
