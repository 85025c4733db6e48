"""The launch script's argv assembly and argument checks, through --dry-run (no Docker)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from filare_testing.commands import REPOSITORY

SCRIPT = REPOSITORY / "scripts" / "run_codex_container.sh"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def files(tmp_path: Path) -> Path:
    folder = tmp_path / "with space"
    folder.mkdir()
    (folder / "e.env").write_text("SECRET=canary-value\n")
    (folder / "key").write_text("private\n")
    return folder


def test_detached_dry_run_prints_the_docker_argv(files: Path) -> None:
    result = run(
        "--detach",
        "--dry-run",
        "--name",
        "n1",
        "--image",
        "img:1",
        "--workspace",
        str(files / "ws"),
        "--env-file",
        str(files / "e.env"),
        "--ssh-key",
        str(files / "key"),
        "--ssh-dir",
        str(files / "ssh"),
        "--codex-dir",
        str(files / "codex"),
        "--cpus",
        "2",
        "--memory",
        "1g",
        "--label",
        "filare.session=a",
        "--label",
        'note=it\'s "quoted"',
    )
    assert result.returncode == 0, result.stderr
    argv = shlex.split(result.stdout)
    assert argv[:4] == ["docker", "run", "--detach", "--init"]
    # The image's agent daemon when it has one, else a command that only keeps it up.
    assert argv[-4:-1] == ["img:1", "sh", "-c"]
    assert argv[-1] == (
        "if command -v filare-agentd >/dev/null 2>&1; then exec filare-agentd; fi; "
        "exec sleep infinity"
    )
    own = f"{os.getuid()}:{os.getgid()}" if os.getuid() else "10001:10001"
    assert argv[argv.index("--user") + 1] == own  # never root
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert "HOME=/home/agent" in argv
    assert 'note=it\'s "quoted"' in argv
    volumes = [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]
    assert volumes == [
        f"{files / 'ws'}:/home/agent/workspace",
        f"{files / 'codex'}:/home/agent/.codex",
        f"{files / 'ssh'}:/home/agent/.ssh:ro",
    ]
    assert "canary-value" not in result.stdout + result.stderr
    assert not (files / "ws").exists() and not (files / "ssh").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--workspace is required"),
        (["--workspace", "w", "--env-file", "nope.env", "--ssh-key", "k"], "env file not found"),
        (["--bogus"], "unknown option: --bogus"),
        (["--name"], "--name needs a value"),
        (["--label", "novalue"], "--label expects KEY=VALUE"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_detach_requires_a_caller_owned_ssh_dir(files: Path) -> None:
    result = run(
        "--detach",
        "--workspace",
        str(files / "ws"),
        "--env-file",
        str(files / "e.env"),
        "--ssh-key",
        str(files / "key"),
    )
    assert result.returncode == 2
    assert "--detach needs --ssh-dir" in result.stderr


def test_dry_run_prints_safe_words_as_they_are_and_quotes_the_rest(files: Path) -> None:
    values = ["filare.tags=a,b", 'x=it\'s a, "b"', "y=$HOME `id` \\ *", "z="]
    args = [arg for value in values for arg in ("--label", value)]
    result = run(
        "--dry-run",
        "--workspace",
        str(files / "ws"),
        "--env-file",
        str(files / "e.env"),
        "--ssh-key",
        str(files / "key"),
        *args,
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.rstrip("\n")
    assert "\n" not in line
    assert " --label filare.tags=a,b " in line
    assert " --label 'x=it'\\''s a, \"b\"' " in line
    argv = shlex.split(line)
    labels = [argv[i + 1] for i, a in enumerate(argv) if a == "--label"]
    assert labels == values
    assert f"{files / 'ws'}:/home/agent/workspace" in argv
    # What a shell makes of the line is the same argv: nothing in it expands.
    echoed = subprocess.run(
        ["sh", "-c", "printf '%s\\n' " + line.removeprefix("docker run ")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert echoed.stdout.splitlines() == argv[2:]
