"""Run a long program (an image build, debootstrap) with its output shown as it comes.

Builds take minutes, so the user sees every line at once; the last lines are also kept, so that a
failure can be explained (a TLS error, a missing package) without asking the user to scroll.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from orchestrator.errors import EngineError

TAIL_LINES = 200


@dataclass(frozen=True)
class Streamed:
    """How a streamed program ended, and the last lines it printed (stdout and stderr merged)."""

    returncode: int
    tail: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_streaming(
    argv: Sequence[str],
    *,
    timeout: float,
    what: str,
    install_hint: str = "",
    echo: Callable[[str], None] | None = None,
) -> Streamed:
    """Run `argv`, pass each output line to `echo` (stdout by default) and return how it ended.

    The program is killed when `timeout` seconds pass, or when the caller is interrupted; both
    raise instead of returning. `what` names the program in error messages, `install_hint` says
    how to get it when it is missing.
    """
    write = echo or _to_stdout
    try:
        process = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        hint = f": {install_hint}" if install_hint else ""
        raise EngineError(f"{what}: {argv[0]} not found{hint}") from None
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    timer.start()
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            tail.append(line)
            write(line)
        returncode = process.wait()
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        timer.cancel()
        if process.stdout is not None:
            process.stdout.close()
    if expired.is_set():
        raise EngineError(f"{what} did not finish within {timeout:g} s and was stopped")
    return Streamed(returncode, tuple(tail))


def _to_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
