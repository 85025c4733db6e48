"""`FolderEvents`: a wait that ends when a session writes into a watched folder (real inotify)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from orchestrator.folder_events import MIN_GAP_SECONDS, FolderEvents


def _write_later(path: Path, delay: float) -> threading.Thread:
    def write() -> None:
        time.sleep(delay)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("{}")
        tmp.replace(path)  # as a session writes `N.exit`: by rename

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_file_renamed_into_a_watched_folder_ends_the_wait(tmp_path: Path) -> None:
    with FolderEvents([tmp_path / "missing", tmp_path]) as changes:
        assert changes.watching
        writer = _write_later(tmp_path / "1.exit", 0.1)
        started = time.monotonic()
        changes.wait(30)
        waited = time.monotonic() - started
        writer.join()
    assert waited < 15, "the wait ran to its timeout: the rename did not wake it"


def test_a_link_a_file_or_a_missing_folder_is_not_watched(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    (tmp_path / "file").write_text("")
    folders = [tmp_path / "link", tmp_path / "file", tmp_path / "missing"]
    with FolderEvents(folders) as changes:
        assert not changes.watching
        writer = _write_later(target / "1.exit", 0.0)
        started = time.monotonic()
        changes.wait(0.3)
        writer.join()
        assert time.monotonic() - started >= 0.3


def test_a_flood_of_writes_wakes_the_waiter_at_most_once_a_gap(tmp_path: Path) -> None:
    stop = threading.Event()

    def flood() -> None:
        n = 0
        while not stop.is_set():
            (tmp_path / f"{n % 50}.jsonl").write_text("x")
            n += 1

    flooder = threading.Thread(target=flood)
    flooder.start()
    try:
        with FolderEvents([tmp_path]) as changes:
            changes.wait(1)
            started = time.monotonic()
            for _ in range(20):
                changes.wait(1)
            waited = time.monotonic() - started
    finally:
        stop.set()
        flooder.join()
    assert waited >= 20 * MIN_GAP_SECONDS * 0.99
