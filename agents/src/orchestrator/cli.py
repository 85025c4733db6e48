"""The origin's command line (`python -m orchestrator.cli`), replaced by the Invoke tasks.

Running it, as the origin's `orchestrator-*` recipes and scripts did, names the task that replaces
the command given and exits with code 2; `from orchestrator.cli import app` raises an ImportError
saying the same.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, NoReturn

from orchestrator.replaced import replaced, replacement_message

COMMANDS = {
    "validate": "uv run inv session.validate --manifest MANIFEST",
    "start": "uv run inv session.start --manifest MANIFEST, which starts the sessions "
    "(--dry-run prints the docker run of each, as the origin's default did)",
    "resume-all": "uv run inv session.resume --all brings the sessions back; "
    "uv run inv session.attach --session ID opens Codex's terminal instead of tmux",
    "send": "uv run inv session.send --session ID --message TEXT starts a Codex turn",
    "snapshot": "uv run inv session.log --session ID --tail 50 prints the transcript; "
    "uv run inv session.attach --session ID opens Codex's terminal",
    "feedback-list": "uv run inv feedback.list",
    "feedback-add": "uv run inv feedback.add --session ID --reason TEXT",
    "feedback-resolve": "uv run inv feedback.answer --id ID --decision approved|rejected "
    "--reply TEXT, which also delivers the answer to the session",
    "dashboard": "uv run inv session.dashboard",
}
_TASKS = "the Invoke tasks (uv run inv --list)"
REPLACED = {"app": _TASKS}

# Hidden from type checkers, which would otherwise accept any name of this module.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> NoReturn:
        raise replaced(__name__, name, REPLACED)


def main(argv: list[str]) -> int:
    """Say what replaces the command in `argv`; always exit code 2, nothing is run."""
    command = next((arg for arg in argv if not arg.startswith("-")), "")
    old = f"python -m orchestrator.cli {command}".rstrip()
    print(f"error: {replacement_message(old, COMMANDS.get(command, _TASKS))}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
