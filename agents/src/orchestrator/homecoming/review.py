"""`session.diff`, `session.conflicts` and `session.accept`, on the collected refs only.

Nothing here reads a workspace. Diffs run with `--no-ext-diff --no-textconv` on a repository
treated as bare (see `hostgit`), merges are `git merge-tree --write-tree`; a merge that is only
a question (conflicts) writes its objects to a temporary folder, so asking changes nothing in
the repository. Accept writes one commit and one branch, never a working tree or an index.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace

from orchestrator.errors import InputError, OrchestratorError
from orchestrator.homecoming import refs
from orchestrator.homecoming.flags import Change, flags_of, parse_diff_tree
from orchestrator.homecoming.hostgit import Repository, last_line
from orchestrator.registry import SessionState

__all__ = ["Change", "flags_of"]


@dataclass(frozen=True)
class Work:
    """A collected session's refs in its seed repository."""

    state: SessionState
    repo: Repository
    base: str
    head: str
    worktree: str | None

    @property
    def session_id(self) -> str:
        return self.state.session_id

    def tip(self, *, committed: bool = False) -> str:
        return self.head if committed or self.worktree is None else self.worktree


def collected_work(state: SessionState) -> Work:
    """The session's collected refs; one line and exit 2 before its first collect."""
    names = refs.session_refs(state.session_id)
    if state.seed_repository is None:
        raise InputError(f"session {state.session_id!r}: nothing collected yet (session.collect)")
    repo = Repository.open(state.seed_repository)
    base, head, worktree = repo.resolve_all([names["base"], names["head"], names["worktree"]])
    if base is None or head is None:
        raise InputError(
            f"session {state.session_id!r}: nothing collected yet: run session.collect first"
        )
    return Work(state, repo, base, head, worktree)


def changes(repo: Repository, base: str, tip: str) -> list[Change]:
    """What changed from `base` to `tip`, with modes, binary-ness and new sizes."""
    found = parse_diff_tree(
        repo.git(
            "diff-tree", "-r", "-z", "--no-renames", "--no-textconv", "--raw", "--numstat",
            base, tip,
        ).stdout
    )  # fmt: skip
    sizes = _sizes(repo, tip, [c.path for c in found if c.status != "D"])
    return [replace(c, size=sizes.get(c.path, 0)) for c in found]


def _sizes(repo: Repository, tip: str, paths: Sequence[str]) -> dict[str, int]:
    if not paths:
        return {}
    query = "".join(f"{tip}:{path}\n" for path in paths if "\n" not in path)
    output = repo.git(
        "cat-file", "--batch-check=%(objectsize)", stdin=query.encode("utf-8", "surrogateescape")
    ).stdout.decode("ascii", "replace")
    sizes = {}
    for path, line in zip((p for p in paths if "\n" not in p), output.splitlines(), strict=False):
        if line.isdigit():
            sizes[path] = int(line)
    return sizes


def diff_text(work: Work, *, stat: bool, committed: bool) -> str:
    """The diff from base to the session's tip, as git prints it (to be sanitized by the caller)."""
    args = ["diff", "--no-ext-diff", "--no-textconv", "--no-color", "--no-renames"]
    if stat:
        args.append("--stat")
    output = work.repo.git(*args, work.base, work.tip(committed=committed)).stdout
    return output.decode("utf-8", "replace")


def merge_conflicts(repo: Repository, ours: str, theirs: str) -> list[str] | None:
    """The files that conflict when `theirs` is merged into `ours`; [] when clean.

    The merge's objects go to a temporary folder: asking leaves the repository as it was.
    None when the two have no common history.
    """
    with tempfile.TemporaryDirectory(prefix="filare-merge.") as scratch:
        result = repo.git(
            "merge-tree",
            "--write-tree",
            "-z",
            "--name-only",
            "--no-messages",
            ours,
            theirs,
            check=False,
            env={
                "GIT_OBJECT_DIRECTORY": scratch,
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo.git_dir / "objects"),
            },
        )
    return _merge_result(repo, result.code, result.stdout, result.stderr)


def _merge_result(repo: Repository, code: int, stdout: bytes, stderr: str) -> list[str] | None:
    if code == 0:
        return []
    if code == 1:
        fields = [f for f in stdout.split(b"\0") if f]
        return sorted({f.decode("utf-8", "replace") for f in fields[1:]})
    if "refusing to merge unrelated histories" in stderr:
        return None
    raise OrchestratorError(f"{repo.git_dir}: git merge-tree failed: {last_line(stderr)}")


