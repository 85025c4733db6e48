"""The operator's notify command: one run per event, never through a shell, always time-limited.

A manifest's `notify` (in `defaults` or per session) is an argv. `session.watch` runs it once per
event with the event as one JSON object on stdin (see `orchestrator.watch`) and nothing on its
command line, so no text a session wrote can become an argument or shell syntax. The JSON holds
no secret (no env-file value, no key) and every text of the session's in it has been through
`orchestrator.untrusted.json_text`.

A notify command that fails, cannot start, or runs past its time limit (its whole process group
is killed then) is logged once, with its exit and the last line it wrote on stderr, and the event
counts as delivered: a broken or hanging notify stops neither the watcher nor any session.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Sequence

from orchestrator.untrusted import printable

DEFAULT_TIMEOUT = 10.0
# What is kept of a failing command's stderr for the log line.
MAX_STDERR_CHARS = 300


def run(argv: Sequence[str], payload: str, *, timeout: float, log: Callable[[str], None]) -> bool:
    """Run `argv` with `payload` on stdin; whether it succeeded. A failure is logged, once."""
    name = printable(argv[0] if argv else "", limit=80)
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        log(f"notify: cannot run {name}: {exc.strerror or exc}")
        return False
    try:
        _, stderr = process.communicate(payload.encode(), timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        log(f"notify: {name} ran past {timeout:g} s and was stopped")
        return False
    if process.returncode != 0:
        lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        said = f": {printable(lines[-1], limit=MAX_STDERR_CHARS)}" if lines else ""
        log(f"notify: {name} failed (exit {process.returncode}){said}")
        return False
    return True
