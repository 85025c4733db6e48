"""The only Python module that runs the docker CLI.

Every call has explicit argv and a timeout; a failure becomes one `EngineError` line that says
what to do (install Docker, start the daemon, build the image) instead of a traceback.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.errors import EngineError

DEFAULT_TIMEOUT = 60.0
CODEX_IMAGE = "filare-codex"
SMOKE_IMAGE = "filare-codex:smoke"
INSTALL_HINT = "install a Docker engine (Debian: apt-get install docker.io)"
_LIST_FIELDS = ("ID", "Names", "State", "Image", "CreatedAt", "Status")
_LIST_LABELS = (
    "filare.session",
    "filare.role",
    "filare.owner",
    "filare.workspace",
    "filare.manifest",
    # An image label, which containers carry: the smoke image says it has no Codex.
    "org.filare.image.kind",
)


@dataclass(frozen=True)
class Container:
    """What `docker ps` says about one of our containers."""

    id: str
    name: str
    state: str
    image: str
    created: datetime | None
    labels: dict[str, str]
    # What the image's health check says: "healthy", "unhealthy", "starting", or None (none).
    health: str | None = None

    @property
    def running(self) -> bool:
        return self.state in {"running", "restarting", "paused"}

    @property
    def session_id(self) -> str:
        return self.labels.get("filare.session", "")

    @property
    def role(self) -> str:
        return self.labels.get("filare.role", "")


_NOT_INSTALLED = f"docker CLI not found: {INSTALL_HINT}"


def require_cli() -> None:
    """Fail early, before any record is written, when there is no docker CLI at all."""
    if shutil.which("docker") is None:
        raise EngineError(_NOT_INSTALLED)


def docker(*args: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run `docker ARGS`, return stdout; raise `EngineError` with Docker's own reason."""
    argv = ["docker", *args]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise EngineError(_NOT_INSTALLED) from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"'docker {args[0]}' did not answer within {timeout:g} s") from None
    if result.returncode != 0:
        raise EngineError(describe_failure(args[0], result.stderr))
    return result.stdout


def describe_failure(command: str, stderr: str) -> str:
    """One actionable line from Docker's stderr."""
    text = " ".join(stderr.split())
    if "Cannot connect to the Docker daemon" in text or "Is the docker daemon running" in text:
        return "the Docker daemon is not running: start it (for example 'dockerd &') and retry"
    if "permission denied" in text and "docker.sock" in text:
        return "no permission to use the Docker daemon: add yourself to the 'docker' group"
    return f"docker {command} failed: {text or 'no error output'}"


def list_containers(filters: Sequence[str]) -> list[Container]:
    """Containers, running or not, that match every `--filter`, in one engine call."""
    fields = [f"{{{{.{name}}}}}" for name in _LIST_FIELDS]
    fields += [f'{{{{.Label "{label}"}}}}' for label in _LIST_LABELS]
    args = ["ps", "--all", "--no-trunc", "--format", "\t".join(fields)]
    for value in filters:
        args += ["--filter", value]
    containers = []
    for line in docker(*args).splitlines():
        parts = line.split("\t")
        if len(parts) != len(_LIST_FIELDS) + len(_LIST_LABELS):
            continue
        cid, names, state, image, created, status = parts[: len(_LIST_FIELDS)]
        labels = {k: v for k, v in zip(_LIST_LABELS, parts[len(_LIST_FIELDS) :], strict=True) if v}
        containers.append(
            Container(
                cid,
                names.split(",")[0],
                state,
                image,
                _parse_created(created),
                labels,
                _health(status),
            )
        )
    return containers


def stop_containers(ids: Sequence[str], timeout: float) -> None:
    """Gracefully stop, then remove, in two engine calls whatever the number of containers."""
    if not ids:
        return
    try:
        docker("stop", "--time", f"{timeout:g}", *ids, timeout=timeout + _batch_timeout(ids))
    except EngineError as exc:
        if "No such container" not in str(exc):
            raise
    remove_containers(ids)


def remove_containers(ids: Sequence[str]) -> None:
    """Force-remove containers; ids already gone are not an error."""
    if not ids:
        return
    try:
        docker("rm", "--force", "--volumes", *ids, timeout=_batch_timeout(ids))
    except EngineError as exc:
        if "No such container" not in str(exc):
            raise


