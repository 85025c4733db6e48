"""A session's Codex home filled from the user's Codex folder: only what a session needs, and
whatever the session left where the host writes is replaced, never followed or fatal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator import session_folders
from orchestrator.plan import LaunchPlan, plan_launch
from orchestrator.spec import SessionSpec


@pytest.fixture
def codex_dir(tmp_path: Path) -> Path:
    home = tmp_path / "user-codex"
    home.mkdir()
    (home / "config.toml").write_text(
        'model = "m"\nmodel_catalog_json = "/home/agent/.codex/catalog.json"\n'
    )
    (home / "catalog.json").write_text('{"models": []}\n')
    (home / "auth.json").write_text('{"token": "first-login"}\n')
    (home / "AGENTS.md").write_text("be kind\n")
    (home / ".credentials.json").write_text('{"mcp": "CANARY-MCP-TOKEN"}\n')
    (home / "history.jsonl").write_text("{}\n")
    (home / "other.json").write_text('{"x": "CANARY-OTHER"}\n')
    (home / "profile.toml").write_text('x = "CANARY-TOML"\n')
    (home / "skills" / "s").mkdir(parents=True)
    (home / "skills" / "s" / "SKILL.md").write_text("skill\n")
    return home


def make_plan(tmp_path: Path, codex_dir: Path) -> LaunchPlan:
    spec = SessionSpec(
        id="alpha",
        role="coder",
        branch="agent/alpha",
        workspace=tmp_path / "ws",
        env_file=tmp_path / "a.env",
        ssh_key=tmp_path / "key",
        owner="me",
        codex_dir=codex_dir,
        image="filare-codex:smoke",
        user=f"{os.getuid()}:{os.getgid()}",
    )
    return plan_launch(spec, registry_root=tmp_path / "state", script=Path("/s.sh"))


def prepare(plan: LaunchPlan) -> None:
    session_folders.prepare(plan, session_skills=None, session_config="")


def test_only_the_listed_files_are_copied(tmp_path: Path, codex_dir: Path) -> None:
    plan = make_plan(tmp_path, codex_dir)
    prepare(plan)
    home = plan.folders.codex_home
    assert sorted(p.name for p in home.iterdir()) == [
        "AGENTS.md",
        "auth.json",
        "catalog.json",
        "config.toml",
        "skills",
    ]
    found = "".join(p.read_text() for p in home.rglob("*") if p.is_file())
    assert "CANARY" not in found


@pytest.mark.parametrize(
    ("named", "copied"),
    [
        ("~/.codex/catalog.json", True),
        ("/home/agent/.codex/catalog.json", True),
        ("/elsewhere/catalog.json", False),
        ("/home/agent/.codex/.credentials.json", True),
        ("/home/agent/.codex/auth.json", False),
    ],
)
def test_the_model_catalog_the_configuration_names(
    tmp_path: Path, codex_dir: Path, named: str, copied: bool
) -> None:
    (codex_dir / "config.toml").write_text(f'model_catalog_json = "{named}"\n')
    name = named.rpartition("/")[2]
    assert (
        session_folders.model_catalog(codex_dir, (codex_dir / "config.toml").read_text()) == name
    ) is copied


def test_a_newer_login_replaces_the_sessions_auth_whatever_its_mtime(
    tmp_path: Path, codex_dir: Path
) -> None:
    plan = make_plan(tmp_path, codex_dir)
    prepare(plan)
    auth = plan.folders.codex_home / "auth.json"
    # Codex refreshed the token in the session: kept while the user's login is unchanged.
    auth.write_text('{"token": "refreshed-in-session"}\n')
    prepare(plan)
    assert auth.read_text() == '{"token": "refreshed-in-session"}\n'
    # The agent sets a time far ahead; a new login on the host still reaches the session.
    os.utime(auth, (4_000_000_000, 4_000_000_000))
    (codex_dir / "auth.json").write_text('{"token": "second-login"}\n')
    prepare(plan)
    assert auth.read_text() == '{"token": "second-login"}\n'


@pytest.mark.parametrize(
    "planted", ["config.toml", "auth.json", "AGENTS.md", "catalog.json", "skills"]
)
def test_what_a_session_planted_where_the_host_writes_is_replaced(
    tmp_path: Path, codex_dir: Path, planted: str
) -> None:
    plan = make_plan(tmp_path, codex_dir)
    prepare(plan)
    home = plan.folders.codex_home
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host file\n")
    target = home / planted
    if target.is_dir():
        for entry in sorted(target.rglob("*"), reverse=True):
            entry.rmdir() if entry.is_dir() else entry.unlink()
        target.rmdir()
    else:
        target.unlink()
    (target / "x").mkdir(parents=True)
    (target / "x" / "link").symlink_to(outside)
    prepare(plan)
    assert (home / planted).is_dir() is (planted == "skills")
    assert (outside / "keep").read_text() == "host file\n"
    assert (home / "config.toml").read_text().startswith('model = "m"')


def test_what_an_earlier_version_copied_is_removed_and_codexs_own_files_stay(
    tmp_path: Path, codex_dir: Path
) -> None:
    """Earlier versions copied every `*.json`: a copy still equal to the user's file goes."""
    plan = make_plan(tmp_path, codex_dir)
    home = plan.folders.codex_home
    home.mkdir(parents=True)
    (home / ".credentials.json").write_bytes((codex_dir / ".credentials.json").read_bytes())
    (home / "other.json").write_text('{"written": "by Codex in the session"}\n')
    prepare(plan)
    assert not (home / ".credentials.json").exists()
    assert (home / "other.json").read_text() == '{"written": "by Codex in the session"}\n'


def test_a_configuration_codex_cannot_read_names_no_catalog(codex_dir: Path) -> None:
    assert session_folders.model_catalog(codex_dir, "profiles = [1]\n") is None
    assert session_folders.model_catalog(codex_dir, "not = [toml\n") is None
    named = '[profiles.p]\nmodel_catalog_json = "~/.codex/catalog.json"\n'
    assert session_folders.model_catalog(codex_dir, named) == "catalog.json"


def test_a_tree_thousands_of_folders_deep_is_removed(tmp_path: Path) -> None:
    """`shutil.rmtree` dies with RecursionError on a tree an agent makes in a moment."""
    top = tmp_path / "config.toml"
    top.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host file\n")
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(3000):  # deeper than PATH_MAX allows a path to name
        os.mkdir("a", dir_fd=fd)
        inner = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.symlink(outside, "link", dir_fd=fd)
    os.close(fd)
    (top / ".filare-removing-0").write_text("a name the removal would use\n")
    session_folders.remove_tree(top)
    assert not top.exists()
    assert (outside / "keep").read_text() == "host file\n"


def test_a_catalog_named_in_an_escaped_key_is_still_found(codex_dir: Path) -> None:
    escaped = '"model\\u005fcatalog_json" = "~/.codex/catalog.json"\n'
    assert "model_catalog_json" not in escaped
    assert session_folders.model_catalog(codex_dir, escaped) == "catalog.json"
    assert session_folders.model_catalog(codex_dir, 'model = "m"\n') is None
