"""The Task class every task of this project uses: Invoke's, plus what the catalog needs.

Each task declares next to its code how `just`, the agent command catalog and the Codex skills
present it (and where it can run at all), so the generator reads one definition instead of a side
table that could drift. Library errors become
one line on stderr and the library's exit code (2 for bad input), never a traceback.

Every argument is an option (`--manifest M`), as `just` and the catalog present it: Invoke would
otherwise take arguments without a default positionally, and `inv session.start --help` would
read `--help` as the manifest. Such arguments stay required; a missing one is a one-line error.

A Ctrl-C says `interrupted` and exits with the shell's code for it, 130, instead of Invoke's
silent exit code 1; a task with more to say (the turns go on) catches it first.

Output piped into a reader that stops early (`inv session.list | head -3`, a pager quit before
the end) ends quietly with the shell's code for it, 141, instead of a BrokenPipeError traceback.

Invoke empties `Task.help` while it builds its parser (`get_arguments` pops each entry), which
happens before any task runs; `argument_help` keeps a copy so that `inv commands.generate` still
sees every argument's help.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import select
import sys
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from invoke.exceptions import Exit
from invoke.parser.argument import Argument
from invoke.tasks import Task

if TYPE_CHECKING:
    from orchestrator.catalog import RunsIn

# What a shell reports for a command killed by SIGPIPE (128 + 13): its reader went away.
EXIT_BROKEN_PIPE = 141
# What a shell reports for a command ended by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130


class CatalogTask(Task[Callable[..., Any]]):
    """An Invoke task with catalog metadata.

    - `category`: groups the catalog entry.
    - `safe_for_agents`: whether Codex may run it without asking a person.
    - `runs_in`: "host" when it needs the Docker engine or the orchestrator's session registry
      (only the orchestrator's machine has them), "anywhere" when it also works inside a session
      container (the repository checkout, uv and git, but no Docker).
    - `legacy_names`: old recipe names that stay as just aliases.
    - `example`: one command line shown in the task's skill (`just RECIPE ...` or `inv PATH ...`).
    - `confirm`: what to confirm with a person before running it; required when not safe.
    """

    def __init__(
        self,
        body: Callable[..., Any],
        *,
        category: str,
        safe_for_agents: bool,
        runs_in: RunsIn,
        legacy_names: Sequence[str] = (),
        example: str | None = None,
        confirm: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("auto_shortflags", False)
        kwargs.setdefault("positional", [])
        super().__init__(body, **kwargs)
        self.argument_help: dict[str, str] = dict(self.help)
        self.category = category
        self.safe_for_agents = safe_for_agents
        self.runs_in: RunsIn = runs_in
        self.legacy_names = tuple(legacy_names)
        self.example = example
        self.confirm = confirm

    def get_arguments(self, ignore_unknown_help: bool | None = None) -> list[Argument]:
        """Invoke's arguments, made stricter and self-describing; see `_Option`.

        Invoke takes an option's kind from its default, so an option that must be told apart
        from "not given" (default None) would be text: `timeout: float | None = None` is a
        number that is None when left out.
        """
        annotations = getattr(self.body, "__annotations__", {})
        arguments: list[Argument] = []
        for argument in super().get_arguments(ignore_unknown_help):
            if argument.default is None:
                argument.kind = _OPTIONAL_KINDS.get(str(annotations.get(argument.name)), str)
            arguments.append(_Option.of(argument))
        return arguments

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from orchestrator.errors import OrchestratorError

        # The command line uses no pydantic plugin; looking for them reads every installed
        # distribution's metadata on the first model, about 40 ms per command. A value the user
        # set is kept.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

        self._check_required(*args, **kwargs)
        try:
            result = super().__call__(*args, **kwargs)
        except OrchestratorError as exc:
            from orchestrator.untrusted import printable

            flush_stdout()
            # Errors can quote what a session wrote: shown as text, never as terminal commands.
            lines = [printable(line, newlines=True) for line in exc.problems or [str(exc)]]
            raise Exit("\n".join(f"error: {line}" for line in lines), code=exc.exit_code) from None
        except Exit:
            flush_stdout()
            raise
        except KeyboardInterrupt:
            # Invoke would exit 1 in silence; the shell's code for Ctrl-C is 130.
            flush_stdout()
            raise Exit("interrupted", code=EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            if not stdout_is_gone():
                raise
            silence_stdout()
            raise Exit(code=EXIT_BROKEN_PIPE) from None
        if not flush_stdout():
            raise Exit(code=EXIT_BROKEN_PIPE)
        return result

    def _check_required(self, *args: Any, **kwargs: Any) -> None:
        """An argument without a default that was not given: Invoke passes None, or [] for a
        repeatable one."""
        given = inspect.signature(self.body).bind_partial(*args, **kwargs).arguments
        for name, parameter in self.argspec(self.body).parameters.items():
            if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
                continue
            if parameter.default is inspect.Parameter.empty and given.get(name) in (None, []):
                flag = name.strip("_").replace("_", "-")
                raise Exit(f"error: --{flag} is required", code=2)


def stdout_is_gone() -> bool:
    """Whether standard output is a pipe (or socket) whose reader has gone away."""
    try:
        descriptor = sys.stdout.fileno()
        poller = select.poll()
        poller.register(descriptor, select.POLLOUT)
        events = poller.poll(0)
    except (AttributeError, OSError, ValueError):
        return False
    return any(event & select.POLLERR for _, event in events)


def flush_stdout() -> bool:
    """Write out what the task printed; False when the reader has gone (standard output is then
    silenced, so that the exit code the task chose still reaches the shell without a traceback)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        if not stdout_is_gone():
            raise
        silence_stdout()
        return False
    return True


def silence_stdout() -> None:
    """Point standard output at /dev/null, so that the flush at exit does not fail again (what
    Python's documentation of SIGPIPE recommends)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def flush_at_exit() -> None:
    """An `atexit` handler for Invoke's own output: buffered output whose reader went away is
    dropped quietly, instead of Python's "Exception ignored … BrokenPipeError" at exit."""
    with contextlib.suppress(BrokenPipeError):
        flush_stdout()


def quiet_broken_pipe(
    kind: type[BaseException], value: BaseException, traceback: TracebackType | None
) -> None:
    """`sys.excepthook` for Invoke's own output (`inv --list | head`): a reader that went away
    ends the program with code 141 and no traceback; anything else is reported as usual."""
    if issubclass(kind, BrokenPipeError) and stdout_is_gone():
        silence_stdout()
        sys.stderr.flush()
        os._exit(EXIT_BROKEN_PIPE)
    sys.__excepthook__(kind, value, traceback)


_KIND_WORDS = {int: "a whole number", float: "a number", str: "text", list: "text"}
_OPTIONAL_KINDS: dict[str, type] = {"int | None": int, "float | None": float}


class _Option(Argument):
    """An option as Invoke parses it, with three fixes a user meets on the command line.

    - A value that is not of the option's kind (`--parallel abc`) is a one-line error with exit
      code 2, instead of a traceback from deep in the parser.
    - A repeatable option given without a value (`--session` with the id forgotten) is an error:
      Invoke would read it as "no value given", which a task reads as "all".
    - Its help names its kind and default (`(a whole number; default: 8)`), since Invoke's own
      help shows neither for some kinds; the generated recipes, catalog and skills show it too.
    """

    @classmethod
    def of(cls, argument: Argument) -> _Option:
        option = cls(
            names=argument.names,
            kind=argument.kind,
            default=argument.default,
            help=_described(argument),
            positional=argument.positional,
            optional=argument.optional,
            incrementable=argument.incrementable,
            attr_name=argument.attr_name,
        )
        if option.kind is list:
            # Invoke starts a list with a "raw value" of [], so it never notices a missing one.
            option.raw_value = None
        return option

    @property
    def raw_value(self) -> Any:
        """Invoke's parser reads a repeatable option's raw value before it has one only when the
        option was given without a value: that is the moment to say so."""
        if self.kind is list and self._raw_value is None:
            raise Exit(f"error: --{self.name_as_flag} needs a value", code=2)
        return self._raw_value

    @raw_value.setter
    def raw_value(self, value: Any) -> None:
        self._raw_value = value

    def set_value(self, value: Any, cast: bool = True) -> None:
        try:
            super().set_value(value, cast)
        except ValueError:
            words = _KIND_WORDS.get(self.kind, self.kind.__name__)
            raise Exit(f"error: --{self.name_as_flag}: {value!r} is not {words}", code=2) from None

    @property
    def name_as_flag(self) -> str:
        return str(self.names[0]).strip("_").replace("_", "-")

    def __repr__(self) -> str:
        # Invoke's parse errors show an argument by its repr: make that the flag a user typed.
        return f"'--{self.name_as_flag}'"


def _described(argument: Argument) -> str:
    """The help text with the option's kind and default, unless it says them already."""
    text = argument.help or ""
    if argument.kind is bool:
        return text
    notes = []
    if argument.kind is list and "repeatable" not in text:
        notes.append("repeatable: give it once per value")
    elif argument.kind in (int, float):
        notes.append(_KIND_WORDS[argument.kind])
    default = argument.default
    if default not in (None, "", [], ()) and "default" not in text:
        notes.append(f"default: {default}")
    return f"{text} ({'; '.join(notes)})" if notes else text
