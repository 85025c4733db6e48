"""Workspace seeding by the launch script (`--seed-only`): what git sees, on the right branch."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.test_launch_script import run


def git(repo: Path, *args: str, check: bool = True) -> str:
    # A seeded workspace belongs to the session's user (10001 when the tests run as root).
    return subprocess.run(
        ["git", "-c", "safe.directory=*", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=30,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "src").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text(".venv/\noutputs/\n__pycache__/\n")
    (repo / "src" / "tracked.py").write_text("x = 1\n")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    git(repo, "branch", "existing")
    (repo / "untracked.txt").write_text("new\n")
    (repo / ".venv" / "lib").mkdir(parents=True)
    (repo / ".venv" / "lib" / "big").write_text("ignored\n")
    (repo / "src" / "__pycache__").mkdir()
    (repo / "src" / "__pycache__" / "x.pyc").write_text("ignored\n")
    return repo


def seed(repo: Path, workspace: Path, branch: str) -> subprocess.CompletedProcess[str]:
    return run(
        "--seed-only", "--workspace", str(workspace), "--seed-from", str(repo), "--branch", branch
    )


def test_seeds_what_git_sees_on_a_new_branch(repo: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    result = seed(repo, workspace, "agent/a")
    assert result.returncode == 0, result.stderr
    assert (workspace / "src" / "tracked.py").read_text() == "x = 1\n"
    assert (workspace / "untracked.txt").exists()
    assert not (workspace / ".venv").exists()
    assert not (workspace / "src" / "__pycache__").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo", "ws"]  # no seeding left over
    assert git(workspace, "symbolic-ref", "--short", "HEAD") == "agent/a"
    assert git(workspace, "rev-parse", "HEAD") == git(repo, "rev-parse", "HEAD")
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(workspace, "status", "--porcelain") == "?? untracked.txt"


def test_existing_branch_is_checked_out(repo: Path, tmp_path: Path) -> None:
    assert seed(repo, tmp_path / "ws", "existing").returncode == 0
    assert git(tmp_path / "ws", "symbolic-ref", "--short", "HEAD") == "existing"


def test_workspace_inside_the_repository_does_not_copy_itself(repo: Path) -> None:
    other = repo / "agents-ws" / "b"
    assert seed(repo, other, "agent/b").returncode == 0
    (other / "theirs.txt").write_text("other session's work\n")
    inside = repo / "agents-ws" / "a"
    result = seed(repo, inside, "agent/a")
    assert result.returncode == 0, result.stderr
    assert (inside / "src" / "tracked.py").exists()
    assert not (inside / "agents-ws" / "a").exists()
    assert not (inside / "agents-ws" / "b" / "theirs.txt").exists()
    assert not (inside / "agents-ws" / "b" / "src").exists()
    ignored = repo / "outputs" / "ws"
    assert seed(repo, ignored, "agent/c").returncode == 0
    assert not (ignored / "outputs").exists()


def test_seeded_workspace_on_another_branch_is_reported(repo: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert seed(repo, workspace, "agent/a").returncode == 0
    result = seed(repo, workspace, "agent/b")
    assert result.returncode == 2
    assert "is on branch 'agent/a', expected 'agent/b'" in result.stderr


def test_an_interrupted_seeding_leaves_no_workspace_and_is_seeded_again(
    repo: Path, tmp_path: Path
) -> None:
    """Seeding fills a folder beside the workspace and renames it into place: a workspace is
    either whole or absent, so no marker inside it (where an agent could plant one) is needed."""
    (tmp_path / ".filare-seed.killed").mkdir()  # what a start killed mid-seeding leaves
    (tmp_path / ".filare-seed.killed" / "half.txt").write_text("x = ")
    workspace = tmp_path / "ws"
    result = seed(repo, workspace, "agent/a")
    assert result.returncode == 0, result.stderr
    assert (workspace / "src" / "tracked.py").read_text() == "x = 1\n"
    assert git(workspace, "symbolic-ref", "--short", "HEAD") == "agent/a"


def test_an_agents_seed_marker_does_not_reseed_its_workspace(repo: Path, tmp_path: Path) -> None:
    """The old marker, planted by an agent as a link to a host file: nothing follows it, and a
    workspace with content is never seeded over (so no hook it planted reaches git)."""
    workspace = tmp_path / "ws"
    assert seed(repo, workspace, "agent/a").returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    (workspace / ".filare-seeding").symlink_to(victim)
    hook = workspace / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'pwned'}\n")
    hook.chmod(0o755)
    result = seed(repo, workspace, "agent/a")
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "keep me\n"
    assert not (tmp_path / "pwned").exists()
    assert (workspace / ".filare-seeding").is_symlink()  # left as the agent made it


def test_a_hook_of_the_seed_source_does_not_run_while_seeding(repo: Path, tmp_path: Path) -> None:
    hook = repo / ".git" / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {tmp_path / 'ran'}\n")
    hook.chmod(0o755)
    git(repo, "add", "untracked.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "second")
    (tmp_path / "ran").unlink(missing_ok=True)
    assert seed(repo, tmp_path / "ws", "existing").returncode == 0  # a real checkout
    assert not (tmp_path / "ran").exists()


def test_a_head_that_is_a_link_is_not_read(repo: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    assert seed(repo, workspace, "agent/a").returncode == 0
    secret = tmp_path / "host-secret"
    secret.write_text("ref: refs/heads/agent/a\n")
    head = workspace / ".git" / "HEAD"
    head.unlink()
    head.symlink_to(secret)
    result = seed(repo, workspace, "agent/a")
    assert result.returncode == 2
    assert "no readable .git/HEAD" in result.stderr


def test_non_empty_workspace_is_left_as_it_is(repo: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "mine.txt").write_text("keep\n")
    result = seed(repo, workspace, "agent/a")
    assert result.returncode == 0
    assert sorted(p.name for p in workspace.iterdir()) == ["mine.txt"]
    assert "is not a git repository (no .git folder): branch 'agent/a' is not checked" in (
        result.stderr
    )


def test_existing_branch_on_another_commit_is_checked_out(repo: Path, tmp_path: Path) -> None:
    git(repo, "add", "untracked.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "second")
    workspace = tmp_path / "ws"
    assert seed(repo, workspace, "existing").returncode == 0
    assert git(workspace, "symbolic-ref", "--short", "HEAD") == "existing"
    assert git(workspace, "rev-parse", "HEAD") == git(repo, "rev-parse", "existing")
    assert not (workspace / "untracked.txt").exists()
    assert git(workspace, "status", "--porcelain") == ""


def test_paths_with_wildcards_and_spaces_are_matched_literally(repo: Path, tmp_path: Path) -> None:
    odd = repo / "w[1] *"
    odd.mkdir()
    (odd / "kept?.txt").write_text("untracked, not ignored\n")
    (odd / "skip.log").write_text("ignored\n")
    (repo / "w1 a").mkdir()
    (repo / "w1 a" / "similar.log").write_text("ignored too\n")
    (repo / "w1 a" / "similar.txt").write_text("a near miss of the odd folder's pattern\n")
    (repo / ".gitignore").write_text(".venv/\noutputs/\n__pycache__/\n*.log\n")
    workspace = tmp_path / "ws"
    assert seed(repo, workspace, "agent/a").returncode == 0
    assert (workspace / "w[1] *" / "kept?.txt").exists()
    assert not (workspace / "w[1] *" / "skip.log").exists()
    assert (workspace / "w1 a" / "similar.txt").exists()
    assert not (workspace / "w1 a" / "similar.log").exists()


def test_a_linked_worktree_seeds_a_repository_of_its_own(repo: Path, tmp_path: Path) -> None:
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    (linked / "src" / "tracked.py").write_text("x = 2\n")  # an uncommitted change
    (linked / "notes.txt").write_text("untracked\n")
    workspace = tmp_path / "ws"
    result = seed(linked, workspace, "agent/a")
    assert result.returncode == 0, result.stderr
    assert (workspace / ".git").is_dir()
    assert not (workspace / ".git" / "worktrees").exists()
    assert (workspace / "src" / "tracked.py").read_text() == "x = 2\n"
    assert git(workspace, "rev-parse", "--show-toplevel") == str(workspace)
    assert git(workspace, "symbolic-ref", "--short", "HEAD") == "agent/a"
    assert git(workspace, "rev-parse", "HEAD") == git(linked, "rev-parse", "HEAD")
    status = git(workspace, "status", "--porcelain", "--untracked-files=all")
    assert status.splitlines() == ["M src/tracked.py", "?? notes.txt"]  # first line stripped
    assert git(workspace, "worktree", "list").count("\n") == 0  # only the workspace itself
    assert git(repo, "worktree", "list").count("\n") == 1  # the source repository is untouched
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"


def test_a_worktree_of_a_bare_repository_seeds_a_non_bare_one(repo: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(bare))
    linked = tmp_path / "linked"
    git(bare, "worktree", "add", "-q", str(linked), "existing")
    workspace = tmp_path / "ws"
    result = seed(linked, workspace, "existing")
    assert result.returncode == 0, result.stderr
    assert git(workspace, "rev-parse", "--is-bare-repository") == "false"
    assert git(workspace, "status", "--porcelain") == ""
    assert git(workspace, "symbolic-ref", "--short", "HEAD") == "existing"


def test_a_folder_below_the_top_of_a_repository_is_refused(repo: Path, tmp_path: Path) -> None:
    result = seed(repo / "src", tmp_path / "ws", "agent/a")
    assert result.returncode == 2
    assert "is not the top folder of a git repository" in result.stderr


def test_the_main_worktrees_own_state_stays_behind(repo: Path, tmp_path: Path) -> None:
    """A merge in progress or a sparse checkout in the main worktree is not the workspace's."""
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    (repo / ".git" / "MERGE_HEAD").write_text(git(repo, "rev-parse", "existing") + "\n")
    (repo / ".git" / "MERGE_MSG").write_text("Merge branch 'existing'\n")
    git(repo, "sparse-checkout", "set", "src")
    workspace = tmp_path / "ws"
    result = seed(linked, workspace, "main")
    assert result.returncode == 0, result.stderr
    for name in ("MERGE_HEAD", "MERGE_MSG", "config.worktree", "info/sparse-checkout"):
        assert not (workspace / ".git" / name).exists(), name
    assert git(workspace, "config", "--get", "core.sparseCheckout", check=False) != "true"
    assert git(workspace, "symbolic-ref", "--short", "HEAD") == "main"
    assert not (workspace / "untracked.txt").exists()  # the main worktree's, not the linked one's
    assert (workspace / ".gitignore").exists() and (workspace / "src" / "tracked.py").exists()
    assert git(workspace, "status", "--porcelain") == ""


