"""Waking when a session writes into a folder, instead of on the next tick of a clock.

A command that waits for a turn to end (`session.send --wait`, `session.wait`,
`session.interrupt`) and looked only every 20 ms would see the end up to 20 ms late, and since
a turn's length varies little, late by steps of a whole tick. With Linux's inotify on the
folders where a turn's end is written, the wait returns as soon as a file is made or renamed
there; the tick stays, as the upper bound, for what inotify does not report (another OS, the
kernel's limits, a folder not there when the wait began).

The folders are the session's: it can write into them as fast as it likes. Their events only
wake the waiter, which then reads the session's files as before, with their bounds; a waiter
never wakes more often than every `MIN_GAP_SECONDS`, and never follows a link to watch.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

# What a flood of events from one session can cost the waiter: one look per this many seconds.
MIN_GAP_SECONDS = 0.005
# The most a wake-up reads of the event queue (its events say nothing the files do not).
MAX_DRAIN_READS = 16

_IN_CLOSE_WRITE = 0x008
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_ONLYDIR = 0x01000000
_IN_DONT_FOLLOW = 0x02000000
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_MASK = _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE | _IN_ONLYDIR | _IN_DONT_FOLLOW


class FolderEvents:
    """`wait(timeout)` sleeps until one of `folders` gets a file (written, made or renamed
    into it) or `timeout` passes. A folder that cannot be watched (missing, a link, not a
    folder, inotify's limits reached) is left to the timeout."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self._fd = _watch(folders)
        self._poll = select.poll()  # not `select.select`: a descriptor may be past 1023
        if self._fd is not None:
            self._poll.register(self._fd, select.POLLIN)
        self._last = 0.0

    @property
    def watching(self) -> bool:
        return self._fd is not None

    def wait(self, timeout: float) -> None:
        gap = self._last + MIN_GAP_SECONDS - time.monotonic()
        if gap > 0:
            time.sleep(gap)
            timeout -= gap
        if self._fd is None:
            time.sleep(max(timeout, 0.0))
        elif self._poll.poll(max(timeout, 0.0) * 1000):
            self._drain()
        self._last = time.monotonic()

    def _drain(self) -> None:
        assert self._fd is not None
        for _ in range(MAX_DRAIN_READS):
            try:
                if not os.read(self._fd, 65536):
                    return
            except BlockingIOError:
                return

    def close(self) -> None:
        if self._fd is not None:
            self._poll.unregister(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderEvents:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _watch(folders: Iterable[Path]) -> int | None:
    """An inotify descriptor watching those of `folders` it can, or None when it watches none."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = int(libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
    except (OSError, AttributeError):  # not Linux, or no inotify in its libc
        return None
    if fd < 0:
        return None
    watched = 0
    for folder in dict.fromkeys(folders):
        if int(libc.inotify_add_watch(fd, os.fsencode(folder), _MASK)) >= 0:
            watched += 1
    if not watched:
        os.close(fd)
        return None
    return fd
