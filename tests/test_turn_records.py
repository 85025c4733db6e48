"""Turn records on the host: what a waiting command reads at every poll."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from orchestrator import conversation, transcript
from orchestrator.registry import Registry


def record(number: str) -> conversation.TurnRecord:
    started = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return conversation.TurnRecord("s1", "bench", number, "message", started, "c0ffee", None)


def test_numbered_lists_turn_files_oldest_first(tmp_path: Path) -> None:
    for name in ("0002.json", "0010.json", "0001.json", "0003.jsonl", "12.json", "x.json"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "0004.json.tmp").write_text("{}")
    assert transcript.numbered(tmp_path, "json") == ["0001", "0002", "0010"]
    assert transcript.numbered(tmp_path / "absent", "json") == []
    assert transcript.numbered(tmp_path / "0001.json", "json") == []


def test_the_latest_record_is_the_newest_readable_one(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    assert conversation.latest_record(registry, "bench", "s1") is None
    folder = registry.session_dir("bench", "s1") / conversation.TURNS
    folder.mkdir(parents=True)
    assert conversation.latest_record(registry, "bench", "s1") is None
    for number in ("0001", "0002"):
        (folder / f"{number}.json").write_text(record(number).to_json())
    (folder / "0003.json").write_text('{"session_id": "s1"')  # cut short: skipped
    (folder / "0004.json").mkdir()  # not a file: skipped
    latest = conversation.latest_record(registry, "bench", "s1")
    assert latest == record("0002")
    assert conversation.turn_records(registry, "bench", "s1") == [record("0001"), record("0002")]


def test_times_have_one_format_whoever_wrote_them() -> None:
    from datetime import UTC, datetime, timedelta, timezone

    from orchestrator.conversation import moment

    host = datetime(2026, 12, 4, 18, 41, 17, 187111, tzinfo=UTC)
    assert moment(host) == "2026-12-04T18:41:17+00:00"
    assert moment("2026-12-04T18:41:17Z") == "2026-12-04T18:41:17+00:00"
    assert moment(host.astimezone(timezone(timedelta(hours=2)))) == "2026-12-04T18:41:17+00:00"
    assert moment("\x1b]52;c;bad") is None
    assert moment(None) is None