def test_a_git_folder_that_is_a_link_is_copied_not_shared(repo: Path, tmp_path: Path) -> None:
    (repo / ".git").rename(tmp_path / "elsewhere.git")
    (repo / ".git").symlink_to(tmp_path / "elsewhere.git")
    workspace = tmp_path / "ws"
    result = seed(repo, workspace, "agent/a")
    assert result.returncode == 0, result.stderr
    assert (workspace / ".git").is_dir() and not (workspace / ".git").is_symlink()
    assert git(workspace, "symbolic-ref", "--short", "HEAD") == "agent/a"
    assert git(repo, "symbolic-ref", "--short", "HEAD") == "main"


def test_a_linked_worktree_with_submodules_is_refused(repo: Path, tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    git(library, "init", "-q", "-b", "main")
    git(
        library,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "l",
    )
    file_ok = ("-c", "protocol.file.allow=always")
    git(repo, *file_ok, "submodule", "add", "-q", str(library), "lib")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "submodule")
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    git(linked, *file_ok, "submodule", "update", "-q", "--init")
    result = seed(linked, tmp_path / "ws", "agent/a")
    assert result.returncode == 2
    assert "a linked worktree with submodules" in result.stderr
    assert not (tmp_path / "ws").exists()


def test_secret_files_and_private_keys_are_never_seeded(repo: Path, tmp_path: Path) -> None:
    """With env files inside the repository and not ignored by git, no workspace gets them."""
    (repo / "secrets").mkdir()
    (repo / "secrets" / "beta.env").write_text("TOKEN=canary-secret\n")
    (repo / "keys").mkdir()
    (repo / "keys" / "deploy").write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nY2FuYXJ5\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    (repo / "docs.md").write_text("A key starts with '-----BEGIN RSA PRIVATE KEY-----'.\n")
    workspace = tmp_path / "ws"
    result = run(
        "--seed-only",
        "--workspace",
        str(workspace),
        "--seed-from",
        str(repo),
        "--secret",
        str(repo / "secrets" / "beta.env"),
    )
    assert result.returncode == 0, result.stderr
    assert not (workspace / "secrets" / "beta.env").exists()
    assert not (workspace / "keys" / "deploy").exists()
    assert (workspace / "docs.md").exists()  # mentions a key, holds none
    warnings = result.stderr.splitlines()
    assert any("not seeding secrets/beta.env" in line and ".gitignore" in line for line in warnings)
    assert any("not seeding keys/deploy: it holds a private key" in line for line in warnings)
    assert "canary" not in result.stderr


