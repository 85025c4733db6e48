"""The command catalog: every Invoke task rendered as a just recipe and as an agent catalog entry.

The Invoke collection is the only definition. `tasks/commands.py` reads it into `TaskSpec`s and
this module renders them, so the generator never imports Invoke and a test can feed it any tasks
it likes. Everything here is text in, text out, except `read_generated` and `write_generated` at
the end.

Entries of `agents/extra_commands.yml` whose `origin` is not `invoke` belong to people. The merge
works on the file's text, not on parsed YAML, so that their comments, quoting and order survive a
regeneration byte for byte. A hand-written entry named like a generated one overrides it: the
generated entry of that name is not written.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from orchestrator.errors import CatalogError

GENERATE_COMMAND = "inv commands.generate"
CHECK_COMMAND = "inv commands.check"
ORIGIN = "invoke"

ROOT_JUSTFILE = "justfile"
AGENTS_JUSTFILE = "agents/justfile"
CATALOG = "agents/extra_commands.yml"
GENERATED_FILES = (ROOT_JUSTFILE, AGENTS_JUSTFILE, CATALOG)

# Task paths end up unquoted in recipe bodies and as just identifiers: keep them to what is inert
# in both (Invoke's own names are lower-case words joined by dots and dashes).
_TASK_PATH = re.compile(r"[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*")
_RECIPE_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_-]*")
_FLAG = r"^--[a-z0-9][a-z0-9-]*$"

Default = str | int | float | bool | None | tuple[str, ...]

# Where a task can run: "host" needs the Docker engine or the orchestrator's session registry, so
# only the orchestrator's machine has it; "anywhere" also works inside a session container (the
# repository checkout, uv and git, no Docker).
RunsIn = Literal["host", "anywhere"]
RUNS_IN: tuple[RunsIn, ...] = ("host", "anywhere")


# --- what the task layer hands over ---------------------------------------------------------------


@dataclass(frozen=True)
class ParameterSpec:
    """One command-line option of a task, as a caller types it (long flag only)."""

    flag: str
    help: str | None
    required: bool
    default: Default
    takes_value: bool = True
    repeatable: bool = False


@dataclass(frozen=True)
class TaskSpec:
    """One Invoke task with the metadata it declares about itself."""

    path: str
    doc: str | None
    category: str
    safe_for_agents: bool
    runs_in: RunsIn
    aliases: tuple[str, ...] = ()
    parameters: tuple[ParameterSpec, ...] = ()
    example: str | None = None
    confirm: str | None = None

    @property
    def recipe(self) -> str:
        """The just recipe name; dots are not allowed there, and dashes read like Invoke's."""
        return self.path.replace(".", "-")

    @property
    def group(self) -> str | None:
        """The namespace the task lives in, which is also its just group."""
        namespace, _, _ = self.path.rpartition(".")
        return namespace or None

    @property
    def summary(self) -> str:
        """The docstring's first paragraph on one line: what `inv --list` and `just --list` show."""
        paragraph = (self.doc or "").strip().split("\n\n", 1)[0]
        return " ".join(paragraph.split())


def check_specs(specs: Sequence[TaskSpec]) -> None:
    """Refuse tasks that would render into something broken, naming every problem at once."""
    raise_problems(spec_problems(specs))


def spec_problems(specs: Sequence[TaskSpec]) -> list[str]:
    """What is wrong with the tasks' metadata, one line per problem; empty when nothing is."""
    problems = [problem for spec in specs for problem in _spec_problems(spec)]
    return problems + _name_clashes(specs)


def raise_problems(problems: Sequence[str]) -> None:
    """One `CatalogError` listing every problem, when there is any."""
    if problems:
        raise CatalogError("cannot generate from the tasks:\n  " + "\n  ".join(problems))


