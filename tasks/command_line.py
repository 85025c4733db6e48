"""What `inv` says about a command line it cannot parse: one line, the closest name, exit code 2.

Invoke's parser reports an unknown task or option (`No idea what 'session.lst' is!`) and an option
given without its value (`Flag '--manifest' needed value and was not given one!`) with exit code
1 and no hint, while the tasks' own checks of their input say `error: …` with exit code 2. The
parser here is Invoke's, with its errors said like the tasks': the error names the task being
parsed, and the message the token or the option, so the answer can name the closest task or
option. `tasks.py` installs it for `inv`; `import tasks` changes nothing.
"""

from __future__ import annotations

import ast
import re

from invoke.exceptions import Exit, ParseError
from invoke.parser import Parser, ParseResult
from invoke.program import Program

_UNKNOWN = re.compile(r"No idea what (?P<token>'.*'|\".*\") is!")
_NO_VALUE = re.compile(r"Flag (?P<flag>'.*') needed value and was not given one!")


class CommandLineParser(Parser):
    """Invoke's parser; its errors are one `error: …` line with exit code 2."""

    def parse_argv(self, argv: list[str]) -> ParseResult:
        try:
            return super().parse_argv(argv)
        except ParseError as exc:
            raise Exit(f"error: {self.explain(exc)}", code=2) from None

    def explain(self, exc: ParseError) -> str:
        """The parser's complaint, said as the tasks say theirs, with the closest name."""
        from orchestrator.errors import did_you_mean

        message = str(exc)
        context = exc.context
        task = context.name if context is not None else None
        no_value = _NO_VALUE.fullmatch(message)
        if no_value:
            return f"{ast.literal_eval(no_value['flag'])} needs a value"
        unknown = _UNKNOWN.fullmatch(message)
        if unknown is None:
            return message
        token = str(ast.literal_eval(unknown["token"]))
        if token.startswith("-") and context is not None and task is not None:
            flags = [str(name) for name in [*context.flags, *context.inverse_flags]]
            option = token.split("=", 1)[0]
            return f"{task} has no option {option}{did_you_mean(option, flags)}"
        hint = did_you_mean(token, [str(name) for name in self.contexts])
        if token.startswith("-"):
            return f"no option {token}: options come after the task's name{hint}"
        if task is not None and not hint:
            return f"{task} takes options only, not {token!r} (give them as --name VALUE)"
        return f"no task {token!r}{hint}; 'uv run inv --list' lists them"


def install() -> None:
    """Make every `Program` (the one `inv` runs) parse task arguments with `CommandLineParser`.

    `Program.run` loads this collection before it parses the tasks' arguments, so installing it
    while `tasks.py` is imported is in time for the command line being run.
    """

    def make_parser(program: Program) -> Parser:
        return CommandLineParser(
            initial=program.initial_context,
            contexts=program.collection.to_contexts(
                ignore_unknown_help=program.config.tasks.ignore_unknown_help
            ),
        )

    Program._make_parser = make_parser  # type: ignore[method-assign,assignment]
