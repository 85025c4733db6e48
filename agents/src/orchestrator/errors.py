"""The one exception family the library raises, so callers can turn any failure into one line.

`exit_code` follows the convention the tasks expose: 2 for input the user must fix (nothing was
started or written), 1 for a fault found while acting (engine, files).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class OrchestratorError(Exception):
    """A failure with a message a user can act on; never carries secret values.

    It may name several problems at once (every mistake of a manifest), one line each.
    """

    exit_code = 1

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(problems))


class InputError(OrchestratorError):
    """Bad input found before anything was changed."""

    exit_code = 2


class ManifestError(InputError):
    """A manifest, or a file it names, that cannot be used; names the file, session and field.

    `checkable`: the sessions (`SessionSpec`s) whose fields were good enough to check the files
    they name, so that one run reports those problems too.
    """

    checkable: Sequence[Any] = ()


class CatalogError(InputError):
    """Task metadata or a command catalog that the generator cannot render or merge."""


class EngineError(OrchestratorError):
    """The Docker engine could not be reached or refused a request."""


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest choice, or nothing: the hint a typo deserves."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
