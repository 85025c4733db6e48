"""The session's own git, run inside its container as its user, makes the bundle the host reads.

For a running session that is `docker exec` in its container; for a stopped one, a throwaway
container of the session's image on its workspace, with no network and no capabilities, removed
afterwards. Either way the host runs nothing in the workspace: what comes out is one status line
and a bundle on stdout, which the host writes to a file of the session's record.

The script leaves the agent's repository as it was: the uncommitted work is staged in a
temporary index and its objects written to a temporary object folder, and the bundle is made
from a scratch repository that borrows the workspace's objects, so neither the agent's index
nor its refs change. The commit of the uncommitted work has fixed names and dates, so unchanged
work makes the same commit and a second collect can say `unchanged`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator import engine, volumes
from orchestrator.errors import EngineError, InputError
from orchestrator.plan import CONTAINER_HOME, CONTAINER_WORKSPACE
from orchestrator.registry import SessionState
from orchestrator.untrusted import printable

COLLECT_TIMEOUT = 600.0
# A bundle larger than this is refused: a session's work is code, not data sets.
MAX_BUNDLE_BYTES = 1 << 30

# Exit codes of the script for what the session's workspace or image lacks (bad input).
NO_GIT, NOT_A_REPOSITORY, WRONG_BRANCH, NO_BRANCH = 70, 71, 72, 73
INPUT_CODES = {NO_GIT, NOT_A_REPOSITORY, WRONG_BRANCH, NO_BRANCH}

SCRIPT = r"""
set -eu
branch=$1 base=$2 known_head=$3 known_worktree=$4
say() { printf 'filare-collect: %s\n' "$*" >&2; }
for name in $(env | sed -n 's/^\(GIT_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$name"; done
command -v git >/dev/null 2>&1 || { say "the session's image has no git"; exit 70; }
export GIT_CEILING_DIRECTORIES=/home/agent LC_ALL=C
ws=/home/agent/workspace
cd "$ws"
g() { git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c gc.auto=0 "$@"; }
where=$(g rev-parse --show-toplevel --absolute-git-dir --git-common-dir 2>/dev/null) || where=""
top=$(printf '%s\n' "$where" | sed -n 1p)
[ "$top" = "$ws" ] || { say "the workspace is not a git repository"; exit 71; }
gitdir=$(printf '%s\n' "$where" | sed -n 2p)
common=$(cd "$(printf '%s\n' "$where" | sed -n 3p)" && pwd -P)
current=$(g symbolic-ref -q HEAD 2>/dev/null) || current="(detached)"
[ "$current" = "refs/heads/$branch" ] || {
  say "the workspace is on ${current#refs/heads/}, not on the session's branch $branch"; exit 72; }
facts=$(g log -1 --format='%H %T %ct' "refs/heads/$branch" -- 2>/dev/null) || facts=""
[ -n "$facts" ] || { say "the session's branch $branch has no commit"; exit 73; }
head=${facts%% *}
rest=${facts#* }
head_tree=${rest%% *}
head_time=${rest#* }
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
g init -q --bare --template= "$scratch/repo"
printf '%s/objects\n' "$common" >"$scratch/repo/objects/info/alternates"
cp "$gitdir/index" "$scratch/index" 2>/dev/null || true
export GIT_INDEX_FILE="$scratch/index" GIT_OBJECT_DIRECTORY="$scratch/repo/objects"
[ -f "$scratch/index" ] || g read-tree "$head"
g add -A >/dev/null 2>&1 || { rm -f "$scratch/index"; g read-tree "$head"; g add -A >/dev/null; }
tree=$(g write-tree)
worktree=-
if [ "$tree" != "$head_tree" ]; then
  when="@$head_time +0000"
  worktree=$(GIT_AUTHOR_NAME=filare GIT_AUTHOR_EMAIL=filare@localhost GIT_AUTHOR_DATE="$when" \
    GIT_COMMITTER_NAME=filare GIT_COMMITTER_EMAIL=filare@localhost GIT_COMMITTER_DATE="$when" \
    g commit-tree -p "$head" -m "Uncommitted work in the workspace" "$tree")
fi
unset GIT_INDEX_FILE GIT_OBJECT_DIRECTORY
if [ "$head" = "$known_head" ] && [ "$worktree" = "$known_worktree" ]; then
  printf 'FILARE-COLLECT unchanged %s %s\n' "$head" "$worktree"; exit 0
fi
export GIT_DIR="$scratch/repo"
tips=refs/filare/head
updates="update refs/filare/head $head"
if [ "$worktree" != - ]; then
  tips="$tips refs/filare/worktree"
  updates="$updates
update refs/filare/worktree $worktree"
fi
printf '%s\n' "$updates" | g update-ref --stdin
# What the host has already (the base, the last collect's tips) stays out of the bundle.
set --
present=$(printf '%s^{commit}\n' "$base" "$known_head" "$known_worktree" |
  g cat-file --batch-check='%(objectname) %(objecttype)' | sed -n 's/ commit$//p')
for known in $present; do set -- "$@" "^$known"; done
# shellcheck disable=SC2086
if ! g bundle create -q "$scratch/work.bundle" $tips "$@" 2>"$scratch/error"; then
  if grep -q 'empty bundle' "$scratch/error"; then
    printf 'FILARE-COLLECT nothing %s %s\n' "$head" "$worktree"; exit 0
  fi
  cat "$scratch/error" >&2
  exit 1
fi
printf 'FILARE-COLLECT bundle %s %s\n' "$head" "$worktree"
cat "$scratch/work.bundle"
"""


@dataclass(frozen=True)
class Known:
    """What the host knows already: the base, and the tips of the last collect."""

    base: str
    head: str | None
    worktree: str | None


def script_args(branch: str, known: Known) -> list[str]:
    """`sh -c SCRIPT` and its positional arguments (the name `$0` first)."""
    return [
        "sh",
        "-c",
        SCRIPT,
        "filare-collect",
        branch,
        known.base,
        known.head or "-",
        known.worktree or "-",
    ]


def container_argv(state: SessionState, *, running: str | None, args: Sequence[str]) -> list[str]:
    """The docker command: `exec` in the running container, else a throwaway one."""
    user = ["--user", state.user] if state.user else []
    if running is not None:
        return engine.command_argv(
            "exec", *user, "--workdir", CONTAINER_WORKSPACE,
            "--env", f"HOME={CONTAINER_HOME}", running, *args,
            context=state.engine,
        )  # fmt: skip
    return engine.command_argv(
        "run", "--rm", "--pull", "never", "--network", "none", *user,
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--env", f"HOME={CONTAINER_HOME}", "--workdir", CONTAINER_WORKSPACE,
        "--volume", f"{volumes.workspace_source(state)}:{CONTAINER_WORKSPACE}",
        "--label", f"filare.collect={state.session_id}",
        state.image, *args,
        context=state.engine,
    )  # fmt: skip


def run_collect(state: SessionState, *, running: str | None, known: Known, out: Path) -> None:
    """Run the script for `state` and write what it printed to `out` (host-owned), bounded."""
    argv = container_argv(state, running=running, args=script_args(state.branch, known))
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out.open("wb") as sink:
            done = subprocess.run(
                argv,
                stdout=sink,
                stderr=subprocess.PIPE,
                timeout=COLLECT_TIMEOUT,
                check=False,
            )
    except FileNotFoundError:
        raise EngineError(f"docker CLI not found: {engine.INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise EngineError(
            f"session {state.session_id!r}: collect did not finish within {COLLECT_TIMEOUT:g} s"
        ) from None
    stderr = done.stderr.decode("utf-8", "replace")
    prefix = f"session {state.session_id!r}"
    if done.returncode in INPUT_CODES:
        raise InputError(f"{prefix}: {_script_reason(stderr)}")
    if done.returncode != 0:
        raise _docker_failure(prefix, state, done.returncode, stderr)
    if out.stat().st_size > MAX_BUNDLE_BYTES:
        raise InputError(f"{prefix}: the bundle is larger than {MAX_BUNDLE_BYTES} bytes")


def _script_reason(stderr: str) -> str:
    for line in reversed(stderr.splitlines()):
        if line.startswith("filare-collect: "):
            return printable(line.removeprefix("filare-collect: "), limit=300)
    return "the collect script failed"


def _docker_failure(prefix: str, state: SessionState, code: int, stderr: str) -> Exception:
    text = " ".join(stderr.split())
    if "executable file not found" in text or code in {126, 127}:
        return InputError(f"{prefix}: the image {state.image} has no shell or git to collect with")
    if "No such image" in text:
        return InputError(f"{prefix}: {engine.missing_image_hint(state.image)}")
    if "filare-collect: " in stderr:
        return InputError(f"{prefix}: {_script_reason(stderr)}")
    return EngineError(
        f"{prefix}: {engine.describe_failure('collect', printable(text, limit=300))}"
    )
