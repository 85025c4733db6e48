"""`commands.*`: derive the just recipes, the agent command catalog and the Codex skills from the
Invoke tasks.

The Invoke collection is the one definition of what can be run. `generate` writes
`agents/justfile`, the root `justfile`, the `origin: invoke` entries of
`agents/extra_commands.yml`, one skill per task under `.agents/skills/`, the session's skills under
`agents/session/skills/`, `agents/session/skills-config.toml` and the README's table of tasks
from it; `check` fails with a diff
when they drifted, so that CI (`nox -s lint`) catches a task changed without regenerating. Reading
the collection happens here; rendering lives in `orchestrator.catalog` and `orchestrator.skills`,
which do not know about Invoke.
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invoke.collection import Collection
from invoke.context import Context
from invoke.exceptions import Exit
from invoke.tasks import task

from tasks.catalog_task import CatalogTask

if TYPE_CHECKING:
    from orchestrator.catalog import ParameterSpec, TaskSpec

REPOSITORY = Path(__file__).resolve().parents[1]


@task(
    klass=CatalogTask,
    category="meta",
    safe_for_agents=True,
    runs_in="anywhere",
    example="just commands-generate",
)
def generate(c: Context) -> None:
    """Regenerate the just recipes, the catalog's invoke entries and the skills from the tasks.

    Also the README's table of tasks.
    """
    changes = generate_files(_namespace(), REPOSITORY)
    print("\n".join(changes) or "generated files are up to date")


@task(
    klass=CatalogTask,
    category="meta",
    safe_for_agents=True,
    runs_in="anywhere",
    example="just commands-check",
)
def check(c: Context) -> None:
    """Fail with a diff when the recipes, the catalog or the skills no longer match the tasks."""
    check_files(_namespace(), REPOSITORY)
    print("generated files are up to date")


def generate_files(ns: Collection, root: Path) -> list[str]:
    """Write what differs under `root`, remove stale generated skills; one line per file changed.

    Everything is rendered before anything is written, so a refused task changes nothing.
    """
    from orchestrator import catalog, skills, task_table

    specs = describe(ns)
    skills.check_specs(specs)
    files = catalog.render_files(specs, catalog.read_generated(root)[catalog.CATALOG])
    skill_files = skills.render_skill_files(specs, skills.read_skill_files(root))
    readme = catalog.read_text(root / task_table.README)
    new_readme = task_table.render_readme(specs, readme)
    written = catalog.write_generated(root, files)
    written_skills, removed = skills.write_skill_files(root, skill_files)
    if new_readme is not None and new_readme != readme:
        catalog.write_atomically(root / task_table.README, new_readme)
        written.append(task_table.README)
    return [f"wrote {name}" for name in written + written_skills] + [
        f"removed {name}" for name in removed
    ]


def check_files(ns: Collection, root: Path) -> None:
    """Print the diff and exit 1 when the files under `root` are not what `generate` writes."""
    from orchestrator import catalog, skills, task_table

    specs = describe(ns)
    skills.check_specs(specs)
    current = catalog.read_generated(root)
    current_skills = skills.read_skill_files(root)
    readme = catalog.read_text(root / task_table.README)
    expected = {
        **catalog.render_files(specs, current[catalog.CATALOG]),
        **skills.render_skill_files(specs, current_skills),
        task_table.README: task_table.render_readme(specs, readme),
    }
    diff = catalog.diff_files(expected, {**current, **current_skills, task_table.README: readme})
    if diff:
        print(diff, end="")
        raise Exit(
            f"error: generated files are out of date; run `uv run {catalog.GENERATE_COMMAND}`",
            code=1,
        )


def describe(ns: Collection) -> list[TaskSpec]:
    """Every task of `ns` with its metadata, sorted by dotted path."""
    return [
        _describe_task(path, ns[path], aliases) for path, aliases in sorted(ns.task_names.items())
    ]


def _namespace() -> Collection:
    from tasks.collection import namespace

    return namespace()


def _describe_task(path: str, task: Any, aliases: list[str]) -> TaskSpec:
    from orchestrator.catalog import TaskSpec
    from orchestrator.errors import CatalogError

    if not isinstance(task, CatalogTask):
        raise CatalogError(
            f"task {path!r} is a plain Invoke task; declare it with "
            "@task(klass=CatalogTask, category=..., safe_for_agents=..., runs_in=...)"
        )
    just_aliases = [*task.legacy_names, *(alias.replace(".", "-") for alias in aliases)]
    return TaskSpec(
        path=path,
        doc=inspect.getdoc(task.body),
        category=task.category,
        safe_for_agents=task.safe_for_agents,
        runs_in=task.runs_in,
        aliases=tuple(dict.fromkeys(just_aliases)),
        parameters=_parameters(path, task),
        example=task.example,
        confirm=task.confirm,
    )


def _parameters(path: str, task: CatalogTask) -> tuple[ParameterSpec, ...]:
    from orchestrator.errors import CatalogError

    # get_arguments() pops the help it uses: work on a copy and leave the task as Invoke needs it.
    probe = copy.copy(task)
    probe.help = dict(task.argument_help)
    try:
        arguments = probe.get_arguments(ignore_unknown_help=False)
    except ValueError as exc:
        raise CatalogError(f"task {path!r}: {exc}") from None
    declared = task.argspec(task.body).parameters
    return tuple(_parameter(argument, declared[str(argument.name)]) for argument in arguments)


def _parameter(argument: Any, declared: inspect.Parameter) -> ParameterSpec:
    """The option as typed on the command line, with the meaning Invoke gives it."""
    from orchestrator.catalog import ParameterSpec

    name = argument.names[0]
    if argument.kind is bool:
        inverse = argument.default is True
        return ParameterSpec(
            flag=f"--no-{name}" if inverse else f"--{name}",
            help=argument.help,
            required=False,
            default=False,
            takes_value=False,
        )
    repeatable = argument.kind is list
    default = argument.default
    return ParameterSpec(
        flag=f"--{name}",
        help=argument.help,
        required=declared.default is inspect.Parameter.empty,
        default=tuple(default) if repeatable else default,
        takes_value=True,
        repeatable=repeatable,
    )
