"""Shared fixtures for the unit tests: manifests and the files they name, in a temp folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

REPOSITORY = Path(__file__).resolve().parents[1]

WriteManifest = Callable[..., Path]


@pytest.fixture
def session_files(tmp_path: Path) -> Path:
    """A folder with an env file, a key and a Codex home, as a manifest would name them."""
    (tmp_path / "a.env").write_text("FOO=1\n# comment\n\nBAR=two words\n")
    (tmp_path / "b.env").write_text("BAZ=3\n")
    (tmp_path / "id_test").write_text("not a real key\n")
    (tmp_path / "id_test").chmod(0o600)
    (tmp_path / "codex").mkdir()
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
