"""The one way the host runs git on a session's seed repository.

Every call names the repository's git folder explicitly and treats it as bare: git then reads
attributes only from the repository's own `info/attributes` and the user's, never from a
`.gitattributes` checked out in a working tree (an accepted branch may have put an agent's one
there), so no filter, diff or merge driver an agent named can run. Hooks and the filesystem
monitor are off, the pager is never started, and `GIT_*` variables of the caller's environment
are dropped so none of them can point git elsewhere.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InputError, OrchestratorError
from orchestrator.untrusted import printable

GIT_TIMEOUT = 120.0
# `git merge-tree --write-tree`, which merges without a working tree, came with git 2.38.
MINIMUM_GIT = (2, 38)
# Raised to errors for every object the host takes from a bundle (default levels warn or ignore).
FSCK_ERRORS = ("hasDotgit", "hasDotdot", "hasDot", "fullPathname", "badFilemode", "nulInHeader")
SAFE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.pager=cat",
    "core.sshCommand=false",
    "diff.external=",
    "protocol.allow=never",
    "submodule.recurse=false",
)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: bytes
    stderr: str


class Repository:
    """A seed repository on the host, reached through its (common) git folder."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir

    @classmethod
    def open(cls, path: Path) -> Repository:
        """The repository at `path` (a working tree's top folder or a git folder); one line and
        exit 2 when there is none."""
        check_version()
        folder = path / ".git"
        if folder.is_file():
            common = _run_git(
                ["-C", str(path), "rev-parse", "--path-format=absolute", "--git-common-dir"],
                cwd=None,
            )
            if common.code != 0:
                raise InputError(f"{path}: git cannot read its repository")
            return cls(Path(common.stdout.decode().strip()))
        if folder.is_dir():
            return cls(folder)
        if (path / "objects").is_dir() and (path / "refs").is_dir():
            return cls(path)
        raise InputError(f"{path}: not a git repository (the session's seed repository)")

    def git(
        self,
        *args: str,
        check: bool = True,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        bare: bool = True,
        config: Sequence[str] = (),
        timeout: float = GIT_TIMEOUT,
        input_file: Path | None = None,
        input_offset: int = 0,
    ) -> Result:
        """`git ARGS` on this repository; with `check`, a non-zero exit raises one line."""
        argv = ["--git-dir", str(self.git_dir)]
        if bare:
            argv += ["-c", "core.bare=true"]
        for item in (*SAFE_CONFIG, *config):
            argv += ["-c", item]
        result = _run_git(
            [*argv, *args],
            cwd=self.git_dir,
            stdin=stdin,
            env=env,
            timeout=timeout,
            input_file=input_file,
            input_offset=input_offset,
        )
        if check and result.code != 0:
            raise OrchestratorError(
                f"{self.git_dir}: git {args[0]} failed: {last_line(result.stderr)}"
            )
        return result

    def text(self, *args: str) -> str:
        return self.git(*args).stdout.decode("utf-8", "replace").strip()

    def resolve(self, ref: str, env: Mapping[str, str] | None = None) -> str | None:
        """The commit a ref or object name points at, or None."""
        return self.resolve_all([ref], env)[0]

    def resolve_all(
        self, names: Sequence[str], env: Mapping[str, str] | None = None
    ) -> list[str | None]:
        """The commit each ref or object name points at (None where there is none), in one git
        process whatever their number."""
        if any("\n" in name or not name for name in names):
            raise InputError("a ref name holds a line break")
        query = "".join(f"{name}^{{commit}}\n" for name in names).encode()
        output = self.git(
            "cat-file", "--batch-check=%(objectname) %(objecttype)", stdin=query, env=env
        ).stdout.decode("ascii", "replace")
        found: list[str | None] = []
        for line in output.splitlines():
            sha, _, kind = line.partition(" ")
            found.append(sha if kind == "commit" else None)
        if len(found) != len(names):
            raise OrchestratorError(f"{self.git_dir}: git cat-file answered {len(found)} lines")
        return found


@functools.cache
def check_version() -> None:
    """Refuse, once per process, a host git too old to merge without a working tree."""
    found = _run_git(["--version"], cwd=None).stdout.decode("ascii", "replace")
    version = parse_version(found)
    if version is None or version < MINIMUM_GIT:
        wanted = ".".join(map(str, MINIMUM_GIT))
        raise OrchestratorError(
            f"git {wanted} or later is needed on the host (found: {printable(found.strip())})"
        )


def parse_version(text: str) -> tuple[int, int] | None:
    """`git version 2.39.5` -> (2, 39)."""
    parts = text.split()
    if len(parts) < 3 or parts[:2] != ["git", "version"]:
        return None
    numbers = parts[2].split(".")
    if len(numbers) < 2 or not (numbers[0].isdigit() and numbers[1].isdigit()):
        return None
    return int(numbers[0]), int(numbers[1])


def last_line(stderr: str) -> str:
    """git's reason in one printable line: its first `error:` line (which names the object and
    the check it failed), else its last line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    chosen = errors[0] if errors else lines[-1] if lines else "no error output"
    return printable(chosen, limit=300)


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without any `GIT_*` variable, in the C locale, never prompting."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", GIT_OPTIONAL_LOCKS="0")
    env.update(extra or {})
    return env


def _run_git(
    args: Sequence[str],
    *,
    cwd: Path | None,
    stdin: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = GIT_TIMEOUT,
    input_file: Path | None = None,
    input_offset: int = 0,
) -> Result:
    argv = ["git", "--no-pager", *args]
    try:
        if input_file is not None:
            with input_file.open("rb") as handle:
                handle.seek(input_offset)
                done = subprocess.run(
                    argv,
                    stdin=handle,
                    capture_output=True,
                    cwd=cwd,
                    env=clean_env(env),
                    timeout=timeout,
                    check=False,
                )
        else:
            done = subprocess.run(
                argv,
                input=stdin if stdin is not None else b"",
                capture_output=True,
                cwd=cwd,
                env=clean_env(env),
                timeout=timeout,
                check=False,
            )
    except FileNotFoundError:
        raise OrchestratorError("git not found on the host: install git") from None
    except subprocess.TimeoutExpired:
        raise OrchestratorError(f"git {args[-1]} did not finish within {timeout:g} s") from None
    return Result(done.returncode, done.stdout, done.stderr.decode("utf-8", "replace"))