def _batch_timeout(ids: Sequence[str]) -> float:
    """A loaded daemon tears containers down a few at a time: allow for each one."""
    return DEFAULT_TIMEOUT + 2.0 * len(ids)


def exec_detached(container: str, argv: Sequence[str], *, workdir: str | None = None) -> None:
    """Start `argv` in a running container and return at once (`docker exec -d`)."""
    where = ["--workdir", workdir] if workdir else []
    docker("exec", "--detach", *where, container, *argv)


def exec_in(container: str, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run `argv` in a running container, wait for it, return its output."""
    return docker("exec", container, *argv, timeout=timeout)


def image_exists(image: str) -> bool:
    try:
        docker("image", "inspect", "--format", "{{.Id}}", image)
    except EngineError as exc:
        if "No such image" in str(exc) or "no such image" in str(exc):
            return False
        raise
    return True


def missing_images(images: Sequence[str]) -> set[str]:
    """Which of `images` are not there, in one engine call; raises when the daemon does not
    answer, so that is known before anything is written or seeded."""
    if not images:
        return set()
    try:
        docker("image", "inspect", "--format", "{{.Id}}", *images)
    except EngineError as exc:
        missing = {image for image in images if f"No such image: {image}" in str(exc)}
        if not missing:
            raise
        return missing
    return set()


def missing_image_hint(image: str) -> str:
    """What to run to get `image`, named as the manifest asked for it."""
    if image == SMOKE_IMAGE:
        build = f"uv run inv codex.build --dockerfile docker/Dockerfile.smoke --tag {image}"
        return f"image {image!r} not found: build it with '{build}'"
    build = "uv run inv codex.build" + ("" if image == CODEX_IMAGE else f" --tag {image}")
    return (
        f"image {image!r} not found: build it with '{build}' (with no registry, run "
        "'uv run inv codex.base' first)"
    )


def container_labels(name: str) -> dict[str, str]:
    """The labels of the container called `name`; empty when there is none."""
    try:
        text = docker("container", "inspect", "--format", "{{json .Config.Labels}}", name)
    except EngineError:
        return {}
    import json

    labels = json.loads(text or "null")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def create_session_network(name: str) -> None:
    """The bridge sessions join, with traffic between its containers turned off.

    Each session then reaches the internet and the host, never a sibling. Docker lets two
    concurrent creations make two networks of one name (then neither can be joined), so the
    caller holds a lock, and duplicates a race elsewhere made are reduced to the oldest.
    """
    existing = _networks(name)
    if not existing:
        docker(
            "network",
            "create",
            "--driver",
            "bridge",
            "--opt",
            "com.docker.network.bridge.enable_icc=false",
            "--label",
            "filare.network=sessions",
            name,
        )
        existing = _networks(name)
    for duplicate in sorted(existing, key=lambda network: network[1])[1:]:
        try:
            docker("network", "rm", duplicate[0])
        except EngineError as exc:
            if "No such network" not in str(exc) and "not found" not in str(exc):
                raise


def _networks(name: str) -> list[tuple[str, str]]:
    """(id, creation time) of every network called exactly `name`."""
    lines = docker(
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        f"name=^{name}$",
        "--format",
        "{{.ID}}\t{{.CreatedAt}}",
    ).splitlines()
    return [(line.split("\t")[0], line.split("\t", 1)[-1]) for line in lines if line.strip()]


PULL_TIMEOUT = 600.0


def pull_image(image: str, timeout: float = PULL_TIMEOUT) -> None:
    """`docker pull`; raises `EngineError` with Docker's reason (no registry, unknown image)."""
    docker("pull", "--quiet", image, timeout=timeout)


def _health(status: str) -> str | None:
    """`Up 3 minutes (unhealthy)` -> "unhealthy"; `(health: starting)` -> "starting"."""
    for word in ("unhealthy", "healthy", "health: starting"):
        if f"({word})" in status:
            return word.removeprefix("health: ")
    return None


def _parse_created(text: str) -> datetime | None:
    # docker ps prints e.g. "2026-11-27 10:30:00 +0000 UTC"
    try:
        return datetime.strptime(" ".join(text.split()[:3]), "%Y-%m-%d %H:%M:%S %z")
    except ValueError:
        return None