def _spec_problems(spec: TaskSpec) -> list[str]:
    problems: list[str] = []
    if not _TASK_PATH.fullmatch(spec.path):
        problems.append(f"task {spec.path!r}: name must be lower-case words joined by '.' or '-'")
    if not spec.summary:
        problems.append(f"task {spec.path!r}: has no docstring")
    if not spec.category.strip():
        problems.append(f"task {spec.path!r}: has an empty category")
    problems += [
        f"task {spec.path!r}: alias {alias!r} is not a valid just recipe name"
        for alias in spec.aliases
        if not _RECIPE_NAME.fullmatch(alias)
    ]
    problems += [
        f"task {spec.path!r}: argument {parameter.flag} has no help text"
        for parameter in spec.parameters
        if not (parameter.help or "").strip()
    ]
    if spec.runs_in not in RUNS_IN:
        problems.append(
            f"task {spec.path!r}: runs_in is {spec.runs_in!r}; use one of {', '.join(RUNS_IN)}"
        )
    if not spec.safe_for_agents and not (spec.confirm or "").strip():
        problems.append(
            f"task {spec.path!r}: is not safe for agents and has no confirm= text saying what "
            "to confirm with a person first"
        )
    if spec.example is not None:
        problems += [
            f"task {spec.path!r}: example {problem}" for problem in _example_problems(spec)
        ]
    return problems


def _example_problems(spec: TaskSpec) -> list[str]:
    """An example must call this task (`just RECIPE` or `inv PATH`) with options it has."""
    example = spec.example or ""
    try:
        words = shlex.split(example)
    except ValueError as exc:
        return [f"{example!r} is not a command line: {exc}"]
    head = words[:2]
    if head not in (
        [["just", name] for name in (spec.recipe, *spec.aliases)] + [["inv", spec.path]]
    ):
        return [f"{example!r} must start with 'just {spec.recipe}' or 'inv {spec.path}'"]
    flags = {parameter.flag for parameter in spec.parameters} | {"--help"}
    given = {word.partition("=")[0] for word in words[2:] if word.startswith("--")}
    problems = [
        f"{example!r} uses {flag}, which the task has no option for"
        for flag in sorted(given - flags)
    ]
    problems += [
        f"{example!r} leaves out the required {parameter.flag}"
        for parameter in spec.parameters
        if parameter.required and parameter.flag not in given and "--help" not in given
    ]
    return problems


def _name_clashes(specs: Sequence[TaskSpec]) -> list[str]:
    owners: dict[str, str] = {}
    problems: list[str] = []
    for spec in specs:
        for name in (spec.recipe, *spec.aliases):
            if name in owners:
                problems.append(
                    f"recipe name {name!r} is used by both {owners[name]!r} and {spec.path!r}"
                )
            owners.setdefault(name, spec.path)
    return problems


# --- the catalog's schema ----------------------------------------------------------------------


class CatalogParameter(BaseModel):
    """A task option as the catalog lists it; switches take no value and default to off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flag: Annotated[str, Field(pattern=_FLAG)]
    help: Annotated[str, Field(min_length=1)]
    required: bool
    default: bool | int | float | str | list[str] | None
    takes_value: bool
    repeatable: bool


class CatalogCommand(BaseModel):
    """What every catalog entry has, whoever wrote it."""

    name: Annotated[str, Field(min_length=1)]
    origin: Annotated[str, Field(min_length=1)]
    run: Annotated[str, Field(min_length=1)]
    description: str
    category: Annotated[str, Field(min_length=1)]
    safe_for_agents: bool


class InvokeCommand(CatalogCommand):
    """An entry generated from an Invoke task; nothing in it may be edited by hand."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    origin: Literal["invoke"]
    task: Annotated[str, Field(pattern=f"^{_TASK_PATH.pattern}$")]
    parameters: list[CatalogParameter]


class HandWrittenCommand(CatalogCommand):
    """An entry written by people; it may carry whatever else its consumer understands."""

    model_config = ConfigDict(extra="allow", frozen=True)


def _entry_kind(value: Any) -> str:
    origin = value.get("origin") if isinstance(value, Mapping) else getattr(value, "origin", None)
    return "invoke" if origin == ORIGIN else "hand"


