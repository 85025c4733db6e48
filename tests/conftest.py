"""Shared fixtures for the unit tests: manifests and their files, a hand-written catalog, `just`."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

# A catalog written by hand in the Filare project's format, with one entry that overrides a
# generated one (`session-list`).
HAND_CATALOG = Path(__file__).resolve().parent / "fixtures" / "extra_commands.yml"
OVERRIDING_ENTRY = "session-list"

WriteManifest = Callable[..., Path]
# Shaped like an OpenSSH private key (the check reads the header), but no key at all.
FAKE_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n"
)


@pytest.fixture
def session_files(tmp_path: Path) -> Path:
    """A folder with an env file, a key and a Codex home, as a manifest would name them."""
    (tmp_path / "a.env").write_text("FOO=1\n# comment\n\nBAR=two words\n")
    (tmp_path / "b.env").write_text("BAZ=3\n")
    (tmp_path / "id_test").write_text(FAKE_PRIVATE_KEY)
    (tmp_path / "id_test").chmod(0o600)
    (tmp_path / "codex").mkdir()
    # A login, as `codex login` leaves it: a session without one is warned about at start.
    (tmp_path / "codex" / "auth.json").write_text("{}\n")
    # Manifests live in a repository, which empty workspaces are seeded from.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, timeout=30)
    return tmp_path


@pytest.fixture
def write_manifest(session_files: Path) -> WriteManifest:
    """Write data as YAML to `name` in the session-files folder and return its path."""

    def write(data: object, name: str = "manifest.yml") -> Path:
        path = session_files / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def session(session_id: str = "alpha", **overrides: object) -> dict[str, object]:
    """A complete session mapping with paths relative to the manifest's folder."""
    base: dict[str, object] = {
        "id": session_id,
        "role": "coder",
        "branch": f"agent/{session_id}",
        "workspace": f"ws/{session_id}",
        "env_file": "a.env",
        "ssh_key": "id_test",
        "codex_dir": "codex",
    }
    base.update(overrides)
    return base


def entry_text(text: str, key: str) -> str:
    """The exact text of one top-level entry of a catalog, from its key to the next entry."""
    lines = text.splitlines(keepends=True)
    start = lines.index(f"  {key}:\n")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i][:3].strip() and lines[i][2] != " "),
        len(lines),
    )
    return "".join(lines[start:end]).rstrip("\n")


@pytest.fixture
def hand_catalog() -> str:
    """`tests/fixtures/extra_commands.yml`: the hand-written input the merge must respect."""
    return HAND_CATALOG.read_bytes().decode("utf-8")


@pytest.fixture(scope="session")
def just() -> str:
    """The `just` binary of the environment running the tests (PyPI rust-just)."""
    beside_python = Path(sys.executable).with_name("just")
    found = str(beside_python) if beside_python.is_file() else shutil.which("just")
    if found is None:
        pytest.fail("no `just` binary: install the dev dependency group (`uv sync`)")
    return found


# The Filare project's tests, kept verbatim; tests/test_origin_tests.py runs them on their own.
collect_ignore = ["fixtures/origin"]