@dataclass(frozen=True)
class Pair:
    """One comparison of `session.conflicts`: two sessions, or a session and its start branch."""

    left: str
    right: str
    conflicts: list[str] | None  # None: unrelated histories

    @property
    def clean(self) -> bool:
        return self.conflicts == []

    def as_json(self) -> dict[str, object]:
        return {
            "left": self.left,
            "right": self.right,
            "result": "clean"
            if self.clean
            else "unrelated"
            if self.conflicts is None
            else "conflict",
            "files": self.conflicts or [],
        }


def conflicts(works: Sequence[Work]) -> list[Pair]:
    """Every pair of collected sessions sharing a repository, then each against the current tip
    of the branch it started from."""
    pairs = []
    for left, right in itertools.combinations(works, 2):
        if left.repo.git_dir != right.repo.git_dir:
            continue
        found = merge_conflicts(left.repo, left.tip(), right.tip())
        pairs.append(Pair(left.session_id, right.session_id, found))
    for work in works:
        ref = work.state.base_ref
        start = work.repo.resolve(ref) if ref else None
        if ref and start:
            label = ref.removeprefix("refs/heads/")
            pairs.append(
                Pair(work.session_id, label, merge_conflicts(work.repo, start, work.tip()))
            )
    return pairs


@dataclass(frozen=True)
class Accepted:
    branch: str
    commit: str
    created: bool


def accept(work: Work, *, into: str | None, squash: bool, committed: bool) -> Accepted:
    """Land the session's work on a local branch as a merge (or squash) commit.

    The branch is the session's own by default and starts at the session's base when new. A
    branch checked out in any working tree of the repository is refused: accept never changes a
    working tree or an index. A conflict is refused naming its files; nothing is written then.
    """
    branch = into or work.state.branch
    prefix = f"session {work.session_id!r}"
    if not refs.valid_branch(branch):
        raise InputError(f"{prefix}: --into: {branch!r} is not a branch name git accepts")
    ref = f"refs/heads/{branch}"
    if ref in checked_out(work.repo):
        raise InputError(
            f"{prefix}: branch {branch} is checked out in a working tree of "
            f"{work.repo.git_dir}; accept into another one (--into NAME) and merge it yourself"
        )
    current = work.repo.resolve(ref)
    target = current or work.base
    source = work.tip(committed=committed)
    found = merge_conflicts(work.repo, target, source)
    if found is None:
        raise InputError(f"{prefix}: {branch} and the session's work share no history")
    if found:
        raise InputError(f"{prefix}: conflicts with {branch} in: {', '.join(found)}")
    merged = work.repo.git("merge-tree", "--write-tree", "--no-messages", target, source)
    tree = merged.stdout.decode().split()[0]
    what = "Squash" if squash else "Merge"
    message = f"{what} the work of session {work.session_id} ({work.state.role})\n"
    parents = ["-p", target] if squash else ["-p", target, "-p", source]
    commit = (
        work.repo.git(
            "commit-tree", *parents, tree, stdin=message.encode(), env=_identity(work.repo)
        )
        .stdout.decode()
        .strip()
    )
    work.repo.git("update-ref", "-m", f"filare accept {work.session_id}", ref, commit,
                  current or "0" * 40)  # fmt: skip
    return Accepted(branch, commit, current is None)


def checked_out(repo: Repository) -> set[str]:
    """The branches checked out in the repository's working trees (main and linked)."""
    found = set()
    main = repo.git("symbolic-ref", "--quiet", "HEAD", check=False, bare=False)
    if main.code == 0:
        found.add(main.stdout.decode().strip())
    listing = repo.git("worktree", "list", "--porcelain", bare=False).stdout.decode()
    for line in listing.splitlines():
        if line.startswith("branch "):
            found.add(line.removeprefix("branch "))
    return found


def _identity(repo: Repository) -> dict[str, str]:
    """The user's identity when git knows one, else the tool's."""
    if repo.git("var", "GIT_COMMITTER_IDENT", check=False).code == 0:
        return {}
    return {
        "GIT_AUTHOR_NAME": "filare",
        "GIT_AUTHOR_EMAIL": "filare@localhost",
        "GIT_COMMITTER_NAME": "filare",
        "GIT_COMMITTER_EMAIL": "filare@localhost",
    }


def works_of(states: Sequence[SessionState]) -> list[Work]:
    """The collected work of each session that has some (the others are skipped)."""
    found = []
    for state in states:
        try:
            found.append(collected_work(state))
        except InputError:
            continue
    return found