CatalogEntry = Annotated[
    Annotated[InvokeCommand, Tag("invoke")] | Annotated[HandWrittenCommand, Tag("hand")],
    Discriminator(_entry_kind),
]


class CommandCatalog(BaseModel):
    """`agents/extra_commands.yml`: the commands Codex may discover, keyed by name."""

    model_config = ConfigDict(extra="allow", frozen=True)

    commands: dict[str, CatalogEntry]

    @model_validator(mode="after")
    def _keys_are_names(self) -> CommandCatalog:
        for key, entry in self.commands.items():
            if isinstance(entry, InvokeCommand) and entry.name != key:
                raise ValueError(f"entry {key!r} is named {entry.name!r}")
        return self


def load_catalog(text: str) -> CommandCatalog:
    """Parse and validate a catalog; raises `CatalogError` with the YAML or schema problem."""
    try:
        return CommandCatalog.model_validate(_load_yaml(text, "the command catalog"))
    except ValidationError as exc:
        raise CatalogError(f"{CATALOG}: {exc}") from None


def catalog_entry(spec: TaskSpec) -> InvokeCommand:
    """The catalog entry of one task; `run` goes through just like a person would."""
    return InvokeCommand(
        name=spec.recipe,
        origin="invoke",
        run=f"just {spec.recipe}",
        description=spec.summary,
        category=spec.category,
        safe_for_agents=spec.safe_for_agents,
        task=spec.path,
        parameters=[_catalog_parameter(parameter) for parameter in spec.parameters],
    )


def _catalog_parameter(parameter: ParameterSpec) -> CatalogParameter:
    default = list(parameter.default) if isinstance(parameter.default, tuple) else parameter.default
    return CatalogParameter(
        flag=parameter.flag,
        help=parameter.help or "",
        required=parameter.required,
        default=default,
        takes_value=parameter.takes_value,
        repeatable=parameter.repeatable,
    )


# --- just ----------------------------------------------------------------------------------------

_GENERATED = (
    f"# Code generated by `{GENERATE_COMMAND}` from the Invoke tasks in tasks/. DO NOT EDIT."
)

_AGENTS_JUSTFILE_HEADER = f"""\
{_GENERATED}
#
# One recipe per task, named after its dotted path (`session.start` -> `session-start`), grouped by
# namespace, documented by the task's docstring; legacy recipe names are aliases. Change the task
# and run `{GENERATE_COMMAND}`: `{CHECK_COMMAND}` (in `nox -s lint`) fails while this is stale.
#
# How a recipe reaches its task:
# - `set positional-arguments` and "$@" give Invoke every argument as one word, untouched, so paths
#   with spaces or quotes arrive intact (`{{{{args}}}}` would split and re-parse them);
# - `uv run --project <repository>` runs Invoke from the project's own locked environment, and
#   `inv --search-root <repository>` finds tasks.py, whatever the working directory;
# - the repository is the parent of `source_directory()`, this file's folder, which holds whether
#   just found this file directly or through the root justfile's import;
# - [no-cd] keeps the caller's working directory, so a relative path means what the caller typed.
"""

_ROOT_JUSTFILE = f"""\
{_GENERATED}
#
# The recipes live in agents/justfile; importing it makes them, and their legacy aliases, work from
# the repository root as well.

import 'agents/justfile'
"""

_INVOKE = (
    '_invoke := "uv run --quiet --project " + quote(_repository) + '
    '" inv --search-root " + quote(_repository)'
)


def render_agents_justfile(specs: Sequence[TaskSpec]) -> str:
    """`agents/justfile`: the settings, how to reach Invoke, then one recipe per task."""
    check_specs(specs)
    preamble = [
        _AGENTS_JUSTFILE_HEADER,
        "set positional-arguments\n",
        "_repository := parent_directory(source_directory())\n" + _INVOKE + "\n",
    ]
    recipes = [_recipe(spec) for spec in sorted(specs, key=lambda spec: spec.path)]
    return "\n".join(preamble + recipes)


