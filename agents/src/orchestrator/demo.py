"""The example a newcomer runs first: throwaway inputs, the offline image, sessions started.

Nothing secret ships with the repository: the key and env files the example manifests name are
made here, under the ignored `outputs/` folder, the first time they are needed.

`demo --codex` shows a real Codex turn with no account: the real image (built the way
docs/codex-image.md says when absent), and a scripted model (`orchestrator.demo_model`) served
by a process of its own on this machine, which the session's Codex home names as its model
provider. It keeps serving after the command returns, so that later turns work too, until
`demo.stop` ends it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator import engine, images
from orchestrator.errors import EngineError, InputError
from orchestrator.manifest import SessionSpec


def ensure_throwaway_files(
    sessions: Sequence[SessionSpec], env: Mapping[str, str] | None = None
) -> list[Path]:
    """Create the missing SSH keys and env files the sessions name; return what was made.
    `env`: variables a new env file sets too (never secrets: these files are throwaway)."""
    made = []
    extra = "".join(f"{name}={value}\n" for name, value in (env or {}).items())
    for session in sessions:
        if not session.ssh_key.exists():
            _make_key(session.ssh_key)
            made.append(session.ssh_key)
        if not session.env_file.exists():
            _write_private(
                session.env_file,
                f"# Throwaway env file for the example session {session.id}.\n"
                f"FILARE_EXAMPLE_SESSION={session.id}\n{extra}",
            )
            made.append(session.env_file)
    return made


def ensure_image(image: str, repository: Path) -> images.BuiltImage | None:
    """Build the smoke image when it is the one asked for and is absent; None otherwise (another
    missing image is refused by the start itself, with `session.start`'s own answer)."""
    if image != images.SMOKE_TAG or engine.image_exists(image):
        return None
    return images.build_image(repository / "docker" / "Dockerfile.smoke", images.SMOKE_TAG)


def _write_private(path: Path, text: str) -> None:
    """A new file only its owner can read (0600): env files hold secrets, throwaway or not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)


def _make_key(path: Path) -> None:
    if shutil.which("ssh-keygen") is None:
        raise InputError(f"cannot create {path}: ssh-keygen not found (install openssh-client)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "filare-example", "-f", str(path)],
        check=True,
        timeout=30,
        capture_output=True,
    )


# --- a real Codex turn with no account -----------------------------------------------------------

# The first line of a Codex config this demo writes: one without it belongs to someone else.
SCRIPTED_CONFIG_MARK = "# Written by `inv demo --codex`: this Codex home uses the scripted model."
MODEL_FILE = "model.json"
MODEL_LOG = "model.log"
MODEL_START_SECONDS = 15.0


@dataclass(frozen=True)
class ScriptedModel:
    """The scripted model's process: its pid, the port it serves, and whether this call began it."""

    pid: int
    port: int
    started: bool


def model_folder(registry_root: Path) -> Path:
    """Where the scripted model's address and log live: beside the session registry."""
    return registry_root.parent / "demo-model"


def running_model(folder: Path) -> ScriptedModel | None:
    """The scripted model started from `folder`, if its process still serves."""
    try:
        ready = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
        pid, port = int(ready["pid"]), int(ready["port"])
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # A pid taken over by another program since is not ours to talk about, or to stop.
    if b"orchestrator.demo_model" not in command:
        return None
    return ScriptedModel(pid, port, started=False)


def start_model(folder: Path) -> ScriptedModel:
    """Serve the scripted model from a process of its own (it outlives this command), on the
    port it had before when there was one, so that running sessions keep reaching it."""
    running = running_model(folder)
    if running is not None:
        return running
    folder.mkdir(parents=True, exist_ok=True)
    ready = folder / MODEL_FILE
    port = _previous_port(ready)
    ready.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "orchestrator.demo_model", "--ready-file", str(ready)]
    with (folder / MODEL_LOG).open("ab") as log:
        process = subprocess.Popen(
            [*argv, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + MODEL_START_SECONDS
    while time.monotonic() < deadline:
        found = running_model(folder)
        if found is not None and found.pid == process.pid:
            return ScriptedModel(found.pid, found.port, started=True)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=10)
    tail = (folder / MODEL_LOG).read_text(encoding="utf-8", errors="replace")[-300:].strip()
    raise EngineError(f"the scripted model did not start: {tail or 'no output'}")


def stop_model(folder: Path) -> ScriptedModel | None:
    """End the scripted model's process; None when none was running."""
    running = running_model(folder)
    if running is None:
        return None
    os.kill(running.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while running_model(folder) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    return running


def _previous_port(ready: Path) -> int:
    try:
        return int(json.loads(ready.read_text(encoding="utf-8"))["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def write_scripted_codex_home(codex_dir: Path, port: int) -> None:
    """Point a session's Codex home at the scripted model; a Codex home with a configuration of
    someone else's (`~/.codex`) is refused, never overwritten."""
    from orchestrator.scripted_model import write_codex_home

    config = codex_dir / "config.toml"
    if config.exists() and not config.read_text(encoding="utf-8").startswith(SCRIPTED_CONFIG_MARK):
        raise InputError(
            f"{config}: a Codex configuration of its own; demo --codex points a session's Codex "
            "at the scripted model and leaves yours alone: give the session a codex_dir of its "
            "own, as agents/manifests/codex-demo.yml does"
        )
    url = f"http://host.docker.internal:{port}/v1"
    write_codex_home(codex_dir, url)
    config.write_text(f"{SCRIPTED_CONFIG_MARK}\n{config.read_text(encoding='utf-8')}")


def ensure_codex_image(
    image: str, repository: Path, echo: Callable[[str], None]
) -> images.BuiltImage | None:
    """Build the Codex image when absent, as docs/codex-image.md says: the Dockerfile's base, or
    `codex.base`'s when it cannot be pulled (made here when missing: needs root)."""
    from orchestrator import base_image

    if engine.image_exists(image):
        return None
    dockerfile = repository / "docker" / "Dockerfile.codex"
    default = images.base_image_default(dockerfile.read_text(encoding="utf-8")) or ""
    if base_image.choose_base(None, default, engine.image_exists) is None:
        try:
            engine.pull_image(default)
        except EngineError:
            echo(f"{default} cannot be pulled: making a base with codex.base (needs root)")
            plan = base_image.plan_base(base_image.read_host_sources())
            base_image.make_base_image(plan, echo=echo)
    choice = base_image.resolve_base(None, default)
    echo(choice.line())
    return images.build_image(dockerfile, image, {images.BASE_ARG: choice.image})
