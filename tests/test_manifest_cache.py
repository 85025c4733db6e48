"""The manifest cache: a repeat load skips pydantic; a change to what validation read misses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from filare_testing.commands import REPOSITORY, inv
from orchestrator import manifest
from orchestrator.config import DEFAULT_IMAGE
from orchestrator.errors import ManifestError
from orchestrator.manifest import SessionSpec, default_cache_dir, load_manifest
from tests.conftest import WriteManifest, session


def cached_entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.json")) if cache.is_dir() else []


def test_a_cached_load_equals_a_validated_one(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    path = write_manifest(
        {
            "defaults": {"tags": ["x", "y"], "resources": {"cpus": 1.5, "memory": "1g"}},
            "sessions": [session("a", goal="first"), session("b", env_mode="mount")],
        }
    )
    cache = tmp_path / "cache"
    fresh = load_manifest(path, cache_dir=cache)
    assert len(cached_entries(cache)) == 1
    again = load_manifest(path, cache_dir=cache)
    assert again == fresh == load_manifest(path)
    assert all(isinstance(s, SessionSpec) for s in again)


def test_a_cached_load_imports_neither_pydantic_nor_yaml(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    path = write_manifest([session("a"), session("b")])
    cache = tmp_path / "cache"
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestrator.manifest import load_manifest\n"
        f"sessions = load_manifest({str(path)!r}, cache_dir=Path({str(cache)!r}))\n"
        "print(len(sessions), 'pydantic' in sys.modules, 'yaml' in sys.modules)\n"
    )

    def run() -> str:
        result = subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=REPOSITORY,
        )
        return result.stdout.strip()

    assert run() == "2 True True"
    assert run() == "2 False False"


def test_an_edited_manifest_is_validated_again(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    load_manifest(write_manifest(session("a")), cache_dir=cache)
    broken = write_manifest(session("a", imgae="x"))
    with pytest.raises(ManifestError, match="did you mean 'image'"):
        load_manifest(broken, cache_dir=cache)
    (renamed,) = load_manifest(write_manifest(session("b")), cache_dir=cache)
    assert renamed.id == "b"
    assert len(cached_entries(cache)) == 1


def test_another_home_or_user_is_validated_again(
    write_manifest: WriteManifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defaults of `codex_dir` and `owner` come from the home folder and the user name."""
    cache = tmp_path / "cache"
    path = write_manifest({k: v for k, v in session("a").items() if k != "codex_dir"})
    monkeypatch.setenv("HOME", str(tmp_path / "one"))
    monkeypatch.setenv("USER", "first")
    monkeypatch.setenv("LOGNAME", "first")
    (one,) = load_manifest(path, cache_dir=cache)
    monkeypatch.setenv("HOME", str(tmp_path / "two"))
    (two,) = load_manifest(path, cache_dir=cache)
    monkeypatch.setenv("USER", "second")
    monkeypatch.setenv("LOGNAME", "second")
    (three,) = load_manifest(path, cache_dir=cache)
    assert (one.codex_dir, two.codex_dir) == (tmp_path / "one/.codex", tmp_path / "two/.codex")
    assert (two.owner, three.owner) == ("first", "second")


def test_a_damaged_entry_is_a_miss(write_manifest: WriteManifest, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = write_manifest(session("a"))
    (expected,) = load_manifest(path, cache_dir=cache)
    (entry,) = cached_entries(cache)
    for damage in ("", "{", '{"key": 1}', json.dumps({"key": "x", "sessions": []})):
        entry.write_text(damage)
        assert load_manifest(path, cache_dir=cache) == [expected]
    stored = json.loads(entry.read_text())
    stored["sessions"][0]["unknown"] = 1
    entry.write_text(json.dumps(stored))
    assert load_manifest(path, cache_dir=cache) == [expected]


def test_an_unwritable_cache_costs_nothing_but_time(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    (one,) = load_manifest(write_manifest(session("a")), cache_dir=blocked / "cache")
    assert one.id == "a"


def test_other_users_homes_are_not_cached(write_manifest: WriteManifest, tmp_path: Path) -> None:
    """`~name` expands through the password database, which the key does not cover."""
    cache = tmp_path / "cache"
    load_manifest(write_manifest(session("a", codex_dir="~root/.codex")), cache_dir=cache)
    assert cached_entries(cache) == []
    # The same path spelt with a YAML escape: decided on the parsed value, not the text.
    escaped = "- {id: a, role: r, branch: b, workspace: w, env_file: e, ssh_key: k, "
    escaped += 'codex_dir: "\\x7eroot/.codex"}\n'
    (one,) = load_manifest(write_manifest(escaped), cache_dir=cache)
    assert one.codex_dir == Path("~root/.codex").expanduser()
    assert cached_entries(cache) == []
    load_manifest(write_manifest(session("a", codex_dir="~/.codex")), cache_dir=cache)
    assert len(cached_entries(cache)) == 1


def test_an_entry_others_could_have_written_is_not_trusted(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    path = write_manifest(session("a"))
    load_manifest(path, cache_dir=cache)
    (entry,) = cached_entries(cache)
    stored = json.loads(entry.read_text())
    stored["sessions"][0]["image"] = "planted"
    entry.write_text(json.dumps(stored))
    entry.chmod(0o600)
    assert load_manifest(path, cache_dir=cache)[0].image == "planted"  # the key alone is public
    for entry_mode, folder_mode in ((0o620, 0o700), (0o600, 0o777)):
        entry.write_text(json.dumps(stored))
        entry.chmod(entry_mode)
        cache.chmod(folder_mode)
        assert load_manifest(path, cache_dir=cache)[0].image == DEFAULT_IMAGE


def test_the_cache_keeps_the_most_recent_entries(
    write_manifest: WriteManifest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manifest, "MAX_ENTRIES", 2)
    cache = tmp_path / "cache"
    for name in ("one.yml", "two.yml", "three.yml"):
        load_manifest(write_manifest(session("a"), name=name), cache_dir=cache)
    assert len(cached_entries(cache)) == 2


def test_the_cache_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg/filare-agents/manifests"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert default_cache_dir() == tmp_path / "home/.cache/filare-agents/manifests"
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    assert default_cache_dir() is None


def test_the_key_names_the_validating_libraries() -> None:
    versions = manifest._validator_versions()
    for distribution in ("pydantic-", "pydantic_core-", "pyyaml-"):
        assert any(v.lower().startswith(distribution) for v in versions), versions


def test_session_start_caches_in_the_user_cache_folder(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    manifest = write_manifest([session("a")])
    cache_home = tmp_path / "xdg"
    for _ in range(2):
        result = inv(
            "session.start",
            "--manifest",
            str(manifest),
            "--dry-run",
            XDG_CACHE_HOME=str(cache_home),
            FILARE_STATE_DIR=str(tmp_path / "state"),
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("# a: docker run")
    assert len(cached_entries(cache_home / "filare-agents" / "manifests")) == 1
