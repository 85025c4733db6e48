"""`commands.*`: reading the Invoke collection, and generate/check against a repository folder."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from filare_testing.commands import REPOSITORY
from orchestrator import catalog, skills
from orchestrator.errors import CatalogError
from tasks import commands
from tasks.catalog_task import CatalogTask
from tasks.collection import namespace
from tests.conftest import OVERRIDING_ENTRY, entry_text

PRUNE_SKILL = ".agents/skills/session-prune/SKILL.md"


def replace_task(ns: Collection, path: str, new: CatalogTask) -> Collection:
    """`ns` with the task at `path` swapped for `new`: a changed task without editing tasks/."""
    parent, _, name = path.rpartition(".")
    collection = ns.collections[parent]
    del collection.tasks[name]
    collection.add_task(new, name=name)
    return ns


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=False,
    runs_in="host",
    confirm="what will be removed",
    help={"dry_run": "only print"},
)
def prune_with_new_doc(c: Context, dry_run: bool = False) -> None:
    """Remove what is ours and dead, said differently."""


@task(
    klass=CatalogTask,
    category="session",
    safe_for_agents=False,
    runs_in="host",
    confirm="what will be removed",
    help={"dry_run": "only print what would be removed", "older_than": "age in days"},
)
def prune_with_new_argument(c: Context, dry_run: bool = False, older_than: int = 7) -> None:
    """Remove what is ours and dead (orphan or exited containers, lone SSH folders)."""


@task(
    klass=CatalogTask,
    category="demo",
    safe_for_agents=True,
    runs_in="anywhere",
    legacy_names=["old-demo"],
    aliases=["show"],
    iterable=["tag"],
    help={"color": "print in color", "tag": "a tag (repeatable)", "name": "who to greet"},
)
def demo(c: Context, name: str, color: bool = True, tag: list[str] | None = None) -> None:
    """Greet someone.

    Only the first paragraph reaches the recipe and the catalog.
    """


@task(
    klass=CatalogTask,
    category="demo",
    safe_for_agents=True,
    runs_in="anywhere",
    help={"name": "who"},
)
def undocumented_argument(c: Context, name: str, loud: bool = False) -> None:
    """Has an argument without help."""


@task
def plain(c: Context) -> None:
    """A task declared without catalog metadata."""


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """An empty folder standing in for the repository, with the committed catalog in it."""
    (tmp_path / "agents").mkdir()
    shutil.copy(REPOSITORY / catalog.CATALOG, tmp_path / catalog.CATALOG)
    return tmp_path


@pytest.fixture
def consumed_help() -> Iterator[None]:
    """Let Invoke build its parser as `inv` does before running a task: that empties Task.help."""
    ns = namespace()
    saved = {path: dict(ns[path].help) for path in ns.task_names}
    ns.to_contexts()
    yield
    for path, help_ in saved.items():
        ns[path].help = help_


def test_every_task_is_described_with_its_metadata() -> None:
    ns = namespace()
    specs = {spec.path: spec for spec in commands.describe(ns)}

    assert sorted(specs) == sorted(ns.task_names)
    for path, spec in specs.items():
        task_ = ns[path]
        assert spec.category == task_.category
        assert spec.safe_for_agents == task_.safe_for_agents
        assert spec.runs_in == task_.runs_in in ("host", "anywhere")
        assert spec.example == task_.example and spec.example
        assert spec.confirm == task_.confirm
        assert spec.safe_for_agents or spec.confirm
        assert set(task_.legacy_names) <= set(spec.aliases)
        assert spec.summary


def test_legacy_recipe_names_are_kept() -> None:
    aliases = {alias for spec in commands.describe(namespace()) for alias in spec.aliases}

    assert {
        "codex-container-build",
        "codex-container-run",
        "codex-session-start",
        "codex-session-stop",
    } <= aliases


def test_every_argument_of_every_task_has_help(consumed_help: None) -> None:
    # Runs after Invoke emptied Task.help, as inside `inv commands.generate`.
    specs = commands.describe(namespace())

    catalog.check_specs(specs)
    assert all(parameter.help for spec in specs for parameter in spec.parameters)


def test_session_start_options_are_read_as_invoke_parses_them() -> None:
    start = next(s for s in commands.describe(namespace()) if s.path == "session.start")
    options = {parameter.flag: parameter for parameter in start.parameters}

    assert list(options) == ["--manifest", "--session", "--dry-run", "--parallel", "--send-goal"]
    assert options["--manifest"].required
    assert options["--session"].repeatable and options["--session"].default == ()
    assert not options["--dry-run"].takes_value and options["--dry-run"].default is False
    assert options["--parallel"].default == 8 and not options["--parallel"].required


def test_flags_are_long_dashed_and_true_switches_are_inverted() -> None:
    ns = Collection()
    ns.add_collection(Collection("demo", demo))

    [spec] = commands.describe(ns)

    assert spec.aliases == ("old-demo", "demo-show")
    assert spec.summary == "Greet someone."
    assert [(p.flag, p.required, p.takes_value, p.repeatable) for p in spec.parameters] == [
        ("--name", True, True, False),
        ("--no-color", False, False, False),
        ("--tag", False, True, True),
    ]


def test_describing_leaves_invoke_its_help() -> None:
    ns = Collection()
    ns.add_collection(Collection("demo", demo))

    commands.describe(ns)

    assert {argument.help for argument in demo.get_arguments()} == {
        "print in color",
        "a tag (repeatable)",
        "who to greet",
    }
    demo.help = dict(demo.argument_help)


def test_missing_help_and_plain_tasks_are_refused(repo_copy: Path) -> None:
    missing = Collection(undocumented_argument)
    with pytest.raises(CatalogError, match="argument --loud has no help text"):
        commands.generate_files(missing, repo_copy)

    with pytest.raises(CatalogError, match="plain Invoke task"):
        commands.describe(Collection(plain))


def test_committed_files_are_what_the_generator_writes() -> None:
    # The skills included: a committed skill that is stale, missing or left over fails here.
    commands.check_files(namespace(), REPOSITORY)
    for spec in commands.describe(namespace()):
        assert (REPOSITORY / skills.skill_path(skills.SKILLS_DIR, spec)).is_file()


def test_second_generate_changes_nothing(repo_copy: Path) -> None:
    ns = namespace()
    commands.generate_files(ns, repo_copy)
    first = {path: path.read_bytes() for path in sorted(repo_copy.rglob("*")) if path.is_file()}

    assert commands.generate_files(ns, repo_copy) == []
    assert {path: path.read_bytes() for path in sorted(repo_copy.rglob("*")) if path.is_file()} == (
        first
    )


@pytest.mark.parametrize(
    ("changed", "stale"),
    [
        (prune_with_new_doc, [catalog.AGENTS_JUSTFILE, catalog.CATALOG, PRUNE_SKILL]),
        # Arguments reach Invoke through "$@": only the catalog and the skill list them.
        (prune_with_new_argument, [catalog.CATALOG, PRUNE_SKILL]),
    ],
)
def test_check_fails_after_a_task_changes_until_generate_runs(
    changed: CatalogTask, stale: list[str], repo_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    commands.generate_files(namespace(), repo_copy)
    modified = replace_task(namespace(), "session.prune", changed)

    with pytest.raises(Exit) as failure:
        commands.check_files(modified, repo_copy)

    assert failure.value.code == 1
    assert "run `uv run inv commands.generate`" in str(failure.value.message)
    diff = capsys.readouterr().out
    assert [line[6:] for line in diff.splitlines() if line.startswith("--- a/")] == stale
    commands.generate_files(modified, repo_copy)
    commands.check_files(modified, repo_copy)


def test_check_task_reports_drift_with_the_fixing_command(
    repo_copy: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    commands.generate_files(namespace(), repo_copy)
    (repo_copy / catalog.AGENTS_JUSTFILE).write_text("# edited by hand\n", encoding="utf-8")
    monkeypatch.setattr(commands, "REPOSITORY", repo_copy)
    ns = namespace()

    with pytest.raises(Exit) as failure:
        ns["commands.check"](Context())
    ns["commands.generate"](Context())
    ns["commands.check"](Context())

    assert failure.value.code == 1
    out = capsys.readouterr().out
    assert "-# edited by hand\n" in out
    assert "wrote agents/justfile\n" in out
    assert out.endswith("generated files are up to date\n")


def test_hand_catalog_entries_survive_regeneration(tmp_path: Path, hand_catalog: str) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / catalog.CATALOG).write_text(hand_catalog, encoding="utf-8")

    commands.generate_files(namespace(), tmp_path)
    merged = (tmp_path / catalog.CATALOG).read_text(encoding="utf-8")

    original = catalog.load_catalog(hand_catalog).commands
    loaded = catalog.load_catalog(merged).commands
    for key in original:
        assert entry_text(merged, key) == entry_text(hand_catalog, key)
    assert {key: loaded[key] for key in original} == original
    # The hand-written `session-list` wins over the task's entry; every other task has its own.
    assert loaded[OVERRIDING_ENTRY] == original[OVERRIDING_ENTRY]
    generated = {name for name, entry in loaded.items() if isinstance(entry, catalog.InvokeCommand)}
    recipes = {spec.recipe for spec in commands.describe(namespace())}
    assert generated == recipes - {OVERRIDING_ENTRY}
    assert commands.generate_files(namespace(), tmp_path) == []
    assert (tmp_path / catalog.CATALOG).read_text(encoding="utf-8") == merged
    commands.check_files(namespace(), tmp_path)


def test_repository_catalog_lists_every_task() -> None:
    text = (REPOSITORY / catalog.CATALOG).read_text(encoding="utf-8")
    entries = catalog.load_catalog(text).commands
    generated = {
        entry.task: name
        for name, entry in entries.items()
        if isinstance(entry, catalog.InvokeCommand)
    }

    assert sorted(generated) == sorted(namespace().task_names)
    assert all(name == path.replace(".", "-") for path, name in generated.items())


def test_collection_loads_without_pydantic_or_yaml() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('pydantic', 'yaml'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import tasks\n"
        "print(sorted(tasks.ns.task_names))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "commands.generate" in result.stdout
