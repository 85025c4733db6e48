"""The only Python module that runs the docker CLI: what a command needs from an engine.

Every call has explicit argv and a timeout; a failure becomes one `EngineError` line that says
what to do (install Docker, start the daemon, build the image) instead of a traceback.

An engine is a Docker context. Every function takes `context`: a context's name makes the call
`docker --context NAME ...` with `DOCKER_HOST` and `DOCKER_CONTEXT` taken out of its
environment, so nothing the caller's shell exports can send it to another engine; `None` is the
current context, exactly as before engines had names. `Engine` binds one context to the same
operations (run, exec, copy in and out, survey, inspect, images), so a caller holding a session's
engine never spells the context itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypedDict

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
    "filare.engine",
    # An image label, which containers carry: the smoke image says it has no Codex.
    "org.filare.image.kind",
)
# What the docker CLI reads to pick an engine; a call naming its context takes them out.
_ENGINE_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT")


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
    # The context of the engine it was found on; None: the current context.
    engine: str | None = None

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


def docker_argv(*args: str, context: str | None = None) -> list[str]:
    """`docker [--context NAME] ARGS`: the argv of one call on one engine."""
    return ["docker", *(["--context", context] if context else []), *args]


def command_argv(*args: str, context: str | None = None) -> list[str]:
    """The argv of a docker process the caller runs (or execs) itself: on a named context,
    through `env -u` so the variables that would pick another engine are gone there too."""
    if not context:
        return docker_argv(*args)
    unset = [part for name in _ENGINE_ENV for part in ("-u", name)]
    return ["env", *unset, *docker_argv(*args, context=context)]


def docker_env(context: str | None) -> dict[str, str] | None:
    """The environment of a call on `context`: without what would choose another engine.

    None (inherit everything) for the current context, which those variables may well name.
    """
    if not context:
        return None
    return {key: value for key, value in os.environ.items() if key not in _ENGINE_ENV}


def docker(
    *args: str,
    timeout: float = DEFAULT_TIMEOUT,
    context: str | None = None,
    stdin: str | None = None,
) -> str:
    """Run `docker ARGS` on `context`, return stdout; raise `EngineError` with Docker's reason."""
    return Call(*args, timeout=timeout, context=context, stdin=stdin).output()


def docker_bytes(
    *args: str,
    about: str,
    stdin: bytes = b"",
    timeout: float = DEFAULT_TIMEOUT,
    context: str | None = None,
) -> bytes:
    """`docker ARGS` with bytes in and out (a tar stream, a policy file), which a text `Call`
    cannot carry; a failure is one `EngineError` line that starts with `about` (whose call it
    was: the session, the proxy)."""
    try:
        done = subprocess.run(
            docker_argv(*args, context=context),
            input=stdin,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=docker_env(context),
        )
    except FileNotFoundError:
        raise EngineError(_NOT_INSTALLED) from None
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"{about}: 'docker {args[0]}' did not answer within {timeout:g} s"
        ) from None
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace")
        raise EngineError(f"{about}: {describe_failure(args[0], stderr, context=context)}")
    return done.stdout


class Call:
    """One docker call, started when made and read with `output`: a command that needs the
    engine's answer only later (`session.list` its `docker ps`) asks first and goes on with its
    own work while the engine answers. The timeout counts from the start; `close` ends a call
    whose answer is no longer wanted."""

    def __init__(
        self,
        *args: str,
        timeout: float = DEFAULT_TIMEOUT,
        context: str | None = None,
        stdin: str | None = None,
    ) -> None:
        self.args, self.timeout, self.context, self._stdin = args, timeout, context, stdin
        self._deadline = time.monotonic() + timeout
        self._answer: str | EngineError | None = None
        try:
            self._process: subprocess.Popen[str] | None = subprocess.Popen(
                docker_argv(*args, context=context),
                stdin=subprocess.PIPE if stdin is not None else None,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=docker_env(context),
            )
        except FileNotFoundError:
            self._process = None

    def output(self) -> str:
        if self._answer is None:
            self._answer = self._wait()
        if isinstance(self._answer, EngineError):
            raise self._answer
        return self._answer

    def _wait(self) -> str | EngineError:
        process = self._process
        if process is None:
            return EngineError(_NOT_INSTALLED)
        try:
            stdout, stderr = process.communicate(
                self._stdin, timeout=max(0.0, self._deadline - time.monotonic())
            )
        except subprocess.TimeoutExpired:
            self.close()
            return EngineError(
                f"{_on(self.context)}'docker {self.args[0]}' did not answer within "
                f"{self.timeout:g} s"
            )
        except BaseException:  # Ctrl-C while waiting: the process goes with the command
            self.close()
            raise
        if process.returncode != 0:
            return EngineError(describe_failure(self.args[0], stderr, context=self.context))
        return stdout

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.communicate()

    def __enter__(self) -> Call:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _on(context: str | None) -> str:
    return f"engine {context!r}: " if context else ""


