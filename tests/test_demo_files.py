"""The example's throwaway inputs: made once, and as private as real ones."""

from __future__ import annotations

import stat
from pathlib import Path

from orchestrator.demo import ensure_throwaway_files
from orchestrator.spec import SessionSpec


def test_throwaway_env_files_and_keys_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    session = SessionSpec(
        id="alpha",
        role="coder",
        branch="agent/alpha",
        workspace=tmp_path / "ws",
        env_file=tmp_path / "env" / "alpha.env",
        ssh_key=tmp_path / "keys" / "id_demo",
        owner="me",
        codex_dir=tmp_path / "codex",
        image="filare-codex:smoke",
    )
    made = ensure_throwaway_files([session])
    assert made == [session.ssh_key, session.env_file]
    for path in made:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(session.ssh_key.parent.stat().st_mode) == 0o700
    assert session.env_file.read_text().endswith("FILARE_EXAMPLE_SESSION=alpha\n")
    assert ensure_throwaway_files([session]) == []
