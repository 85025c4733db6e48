"""The Invoke layer: the collection as `inv` and `import tasks` see it, flags and exit codes."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from invoke.context import Context
from invoke.exceptions import Exit

import tasks
from filare_testing.commands import REPOSITORY, inv, inv_into_closed_pipe
from tasks.catalog_task import EXIT_BROKEN_PIPE, CatalogTask
from tests.conftest import WriteManifest, session

EXPECTED = {
    "codex.build",
    "session.start",
    "session.stop",
    "session.list",
    "session.prune",
    "session.validate",
}


def listed_tasks(output: str) -> set[str]:
    """Dotted task names from `inv --list --list-format json`."""

    def walk(collection: dict[str, Any], prefix: str) -> set[str]:
        names = {prefix + task["name"] for task in collection["tasks"]}
        for child in collection["collections"]:
            names |= walk(child, f"{prefix}{child['name']}.")
        return names

    return walk(json.loads(output), "")


@pytest.mark.parametrize("where", [".", "agents", "agents/src/orchestrator"])
def test_inv_list_works_from_root_and_sub_folders(where: str) -> None:
    result = inv("--list", "--list-format", "json", cwd=REPOSITORY / where)
    assert result.returncode == 0, result.stderr
    assert listed_tasks(result.stdout) >= EXPECTED


def test_tasks_py_and_the_tasks_package_build_the_same_tree() -> None:
    result = inv("--list", "--list-format", "json")
    assert listed_tasks(result.stdout) == set(tasks.ns.task_names)


def test_collection_adds_no_heavy_import_to_invoke() -> None:
    """Listing tasks costs what Invoke costs (it imports PyYAML itself), never pydantic."""
    code = (
        "import sys, invoke; before = set(sys.modules); import tasks;"
        "added = sorted(set(sys.modules) - before);"
        "heavy = [m for m in added if m.split('.')[0] in {'pydantic', 'yaml', 'orchestrator'}"
        " and m != 'orchestrator.errors'];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, check=True, timeout=30)


def test_every_argument_has_help() -> None:
    for name in tasks.ns.task_names:
        task = tasks.ns[name]
        params = [p for p in task.argspec(task.body).parameters if p != "c"]
        documented = {key.rstrip("_") for key in task.help}
        missing = [p for p in params if p.rstrip("_") not in documented]
        assert not missing, f"{name}: no help for {missing}"
        assert task.__doc__, f"{name}: no docstring"


def test_help_shows_every_flag() -> None:
    result = inv("--help", "session.stop")
    for flag in ("--session", "--role", "--manifest", "--all", "--timeout"):
        assert flag in result.stdout


def test_help_after_the_task_name_is_help_not_a_manifest() -> None:
    result = inv("session.start", "--help")
    assert result.returncode == 0, result.stderr
    assert "--manifest=STRING" in result.stdout


def test_a_required_option_left_out_is_one_line_exit_2(tmp_path: Path) -> None:
    result = inv("session.start", "--dry-run", FILARE_STATE_DIR=str(tmp_path / "state"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --manifest is required"]
    assert not (tmp_path / "state").exists()


def test_required_options_are_checked_whatever_their_kind() -> None:
    """Invoke passes None for a plain option left out, and [] for a repeatable one."""

    def body(c: object, name: str, ids: list[str], flag: bool = False, *rest: str) -> str:
        return f"{name} {ids}"

    task = CatalogTask(
        body, category="x", safe_for_agents=True, runs_in="anywhere", iterable=["ids"]
    )
    assert task(Context(), name="n", ids=["a"]) == "n ['a']"
    with pytest.raises(Exit) as no_name:
        task(Context(), name=None, ids=["a"])
    with pytest.raises(Exit) as no_ids:
        task(Context(), name="n", ids=[])
    assert (no_name.value.code, no_name.value.message) == (2, "error: --name is required")
    assert (no_ids.value.code, no_ids.value.message) == (2, "error: --ids is required")


def test_missing_manifest_is_one_line_exit_2(tmp_path: Path) -> None:
    result = inv("session.start", "--manifest", str(tmp_path / "none.yml"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'none.yml'}: manifest not found"
    ]


def test_missing_key_is_exit_2_and_writes_nothing(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    manifest = write_manifest([session("a"), session("b", ssh_key="gone")])
    state_dir = tmp_path / "state"
    result = inv("session.start", "--manifest", str(manifest), FILARE_STATE_DIR=str(state_dir))
    assert result.returncode == 2
    assert "session 'b': field 'ssh_key'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not state_dir.exists()
    assert not (tmp_path / "ws").exists()


def test_dry_run_prints_docker_argv_and_writes_nothing(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    (tmp_path / "a.env").write_text("TOKEN=canary-dry-run\n")
    manifest = write_manifest([session("a"), session("b")])
    state_dir = tmp_path / "state"
    result = inv(
        "session.start",
        "--manifest",
        str(manifest),
        "--session",
        "b",
        "--dry-run",
        FILARE_STATE_DIR=str(state_dir),
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    assert line.startswith("# b: docker run --detach")
    assert "--name filare-coder-b" in line
    assert "canary-dry-run" not in result.stdout + result.stderr
    assert not state_dir.exists()
    assert not (tmp_path / "ws").exists()


def test_stop_needs_a_selection() -> None:
    result = inv("session.stop")
    assert result.returncode == 2
    assert "say which sessions to stop" in result.stderr


BAD_INPUTS = {
    "malformed YAML": ("- id: a\n  branch: [x\n", r":\d+: invalid YAML"),
    "unknown field": ({**session("a"), "imgae": "x"}, "did you mean 'image'"),
    "wrong type": (session("a", resources={"cpus": "two"}), "field 'resources.cpus'"),
    "id unsafe as a name": (session("A/b"), "field 'id'"),
    "id with ..": (session("a..b", branch="agent/a"), "field 'id'"),
    "id too long": (session("a" * 64), "longer than 63"),
    "owner unsafe as a label": (session("a", owner="x=y"), "field 'owner'"),
    "missing env file": (session("a", env_file="none.env"), "field 'env_file'"),
    "key is a folder": (session("a", ssh_key="codex"), "field 'ssh_key': .* is a folder"),
    "env line Docker rejects": (session("a", env_file="bad.env"), "bad.env: line 2"),
    "duplicate id": ([session("a"), session("a", workspace="x")], "duplicate id"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    case: str, write_manifest: WriteManifest, session_files: Path, tmp_path: Path
) -> None:
    (session_files / "bad.env").write_text("GOOD=1\n=secret-value\n")
    data, expected = BAD_INPUTS[case]
    manifest = write_manifest(data)
    state = tmp_path / "state"
    result = inv("session.start", "--manifest", str(manifest), FILARE_STATE_DIR=str(state))
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert re.search(expected, line), line
    assert line.startswith(f"error: {manifest}")
    assert "secret-value" not in line
    assert result.stdout == ""
    assert not state.exists()
    assert not (session_files / "ws").exists()


@pytest.mark.parametrize("json_flag", [(), ("--json",)], ids=["yaml", "json"])
def test_output_into_a_reader_that_went_away_ends_quietly(
    json_flag: tuple[str, ...], write_manifest: WriteManifest, tmp_path: Path
) -> None:
    manifest = write_manifest([session(f"s{n}") for n in range(200)])
    result = inv_into_closed_pipe(
        "session.validate",
        "--manifest",
        str(manifest),
        *json_flag,
        FILARE_STATE_DIR=str(tmp_path / "state"),
    )
    assert result.returncode == EXIT_BROKEN_PIPE
    assert result.stderr == ""


@pytest.mark.parametrize("unbuffered", ["1", ""], ids=["written-through", "buffered"])
def test_invoke_s_own_output_into_a_reader_that_went_away_ends_quietly(unbuffered: str) -> None:
    result = inv_into_closed_pipe("--list", PYTHONUNBUFFERED=unbuffered)
    assert result.returncode in (0, EXIT_BROKEN_PIPE)
    assert result.stderr == ""


def test_output_cut_short_by_head_leaves_no_traceback(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    manifest = write_manifest([session(f"s{n}") for n in range(200)])
    pipeline = (
        f"{shlex.quote(sys.executable)} -m invoke session.validate --manifest "
        f"{shlex.quote(str(manifest))} | head -3"
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPOSITORY,
        env={**os.environ, "FILARE_STATE_DIR": str(tmp_path / "state")},
    )
    assert len(result.stdout.splitlines()) == 3
    assert result.returncode in (0, EXIT_BROKEN_PIPE)
    assert "Traceback" not in result.stderr


def test_dry_run_shows_the_labels_as_they_are_set(
    write_manifest: WriteManifest, session_files: Path, tmp_path: Path
) -> None:
    workspace = 'ws/it\'s a, "b"'
    manifest = write_manifest([session("a", tags=["a", "b"], workspace=workspace)])
    result = inv(
        "session.start",
        "--manifest",
        str(manifest),
        "--dry-run",
        FILARE_STATE_DIR=str(tmp_path / "state"),
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    command = line.removeprefix("# a: ")
    assert " --label filare.tags=a,b " in command
    argv = shlex.split(command)
    assert argv[:2] == ["docker", "run"]
    assert "filare.tags=a,b" in argv
    assert f"filare.workspace={session_files / workspace}" in argv
    assert f"{session_files / workspace}:/home/agent/workspace" in argv


def one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    return line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--session",), "error: --session needs a value"),
        (("--parallel", "abc"), "error: --parallel: 'abc' is not a whole number"),
        (("--parallel", "0"), "error: --parallel must be at least 1, not 0"),
    ],
)
def test_start_options_of_the_wrong_kind_are_one_line_exit_2(
    args: tuple[str, ...], expected: str, write_manifest: WriteManifest, tmp_path: Path
) -> None:
    manifest = write_manifest([session("a")])
    state = tmp_path / "state"
    result = inv("session.start", "--manifest", str(manifest), *args, FILARE_STATE_DIR=str(state))
    assert one_line_exit_2(result) == expected
    assert not state.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--all", "--timeout", "-1"), "error: --timeout must be 0 or more seconds, not -1"),
        (("--all", "--timeout", "soon"), "error: --timeout: 'soon' is not a number"),
        (("--session",), "error: --session needs a value"),
    ],
)
def test_stop_options_of_the_wrong_kind_are_one_line_exit_2(
    args: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    result = inv("session.stop", *args, FILARE_STATE_DIR=str(tmp_path / "state"))
    assert one_line_exit_2(result) == expected


def test_stop_of_a_manifest_that_does_not_exist_is_exit_2(tmp_path: Path) -> None:
    result = inv(
        "session.stop",
        "--manifest",
        str(tmp_path / "gone.yml"),
        FILARE_STATE_DIR=str(tmp_path / "state"),
    )
    assert one_line_exit_2(result) == f"error: {tmp_path / 'gone.yml'}: manifest not found"


FAILING_TASK = """
import sys
from invoke import Collection, Program
from invoke.exceptions import Exit
from invoke.tasks import task
from orchestrator.errors import InputError
from tasks.catalog_task import CatalogTask

