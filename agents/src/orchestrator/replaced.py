"""The origin's names that a different design replaced, and the error that says what replaces each.

laurierloi/filare drove Codex in tmux inside each container (`orchestrator.io`) and planned
`docker run` from Python (`orchestrator.runtime`, `orchestrator.run_container`). Here turns go
through Codex's app-server in the container, and `scripts/run_codex_container.sh` is the one place
`docker run` is spelled. Importing one of those names fails rather than offering a look-alike
that would behave differently; the message names the replacement.
"""

from __future__ import annotations

from collections.abc import Mapping

GUIDE = "docs/migrating-from-filare.md"


def replaced(module: str, name: str, replacements: Mapping[str, str]) -> Exception:
    """The error for `module.name`: an ImportError naming the replacement of an origin name,
    else the AttributeError Python would raise."""
    what = replacements.get(name)
    if what is None:
        return AttributeError(f"module {module!r} has no attribute {name!r}")
    return ImportError(replacement_message(f"{module}.{name}", what), name=module)


def replacement_message(old: str, what: str) -> str:
    return f"{old} of the Filare project was replaced: {what} (see {GUIDE})"
