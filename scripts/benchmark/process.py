"""Running one measured command: explicit argv, own process group, a
timeout, wall time and peak RSS."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts.benchmark.figures import Measurement
from scripts.benchmark.settings import COMMAND_TIMEOUT, REPOSITORY


class BenchError(Exception):
    """A command the benchmark relies on failed: the figures would mean nothing."""


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    measurement: Measurement


def run(
    argv: Sequence[str],
    *,
    cwd: Path = REPOSITORY,
    env: Mapping[str, str] | None = None,
    timeout: float = COMMAND_TIMEOUT,
    check: bool = True,
    stdin: Path | None = None,
) -> Completed:
    """Run argv (no shell) to completion, timing it and reading its peak RSS from wait4(2).

    The RSS is the largest of the process and the descendants it waited for (as `time -f %M`
    reports it): for `inv` that is Python itself unless a docker CLI it ran grew larger. It is
    never below this process's own peak RSS, which a child counts until it execs (about 17 MB,
    25 MB once the scripted model's HTTP server is imported), so the benchmark must stay small.
    Its stdin is the file `stdin` (read to its end, then closed), else nothing.
    """
    expired = threading.Event()
    with contextlib.ExitStack() as files:
        out = files.enter_context(tempfile.TemporaryFile())
        err = files.enter_context(tempfile.TemporaryFile())
        source = files.enter_context(stdin.open("rb")) if stdin else subprocess.DEVNULL
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=source,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        timer = threading.Timer(timeout, _expire, (process.pid, expired))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:  # Ctrl-C: end the command (it runs in its own session) first
            _kill_group(process.pid)
            os.wait4(process.pid, 0)
            raise
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = Completed(
            tuple(argv),
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            Measurement(seconds, usage.ru_maxrss),
        )
    if expired.is_set():
        raise BenchError(f"{shlex.join(argv)}: no answer within {timeout:g} s")
    if check and result.returncode != 0:
        reason = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        raise BenchError(f"{shlex.join(argv)}: {reason[0]}")
    return result


def _expire(pid: int, expired: threading.Event) -> None:
    expired.set()
    _kill_group(pid)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def run_each(argvs: Sequence[Sequence[str]]) -> Measurement:
    """Run commands one after another; the wall time of all, the largest peak RSS."""
    started = time.perf_counter()
    peaks = [run(argv).measurement.max_rss_kb for argv in argvs]
    return Measurement(time.perf_counter() - started, max(peaks, default=0))
