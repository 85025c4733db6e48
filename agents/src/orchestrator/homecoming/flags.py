"""Paths of a session's work that an operator should look at twice before accepting it.

Printed, never acted on: a flag says what kind of path it is (CI configuration, git's own
attributes, hooks, agent skills, a link, a file made executable, a lockfile, a binary, a large
file), not that the change is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

# A file larger than this is flagged (bytes).
LARGE_FILE_BYTES = 1 << 20

CI_PREFIXES = (
    ".github/",
    ".gitlab/",
    ".circleci/",
    ".buildkite/",
    ".woodpecker/",
    ".forgejo/",
    ".gitea/",
    ".azure-pipelines/",
)
CI_FILES = frozenset(
    {".gitlab-ci.yml", ".travis.yml", "Jenkinsfile", "azure-pipelines.yml", ".woodpecker.yml"}
)
GIT_FILES = frozenset({".gitattributes", ".gitmodules"})
HOOK_PREFIXES = (".githooks/", ".husky/", ".git-hooks/", "hooks/")
HOOK_FILES = frozenset({".pre-commit-config.yaml", "lefthook.yml", ".lefthook.yml"})
AGENT_PREFIXES = (".agents/skills/", ".codex/")
LOCKFILES = frozenset(
    {
        "uv.lock",
        "poetry.lock",
        "Pipfile.lock",
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "Cargo.lock",
        "Gemfile.lock",
        "go.sum",
        "composer.lock",
        "flake.lock",
    }
)
LINK_MODE = "120000"
EXECUTABLE_MODE = "100755"
GITLINK_MODE = "160000"


@dataclass(frozen=True)
class Change:
    """One changed path between base and tip, as `git diff-tree --raw` and `--numstat` say."""

    path: str
    status: str  # A, M, D, T
    old_mode: str
    new_mode: str
    binary: bool = False
    size: int = 0


def flags_of(change: Change) -> list[str]:
    """Why `change` deserves a second look; empty when it does not."""
    path = change.path
    name = path.rsplit("/", 1)[-1]
    found: list[str] = []
    if path.startswith(CI_PREFIXES) or path in CI_FILES:
        found.append("ci")
    if name in GIT_FILES:
        found.append(name)
    if name in HOOK_FILES or _under(path, HOOK_PREFIXES):
        found.append("hooks")
    if _under(path, AGENT_PREFIXES):
        found.append("agent-config")
    if change.status == "D":
        return found
    if change.new_mode == LINK_MODE:
        found.append("symlink")
    if change.new_mode == GITLINK_MODE:
        found.append("submodule")
    if change.new_mode == EXECUTABLE_MODE and change.old_mode != EXECUTABLE_MODE:
        found.append("executable")
    if name in LOCKFILES:
        found.append("lockfile")
    if change.binary and change.new_mode != LINK_MODE:
        found.append("binary")
    if change.size > LARGE_FILE_BYTES:
        found.append("large")
    return found


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    """Whether `path` lies in one of the folders, at the top or deeper (`sub/.husky/x`)."""
    return path.startswith(prefixes) or any(f"/{prefix}" in path for prefix in prefixes)


def parse_raw(output: bytes) -> list[Change]:
    """`git diff-tree -r -z --raw --no-renames` output as changes (paths decoded leniently)."""
    fields = output.split(b"\0")
    changes = []
    index = 0
    while index + 1 < len(fields):
        meta, path = fields[index], fields[index + 1]
        index += 2
        parts = meta.decode("ascii", "replace").lstrip(":").split(" ")
        if len(parts) != 5:
            continue
        old_mode, new_mode, _old, _new, status = parts
        changes.append(Change(path.decode("utf-8", "replace"), status[:1], old_mode, new_mode))
    return changes


def parse_numstat(output: bytes) -> dict[str, tuple[int | None, int | None]]:
    """`git diff-tree -r -z --numstat --no-renames`: path -> (added, deleted), None for binary."""
    counts: dict[str, tuple[int | None, int | None]] = {}
    for record in output.split(b"\0"):
        parts = record.split(b"\t", 2)
        if len(parts) != 3:
            continue
        added, deleted, path = parts
        counts[path.decode("utf-8", "replace")] = (_count(added), _count(deleted))
    return counts


def _count(text: bytes) -> int | None:
    return int(text) if text.isdigit() else None