@task(klass=CatalogTask, category="x", safe_for_agents=True, runs_in="anywhere")
def fail(c):
    print("a line the reader never reads")
    raise Exit(code=3)

@task(klass=CatalogTask, category="x", safe_for_agents=True, runs_in="anywhere")
def refuse(c):
    print("a line the reader never reads")
    raise InputError("bad input")

Program(namespace=Collection(fail, refuse)).run(["inv", sys.argv[1]])
"""


@pytest.mark.parametrize(
    ("name", "code", "stderr"), [("fail", 3, ""), ("refuse", 2, "error: bad input\n")]
)
def test_a_failing_task_into_a_reader_that_went_away_keeps_its_exit_code(
    name: str, code: int, stderr: str
) -> None:
    """With its output buffered, the task runs to its end and its own exit code stands; written
    through (PYTHONUNBUFFERED), the first print stops it, as SIGPIPE stops other programs."""
    for unbuffered, expected in (("", (code, stderr)), ("1", (EXIT_BROKEN_PIPE, ""))):
        read_end, write_end = os.pipe()
        os.close(read_end)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
        try:
            result = subprocess.run(
                [sys.executable, "-c", FAILING_TASK, name],
                stdout=write_end,
                stderr=subprocess.PIPE,
                text=True,
                timeout=60,
                check=False,
                cwd=REPOSITORY,
                env={**env, "PYTHONUNBUFFERED": unbuffered} if unbuffered else env,
            )
        finally:
            os.close(write_end)
        assert (result.returncode, result.stderr) == expected


def test_help_names_each_options_kind_and_default() -> None:
    """Invoke shows neither for some kinds; the same text reaches the recipes, catalog, skills."""
    start = inv("--help", "session.start").stdout
    assert "how many sessions to start at once (a whole number;" in start
    assert "default: 8)" in start
    assert "only start this session id (repeatable;" in start
    stop = " ".join(inv("--help", "session.stop").stdout.split())
    assert "seconds to wait for a graceful stop before killing (a number; default: 10.0)" in stop
    base = " ".join(inv("--help", "codex.base").stdout.split())
    assert "Debian release to bootstrap (default: bookworm)" in base
    skill = (REPOSITORY / ".agents" / "skills" / "session-start" / "SKILL.md").read_text()
    assert "how many sessions to start at once (a whole number; default: 8)" in skill
