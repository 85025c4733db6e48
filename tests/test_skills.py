"""The Codex skills generated from the tasks: format, contents, hand-written skills, drift."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from filare_testing.commands import REPOSITORY
from orchestrator import catalog, skills
from orchestrator.catalog import ParameterSpec, TaskSpec
from orchestrator.errors import CatalogError, OrchestratorError
from tasks import commands
from tasks.catalog_task import CatalogTask
from tasks.collection import namespace

NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
SPEC_KEYS = {"name", "description", "license", "compatibility", "metadata", "allowed-tools"}

HAND_WRITTEN = """\
---
name: review-notes
description: Write review notes the way this team likes them. Use when asked for a review.
---

# Review notes

Kept as written, trailing spaces and all.
""".replace("all.", "all.  ")

START = TaskSpec(
    path="session.start",
    doc="Start the sessions of a manifest.\n\nSecond paragraph, for the skill's reader.",
    category="session",
    safe_for_agents=True,
    runs_in="host",
    aliases=("codex-session-start",),
    parameters=(
        ParameterSpec("--manifest", "YAML manifest", required=True, default=None),
        ParameterSpec("--session", "only this session (repeatable)", False, (), repeatable=True),
        ParameterSpec("--dry-run", "change nothing", False, False, takes_value=False),
        ParameterSpec("--parallel", "how many | at once", False, 8),
    ),
)
GENERATE = TaskSpec(
    path="commands.generate",
    doc="Regenerate the files.",
    category="meta",
    safe_for_agents=True,
    runs_in="anywhere",
    example="just commands-generate",
)
STOP = TaskSpec(
    path="session.stop",
    doc="Stop sessions.",
    category="session",
    safe_for_agents=False,
    runs_in="host",
    parameters=(ParameterSpec("--all", "every session", False, False, takes_value=False),),
    example="just session-stop --all",
    confirm="which sessions will be stopped",
)
SPECS = (START, GENERATE, STOP)


def front_matter(text: str) -> dict[str, Any]:
    """The front matter as Codex reads it: between a first `---` line and the next one."""
    lines = text.split("\n")
    assert lines[0] == "---"
    end = lines.index("---", 1)
    parsed = yaml.safe_load("\n".join(lines[1:end]))
    assert isinstance(parsed, dict)
    return parsed


def skill_files(root: Path, folder: str) -> dict[str, str]:
    """Folder name -> SKILL.md text of every skill under `root/folder`."""
    return {
        path.parent.name: path.read_text(encoding="utf-8")
        for path in sorted((root / folder).glob(f"*/{skills.SKILL_FILE}"))
    }


def specs_by_recipe() -> dict[str, TaskSpec]:
    return {spec.recipe: spec for spec in commands.describe(namespace())}


def without_task(*paths: str) -> Collection:
    """The project's collection with these tasks deleted, as if their code were gone."""
    ns = namespace()
    for path in paths:
        parent, _, name = path.rpartition(".")
        del ns.collections[parent].tasks[name]
    return ns


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty folder standing in for the repository, with the committed catalog in it."""
    (tmp_path / "agents").mkdir()
    shutil.copy(REPOSITORY / catalog.CATALOG, tmp_path / catalog.CATALOG)
    return tmp_path


@pytest.fixture
def generated(repo: Path) -> Path:
    commands.generate_files(namespace(), repo)
    return repo


# --- the format ------------------------------------------------------------------------------


@pytest.mark.parametrize("root", [REPOSITORY, None], ids=["committed", "generated"])
def test_every_skill_meets_the_agent_skills_format(root: Path | None, generated: Path) -> None:
    found = skill_files(root or generated, skills.SKILLS_DIR)

    assert sorted(found) == sorted(specs_by_recipe())
    for folder, text in found.items():
        meta = front_matter(text)
        assert set(meta) <= SPEC_KEYS
        assert meta["name"] == folder
        assert NAME.match(meta["name"]) and len(meta["name"]) <= 64
        assert isinstance(meta["description"], str)
        assert 0 < len(meta["description"]) <= 1024
        assert "\n" not in meta["description"]
        assert all(isinstance(value, str) for value in meta["metadata"].values())


def test_front_matter_marks_the_skill_as_generated_from_its_task(generated: Path) -> None:
    for folder, text in skill_files(generated, skills.SKILLS_DIR).items():
        spec = specs_by_recipe()[folder]
        assert front_matter(text)["metadata"] == {
            "generated-by": "inv commands.generate",
            "task": spec.path,
            "runs-in": spec.runs_in,
        }
        assert skills.is_generated(text)
        assert (
            f"<!-- Code generated by `inv commands.generate` from the Invoke task {spec.path} "
            "in tasks/. DO NOT EDIT. -->"
        ) in text


def test_description_says_what_and_when() -> None:
    description = front_matter(skills.render_skill(STOP))["description"]

    # What matters first, all within what Codex shows the model of a description.
    assert description.startswith("Stop sessions. Ask a person before running it. Host only")
    assert description.endswith("Task session.stop: just session-stop.")
    assert len(description) <= skills.SHOWN_DESCRIPTION
    assert "Runs on the host and inside sessions." in skills.skill_description(GENERATE)


def test_output_is_stable_lf_and_ends_with_one_newline() -> None:
    first = skills.render_skill_files(SPECS, {})

    assert first == skills.render_skill_files(SPECS[::-1], {})
    assert list(first) == sorted(first)
    for text in first.values():
        assert text is not None
        assert "\r" not in text
        assert text.endswith("\n") and not text.endswith("\n\n")


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (replace(GENERATE, path="commands.re_generate"), "skill name 'commands-re_generate'"),
        (replace(GENERATE, path="commands.re--generate"), "single hyphens"),
        (replace(GENERATE, path="x" * 65), "at most 64"),
        (replace(GENERATE, doc="Long. " * 60), "more than the 280 Codex shows the model"),
    ],
)
def test_tasks_that_make_invalid_skills_are_refused(spec: TaskSpec, problem: str) -> None:
    with pytest.raises(CatalogError, match=problem):
        skills.render_skill_files([spec], {})


@task(klass=CatalogTask, category="session", safe_for_agents=False, runs_in="host")
def unconfirmed(c: Context) -> None:
    """Remove everything, without saying what to confirm first."""


def test_unsafe_task_without_confirm_is_refused_and_nothing_is_written(repo: Path) -> None:
    ns = namespace()
    ns.collections["session"].add_task(unconfirmed, name="wipe")

    with pytest.raises(CatalogError, match=r"'session\.wipe': is not safe for agents"):
        commands.generate_files(ns, repo)

    assert sorted(path.relative_to(repo) for path in repo.rglob("*")) == [
        Path("agents"),
        Path(catalog.CATALOG),
    ]


# --- the body --------------------------------------------------------------------------------


def test_every_option_is_listed_with_its_help_and_properties(generated: Path) -> None:
    found = skill_files(generated, skills.SKILLS_DIR)
    for recipe, spec in specs_by_recipe().items():
        text = found[recipe]
        for parameter in spec.parameters:
            [row] = [
                line
                for line in text.splitlines()
                if line.startswith((f"| `{parameter.flag} ", f"| `{parameter.flag}`"))
            ]
            assert (parameter.help or "").replace("|", "\\|") in row
        if not spec.parameters:
            assert "It takes no options." in text


def test_option_rows_say_value_repeat_required_and_default() -> None:
    rows = skills.render_skill(START).splitlines()

    assert "| `--manifest MANIFEST` | yes | no | yes | none | YAML manifest |" in rows
    assert (
        "| `--session SESSION` | yes | yes (give it once per value) | no | none "
        "| only this session (repeatable) |"
    ) in rows
    assert "| `--dry-run` | no (a switch) | no | no | off | change nothing |" in rows
    assert "| `--parallel PARALLEL` | yes | no | no | `8` | how many \\| at once |" in rows


def test_body_has_the_docstring_command_exit_codes_and_output() -> None:
    text = skills.render_skill(START)

    assert "Start the sessions of a manifest.\n\nSecond paragraph, for the skill's reader." in text
    assert "just session-start [OPTIONS]\nuv run inv session.start [OPTIONS]\n" in text
    assert "`just codex-session-start`" in text
    assert "- `0`: success." in text
    assert "- `1`: an engine or system fault" in text
    assert "- `2`: bad input" in text and "nothing was started or written" in text
    assert "it has no `--json` form" in text
    listing = replace(
        START, parameters=(ParameterSpec("--json", "print JSON", False, False, False),)
    )
    assert "`--json` prints JSON instead" in skills.render_skill(listing)


def test_example_comes_from_the_task_or_from_its_required_options() -> None:
    given = skills.render_skill(replace(START, example="just session-start --manifest m.yml"))
    built = skills.render_skill(START)

    assert "just session-start --manifest m.yml\nuv run inv session.start --manifest m.yml\n" in (
        given
    )
    assert "just session-start --manifest MANIFEST\n" in built
    assert "uv run inv session.start --manifest MANIFEST\n" in built


def test_only_unsafe_tasks_say_what_to_confirm_with_a_person() -> None:
    unsafe = skills.render_skill(STOP)

    assert "## Ask a person first" in unsafe
    assert "confirm with a person which sessions will be stopped." in unsafe
    assert unsafe.index("## Ask a person first") < unsafe.index("## Command")
    assert "## Ask a person first" not in skills.render_skill(START)


def test_committed_unsafe_skills_carry_their_confirm_text() -> None:
    found = skill_files(REPOSITORY, skills.SKILLS_DIR)
    for recipe, spec in specs_by_recipe().items():
        if spec.safe_for_agents:
            assert "## Ask a person first" not in found[recipe]
        else:
            assert " ".join((spec.confirm or "").split()) in found[recipe]


def test_where_it_runs_follows_runs_in() -> None:
    assert "do not run it inside one" in skills.render_skill(START)
    assert "inside a session container. It needs no Docker." in skills.render_skill(GENERATE)


# --- what a session gets ---------------------------------------------------------------------


def test_session_skills_are_the_tasks_that_run_anywhere(generated: Path) -> None:
    session = skill_files(generated, skills.SESSION_SKILLS_DIR)
    everywhere = skill_files(generated, skills.SKILLS_DIR)
    anywhere = {recipe for recipe, spec in specs_by_recipe().items() if spec.runs_in == "anywhere"}

    assert set(session) == anywhere
    assert {"commands-generate", "commands-check"} <= anywhere
    assert "session-start" not in anywhere
    assert all(session[recipe] == everywhere[recipe] for recipe in session)


def test_session_config_disables_every_host_only_skill(generated: Path) -> None:
    text = (generated / skills.SESSION_CONFIG).read_text(encoding="utf-8")
    parsed = tomllib.loads(text)
    host = sorted(recipe for recipe, spec in specs_by_recipe().items() if spec.runs_in == "host")

    assert text.startswith("# Code generated by `inv commands.generate`")
    assert parsed == {"skills": {"config": [{"name": r, "enabled": False} for r in host]}}
    assert "session-start" in host


def test_session_config_of_tasks_that_all_run_anywhere_is_valid_toml() -> None:
    assert tomllib.loads(skills.render_session_config([GENERATE])) == {}


def test_runtime_finds_the_session_skills_and_config(generated: Path) -> None:
    assert skills.session_skills_dir(generated) == generated / "agents/session/skills"
    assert skills.session_skills_config(generated) == (
        generated / "agents/session/skills-config.toml"
    ).read_text(encoding="utf-8")
    with pytest.raises(OrchestratorError, match=r"run `uv run inv commands\.generate`"):
        skills.session_skills_config(generated / "elsewhere")


def test_skills_module_loads_without_pydantic_or_yaml() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pydantic', 'yaml'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from pathlib import Path\n"
        "from orchestrator import skills\n"
        "print(skills.session_skills_dir(Path('.')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "agents/session/skills"


# --- hand-written skills, stale ones, drift --------------------------------------------------


@pytest.mark.parametrize("folder", [skills.SKILLS_DIR, skills.SESSION_SKILLS_DIR])
def test_hand_written_skill_survives_regeneration(generated: Path, folder: str) -> None:
    path = generated / folder / "review-notes" / skills.SKILL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(HAND_WRITTEN.encode("utf-8"))
    (path.parent / "notes.txt").write_bytes(b"extra\r\n")

    assert commands.generate_files(namespace(), generated) == []
    commands.generate_files(without_task("commands.check"), generated)
    commands.check_files(without_task("commands.check"), generated)

    assert path.read_bytes() == HAND_WRITTEN.encode("utf-8")
    assert (path.parent / "notes.txt").read_bytes() == b"extra\r\n"


def test_generated_skill_of_a_removed_task_is_removed(generated: Path) -> None:
    kept_file = generated / skills.SKILLS_DIR / "session-prune" / "notes.md"
    kept_file.write_text("mine\n", encoding="utf-8")

    changes = commands.generate_files(without_task("commands.check", "session.prune"), generated)

    assert "removed .agents/skills/commands-check/SKILL.md" in changes
    assert "removed agents/session/skills/commands-check/SKILL.md" in changes
    assert "removed .agents/skills/session-prune/SKILL.md" in changes
    assert not (generated / skills.SKILLS_DIR / "commands-check").exists()
    assert not (generated / skills.SESSION_SKILLS_DIR / "commands-check").exists()
    assert kept_file.read_text(encoding="utf-8") == "mine\n"
    assert not (kept_file.parent / skills.SKILL_FILE).exists()
    config = tomllib.loads((generated / skills.SESSION_CONFIG).read_text(encoding="utf-8"))
    assert "session-prune" not in {entry["name"] for entry in config["skills"]["config"]}


def test_a_task_that_becomes_host_only_leaves_the_session_skills() -> None:
    current: dict[str, str | None] = dict(skills.render_skill_files(SPECS, {}))
    host_only = replace(GENERATE, runs_in="host")

    files = skills.render_skill_files([START, host_only, STOP], current)

    assert files["agents/session/skills/commands-generate/SKILL.md"] is None
    assert files[".agents/skills/commands-generate/SKILL.md"] == skills.render_skill(host_only)
    assert 'name = "commands-generate"' in str(files[skills.SESSION_CONFIG])


@pytest.mark.parametrize(
    ("where", "text"),
    [
        (".agents/skills/session-start/SKILL.md", HAND_WRITTEN),
        (".agents/skills/mine/SKILL.md", HAND_WRITTEN.replace("review-notes", "session-start")),
        ("agents/session/skills/session-start/SKILL.md", "no front matter at all\n"),
    ],
)
def test_hand_written_skill_named_like_a_task_is_refused(where: str, text: str) -> None:
    with pytest.raises(CatalogError) as refused:
        skills.render_skill_files(SPECS, {where: text})

    message = str(refused.value)
    assert f"{where}: hand-written skill 'session-start'" in message
    assert "task 'session.start'" in message


def test_check_reports_drift_naming_each_file(
    generated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edited = generated / skills.SKILLS_DIR / "session-list" / skills.SKILL_FILE
    edited.write_text(edited.read_text(encoding="utf-8") + "edited by hand\n", encoding="utf-8")
    (generated / skills.SESSION_SKILLS_DIR / "commands-check" / skills.SKILL_FILE).unlink()
    stale = generated / skills.SKILLS_DIR / "old-task" / skills.SKILL_FILE
    stale.parent.mkdir()
    stale.write_text(
        skills.render_skill(replace(GENERATE, path="old.task")), encoding="utf-8", newline="\n"
    )

    with pytest.raises(Exit) as failure:
        commands.check_files(namespace(), generated)

    assert failure.value.code == 1
    diff = capsys.readouterr().out
    assert "--- a/.agents/skills/session-list/SKILL.md\n" in diff
    assert "-edited by hand\n" in diff
    assert "--- /dev/null\n+++ b/agents/session/skills/commands-check/SKILL.md\n" in diff
    assert "--- a/.agents/skills/old-task/SKILL.md\n+++ /dev/null\n" in diff
    commands.generate_files(namespace(), generated)
    commands.check_files(namespace(), generated)
    assert not stale.parent.exists()


def test_generate_prints_what_it_wrote_and_removed(generated: Path) -> None:
    stale = generated / skills.SKILLS_DIR / "old-task" / skills.SKILL_FILE
    stale.parent.mkdir()
    stale.write_text(skills.render_skill(replace(GENERATE, path="old.task")), encoding="utf-8")
    (generated / skills.SESSION_CONFIG).unlink()

    assert commands.generate_files(namespace(), generated) == [
        "wrote agents/session/skills-config.toml",
        "removed .agents/skills/old-task/SKILL.md",
    ]


# --- symlinks --------------------------------------------------------------------------------


def test_a_skill_folder_that_is_a_symlink_is_refused(generated: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / skills.SKILL_FILE).write_text(
        skills.render_skill(replace(GENERATE, path="old.task")), encoding="utf-8"
    )
    (generated / skills.SKILLS_DIR / "old-task").symlink_to(outside, target_is_directory=True)

    with pytest.raises(CatalogError, match=r"\.agents/skills/old-task is a symlink"):
        commands.generate_files(namespace(), generated)
    with pytest.raises(CatalogError, match="is a symlink"):
        commands.check_files(namespace(), generated)

    assert (outside / skills.SKILL_FILE).is_file()


def test_a_symlinked_skill_file_or_skills_folder_is_refused(
    generated: Path, tmp_path: Path
) -> None:
    skill = generated / skills.SKILLS_DIR / "session-list" / skills.SKILL_FILE
    target = tmp_path / "elsewhere.md"
    target.write_text(skill.read_text(encoding="utf-8"), encoding="utf-8")
    skill.unlink()
    skill.symlink_to(target)

    with pytest.raises(CatalogError, match=r"session-list/SKILL\.md is a symlink"):
        skills.read_skill_files(generated)

    skill.unlink()
    shutil.move(generated / skills.SESSION_SKILLS_DIR, tmp_path / "real-skills")
    (generated / skills.SESSION_SKILLS_DIR).symlink_to(tmp_path / "real-skills")
    with pytest.raises(CatalogError, match="agents/session/skills is a symlink"):
        skills.read_skill_files(generated)
