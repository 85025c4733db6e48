"""Codex skills: every Invoke task rendered as an Agent Skills folder with its `SKILL.md`.

Codex discovers skills under `.agents/skills/` from its working folder up to the repository root,
and under `$CODEX_HOME/skills`. Each task becomes `.agents/skills/<recipe>/SKILL.md`: YAML front
matter (`name`, `description`, and a `metadata` mapping that marks it as generated), then what
Codex needs to run the task well: when to use it, the command, every option, the exit codes, an
example and, for a task that is not safe for agents, what to confirm with a person first.

Where a task can run decides what a session gets. A session's Codex works in a container without
Docker, so only the skills of tasks that run `anywhere` are also written to
`agents/session/skills/` (copied into each session's own `$CODEX_HOME/skills`), and
`agents/session/skills-config.toml` disables the host-only skills by name (appended to each
session's Codex `config.toml`), since a seeded workspace carries them in its `.agents/skills/`.

A `SKILL.md` without the generated marker is written by people and kept byte for byte. A
generated skill whose task is gone is removed. Rendering is text in, text out; reading and writing
the folders happen in `read_skill_files` and `write_skill_files` at the end, which never follow a
symlink. This module imports neither PyYAML nor pydantic at import time: the runtime only needs
`session_skills_dir` and `session_skills_config`.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from orchestrator.errors import CatalogError, OrchestratorError

if TYPE_CHECKING:
    from orchestrator.catalog import Default, ParameterSpec, TaskSpec

SKILL_FILE = "SKILL.md"
SKILLS_DIR = ".agents/skills"
SESSION_SKILLS_DIR = "agents/session/skills"
SESSION_CONFIG = "agents/session/skills-config.toml"
SKILL_ROOTS = (SKILLS_DIR, SESSION_SKILLS_DIR)

GENERATED_BY = "generated-by"

# The Agent Skills format: lower-case letters and digits in words joined by single hyphens.
_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
MAX_NAME = 64
MAX_DESCRIPTION = 1024
# What Codex shows the model of a description; a longer one is cut.
SHOWN_DESCRIPTION = 280


# --- for the runtime -----------------------------------------------------------------------------


def session_skills_dir(repository: Path) -> Path:
    """The folder whose skill folders go into each session's `$CODEX_HOME/skills`."""
    return repository / SESSION_SKILLS_DIR


