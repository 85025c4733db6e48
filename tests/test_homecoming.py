"""Unit tests of the homecoming's pure parts, and of the host's side of a bundle on real git
repositories (no engine): what the collect script says is parsed as hostile input, and a
corrupt or hostile bundle changes nothing in the repository."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from orchestrator.errors import InputError
from orchestrator.homecoming import inside, refs
from orchestrator.homecoming.collect import ANSWER_FILE, BUNDLE_FILE, Collected, receive
from orchestrator.homecoming.flags import Change, flags_of, parse_diff_tree
from orchestrator.homecoming.hostgit import Repository, clean_env
from orchestrator.homecoming.report import collected_table, conflicts_table, flagged_cell
from orchestrator.homecoming.review import Pair
from orchestrator.registry import SessionState

SHA_A = "a" * 40
SHA_B = "b" * 40


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        input=stdin,
        capture_output=True,
        check=True,
        timeout=60,
    )
    return done.stdout.decode().strip()


# --- names and formats ---------------------------------------------------------------------------


def test_session_refs_live_under_refs_agents_and_ids_git_refuses_are_refused() -> None:
    assert refs.session_refs("alpha") == {
        "base": "refs/agents/alpha/base",
        "head": "refs/agents/alpha/head",
        "worktree": "refs/agents/alpha/worktree",
    }
    for bad in ("x.lock", "x.", ".x"):
        with pytest.raises(InputError, match="cannot name a git ref"):
            refs.session_refs(bad)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("agent/alpha", True),
        ("feature/done-2", True),
        ("a..b", False),
        ("-x", False),
        ("x.lock", False),
        ("x y", False),
        ("x\x1b[31m", False),
        ("a//b", False),
        ("a/.b", False),
        ("x@{1}", False),
    ],
)
def test_branch_names_are_checked(name: str, valid: bool) -> None:
    assert refs.valid_branch(name) is valid


def test_the_seed_record_names_a_commit_and_a_branch_or_nothing() -> None:
    assert refs.parse_seed_record(f"{SHA_A} refs/heads/main\n") == (SHA_A, "refs/heads/main")
    assert refs.parse_seed_record(f"{SHA_A} -\n") == (SHA_A, None)
    assert refs.parse_seed_record(f"{SHA_A} refs/tags/v1\n") == (SHA_A, None)
    assert refs.parse_seed_record("nonsense") is None
    assert refs.parse_seed_record(f"{SHA_A[:39]} -") is None


def test_the_status_line_is_parsed_strictly() -> None:
    status = refs.parse_status(f"FILARE-COLLECT bundle {SHA_A} {SHA_B}\n".encode())
    assert (status.kind, status.head, status.worktree) == ("bundle", SHA_A, SHA_B)
    assert refs.parse_status(f"FILARE-COLLECT nothing {SHA_A} -\n".encode()).worktree is None
    for bad in (
        f"FILARE-COLLECT other {SHA_A} -\n",
        f"FILARE-COLLECT bundle {SHA_A}\n",
        f"FILARE-COLLECT bundle {SHA_A.upper()} -\n",
        f"FILARE-COLLECT bundle {SHA_A} - extra\n",
    ):
        with pytest.raises(InputError):
            refs.parse_status(bad.encode())
    with pytest.raises(InputError, match="not ASCII"):
        refs.parse_status(b"FILARE-COLLECT \xff\n")


def header(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n\n").encode() + b"PACK"


def test_a_bundle_header_holds_only_the_refs_the_script_writes() -> None:
    parsed = refs.parse_bundle_header(
        header("# v2 git bundle", f"-{SHA_B} base", f"{SHA_A} refs/filare/head")
    )
    assert parsed.prerequisites == (SHA_B,)
    assert parsed.refs == {"refs/filare/head": SHA_A}
    data = header("# v2 git bundle", f"{SHA_A} refs/filare/head")
    assert data[refs.parse_bundle_header(data).pack_offset :] == b"PACK"
    for lines, why in [
        (("# v3 git bundle", "@object-format=sha1", f"{SHA_A} refs/filare/head"), "v2"),
        (("# v2 git bundle", f"{SHA_A} refs/heads/main"), "ref the collect script"),
        (("# v2 git bundle", f"{SHA_A} refs/filare/head", f"{SHA_B} refs/filare/head"), "ref"),
        (("# v2 git bundle", f"{SHA_A} refs/filare/head extra"), "malformed"),
        (("# v2 git bundle", "-nonsense"), "prerequisite"),
        (("# v2 git bundle",), "no ref"),
    ]:
        with pytest.raises(InputError, match=why):
            refs.parse_bundle_header(header(*lines))
    with pytest.raises(InputError, match="no complete header"):
        refs.parse_bundle_header(b"# v2 git bundle\n" + SHA_A.encode())
    with pytest.raises(InputError, match="not ASCII"):
        refs.parse_bundle_header(b"# v2 git bundle\n\xff\n\n")


# --- flags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (Change(".github/workflows/ci.yml", "A", "000000", "100644"), ["ci"]),
        (Change(".gitlab-ci.yml", "M", "100644", "100644"), ["ci"]),
        (Change("sub/.gitattributes", "A", "000000", "100644"), [".gitattributes"]),
        (Change(".gitmodules", "M", "100644", "100644"), [".gitmodules"]),
        (Change(".husky/pre-commit", "A", "000000", "100755"), ["hooks", "executable"]),
        (Change(".agents/skills/x/SKILL.md", "A", "000000", "100644"), ["agent-config"]),
        (Change(".codex/config.toml", "D", "100644", "000000"), ["agent-config"]),
        (Change("link", "A", "000000", "120000", binary=False), ["symlink"]),
        (Change("vendor/lib", "A", "000000", "160000"), ["submodule"]),
        (Change("hooks/pre-push", "A", "000000", "100644"), ["hooks"]),
        (Change("web/src/hooks/useThing.ts", "A", "000000", "100644"), []),
        (Change("run.sh", "M", "100644", "100755"), ["executable"]),
        (Change("run.sh", "M", "100755", "100755"), []),
        (Change("web/package-lock.json", "M", "100644", "100644"), ["lockfile"]),
        (Change("logo.png", "A", "000000", "100644", binary=True), ["binary"]),
        (Change("data.csv", "A", "000000", "100644", size=(1 << 20) + 1), ["large"]),
        (Change("src/main.py", "M", "100644", "100644", size=10), []),
        (Change("gone.bin", "D", "100644", "000000", binary=True), []),
    ],
)
def test_paths_worth_a_second_look_are_flagged(change: Change, expected: list[str]) -> None:
    assert flags_of(change) == expected


def test_diff_tree_output_of_git_is_read(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", str(repo))
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "a")
    base = git(repo, "rev-parse", "HEAD")
    (repo / "a.txt").write_text("a\nb\n")
    (repo / "bin").write_bytes(b"\0\1\2")
    (repo / "tab\tname").write_text("x\n")
    (repo / ":colon").write_text("x\n")
    (repo / "run").write_text("#!/bin/sh\n")
    (repo / "run").chmod(0o755)
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "b")
    argv = ["git", "-C", str(repo), "diff-tree", "-r", "-z", "--no-renames", "--raw"]
    output = subprocess.run(
        [*argv, "--numstat", base, "HEAD"], capture_output=True, check=True
    ).stdout
    changes = {c.path: c for c in parse_diff_tree(output)}
    assert sorted(changes) == [":colon", "a.txt", "bin", "run", "tab\tname"]
    assert (changes["run"].status, changes["run"].new_mode) == ("A", "100755")
    assert changes["a.txt"].status == "M"
    assert [path for path, c in sorted(changes.items()) if c.binary] == ["bin"]


# --- where the script runs -----------------------------------------------------------------------


def state(tmp_path: Path) -> SessionState:
    return SessionState(
        session_id="alpha",
        role="coder",
        owner="me",
        status="stopped",
        container_name="filare-coder-alpha",
        image="filare-codex",
        workspace=tmp_path / "ws",
        ssh_dir=tmp_path / "ssh",
        branch="agent/alpha",
        user="10001:10001",
    )


def test_a_running_session_is_collected_by_exec_as_its_user(tmp_path: Path) -> None:
    args = inside.script_args("agent/alpha", inside.Known(SHA_A, None, SHA_B))
    argv = inside.container_argv(state(tmp_path), running="c0ffee", args=args)
    assert argv[:4] == ["docker", "exec", "--user", "10001:10001"]
    assert argv[argv.index("c0ffee") + 1 :] == args
    assert args[3:] == ["filare-collect", "agent/alpha", SHA_A, "-", SHA_B]


def test_a_stopped_session_is_collected_in_a_throwaway_container_without_network(
    tmp_path: Path,
) -> None:
    argv = inside.container_argv(state(tmp_path), running=None, args=["sh"])
    assert argv[:3] == ["docker", "run", "--rm"]
    joined = " ".join(argv)
    for part in ("--network none", "--user 10001:10001", "--cap-drop ALL", "--pull never"):
        assert part in joined
    assert f"{tmp_path / 'ws'}:/home/agent/workspace" in argv
    assert argv[-2:] == ["filare-codex", "sh"]


def test_git_on_the_host_never_sees_the_callers_git_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIT_DIR", "/somewhere/else")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/evil")
    env = clean_env()
    assert "GIT_DIR" not in env and "GIT_CONFIG_GLOBAL" not in env
    assert env["GIT_TERMINAL_PROMPT"] == "0"


# --- the host's side of a bundle -----------------------------------------------------------------


@pytest.fixture
def seed(tmp_path: Path) -> Path:
    repo = tmp_path / "seed"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    (repo / "a.txt").write_text("a\n")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    return repo


def answer(folder: Path, status: str, bundle: bytes = b"") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ANSWER_FILE).write_bytes(status.encode() + bundle)
    return folder


def agent_clone(tmp_path: Path, seed: Path) -> Path:
    work = tmp_path / "agent"
    git(tmp_path, "clone", "-q", str(seed), str(work))
    return work


def snapshot(repo: Path) -> tuple[str, str]:
    return git(repo, "for-each-ref"), git(repo, "count-objects", "-v")


def test_a_good_bundle_arrives_and_no_ref_moves(tmp_path: Path, seed: Path) -> None:
    work = agent_clone(tmp_path, seed)
    base = git(work, "rev-parse", "HEAD")
    (work / "b.txt").write_text("b\n")
    git(work, "add", ".")
    git(work, "commit", "-qm", "b")
    head = git(work, "rev-parse", "HEAD")
    git(work, "update-ref", "refs/filare/head", head)
    bundle = tmp_path / "b.bundle"
    git(work, "bundle", "create", "-q", str(bundle), "refs/filare/head", f"^{base}")
    folder = answer(tmp_path / "c", f"FILARE-COLLECT bundle {head} -\n", bundle.read_bytes())
    refs_before = git(seed, "for-each-ref")
    status = receive(Repository.open(seed), folder, "alpha", inside.Known(base, None, None))
    assert status.head == head
    assert git(seed, "cat-file", "-t", head) == "commit"
    assert git(seed, "for-each-ref") == refs_before
    assert (folder / BUNDLE_FILE).read_bytes() == bundle.read_bytes()


def hostile_bundle(tmp_path: Path, seed: Path) -> tuple[str, str, bytes]:
    """A commit whose tree holds `.git/hooks/post-checkout`, bundled as the script would."""
    work = agent_clone(tmp_path, seed)
    base = git(work, "rev-parse", "HEAD")
    blob = git(work, "hash-object", "-w", "--stdin", stdin=b"#!/bin/sh\ntouch /tmp/pwned\n")
    hooks = git(work, "mktree", stdin=f"100755 blob {blob}\tpost-checkout\n".encode())
    dotgit = git(work, "mktree", stdin=f"040000 tree {hooks}\thooks\n".encode())
    top = git(work, "mktree", stdin=f"040000 tree {dotgit}\t.git\n".encode())
    commit = git(work, "commit-tree", "-p", base, "-m", "evil", top)
    git(work, "update-ref", "refs/filare/head", commit)
    bundle = tmp_path / "evil.bundle"
    git(work, "bundle", "create", "-q", str(bundle), "refs/filare/head", f"^{base}")
    return base, commit, bundle.read_bytes()


def test_a_bundle_whose_tree_holds_dot_git_changes_nothing(tmp_path: Path, seed: Path) -> None:
    base, commit, data = hostile_bundle(tmp_path, seed)
    folder = answer(tmp_path / "c", f"FILARE-COLLECT bundle {commit} -\n", data)
    before = snapshot(seed)
    with pytest.raises(InputError, match=r"bundle refused: .*hasDotgit"):
        receive(Repository.open(seed), folder, "alpha", inside.Known(base, None, None))
    assert snapshot(seed) == before
    assert not list((seed / ".git" / "objects" / "pack").glob("tmp_*"))


@pytest.mark.parametrize(
    ("status", "cut", "why"),
    [
        ("FILARE-COLLECT bundle {commit} -\n", 40, "bundle refused"),
        ("FILARE-COLLECT bundle {other} -\n", 0, "not the tips it announced"),
        ("FILARE-COLLECT bundle {commit} {other}\n", 0, "did not arrive"),
        ("something else\n", 0, "gave no answer"),
        ("FILARE-COLLECT nothing {other} -\n", 0, "did not arrive"),
    ],
)
def test_a_corrupt_or_lying_answer_changes_nothing(
    tmp_path: Path, seed: Path, status: str, cut: int, why: str
) -> None:
    work = agent_clone(tmp_path, seed)
    base = git(work, "rev-parse", "HEAD")
    (work / "b.txt").write_text("b\n" * 1000)
    git(work, "add", ".")
    git(work, "commit", "-qm", "b")
    commit = git(work, "rev-parse", "HEAD")
    git(work, "update-ref", "refs/filare/head", commit)
    bundle = tmp_path / "b.bundle"
    git(work, "bundle", "create", "-q", str(bundle), "refs/filare/head", f"^{base}")
    data = bundle.read_bytes()
    data = data[:-cut] if cut else data
    line = status.format(commit=commit, other="c" * 40)
    folder = answer(tmp_path / "c", line, data)
    before = snapshot(seed)
    with pytest.raises(InputError, match=why):
        receive(Repository.open(seed), folder, "alpha", inside.Known(base, None, None))
    assert snapshot(seed) == before


# --- what is printed -----------------------------------------------------------------------------


def test_agent_written_paths_are_printed_sanitized() -> None:
    flagged = {"evil\x1b]52;c;AAAA\x07.sh": ["executable"]}
    assert "\x1b" not in flagged_cell(flagged) and "\x07" not in flagged_cell(flagged)
    table = collected_table(
        [
            Collected("alpha", "collected", ahead=2, files=3, flagged=flagged),
            Collected("beta", "failed", reason="session 'beta': bad \x1b[2J", exit_code=2),
        ]
    )
    assert "\x1b" not in table
    assert table.splitlines()[1].split()[:4] == ["alpha", "collected", "2", "3"]
    pairs = conflicts_table([Pair("a", "b", ["x\x1b[31m.txt"]), Pair("a", "main", [])])
    assert "\x1b" not in pairs and "conflict" in pairs and "clean" in pairs


def test_uncommitted_work_that_is_not_on_the_head_is_refused(tmp_path: Path, seed: Path) -> None:
    work = agent_clone(tmp_path, seed)
    base = git(work, "rev-parse", "HEAD")
    (work / "b.txt").write_text("b\n")
    git(work, "add", ".")
    git(work, "commit", "-qm", "b")
    head = git(work, "rev-parse", "HEAD")
    elsewhere = git(work, "commit-tree", "-p", base, "-m", "not on head", f"{head}^{{tree}}")
    git(work, "update-ref", "refs/filare/head", head)
    git(work, "update-ref", "refs/filare/worktree", elsewhere)
    bundle = tmp_path / "b.bundle"
    git(work, "bundle", "create", "-q", str(bundle), "refs/filare/head", "refs/filare/worktree",
        f"^{base}")  # fmt: skip
    line = f"FILARE-COLLECT bundle {head} {elsewhere}\n"
    folder = answer(tmp_path / "c", line, bundle.read_bytes())
    before = snapshot(seed)
    with pytest.raises(InputError, match="not on its head"):
        receive(Repository.open(seed), folder, "alpha", inside.Known(base, None, None))
    assert snapshot(seed) == before


# --- the base, recorded at seeding ---------------------------------------------------------------


def seed_only(source: Path, workspace: Path, branch: str, record: Path) -> None:
    from tests.test_launch_script import run

    result = run(
        "--seed-only", "--workspace", str(workspace), "--seed-from", str(source),
        "--branch", branch, "--seed-record", str(record),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_the_launch_script_records_the_base_it_seeded_from(tmp_path: Path, seed: Path) -> None:
    main = git(seed, "rev-parse", "HEAD")
    record = tmp_path / "record"
    seed_only(seed, tmp_path / "ws", "agent/new", record)
    assert refs.parse_seed_record(record.read_text()) == (main, "refs/heads/main")
    git(seed, "branch", "feature/done")
    git(seed, "commit", "-q", "--allow-empty", "-m", "later on main")
    seed_only(seed, tmp_path / "ws2", "feature/done", record)
    assert refs.parse_seed_record(record.read_text()) == (main, "refs/heads/feature/done")
    record.unlink()
    seed_only(seed, tmp_path / "ws2", "feature/done", record)  # not empty: not seeded again
    assert not record.exists()


def test_checking_out_an_accepted_branch_runs_no_filter_its_attributes_name(
    tmp_path: Path, seed: Path
) -> None:
    marker = tmp_path / "smudged"
    git(seed, "checkout", "-q", "-b", "feature/done")
    (seed / ".gitattributes").write_text("* filter=evil ident\n")
    (seed / "f.txt").write_text("feature $Id$\n")
    git(seed, "add", ".")
    git(seed, "commit", "-qm", "feature")
    git(seed, "checkout", "-q", "main")
    git(seed, "config", "filter.evil.smudge", f"touch {marker}; tr a-z A-Z")
    (seed / ".git" / "info").mkdir(exist_ok=True)
    (seed / ".git" / "info" / "attributes").write_text("*.bin binary\n")
    workspace = tmp_path / "ws"
    seed_only(seed, workspace, "feature/done", tmp_path / "record")
    assert (workspace / "f.txt").read_text() == "feature $Id$\n"
    assert not marker.exists()
    assert (workspace / ".git" / "info" / "attributes").read_text() == "*.bin binary\n"


def test_the_host_git_version_is_read() -> None:
    from orchestrator.homecoming.hostgit import MINIMUM_GIT, parse_version

    assert parse_version("git version 2.39.5\n") == (2, 39)
    assert parse_version("git version 2.37.1.windows.1") == (2, 37) < MINIMUM_GIT
    assert parse_version("nonsense") is None
