"""Paths of a session's work that an operator should look at twice before accepting it.

Printed, never acted on: a flag says what kind of path it is (CI configuration, git's own
attributes, hooks, agent skills, a link, a file made executable, a lockfile, a binary, a large
file), not that the change is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
HOOK_PREFIXES = (".githooks/", ".husky/", ".git-hooks/")
# A top-level `hooks/` is where projects keep git hooks; `src/hooks/` is usually code.
TOP_HOOK_PREFIXES = ("hooks/",)
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
    if name in HOOK_FILES or _under(path, HOOK_PREFIXES) or path.startswith(TOP_HOOK_PREFIXES):
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


def parse_diff_tree(output: bytes) -> list[Change]:
    """`git diff-tree -r -z --no-renames --raw --numstat` output as changes, binary ones marked.

    git prints every raw record (`:MODE MODE SHA SHA STATUS`, then the path) before the numstat
    records (`ADDED TAB DELETED TAB PATH`, `-` for a binary file); paths are decoded leniently.
    """
    fields = output.split(b"\0")
    raw: list[Change] = []
    binary: set[str] = set()
    index = 0
    while index < len(fields):
        field = fields[index]
        index += 1
        if field.startswith(b":") and index < len(fields):
            path = fields[index].decode("utf-8", "replace")
            index += 1
            parts = field.decode("ascii", "replace").lstrip(":").split(" ")
            if len(parts) == 5:
                raw.append(Change(path, parts[4][:1], parts[0], parts[1]))
            continue
        counts = field.split(b"\t", 2)
        if len(counts) == 3 and not (counts[0].isdigit() and counts[1].isdigit()):
            binary.add(counts[2].decode("utf-8", "replace"))
    return [replace(change, binary=change.path in binary) for change in raw]