def session_skills_config(repository: Path) -> str:
    """The TOML fragment that goes at the end of each session's Codex `config.toml`."""
    path = repository / SESSION_CONFIG
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise OrchestratorError(
            f"{path} is missing: run `uv run inv commands.generate` in {repository}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OrchestratorError(f"{path}: cannot read: {exc}") from None


# --- checking the tasks ---------------------------------------------------------------------------


def check_specs(specs: Sequence[TaskSpec]) -> None:
    """Refuse tasks that would render into a broken recipe, catalog entry or skill, all at once."""
    from orchestrator import catalog

    catalog.raise_problems(catalog.spec_problems(specs) + skill_problems(specs))


def skill_problems(specs: Sequence[TaskSpec]) -> list[str]:
    """What the Agent Skills format refuses: the skill's name and description limits."""
    problems: list[str] = []
    for spec in specs:
        if not _NAME.fullmatch(spec.recipe) or len(spec.recipe) > MAX_NAME:
            problems.append(
                f"task {spec.path!r}: skill name {spec.recipe!r} must be at most {MAX_NAME} "
                "lower-case letters and digits in words joined by single hyphens"
            )
        description = skill_description(spec)
        if len(description) > SHOWN_DESCRIPTION:
            problems.append(
                f"task {spec.path!r}: skill description is {len(description)} characters, more "
                f"than the {SHOWN_DESCRIPTION} Codex shows the model; shorten the docstring's "
                "first paragraph"
            )
    return problems


# --- one skill ------------------------------------------------------------------------------------


def skill_path(root: str, spec: TaskSpec) -> str:
    """`<root>/<recipe>/SKILL.md`, relative to the repository."""
    return f"{root}/{spec.recipe}/{SKILL_FILE}"


def skill_description(spec: TaskSpec) -> str:
    """What the task does (its summary) and when to use it, on one line.

    What matters most comes first and the whole stays within `SHOWN_DESCRIPTION`: Codex 0.171.0
    cuts a description at about 300 characters in what it sends the model.
    """
    ask = "" if spec.safe_for_agents else " Ask a person before running it."
    where = (
        " Host only: needs the Docker engine (not inside a session)."
        if spec.runs_in == "host"
        else " Runs on the host and inside sessions."
    )
    return f"{spec.summary}{ask}{where} Task {spec.path}: just {spec.recipe}."


def render_skill(spec: TaskSpec) -> str:
    """The task's `SKILL.md`: front matter, then the instructions; stable for a given task."""
    from orchestrator.catalog import GENERATE_COMMAND

    sections = [
        _front_matter(spec),
        f"<!-- Code generated by `{GENERATE_COMMAND}` from the Invoke task {spec.path} in "
        "tasks/. DO NOT EDIT. -->",
        f"# {spec.recipe}",
        "## When to use it\n\n" + _docstring(spec),
    ]
    if not spec.safe_for_agents:
        sections.append("## Ask a person first\n\n" + _confirm(spec))
    sections += [
        "## Where it runs\n\n" + _where(spec),
        "## Command\n\n" + _command(spec),
        "## Options\n\n" + _options(spec),
        "## Output\n\n" + _output(spec),
        "## Exit codes\n\n" + _EXIT_CODES,
        "## Example\n\n" + _example(spec),
    ]
    return "\n\n".join(section.rstrip("\n") for section in sections) + "\n"


def _front_matter(spec: TaskSpec) -> str:
    import yaml

    from orchestrator.catalog import GENERATE_COMMAND

    data = {
        "name": spec.recipe,
        "description": skill_description(spec),
        "metadata": {GENERATED_BY: GENERATE_COMMAND, "task": spec.path, "runs-in": spec.runs_in},
    }
    text = yaml.safe_dump(
        data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1_000_000
    )
    return f"---\n{text}---"


def _docstring(spec: TaskSpec) -> str:
    lines = [line.rstrip() for line in (spec.doc or "").strip().splitlines()]
    return "\n".join(lines)


def _where(spec: TaskSpec) -> str:
    if spec.runs_in == "host":
        return (
            "Only on the orchestrator's machine: this task needs the Docker engine or the "
            "orchestrator's session registry. A session container has neither, so do not run it "
            "inside one; ask the person running the orchestrator instead."
        )
    return (
        "Anywhere this repository is checked out with `uv` and `git`: on the orchestrator's "
        "machine and inside a session container. It needs no Docker."
    )


def _command(spec: TaskSpec) -> str:
    options = " [OPTIONS]" if spec.parameters else ""
    lines = [
        "From any folder of the repository's checkout:",
        "",
        "```sh",
        f"just {spec.recipe}{options}",
        f"uv run inv {spec.path}{options}",
        "```",
        "",
        "Both run the same Invoke task; `just` passes every argument through untouched (it comes "
        "with the project's dev tools: `uv run just` when it is not on PATH), and `inv` needs no "
        f"`uv run` when the project's virtualenv is active. `just {spec.recipe} --help` lists "
        "the options.",
    ]
    if spec.aliases:
        names = ", ".join(f"`just {alias}`" for alias in spec.aliases)
        lines += ["", f"Other names of the same recipe: {names}."]
    return "\n".join(lines)


def _options(spec: TaskSpec) -> str:
    if not spec.parameters:
        return "It takes no options."
    rows = [
        "| option | takes a value | repeatable | required | default | meaning |",
        "|---|---|---|---|---|---|",
    ]
    rows += [_option_row(parameter) for parameter in spec.parameters]
    return "\n".join(rows)


def _option_row(parameter: ParameterSpec) -> str:
    usage = (
        f"{parameter.flag} {_placeholder(parameter)}" if parameter.takes_value else parameter.flag
    )
    cells = [
        _code(usage),
        "yes" if parameter.takes_value else "no (a switch)",
        "yes (give it once per value)" if parameter.repeatable else "no",
        "yes" if parameter.required else "no",
        _default(parameter),
        _cell(parameter.help or ""),
    ]
    return "| " + " | ".join(cells) + " |"


def _placeholder(parameter: ParameterSpec) -> str:
    return parameter.flag.removeprefix("--").replace("-", "_").upper()


def _default(parameter: ParameterSpec) -> str:
    value: Default = parameter.default
    if not parameter.takes_value:
        return "off"
    if value is None or value == ():
        return "none"
    if isinstance(value, tuple):
        return ", ".join(_code(item) for item in value)
    if value == "":
        return "empty"
    return _code(str(value))


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{_cell(text)}{pad}{fence}"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _output(spec: TaskSpec) -> str:
    if any(parameter.flag == "--json" for parameter in spec.parameters):
        return (
            "Text for people on standard output by default; `--json` prints JSON instead. Use "
            "`--json` whenever you read the result yourself."
        )
    return "Text for people on standard output; it has no `--json` form."


_EXIT_CODES = """\
- `0`: success.
- `1`: an engine or system fault while acting (the Docker engine, files); standard error says \
what failed.
- `2`: bad input (a missing or unknown option, a manifest or file that cannot be used): nothing \
was started or written. Fix the input and run it again."""


def _example(spec: TaskSpec) -> str:
    example = spec.example or _built_example(spec)
    words = example.split(None, 2)
    rest = f" {words[2]}" if len(words) > 2 else ""
    return "\n".join(["```sh", f"just {spec.recipe}{rest}", f"uv run inv {spec.path}{rest}", "```"])


def _built_example(spec: TaskSpec) -> str:
    """The task with its required options, each with a placeholder value."""
    words = [f"just {spec.recipe}"]
    words += [
        f"{parameter.flag} {_placeholder(parameter)}" if parameter.takes_value else parameter.flag
        for parameter in spec.parameters
        if parameter.required
    ]
    return " ".join(words)


def _confirm(spec: TaskSpec) -> str:
    confirm = " ".join((spec.confirm or "").split()).rstrip(".")
    return (
        "This task is not safe to run on your own judgment. Before running it, confirm with a "
        f"person {confirm}. Run it only after they agreed."
    )


# --- the session's configuration -----------------------------------------------------------------


def render_session_config(specs: Sequence[TaskSpec]) -> str:
    """`[[skills.config]]` entries that disable, in a session, the skill of each host-only task."""
    from orchestrator.catalog import GENERATE_COMMAND

    header = (
        f"# Code generated by `{GENERATE_COMMAND}` from the Invoke tasks in tasks/. DO NOT EDIT.\n"
        "#\n"
        "# Appended to the config.toml of each session's Codex home. The tasks below need the\n"
        "# Docker engine or the orchestrator's session registry, which a session container does\n"
        "# not have: their skills are disabled there, including the copies a seeded workspace\n"
        f"# carries in {SKILLS_DIR}/. The skills of the tasks that run anywhere are in\n"
        f"# {SESSION_SKILLS_DIR}/.\n"
    )
    tables = [
        f'[[skills.config]]\nname = "{spec.recipe}"\nenabled = false\n'
        for spec in sorted(specs, key=_path)
        if spec.runs_in == "host"
    ]
    return "\n".join([header, *tables])


def _path(spec: TaskSpec) -> str:
    return spec.path


# --- the skill folders ---------------------------------------------------------------------------


def render_skill_files(
    specs: Sequence[TaskSpec], current: Mapping[str, str | None]
) -> dict[str, str | None]:
    """Every generated skill file's text, and None for each generated skill to remove.

    `current` is what `read_skill_files` found. Hand-written skills are not in the result, so
    nothing touches them; one named like a task's recipe is refused.
    """
    check_specs(specs)
    recipes = {spec.recipe: spec for spec in specs}
    files: dict[str, str | None] = {SESSION_CONFIG: render_session_config(specs)}
    for spec in specs:
        skill = render_skill(spec)
        files[skill_path(SKILLS_DIR, spec)] = skill
        if spec.runs_in == "anywhere":
            files[skill_path(SESSION_SKILLS_DIR, spec)] = skill
    problems: list[str] = []
    for name, text in current.items():
        if name == SESSION_CONFIG or text is None:
            continue
        if is_generated(text):
            files.setdefault(name, None)
            continue
        clash = _clashing_name(name, text, recipes)
        if clash is not None:
            problems.append(
                f"{name}: hand-written skill {clash!r} has the name of the generated skill for "
                f"task {recipes[clash].path!r}; rename one of them"
            )
    if problems:
        raise CatalogError("cannot generate the skills:\n  " + "\n  ".join(problems))
    return dict(sorted(files.items()))


def _clashing_name(name: str, text: str, recipes: Mapping[str, TaskSpec]) -> str | None:
    folder = PurePosixPath(name).parent.name
    if folder in recipes:
        return folder
    declared = (_front_matter_of(text) or {}).get("name")
    return declared if isinstance(declared, str) and declared in recipes else None


def is_generated(text: str) -> bool:
    """Whether a `SKILL.md` carries the generator's marker in its front matter's metadata."""
    from orchestrator.catalog import GENERATE_COMMAND

    metadata = (_front_matter_of(text) or {}).get("metadata")
    return isinstance(metadata, dict) and metadata.get(GENERATED_BY) == GENERATE_COMMAND


def _front_matter_of(text: str) -> dict[str, Any] | None:
    """The parsed front matter, or None when there is none or it is not a YAML mapping."""
    import yaml

    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return None
    end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
    if end is None:
        return None
    try:
        parsed = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError:
        return None
    return parsed if isinstance(parsed, dict) else None


def read_skill_files(root: Path) -> dict[str, str | None]:
    """Every `<skills folder>/<name>/SKILL.md` under `root`, and the session configuration.

    Keys are paths relative to `root`; the configuration is None when missing. A symlink for a
    skills folder, a skill folder or a `SKILL.md` is refused: nothing here reads or writes through
    one.
    """
    from orchestrator.catalog import read_text

    files: dict[str, str | None] = {SESSION_CONFIG: read_text(root / SESSION_CONFIG)}
    for skills in SKILL_ROOTS:
        _refuse_links(root, skills)
        folder = root / skills
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith("."):
                continue
            name = f"{skills}/{entry.name}"
            _refuse_link(entry, name)
            if not entry.is_dir():
                continue
            skill = entry / SKILL_FILE
            _refuse_link(skill, f"{name}/{SKILL_FILE}")
            if skill.is_file():
                files[f"{name}/{SKILL_FILE}"] = read_text(skill)
    return files


def write_skill_files(root: Path, files: Mapping[str, str | None]) -> tuple[list[str], list[str]]:
    """Write the files that differ, each atomically, and remove those mapped to None.

    A removed skill's folder goes too when nothing else is left in it. Returns the names written
    and the names removed.
    """
    from orchestrator.catalog import write_atomically

    current = read_skill_files(root)
    written: list[str] = []
    removed: list[str] = []
    for name, text in files.items():
        if current.get(name) == text:
            continue
        if text is None:
            _remove_skill(root / name)
            removed.append(name)
        else:
            write_atomically(root / name, text)
            written.append(name)
    return written, removed


def _remove_skill(path: Path) -> None:
    _refuse_link(path.parent, str(path.parent))
    _refuse_link(path, str(path))
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise CatalogError(f"{path.parent}: cannot remove: {exc}") from None


def _refuse_links(root: Path, relative: str) -> None:
    """Refuse a symlink anywhere on the way from `root` to `root/relative`."""
    path = root
    for part in PurePosixPath(relative).parts:
        path = path / part
        _refuse_link(path, str(path.relative_to(root)))


def _refuse_link(path: Path, name: str) -> None:
    if path.is_symlink():
        raise CatalogError(
            f"{name} is a symlink; skills are never read, written or removed through one: "
            "make it a real folder or file, or move it elsewhere"
        )
