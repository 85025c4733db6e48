"""The generated justfiles, read and run by the real `just` binary (PyPI rust-just)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from filare_testing.commands import REPOSITORY
from tasks.collection import namespace
from tests.conftest import FAKE_PRIVATE_KEY


def run_just(
    just: str, *args: str, cwd: Path = REPOSITORY, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [just, *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def dump(just: str, cwd: Path = REPOSITORY) -> dict[str, Any]:
    result = run_just(just, "--dump", "--dump-format", "json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def attribute(recipe: dict[str, Any], name: str) -> Any:
    return next((a[name] for a in recipe["attributes"] if isinstance(a, dict) and name in a), None)


def expected_recipes() -> dict[str, tuple[str, str | None, str]]:
    """Recipe name -> (task path, group, first docstring line), straight from the collection."""
    ns = namespace()
    expected = {}
    for path in ns.task_names:
        group = path.rpartition(".")[0] or None
        doc = (ns[path].__doc__ or "").strip().splitlines()[0]
        expected[path.replace(".", "-")] = (path, group, doc)
    return expected


def expected_aliases() -> dict[str, str]:
    """Legacy recipe names, and Invoke's own aliases (`inv demo` runs `demo.run`), dashed."""
    ns = namespace()
    return {
        alias.replace(".", "-"): path.replace(".", "-")
        for path, invoke_aliases in ns.task_names.items()
        for alias in [*ns[path].legacy_names, *invoke_aliases]
    }


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A manifest whose own path has a space and quotes, with its env file and SSH key."""
    folder = tmp_path / 'my "odd" folder'
    folder.mkdir()
    (folder / "agent.env").write_text("GREETING=hello\n", encoding="utf-8")
    (folder / "id_ed25519").write_text(FAKE_PRIVATE_KEY, encoding="utf-8")
    subprocess.run(["git", "init", "-q", str(folder)], check=True, timeout=30)
    path = folder / "it's a manifest.yml"
    path.write_text(
        "id: one\nrole: dev\nbranch: main\nworkspace: workspace\n"
        "env_file: agent.env\nssh_key: id_ed25519\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def state_env(tmp_path: Path) -> dict[str, str]:
    if shutil.which("uv") is None:
        pytest.fail("the recipes run Invoke through `uv run`; put uv on PATH")
    return {"FILARE_STATE_DIR": str(tmp_path / "state")}


@pytest.mark.parametrize("folder", [REPOSITORY, REPOSITORY / "agents"])
def test_just_list_shows_every_task_and_alias(just: str, folder: Path) -> None:
    result = run_just(just, "--list", cwd=folder)

    assert result.returncode == 0, result.stderr
    for recipe in expected_recipes():
        assert f"    {recipe} *args" in result.stdout
    for alias in expected_aliases():
        assert alias in result.stdout


def test_dump_agrees_with_the_invoke_collection(just: str) -> None:
    dumped = dump(just)

    recipes = {
        name: (attribute(recipe, "metadata")[1], attribute(recipe, "group"), recipe["doc"])
        for name, recipe in dumped["recipes"].items()
    }
    assert recipes == expected_recipes()
    aliases = {name: alias["target"] for name, alias in dumped["aliases"].items()}
    assert aliases == expected_aliases()


def test_root_and_agents_justfiles_expose_the_same_recipes(just: str) -> None:
    root = dump(just)
    agents = dump(just, cwd=REPOSITORY / "agents")

    assert root["recipes"] == agents["recipes"]
    assert root["aliases"] == agents["aliases"]


def test_recipes_pass_their_arguments_through_unparsed(just: str) -> None:
    for recipe in dump(just)["recipes"].values():
        assert "positional-arguments" not in recipe["attributes"]
        assert [p["kind"] for p in recipe["parameters"]] == ["star"]
        assert recipe["body"][0][-1].endswith(' "$@"')
    assert dump(just)["settings"]["positional_arguments"] is True


@pytest.mark.parametrize("justfile", ["justfile", "agents/justfile"])
def test_generated_justfiles_are_formatted_as_just_formats_them(just: str, justfile: str) -> None:
    result = run_just(just, "--unstable", "--fmt", "--check", "--justfile", justfile)

    assert result.returncode == 0, result.stdout + result.stderr


def test_recipe_reaches_the_task_with_a_path_holding_spaces_and_quotes(
    just: str, manifest: Path, state_env: dict[str, str]
) -> None:
    result = run_just(
        just, "session-start", "--manifest", str(manifest), "--dry-run", env=state_env
    )

    assert result.returncode == 0, result.stderr
    [line] = result.stdout.splitlines()
    assert line.startswith("# one: docker run ")
    argv = shlex.split(line.removeprefix("# one: "))
    assert f"filare.manifest={manifest}" in argv
    assert f"filare.registry={state_env['FILARE_STATE_DIR']}" in argv


def test_legacy_alias_from_another_folder_keeps_relative_paths(
    just: str, manifest: Path, state_env: dict[str, str]
) -> None:
    # [no-cd]: the caller's folder stays the working directory, even outside the repository.
    result = run_just(
        just,
        "--justfile",
        str(REPOSITORY / "justfile"),
        "codex-session-start",
        "--dry-run",
        "--manifest",
        str(manifest.relative_to(manifest.parents[1])),
        cwd=manifest.parents[1],
        env=state_env,
    )

    assert result.returncode == 0, result.stderr
    assert f"filare.manifest={manifest}" in shlex.split(result.stdout.split(": ", 1)[1])


def test_value_with_quotes_and_spaces_arrives_as_one_argument(
    just: str, manifest: Path, state_env: dict[str, str]
) -> None:
    value = """it's "two" words"""

    result = run_just(
        just,
        "session-start",
        "--manifest",
        str(manifest),
        "--session",
        value,
        "--dry-run",
        cwd=REPOSITORY / "agents",
        env=state_env,
    )

    assert result.returncode == 2
    assert f"no session with id {value!r}" in result.stderr