def describe_failure(command: str, stderr: str, *, context: str | None = None) -> str:
    """One actionable line from Docker's stderr, naming the engine when it has a name."""
    text = " ".join(stderr.split())
    if "Cannot connect to the Docker daemon" in text or "Is the docker daemon running" in text:
        if context:
            return (
                f"engine {context!r} does not answer: its Docker daemon is not running or "
                "not reachable"
            )
        return "the Docker daemon is not running: start it (for example 'dockerd &') and retry"
    if context and _UNKNOWN_CONTEXT in text:
        return f"no Docker context named {context!r}: see 'docker context ls'"
    if "permission denied" in text and "docker.sock" in text:
        return (
            f"{_on(context)}no permission to use the Docker daemon: add yourself to the "
            "'docker' group"
        )
    return f"{_on(context)}docker {command} failed: {text or 'no error output'}"


_UNKNOWN_CONTEXT = "context not found"


def list_containers(
    filters: Sequence[str], *, context: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> list[Container]:
    """Containers, running or not, that match every `--filter`, in one engine call."""
    return ContainerQuery(filters, context=context, timeout=timeout).containers()


class ContainerQuery:
    """`list_containers` asked now and read later (see `Call`); `filters` says what it asked."""

    def __init__(
        self,
        filters: Sequence[str],
        *,
        context: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.filters, self.context = tuple(filters), context
        fields = [f"{{{{.{name}}}}}" for name in _LIST_FIELDS]
        fields += [f'{{{{.Label "{label}"}}}}' for label in _LIST_LABELS]
        args = ["ps", "--all", "--no-trunc", "--format", "\t".join(fields)]
        for value in self.filters:
            args += ["--filter", value]
        self._call = Call(*args, context=context, timeout=timeout)

    def containers(self) -> list[Container]:
        containers = []
        for line in self._call.output().splitlines():
            parts = line.split("\t")
            if len(parts) != len(_LIST_FIELDS) + len(_LIST_LABELS):
                continue
            cid, names, state, image, created, status = parts[: len(_LIST_FIELDS)]
            labels = {
                k: v for k, v in zip(_LIST_LABELS, parts[len(_LIST_FIELDS) :], strict=True) if v
            }
            containers.append(
                Container(
                    cid,
                    names.split(",")[0],
                    state,
                    image,
                    _parse_created(created),
                    labels,
                    _health(status),
                    self.context,
                )
            )
        return containers

    def close(self) -> None:
        self._call.close()

    def __enter__(self) -> ContainerQuery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stop_containers(ids: Sequence[str], timeout: float, *, context: str | None = None) -> None:
    """Gracefully stop, then remove, in two engine calls whatever the number of containers."""
    if not ids:
        return
    try:
        docker(
            "stop",
            "--time",
            f"{timeout:g}",
            *ids,
            timeout=timeout + _batch_timeout(ids),
            context=context,
        )
    except EngineError as exc:
        if "No such container" not in str(exc):
            raise
    remove_containers(ids, context=context)


def remove_containers(ids: Sequence[str], *, context: str | None = None) -> None:
    """Force-remove containers; ids already gone are not an error."""
    if not ids:
        return
    try:
        docker("rm", "--force", "--volumes", *ids, timeout=_batch_timeout(ids), context=context)
    except EngineError as exc:
        if "No such container" not in str(exc):
            raise


def _batch_timeout(ids: Sequence[str]) -> float:
    """A loaded daemon tears containers down a few at a time: allow for each one."""
    return DEFAULT_TIMEOUT + 2.0 * len(ids)


def exec_detached(
    container: str,
    argv: Sequence[str],
    *,
    workdir: str | None = None,
    context: str | None = None,
) -> None:
    """Start `argv` in a running container and return at once (`docker exec -d`)."""
    where = ["--workdir", workdir] if workdir else []
    docker("exec", "--detach", *where, container, *argv, context=context)


def exec_in(
    container: str,
    argv: Sequence[str],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    context: str | None = None,
    stdin: str | None = None,
) -> str:
    """Run `argv` in a running container, wait for it, return its output."""
    interactive = ["--interactive"] if stdin is not None else []
    return docker(
        "exec", *interactive, container, *argv, timeout=timeout, context=context, stdin=stdin
    )


def copy_in(container: str, source: Path, target: str, *, context: str | None = None) -> None:
    """`docker cp SOURCE CONTAINER:TARGET`: a host file or folder into a container."""
    docker("cp", str(source), f"{container}:{target}", context=context)


def copy_out(container: str, source: str, target: Path, *, context: str | None = None) -> None:
    """`docker cp CONTAINER:SOURCE TARGET`: a file or folder of a container onto the host."""
    docker("cp", f"{container}:{source}", str(target), context=context)


def inspect_container(container: str, *, context: str | None = None) -> dict[str, object]:
    """`docker container inspect`, parsed; empty when there is no such container."""
    import json

    try:
        text = docker("container", "inspect", "--format", "{{json .}}", container, context=context)
    except EngineError as exc:
        if "No such container" in str(exc) or "no such container" in str(exc):
            return {}
        raise
    data = json.loads(text or "null")
    return data if isinstance(data, dict) else {}


def image_exists(image: str, *, context: str | None = None) -> bool:
    try:
        docker("image", "inspect", "--format", "{{.Id}}", image, context=context)
    except EngineError as exc:
        if "No such image" in str(exc) or "no such image" in str(exc):
            return False
        raise
    return True


def missing_images(images: Sequence[str], *, context: str | None = None) -> set[str]:
    """Which of `images` are not there, in one engine call; raises when the daemon does not
    answer, so that is known before anything is written or seeded."""
    return ImageQuery(images, context=context).missing()


class ImageQuery:
    """`missing_images` asked now and read later (see `Call`); `images` says what it asked."""

    def __init__(self, images: Sequence[str], *, context: str | None = None) -> None:
        self.images, self.context = tuple(images), context
        self._call = (
            Call("image", "inspect", "--format", "{{.Id}}", *images, context=context)
            if images
            else None
        )

    def missing(self) -> set[str]:
        if self._call is None:
            return set()
        try:
            self._call.output()
        except EngineError as exc:
            missing = {image for image in self.images if f"No such image: {image}" in str(exc)}
            if not missing:
                raise
            return missing
        return set()

    def close(self) -> None:
        if self._call is not None:
            self._call.close()

    def __enter__(self) -> ImageQuery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def runtimes(*, context: str | None = None) -> set[str]:
    """The container runtimes the engine knows (`docker info` lists them)."""
    import json

    found = json.loads(docker("info", "--format", "{{json .Runtimes}}", context=context) or "{}")
    return set(found) if isinstance(found, dict) else set()


def missing_image_hint(image: str, *, context: str | None = None) -> str:
    """What to run to get `image`, named as the manifest asked for it, on the engine it is for."""
    on = f" --engine {context}" if context else ""
    where = f" on engine {context!r}" if context else ""
    if image == SMOKE_IMAGE:
        build = f"uv run inv codex.build --dockerfile docker/Dockerfile.smoke --tag {image}{on}"
        return f"image {image!r} not found{where}: build it with '{build}'"
    build = "uv run inv codex.build" + ("" if image == CODEX_IMAGE else f" --tag {image}") + on
    return (
        f"image {image!r} not found{where}: build it with '{build}' (with no registry, run "
        "'uv run inv codex.base' first)"
    )


def container_labels(name: str, *, context: str | None = None) -> dict[str, str]:
    """The labels of the container called `name`; empty when there is none."""
    try:
        text = docker(
            "container", "inspect", "--format", "{{json .Config.Labels}}", name, context=context
        )
    except EngineError:
        return {}
    import json

    labels = json.loads(text or "null")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def create_session_network(name: str, *, context: str | None = None) -> None:
    """The bridge sessions join, with traffic between its containers turned off.

    Each session then reaches the internet and the host, never a sibling. Docker lets two
    concurrent creations make two networks of one name (then neither can be joined), so the
    caller holds a lock, and duplicates a race elsewhere made are reduced to the oldest.
    """
    existing = _networks(name, context)
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
            context=context,
        )
        existing = _networks(name, context)
    for duplicate in sorted(existing, key=lambda network: network[1])[1:]:
        try:
            docker("network", "rm", duplicate[0], context=context)
        except EngineError as exc:
            if "No such network" not in str(exc) and "not found" not in str(exc):
                raise


def _networks(name: str, context: str | None) -> list[tuple[str, str]]:
    """(id, creation time) of every network called exactly `name`."""
    lines = docker(
        "network",
        "ls",
        "--no-trunc",
        "--filter",
        f"name=^{name}$",
        "--format",
        "{{.ID}}\t{{.CreatedAt}}",
        context=context,
    ).splitlines()
    return [(line.split("\t")[0], line.split("\t", 1)[-1]) for line in lines if line.strip()]


PULL_TIMEOUT = 600.0


def pull_image(image: str, timeout: float = PULL_TIMEOUT, *, context: str | None = None) -> None:
    """`docker pull`; raises `EngineError` with Docker's reason (no registry, unknown image)."""
    docker("pull", "--quiet", image, timeout=timeout, context=context)


def _health(status: str) -> str | None:
    """`Up 3 minutes (unhealthy)` -> "unhealthy"; `(health: starting)` -> "starting"."""
    for word in ("unhealthy", "healthy", "health: starting"):
        if f"({word})" in status:
            return word.removeprefix("health: ")
    return None


def _parse_created(text: str) -> datetime | None:
    """docker ps prints e.g. "2026-11-27 10:30:00 +0000 UTC". Read without `strptime`, whose
    first use imports `_strptime` (and `locale`, `calendar`): 5 ms of every `session.list`."""
    words = text.split()
    if len(words) < 3 or words[2][:1] not in {"+", "-"}:
        return None
    try:
        moment = datetime.fromisoformat(f"{words[0]} {words[1]}{words[2]}")
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# --- engines by name ------------------------------------------------------------------------------

COPY_TIMEOUT = 1800.0
_CHUNK = 1 << 20


def context_hosts(contexts: Sequence[str]) -> dict[str, str]:
    """The Docker endpoint (`unix:///…`, `ssh://…`, `tcp://…`) of each named context, in one
    call; a name no context has is bad input, named."""
    import json

    names = sorted(set(contexts))
    if not names:
        return {}
    try:
        text = docker("context", "inspect", *names)
    except EngineError as exc:
        if "not found" not in str(exc):
            raise
        known = set(docker("context", "ls", "--format", "{{.Name}}").split())
        unknown = [name for name in names if name not in known]
        from orchestrator.errors import InputError

        raise InputError(
            f"no Docker context named {unknown[0] if unknown else names[0]!r}: create it with "
            "'docker context create NAME --docker host=…' (see 'docker context ls')"
        ) from None
    hosts: dict[str, str] = {}
    for entry in json.loads(text or "[]"):
        endpoint = entry.get("Endpoints", {}).get("docker", {}) if isinstance(entry, dict) else {}
        hosts[str(entry.get("Name"))] = str(endpoint.get("Host", ""))
    return hosts


DEFAULT_HOST = "unix:///var/run/docker.sock"


def endpoint(context: str | None) -> str | None:
    """Where `context`'s engine is (`unix:///…`, `ssh://…`), read from the Docker CLI's own
    files without running it, so that two names of one engine are asked once; None when that
    cannot be told (then the context is asked on its own)."""
    import hashlib
    import json

    if context is None:
        if os.environ.get("DOCKER_HOST"):
            return os.environ["DOCKER_HOST"]
        context = os.environ.get("DOCKER_CONTEXT") or _current_context()
    if context in {None, "default"}:
        return DEFAULT_HOST
    assert context is not None
    folder = _config_dir() / "contexts" / "meta" / hashlib.sha256(context.encode()).hexdigest()
    try:
        data = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        host = data["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return host if isinstance(host, str) and host else None


def _config_dir() -> Path:
    configured = os.environ.get("DOCKER_CONFIG")
    return Path(configured) if configured else Path.home() / ".docker"


def _current_context() -> str | None:
    import json

    try:
        data = json.loads((_config_dir() / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    current = data.get("currentContext") if isinstance(data, dict) else None
    return current if isinstance(current, str) and current else None


def shares_files(host: str) -> bool:
    """Whether an engine at `host` sees this machine's files: a socket on this machine does, so
    bind mounts of host paths work there; an engine over ssh or TCP does not."""
    return host.startswith("unix://")


def copy_image(
    image: str,
    *,
    target: str | None,
    source: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    timeout: float = COPY_TIMEOUT,
) -> None:
    """`docker save IMAGE | docker load` from engine `source` into engine `target`: how images
    travel with no registry. `progress(bytes sent, image size)` is called as the stream goes."""
    size_text = docker("image", "inspect", "--format", "{{.Size}}", image, context=source)
    size = int(size_text.strip() or 0)
    save = subprocess.Popen(
        docker_argv("save", image, context=source),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=docker_env(source),
    )
    load = subprocess.Popen(
        docker_argv("load", "--quiet", context=target),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=docker_env(target),
    )
    assert save.stdout is not None and load.stdin is not None
    sent = 0
    try:
        import time

        deadline = time.monotonic() + timeout
        if progress is not None:
            progress(0, size)
        while chunk := save.stdout.read(_CHUNK):
            load.stdin.write(chunk)
            sent += len(chunk)
            if progress is not None:
                progress(sent, size)
            if time.monotonic() > deadline:
                raise EngineError(f"copying {image} did not finish within {timeout:g} s")
        load.stdin.close()
        load_err = load.stderr.read() if load.stderr else b""
        load.wait(timeout=timeout)
        save_err = save.stderr.read() if save.stderr else b""
        save.wait(timeout=timeout)
    except (BrokenPipeError, EngineError, subprocess.TimeoutExpired):
        load.kill()
        save.kill()
        load.wait()
        save.wait()
        raise EngineError(
            f"copying image {image!r} to engine {target or 'the current one'!r} failed: "
            + " ".join(
                (load.stderr.read() if load.stderr else b"").decode(errors="replace").split()
            )
        ) from None
    if save.returncode != 0:
        raise EngineError(
            describe_failure("save", save_err.decode(errors="replace"), context=source)
        )
    if load.returncode != 0:
        raise EngineError(
            describe_failure("load", load_err.decode(errors="replace"), context=target)
        )


class _Where(TypedDict, total=False):
    context: str


@dataclass(frozen=True)
class Engine:
    """One Docker engine, by the name of its context: every operation a command needs from an
    engine, each one called on this engine and no other. `Engine(None)` is the current context."""

    context: str | None = None

    @property
    def _where(self) -> _Where:
        """The `context` argument of a call on this engine: none for the current engine, whose
        calls stay exactly what they were before engines had names."""
        return {"context": self.context} if self.context else {}

    @property
    def label(self) -> str:
        """How messages and tables name it."""
        return self.context or "current"

    def docker(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        return docker(*args, timeout=timeout, **self._where)

    def argv(self, *args: str) -> list[str]:
        """The argv of a docker call on this engine, for a process the caller runs itself."""
        return command_argv(*args, context=self.context)

    def env(self) -> Mapping[str, str] | None:
        return docker_env(self.context)

    def list_containers(
        self, filters: Sequence[str], *, timeout: float | None = None
    ) -> list[Container]:
        if timeout is None:
            return list_containers(filters, **self._where)
        return list_containers(filters, timeout=timeout, **self._where)

    def inspect(self, container: str) -> dict[str, object]:
        return inspect_container(container, **self._where)

    def labels(self, container: str) -> dict[str, str]:
        return container_labels(container, **self._where)

    def stop(self, ids: Sequence[str], timeout: float) -> None:
        stop_containers(ids, timeout, **self._where)

    def remove(self, ids: Sequence[str]) -> None:
        remove_containers(ids, **self._where)

    def exec(self, container: str, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT) -> str:
        return exec_in(container, argv, timeout=timeout, **self._where)

    def exec_detached(
        self, container: str, argv: Sequence[str], *, workdir: str | None = None
    ) -> None:
        exec_detached(container, argv, workdir=workdir, **self._where)

    def copy_in(self, container: str, source: Path, target: str) -> None:
        copy_in(container, source, target, **self._where)

    def copy_out(self, container: str, source: str, target: Path) -> None:
        copy_out(container, source, target, **self._where)

    def missing_images(self, images: Sequence[str]) -> set[str]:
        return missing_images(images, **self._where)

    def image_exists(self, image: str) -> bool:
        return image_exists(image, **self._where)

    def pull(self, image: str) -> None:
        if self.context:
            pull_image(image, context=self.context)
        else:
            pull_image(image)

    def create_session_network(self, name: str) -> None:
        create_session_network(name, **self._where)
