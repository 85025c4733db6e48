"""Bringing the work home: collect, diff, conflicts and accept on the real Codex image.

The agent is played by `docker exec` as the session's user (and once by the real Codex through
the fake model). Everything an agent could plant in its repository to run code on the host
(hooks, fsmonitor, pager, external diff, filters) drops a marker file on the host if it runs;
none may appear.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from agent_helpers import docker, sh

from conftest import BuiltCodexImage
from filare_testing.commands import inv
from filare_testing.fake_model import API_KEY_ENV, FakeModel, message, shell
from filare_testing.fake_model import write_codex_home as write_fake_codex_home
from orchestrator.registry import Registry

pytestmark = [pytest.mark.agent, pytest.mark.image]

USER = "10001:10001"


def task(registry: Registry, *args: str) -> tuple[int, str, str]:
    result = inv(*args, state=registry.root)
    return result.returncode, result.stdout, result.stderr


def refs_of(repo: Path) -> list[str]:
    return sh(
        "git", "-C", str(repo), "for-each-ref", "--format=%(objectname) %(refname)"
    ).stdout.splitlines()


def untouched(repo: Path) -> dict[str, bytes]:
    """What collect, diff and conflicts must leave as it was: config, hooks, index, HEAD, the
    working tree's state."""
    git_dir = repo / ".git"
    found = {
        name: (git_dir / name).read_bytes()
        for name in ("config", "index", "HEAD")
        if (git_dir / name).exists()
    }
    found["hooks"] = "\n".join(sorted(p.name for p in (git_dir / "hooks").iterdir())).encode()
    status = sh("git", "--no-optional-locks", "-C", str(repo), "status", "--porcelain")
    found["status"] = status.stdout.encode()
    return found


def objects_of(repo: Path) -> str:
    return sh("git", "-C", str(repo), "count-objects", "-v").stdout


