"""The example a newcomer runs first: throwaway inputs, the offline image, sessions started.

Nothing secret ships with the repository: the key and env files the example manifests name are
made here, under the ignored `outputs/` folder, the first time they are needed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from orchestrator import engine, images
from orchestrator.errors import InputError
from orchestrator.manifest import SessionSpec


def ensure_throwaway_files(sessions: Sequence[SessionSpec]) -> list[Path]:
    """Create the missing SSH keys and env files the sessions name; return what was made."""
    made = []
    for session in sessions:
        if not session.ssh_key.exists():
            _make_key(session.ssh_key)
            made.append(session.ssh_key)
        if not session.env_file.exists():
            _write_private(
                session.env_file,
                f"# Throwaway env file for the example session {session.id}.\n"
                f"FILARE_EXAMPLE_SESSION={session.id}\n",
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