def render_root_justfile() -> str:
    """The root `justfile`: only the import that exposes the agent recipes there."""
    return _ROOT_JUSTFILE


def _recipe(spec: TaskSpec) -> str:
    lines = [f"# {spec.summary}"]
    if spec.group:
        lines.append(f"[group('{spec.group}')]")
    lines += [
        f"[metadata('{ORIGIN}', '{spec.path}')]",
        "[no-cd]",
        f"{spec.recipe} *args:",
        f'    @{{{{ _invoke }}}} {spec.path} "$@"',
    ]
    text = "\n".join(lines) + "\n"
    if spec.aliases:
        text += "\n" + "".join(f"alias {alias} := {spec.recipe}\n" for alias in spec.aliases)
    return text


# --- the catalog file ----------------------------------------------------------------------------

_CATALOG_HEADER = f"""\
# Code generated by `{GENERATE_COMMAND}` from the Invoke tasks in tasks/: the entries with
# `origin: invoke`. DO NOT EDIT those; change the task and regenerate (`{CHECK_COMMAND}` fails
# while they are stale). Entries with any other origin are written by hand and kept byte for byte.

"""
_HEADER_MARK = f"# Code generated by `{GENERATE_COMMAND}`"
_DEFAULT_INDENT = 2


@dataclass(frozen=True)
class _Block:
    """A run of lines of the `commands:` mapping: one entry, or what lies between entries."""

    text: str
    key: str | None = None
    origin: str | None = None

    @property
    def is_entry(self) -> bool:
        return self.key is not None

    @property
    def is_blank(self) -> bool:
        return not self.is_entry and not self.text.strip()


def render_catalog(specs: Sequence[TaskSpec], existing: str | None = None) -> str:
    """The catalog with one entry per task, merged into `existing` without touching other entries.

    Our entries replace their old text where it was, new ones are appended in task order, entries
    of tasks that are gone are dropped. A hand-written entry with the name of a generated one
    overrides it: it is kept as written, and the generated entry of that name is not written (nor
    kept, if an earlier generation wrote it). The result is parsed back and compared with the
    inputs, so a file this merge cannot handle fails loudly instead of losing someone's entry.
    """
    check_specs(specs)
    generated = {entry.name: entry for entry in map(catalog_entry, sorted(specs, key=_path))}
    preamble, indent, blocks, trailer = _split_catalog(existing or "")
    _refuse_duplicates(blocks)
    hand = {block.key: block for block in blocks if block.key is not None and not _ours(block)}
    entries = {name: entry for name, entry in generated.items() if name not in hand}
    merged = _merge_blocks(blocks, entries, indent)
    text = _with_header(preamble) + "".join(block.text for block in merged) + trailer
    _verify_merge(hand, text, entries)
    return text


def _path(spec: TaskSpec) -> str:
    return spec.path


def render_entry(entry: InvokeCommand, indent: int = _DEFAULT_INDENT) -> str:
    """One entry as YAML nested `indent` spaces under `commands:`; stable for a given entry."""
    text = yaml.dump(
        {entry.name: entry.model_dump(mode="json")},
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1_000_000,
    )
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in _lines(text))


