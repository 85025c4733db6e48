"""The origin's `orchestrator.io` (tmux send-keys and capture-pane in a container), replaced.

Turns go through Codex's app-server in the session's container: `from orchestrator.io import
IoTarget` and the other origin names fail with an ImportError that names their replacement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

from orchestrator.replaced import replaced

_SEND = (
    "orchestrator.conversation.send(registry, [session_id], message) starts a Codex turn in the "
    "session (`inv session.send --session ID --message TEXT`); nothing is typed into tmux"
)
_SNAPSHOT = (
    "orchestrator.conversation.log(registry, session_id) yields the session's transcript "
    "(`inv session.log --session ID`); `inv session.attach --session ID` opens Codex's terminal"
)
REPLACED = {
    "IoTarget": "a session is named by its id alone (no container or tmux session to name): "
    + _SEND,
    "build_send_command": _SEND,
    "send_message": _SEND,
    "build_snapshot_command": _SNAPSHOT,
    "snapshot_transcript": _SNAPSHOT,
}

# Hidden from type checkers, which would otherwise accept any name of this module.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> NoReturn:
        raise replaced(__name__, name, REPLACED)