def test_an_ignored_secret_is_not_warned_about(repo: Path, tmp_path: Path) -> None:
    (repo / "outputs").mkdir()
    (repo / "outputs" / "a.env").write_text("A=1\n")
    result = run(
        "--seed-only",
        "--workspace",
        str(tmp_path / "ws"),
        "--seed-from",
        str(repo),
        "--secret",
        str(repo / "outputs" / "a.env"),
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


def test_excluded_paths_are_never_copied_even_before_they_hold_a_repository(
    repo: Path,
) -> None:
    """A sibling's workspace that is still being seeded (no `.git` yet) is not copied."""
    sibling = repo / "ws" / "b"
    sibling.mkdir(parents=True)
    (sibling / "half.txt").write_text("the sibling's half-seeded files\n")
    mine = repo / "ws" / "a"
    result = run(
        "--seed-only",
        "--workspace",
        str(mine),
        "--seed-from",
        str(repo),
        "--exclude",
        str(sibling),
    )
    assert result.returncode == 0, result.stderr
    assert (mine / "src" / "tracked.py").exists()
    assert not (mine / "ws" / "b" / "half.txt").exists()
    assert not (mine / "ws" / "a").exists()


def test_a_path_with_a_backslash_and_a_wildcard_is_excluded_literally(
    repo: Path,
) -> None:
    workspace = repo / "odd\\dir*" / "ws"
    result = seed(repo, workspace, "agent/a")
    assert result.returncode == 0, result.stderr
    assert (workspace / "src" / "tracked.py").exists()
    assert not (workspace / "odd\\dir*" / "ws").exists()


def test_no_seed_refuses_an_empty_workspace(tmp_path: Path) -> None:
    result = run("--seed-only", "--no-seed", "--workspace", str(tmp_path / "ws"))
    assert result.returncode == 2
    assert "there is no repository to seed it from" in result.stderr
    assert not (tmp_path / "ws").exists()


def test_credentials_in_the_repository_configuration_are_not_seeded(
    repo: Path, tmp_path: Path
) -> None:
    """CI checkouts keep their token in `http.<url>.extraheader`, people in remote URLs."""
    git(repo, "config", "http.https://github.com/.extraheader", "AUTHORIZATION: basic CANARY1")
    git(repo, "config", "credential.helper", "store --file /host/CANARY2")
    git(repo, "remote", "add", "origin", "https://x-access-token:CANARY3@github.com/o/r.git")
    git(repo, "config", "--add", "remote.origin.url", "https://mirror.example/r.git")
    git(repo, "config", "remote.origin.pushurl", "ssh://git@host/r.git")
    git(repo, "config", "url.https://u:CANARY4@github.com/.insteadOf", "https://github.com/")
    git(repo, "config", "github.token", "CANARY5")
    git(repo, "config", "remote.other.url", "ssh://me:CANARY6@host/x.git")
    workspace = tmp_path / "ws"
    result = seed(repo, workspace, "agent/a")
    assert result.returncode == 0, result.stderr
    config = (workspace / ".git" / "config").read_text()
    assert "CANARY" not in config
    assert "extraheader" not in config and "credential" not in config
    assert git(workspace, "config", "--get-all", "remote.origin.url").splitlines() == [
        "https://github.com/o/r.git",
        "https://mirror.example/r.git",
    ]
    assert git(workspace, "config", "remote.origin.pushurl") == "ssh://git@host/r.git"
    assert git(workspace, "config", "remote.other.url") == "ssh://host/x.git"
    assert "CANARY" in (repo / ".git" / "config").read_text()  # the source is left as it was
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "credentials" in warnings[0]
    assert "CANARY" not in result.stderr + result.stdout


def test_a_repository_configuration_without_credentials_is_copied_as_it_is(
    repo: Path, tmp_path: Path
) -> None:
    git(repo, "remote", "add", "origin", "git@github.com:o/r.git")
    before = (repo / ".git" / "config").read_text()
    result = seed(repo, tmp_path / "ws", "main")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ws" / ".git" / "config").read_text() == before
    assert "warning" not in result.stderr


def test_a_linked_worktrees_own_configuration_keeps_no_credential(
    repo: Path, tmp_path: Path
) -> None:
    git(repo, "config", "extensions.worktreeConfig", "true")
    linked = tmp_path / "linked"
    git(repo, "worktree", "add", "-q", "-b", "feature", str(linked))
    git(linked, "config", "--worktree", "http.extraheader", "AUTHORIZATION: bearer CANARY7")
    git(repo, "config", "remote.origin.url", "https://CANARY8@example.com/r.git")
    workspace = tmp_path / "ws"
    result = seed(linked, workspace, "agent/a")
    assert result.returncode == 0, result.stderr
    found = subprocess.run(
        ["grep", "-r", "CANARY", str(workspace / ".git")], capture_output=True, check=False
    )
    assert found.stdout == b""
    assert git(workspace, "config", "remote.origin.url") == "https://example.com/r.git"