# The C loader when PyYAML has it: the merge parses a catalog several times over.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(yaml.SafeDumper):
    """Indents block sequences under their key, as people write them (the Filare catalog does)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _split_catalog(text: str) -> tuple[str, int, list[_Block], str]:
    """Cut the file into what precedes `commands:`, the entry blocks, and what follows them."""
    lines = _lines(text)
    start = next((i for i, line in enumerate(lines) if _is_commands_key(line)), None)
    if start is None:
        if _load_yaml(text, CATALOG) not in (None, {}):
            raise CatalogError(f"{CATALOG}: has no top-level 'commands:' mapping")
        separator = "" if text.endswith("\n") or not text else "\n"
        return text + separator + "commands:\n", _DEFAULT_INDENT, [], ""
    end = next(
        (i for i in range(start + 1, len(lines)) if _is_top_level_content(lines[i])), len(lines)
    )
    body = lines[start + 1 : end]
    indent = _entry_indent(body)
    preamble = "".join(lines[: start + 1])
    return preamble, indent, _blocks(body, indent), "".join(lines[end:])


def _lines(text: str) -> list[str]:
    # Split on "\n" only: str.splitlines would also cut at characters YAML keeps inside a scalar.
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _is_commands_key(line: str) -> bool:
    match = re.fullmatch(r"commands:[ \t]*(#.*)?\r?\n?", line)
    if match is None and re.match(r"commands:\s*\S", line):
        raise CatalogError(f"{CATALOG}: 'commands' must be a block mapping, one entry per key")
    return match is not None


def _is_top_level_content(line: str) -> bool:
    return bool(line.strip()) and not line[0].isspace() and not line.startswith("#")


def _indent_of(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _entry_indent(body: Sequence[str]) -> int:
    content = (line for line in body if line.strip() and not line.lstrip().startswith("#"))
    first = next(content, None)
    return _DEFAULT_INDENT if first is None else _indent_of(first)


def _blocks(body: Sequence[str], indent: int) -> list[_Block]:
    """Entries run from their key to the next line at or left of the key; blanks stay between."""
    blocks: list[_Block] = []
    i = 0
    while i < len(body):
        if not _is_entry_key(body[i], indent):
            blocks.append(_Block(body[i]))
            i += 1
            continue
        end = i + 1
        while end < len(body) and not _ends_entry(body[end], indent):
            end += 1
        last = end
        while last > i + 1 and not body[last - 1].strip():
            last -= 1
        blocks.append(_entry_block("".join(body[i:last])))
        blocks += [_Block(line) for line in body[last:end]]
        i = end
    return blocks


def _is_entry_key(line: str, indent: int) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#") and _indent_of(line) == indent


def _ends_entry(line: str, indent: int) -> bool:
    return bool(line.strip()) and _indent_of(line) <= indent


def _entry_block(text: str) -> _Block:
    parsed = _load_yaml(text, f"{CATALOG} entry starting {text.splitlines()[0].strip()!r}")
    if not isinstance(parsed, dict) or len(parsed) != 1:
        raise CatalogError(f"{CATALOG}: cannot read the entry starting {text.splitlines()[0]!r}")
    [(key, value)] = parsed.items()
    origin = value.get("origin") if isinstance(value, dict) else None
    return _Block(text, key=str(key), origin=str(origin) if origin is not None else None)


def _ours(block: _Block) -> bool:
    return block.origin == ORIGIN


def _merge_blocks(
    blocks: Sequence[_Block], entries: Mapping[str, InvokeCommand], indent: int
) -> list[_Block]:
    merged: list[_Block] = []
    placed: set[str] = set()
    for block in blocks:
        if block.key is None or not _ours(block):
            merged.append(block)
        elif block.key in entries and block.key not in placed:
            merged.append(_Block(render_entry(entries[block.key], indent), block.key, ORIGIN))
            placed.add(block.key)
        else:
            # A task that is gone, or one that a hand-written entry now overrides.
            _drop_separator(merged)
    new = [_Block(render_entry(entry, indent), name, ORIGIN) for name, entry in entries.items()]
    return _append_entries(merged, [block for block in new if block.key not in placed])


def _refuse_duplicates(blocks: Iterable[_Block]) -> None:
    """Two entries of one name are an error, except a hand-written one and the generated one it
    overrides (the generated one is then dropped)."""
    seen: set[tuple[str, bool]] = set()
    for block in blocks:
        if block.key is None:
            continue
        if (block.key, _ours(block)) in seen:
            raise CatalogError(f"{CATALOG}: entry {block.key!r} appears twice")
        seen.add((block.key, _ours(block)))


def _drop_separator(merged: list[_Block]) -> None:
    """Take the blank line before a dropped entry with it, so that no gap is left behind."""
    if merged and merged[-1].is_blank:
        merged.pop()


def _append_entries(merged: list[_Block], new: Sequence[_Block]) -> list[_Block]:
    """New entries go after the last entry, each after one blank line, before trailing comments."""
    if not new:
        return merged
    last = max((i for i, block in enumerate(merged) if block.is_entry), default=-1)
    head, tail = merged[: last + 1], merged[last + 1 :]
    if head and not head[-1].text.endswith("\n"):
        head[-1] = _Block(head[-1].text + "\n", head[-1].key, head[-1].origin)
    added: list[_Block] = []
    for block in new:
        if head or added:
            added.append(_Block("\n"))
        added.append(block)
    return head + added + tail


def _with_header(preamble: str) -> str:
    if preamble.startswith(_CATALOG_HEADER):
        return preamble
    if preamble.startswith(_HEADER_MARK):
        # An older wording of our own header: it ends at its first blank line.
        _, _, preamble = preamble.partition("\n\n")
    return _CATALOG_HEADER + preamble


def _verify_merge(
    hand: Mapping[str, _Block], after: str, entries: Mapping[str, InvokeCommand]
) -> None:
    new = _commands(after)
    kept = {
        key: value
        for block in hand.values()
        for key, value in _commands("commands:\n" + block.text).items()
    }
    ours = {name: entry.model_dump(mode="json") for name, entry in entries.items()}
    if new != {**kept, **ours} or [key for key in new if key in kept] != list(kept):
        raise CatalogError(
            f"{CATALOG}: merging the generated entries would change hand-written ones; "
            "check the file's indentation and comments between entries"
        )
    load_catalog(after)


def _commands(text: str) -> dict[str, Any]:
    parsed = _load_yaml(text, CATALOG) if text.strip() else None
    commands = parsed.get("commands") if isinstance(parsed, dict) else None
    return dict(commands) if isinstance(commands, dict) else {}


def _load_yaml(text: str, what: str) -> Any:
    try:
        return yaml.load(text, Loader=_LOADER)  # noqa: S506 - _LOADER is a safe loader
    except yaml.YAMLError as exc:
        raise CatalogError(f"{what}: invalid YAML: {exc}") from None


# --- the generated files -------------------------------------------------------------------------


def render_files(specs: Sequence[TaskSpec], existing_catalog: str | None) -> dict[str, str]:
    """Every generated file's text, keyed by its path relative to the repository."""
    return {
        ROOT_JUSTFILE: render_root_justfile(),
        AGENTS_JUSTFILE: render_agents_justfile(specs),
        CATALOG: render_catalog(specs, existing_catalog),
    }


