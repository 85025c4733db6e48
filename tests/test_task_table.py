"""The README's table of tasks: rendered from the task metadata, checked like generated files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from invoke.exceptions import Exit

from filare_testing.commands import REPOSITORY
from orchestrator import task_table
from orchestrator.catalog import ParameterSpec, TaskSpec
from orchestrator.errors import CatalogError
from tasks import commands
from tasks.collection import namespace

NEW_TASK = TaskSpec(
    path="session.collect",
    doc="Bring a session's work home.\n\nAs a bundle, fetched with object checks.",
    category="session",
    safe_for_agents=True,
    runs_in="host",
    parameters=(
        ParameterSpec(flag="--session", help="id", required=True, default=(), repeatable=True),
        ParameterSpec(flag="--dry-run", help="x", required=False, default=False, takes_value=False),
        ParameterSpec(flag="--into", help="a | b", required=False, default="x"),
    ),
)


def test_every_option_of_every_task_is_in_the_readme() -> None:
    readme = (REPOSITORY / task_table.README).read_text(encoding="utf-8")
    rows = {
        line.split("`")[1].split(" ")[0]: line
        for line in readme.splitlines()
        if line.startswith("| `")
    }
    for spec in commands.describe(namespace()):
        row = rows["demo" if spec.path == "demo.run" else spec.path]
        for parameter in spec.parameters:
            assert parameter.flag in row, (spec.path, parameter.flag)
    # The options the hand-kept table had left out.
    for flag in ("--send-goal", "--interval", "--parallel"):
        assert flag in readme


def test_a_new_task_gets_its_row_and_the_rest_of_the_readme_stays() -> None:
    readme = f"# Title\n\ntext\n\n{task_table.BEGIN}\nold rows\n{task_table.END}\n\nafter\n"
    rendered = task_table.render_readme([NEW_TASK], readme)
    assert rendered == (
        f"# Title\n\ntext\n\n{task_table.BEGIN}\n"
        "| task | what it does |\n|---|---|\n"
        "| `session.collect --session SESSION… [--dry-run] [--into INTO]` | Bring a session's "
        "work home. As a bundle, fetched with object checks. |\n"
        f"{task_table.END}\n\nafter\n"
    )
    assert task_table.render_readme([NEW_TASK], rendered) == rendered
    assert task_table.render_readme([NEW_TASK], None) is None


def test_a_readme_without_the_markers_is_refused() -> None:
    with pytest.raises(CatalogError, match="needs the lines"):
        task_table.render_readme([NEW_TASK], "# Title\n")


def test_check_fails_when_the_readme_table_drifts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "agents").mkdir()
    shutil.copy(REPOSITORY / "agents/extra_commands.yml", tmp_path / "agents/extra_commands.yml")
    shutil.copy(REPOSITORY / task_table.README, tmp_path / task_table.README)
    commands.generate_files(namespace(), tmp_path)
    readme = tmp_path / task_table.README
    readme.write_text(readme.read_text().replace(" [--send-goal]", ""), encoding="utf-8")
    with pytest.raises(Exit):
        commands.check_files(namespace(), tmp_path)
    assert "+++ b/README.md" in capsys.readouterr().out
    assert "wrote README.md" in commands.generate_files(namespace(), tmp_path)
    commands.check_files(namespace(), tmp_path)