def agent(container: str, *script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run shell lines in the session's workspace as the session's user."""
    return sh(
        "docker", "exec", "--user", USER, "--workdir", "/home/agent/workspace",
        "--env", "HOME=/home/agent", container, "sh", "-c", "\n".join(["set -e", *script]),
        check=check,
    )  # fmt: skip


COMMIT = "git -c user.name=agent -c user.email=agent@example.com commit -q"


@pytest.fixture
def home_manifest(project: Path, codex_image: BuiltCodexImage, fake: FakeModel) -> Iterator[Path]:
    write_fake_codex_home(project / "outputs" / "codex-home", fake.container_url)
    (project / "outputs" / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
    (project / "src" / "lines.txt").write_text("one\ntwo\nthree\nfour\nfive\n")
    manifest = project / "home.yml"

    def write(ids: tuple[str, ...], image: str = codex_image.tag) -> Path:
        manifest.write_text(
            yaml.safe_dump(
                {
                    "defaults": {
                        "image": image,
                        "role": "builder",
                        "ssh_key": "outputs/keys/id_test",
                        "env_file": "outputs/model.env",
                        "codex_dir": "outputs/codex-home",
                    },
                    "sessions": [
                        {"id": n, "branch": f"agent/{n}", "workspace": f"outputs/ws/{n}"}
                        for n in ids
                    ],
                }
            )
        )
        return manifest

    write(("alpha", "beta", "gamma"))
    commit_all(project)
    yield manifest


def commit_all(project: Path) -> None:
    """Commit the project's files (manifests too), so a seeded workspace starts clean."""
    sh("git", "-C", str(project), "add", ".")
    sh("git", "-C", str(project), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")


def start(registry: Registry, manifest: Path) -> None:
    code, out, err = task(registry, "session.start", "--manifest", str(manifest))
    assert code == 0, out + err


def stop_all(registry: Registry, manifest: Path) -> None:
    task(registry, "session.stop", "--manifest", str(manifest), "--timeout", "1")


def test_work_comes_home_and_lands_on_a_branch(
    registry: Registry, home_manifest: Path, project: Path
) -> None:
    start(registry, home_manifest)
    try:
        agent(
            "filare-builder-alpha",
            "printf 'ONE\\n' > one.txt && git add one.txt && " + COMMIT + " -m 'first'",
            "printf 'tracked change\\n' >> src/main.py",
            "printf 'new\\n' > untracked.txt",
            "printf 'ignored\\n' > outputs/ignored.txt || mkdir -p outputs",
        )
        before = refs_of(project)
        host_view = untouched(project)
        look = "sha256sum .git/index .git/HEAD; git for-each-ref; git status --porcelain"
        agents_view = agent("filare-builder-alpha", look).stdout
        code, out, err = task(registry, "session.collect", "--session", "alpha")
        assert code == 0, out + err
        row = out.splitlines()[1].split()
        assert row[:4] == ["alpha", "collected", "1", "3"], out
        assert agent("filare-builder-alpha", look).stdout == agents_view
        after = refs_of(project)
        changed = sorted(set(after) ^ set(before))
        assert all(" refs/agents/alpha/" in line for line in changed), changed
        names = {line.split()[1] for line in after if "refs/agents/" in line}
        assert names == {f"refs/agents/alpha/{n}" for n in ("base", "head", "worktree")}

        code, out, err = task(registry, "session.collect", "--session", "alpha", "--json")
        assert code == 0, err
        (again,) = json.loads(out)
        assert again["result"] == "unchanged" and refs_of(project) == after

        code, out, err = task(registry, "session.diff", "--session", "alpha", "--stat")
        assert code == 0, err
        assert "one.txt" in out and "untracked.txt" in out and "src/main.py" in out
        assert "ignored" not in out
        code, out, err = task(registry, "session.diff", "--session", "alpha", "--committed")
        assert code == 0 and "+ONE" in out and "untracked" not in out

        rows = {r["session"]: r for r in json.loads(task(registry, "session.list", "--json")[1])}
        assert rows["alpha"]["work"]["ahead"] == 1 and rows["alpha"]["work"]["files"] == 3
        board = task(registry, "session.dashboard")[1]
        assert "WORK COLLECTED" in board
        (line,) = [x for x in board.split("WORK COLLECTED")[1].splitlines() if "alpha" in x]
        assert line.split()[0] == "alpha" and line.split()[-3:] == ["3", "-", "-"]

        assert task(registry, "session.conflicts")[0] == 0
        assert untouched(project) == host_view
        code, out, err = task(registry, "session.accept", "--session", "alpha")
        assert code == 0, out + err
        assert "accepted into agent/alpha (created)" in out
        landed = sh("git", "-C", str(project), "show", "agent/alpha:untracked.txt").stdout
        assert landed == "new\n"
        accepted = refs_of(project)
        moved = sorted(set(accepted) ^ set(after))
        assert [line.split()[1] for line in moved] == ["refs/heads/agent/alpha"]
        assert sh("git", "-C", str(project), "status", "--porcelain").stdout == ""

        # The agent commits the rest: collecting again replaces the session's own refs only.
        agent("filare-builder-alpha", "git add -A && " + COMMIT + " -m rest")
        code, out, err = task(registry, "session.collect", "--session", "alpha")
        assert code == 0 and out.splitlines()[1].split()[:4] == ["alpha", "collected", "2", "3"]
        moved = sorted(set(refs_of(project)) ^ set(accepted))
        assert {line.split()[1] for line in moved} == {
            "refs/agents/alpha/head",
            "refs/agents/alpha/worktree",
        }
        assert "refs/agents/alpha/worktree" not in " ".join(refs_of(project))
    finally:
        stop_all(registry, home_manifest)


def test_nothing_the_agent_plants_runs_on_the_host(
    registry: Registry, home_manifest: Path, project: Path, tmp_path: Path
) -> None:
    markers = tmp_path / f"markers-{uuid.uuid4().hex}"
    markers.mkdir()
    markers.chmod(0o777)
    start(registry, home_manifest)
    try:
        hooks = ["post-checkout", "post-merge", "pre-commit", "reference-transaction",
                 "pre-auto-gc", "post-rewrite", "fsmonitor-watchman"]  # fmt: skip
        plant = [
            f"printf '#!/bin/sh\\ntouch {markers}/hook-$1-%s\\ncat >/dev/null\\n' x > /tmp/h",
            *(f"cp /tmp/h .git/hooks/{hook} && chmod +x .git/hooks/{hook}" for hook in hooks),
            "mkdir -p /home/agent/workspace/evil-hooks && cp /tmp/h evil-hooks/pre-commit",
            f"git config core.fsmonitor 'touch {markers}/fsmonitor; echo'",
            "git config core.hooksPath /home/agent/workspace/evil-hooks",
            f"git config diff.external 'touch {markers}/diff-external'",
            f"git config core.pager 'touch {markers}/pager; cat'",
            f"git config filter.evil.clean 'touch {markers}/clean; cat'",
            f"git config filter.evil.smudge 'touch {markers}/smudge; cat'",
            f"git config diff.evil.textconv 'touch {markers}/textconv; cat'",
            f"git config merge.evil.driver 'touch {markers}/merge-driver; false'",
            f"git config uploadpack.packObjectsHook 'touch {markers}/pack-objects-hook;'",
            "printf '* filter=evil diff=evil merge=evil\\n' > .gitattributes",
            "ln -s /etc/passwd passwd-link",
            "printf 'hello\\n' > tool.sh && chmod +x tool.sh",
            "mkdir -p .github/workflows && printf 'on: push\\n' > .github/workflows/x.yml",
            "printf 'edited\\n' >> src/lines.txt",
            "git add -A && git -c core.hooksPath=/dev/null " + COMMIT[4:] + " -m planted",
        ]
        agent("filare-builder-alpha", *plant)
        code, out, err = task(registry, "session.collect", "--session", "alpha", "--json")
        assert code == 0, out + err
        (result,) = json.loads(out)
        assert result["flagged"]["passwd-link"] == ["symlink"]
        assert result["flagged"]["tool.sh"] == ["executable"]
        assert result["flagged"][".gitattributes"] == [".gitattributes"]
        assert result["flagged"][".github/workflows/x.yml"] == ["ci"]

        code, out, err = task(registry, "session.diff", "--session", "alpha")
        assert code == 0, err
        assert "new file mode 120000" in out and "+/etc/passwd" in out
        assert "root:x:0:0" not in out  # the link is shown as a link, never followed
        assert task(registry, "session.diff", "--session", "alpha", "--json")[0] == 0
        assert task(registry, "session.conflicts", "--session", "alpha")[0] == 0
        # The project's own checkout holds the planted attributes as a host user would have them
        # after checking out an accepted branch: still, nothing they name runs.
        (project / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n")
        for key in ("filter.evil.clean", "filter.evil.smudge", "diff.evil.textconv"):
            sh("git", "-C", str(project), "config", key, f"touch {markers}/host-{key}; cat")
        sh(
            "git",
            "-C",
            str(project),
            "config",
            "merge.evil.driver",
            f"touch {markers}/host-merge; false",
        )
        code, out, err = task(registry, "session.diff", "--session", "alpha")
        assert code == 0, err
        code, out, err = task(registry, "session.accept", "--session", "alpha", "--squash")
        assert code == 0, out + err
        assert sorted(p.name for p in markers.iterdir()) == []
    finally:
        stop_all(registry, home_manifest)


def test_a_bundle_whose_tree_holds_dot_git_is_refused(
    registry: Registry, home_manifest: Path, project: Path
) -> None:
    start(registry, home_manifest)
    try:
        agent(
            "filare-builder-alpha",
            "blob=$(printf '#!/bin/sh\\ntouch /tmp/pwned\\n' | git hash-object -w --stdin)",
            "hooks=$(printf '100755 blob %s\\tpost-checkout\\n' $blob | git mktree)",
            "dotgit=$(printf '040000 tree %s\\thooks\\n' $hooks | git mktree)",
            "top=$( (git ls-tree HEAD; printf '040000 tree %s\\t.git\\n' $dotgit) | git mktree)",
            "c=$(git -c user.name=a -c user.email=a@a commit-tree -p HEAD -m evil $top)",
            "git update-ref refs/heads/agent/alpha $c",
            "git reset -q --hard HEAD~0 2>/dev/null || true",
        )
        refs_before, objects_before = refs_of(project), objects_of(project)
        code, out, err = task(registry, "session.collect", "--session", "alpha")
        assert code == 2, out + err
        assert "bundle refused" in out and ".git" in out
        assert refs_of(project) == refs_before and objects_of(project) == objects_before
    finally:
        stop_all(registry, home_manifest)


def test_conflicts_between_sessions_and_accept_refuses_one(
    registry: Registry, home_manifest: Path, project: Path
) -> None:
    start(registry, home_manifest)
    try:
        same_line = "sed -i 's/^three$/THREE by {}/' src/lines.txt && git add -A && " + COMMIT
        agent("filare-builder-alpha", same_line.format("alpha") + " -m alpha")
        agent("filare-builder-beta", same_line.format("beta") + " -m beta")
        agent(
            "filare-builder-gamma", "printf 'g\\n' > gamma.txt && git add -A && " + COMMIT + " -m g"
        )
        code, out, err = task(registry, "session.collect", "--manifest", str(home_manifest))
        assert code == 0, out + err
        code, out, err = task(registry, "session.conflicts", "--json")
        assert code == 1, out + err
        pairs = {(p["left"], p["right"]): p for p in json.loads(out)}
        assert pairs[("alpha", "beta")]["result"] == "conflict"
        assert pairs[("alpha", "beta")]["files"] == ["src/lines.txt"]
        assert pairs[("alpha", "gamma")]["result"] == "clean"
        assert pairs[("beta", "gamma")]["result"] == "clean"
        assert pairs[("alpha", "main")]["result"] == "clean"

        into = ["--into", "review"]
        assert task(registry, "session.accept", "--session", "alpha", *into)[0] == 0
        before = refs_of(project)
        code, out, err = task(registry, "session.accept", "--session", "beta", *into)
        assert code == 2 and "src/lines.txt" in err and len(err.strip().splitlines()) == 1
        assert refs_of(project) == before
        code, out, err = task(registry, "session.accept", "--session", "gamma", *into)
        assert code == 0, out + err
        tree = sh("git", "-C", str(project), "ls-tree", "--name-only", "review").stdout
        assert "gamma.txt" in tree
        code, out, err = task(registry, "session.accept", "--session", "gamma", "--into", "main")
        assert code == 2 and "checked out" in err
    finally:
        stop_all(registry, home_manifest)


def test_bad_input_is_one_line_and_changes_nothing(
    registry: Registry, home_manifest: Path, project: Path, smoke_image: str
) -> None:
    start(registry, home_manifest)
    try:
        agent("filare-builder-alpha", "git branch -m agent/alpha agent/renamed")
        agent("filare-builder-beta", "rm -rf .git")
        before = refs_of(project)
        for args, expected in [
            (["--session", "nope"], "no session with id 'nope'"),
            (["--session", "alpha"], "not on the session's branch agent/alpha"),
            (["--session", "beta"], "not a git repository"),
        ]:
            code, out, err = task(registry, "session.collect", *args)
            text = out + err
            assert code == 2, text
            assert expected in text, text
        assert refs_of(project) == before
        for args in (
            ["session.diff", "--session", "gamma"],
            ["session.accept", "--session", "gamma"],
        ):
            code, _, err = task(registry, *args)
            assert (
                code == 2 and "nothing collected yet" in err and len(err.strip().splitlines()) == 1
            )
    finally:
        stop_all(registry, home_manifest)


def test_a_stopped_session_is_collected_in_a_throwaway_container(
    registry: Registry, home_manifest: Path, project: Path
) -> None:
    start(registry, home_manifest)
    agent("filare-builder-gamma", "printf 'late\\n' > late.txt")
    stop_all(registry, home_manifest)
    code, out, err = task(registry, "session.collect", "--session", "gamma")
    assert code == 0, out + err
    assert out.splitlines()[1].split()[:4] == ["gamma", "collected", "0", "1"]
    assert docker("ps", "-aq", "--filter", "label=filare.collect=gamma") == ""


def test_an_image_without_git_is_refused(
    registry: Registry, project: Path, home_manifest: Path, smoke_image: str
) -> None:
    manifest = project / "smoke.yml"
    data = yaml.safe_load(home_manifest.read_text())
    data["defaults"]["image"] = smoke_image
    data["sessions"] = [{"id": "smoky", "branch": "agent/smoky", "workspace": "outputs/ws/smoky"}]
    manifest.write_text(yaml.safe_dump(data))
    commit_all(project)
    start(registry, manifest)
    try:
        code, out, err = task(registry, "session.collect", "--session", "smoky")
        assert code == 2 and "no git" in out, out + err
    finally:
        stop_all(registry, manifest)


def test_the_real_codex_commits_and_the_commit_comes_home(
    registry: Registry, home_manifest: Path, project: Path, fake: FakeModel
) -> None:
    start(registry, home_manifest)
    try:
        fake.enqueue(
            shell(
                "printf 'by codex\\n' > codex.txt && git add codex.txt && "
                "git -c user.name=codex -c user.email=codex@example.com commit -qm 'codex work'"
            ),
            message("Committed."),
        )
        code, out, err = task(
            registry, "session.send", "--session", "alpha", "--message", "commit", "--wait"
        )
        assert code == 0, out + err
        code, out, err = task(registry, "session.collect", "--session", "alpha")
        assert code == 0, out + err
        assert out.splitlines()[1].split()[:4] == ["alpha", "collected", "1", "1"]
        shown = sh("git", "-C", str(project), "log", "-1", "--format=%s", "refs/agents/alpha/head")
        assert shown.stdout.strip() == "codex work"
    finally:
        stop_all(registry, home_manifest)


def test_an_accepted_branch_seeds_the_next_session_without_its_filters(
    registry: Registry, home_manifest: Path, project: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "smudged"
    start(registry, home_manifest)
    try:
        agent(
            "filare-builder-alpha",
            "printf '* filter=evil\\n' > .gitattributes",
            "printf 'feature\\n' > feature.txt && git add -A && " + COMMIT + " -m feature",
        )
        assert task(registry, "session.collect", "--session", "alpha")[0] == 0
        assert (
            task(registry, "session.accept", "--session", "alpha", "--into", "feature/done")[0] == 0
        )
    finally:
        stop_all(registry, home_manifest)
    sh("git", "-C", str(project), "config", "filter.evil.smudge", f"touch {marker}; tr a-z A-Z")
    data = yaml.safe_load(home_manifest.read_text())
    data["sessions"] = [
        {"id": "validator", "branch": "feature/done", "workspace": "outputs/ws/validator"}
    ]
    validator = project / "validator.yml"
    validator.write_text(yaml.safe_dump(data))
    commit_all(project)
    start(registry, validator)
    try:
        seeded = project / "outputs" / "ws" / "validator"
        assert (seeded / "feature.txt").read_text() == "feature\n"
        assert not marker.exists()
        code, out, err = task(registry, "session.collect", "--session", "validator")
        assert code == 0, out + err
        assert out.splitlines()[1].split()[:4] == ["validator", "collected", "0", "0"]
    finally:
        stop_all(registry, validator)