def diff_files(expected: Mapping[str, str | None], actual: Mapping[str, str | None]) -> str:
    """A unified diff from the files as they are to what the generator writes; empty if equal.

    An expected None is a file the generator removes: it shows as a diff to /dev/null.
    """
    chunks: list[str] = []
    for name, text in expected.items():
        current = actual.get(name)
        if current == text:
            continue
        lines = difflib.unified_diff(
            _lines(current or ""),
            _lines(text or ""),
            fromfile=f"a/{name}" if current is not None else "/dev/null",
            tofile=f"b/{name}" if text is not None else "/dev/null",
        )
        chunks.append("".join(line if line.endswith("\n") else line + "\n" for line in lines))
    return "".join(chunks)


def read_generated(root: Path) -> dict[str, str | None]:
    """The generated files as they are on disk (None when missing), line endings untouched."""
    return {name: read_text(root / name) for name in GENERATED_FILES}


def read_text(path: Path) -> str | None:
    """A generated file's text as it is on disk (line endings untouched); None when missing."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from None


def write_generated(root: Path, files: Mapping[str, str]) -> list[str]:
    """Write the files that differ, each atomically; returns the names written."""
    current = read_generated(root)
    changed = [name for name, text in files.items() if current.get(name) != text]
    for name in changed:
        write_atomically(root / name, files[name])
    return changed


def write_atomically(path: Path, text: str) -> None:
    """Write `text` as UTF-8 to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(text.encode("utf-8"))
        Path(temporary).chmod(0o644)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
