"""Docker calls asked first and read later (`engine.Call`, `engine.ContainerQuery`), against a
fake docker CLI on PATH that records each call."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from orchestrator import engine
from orchestrator.engine import Call, ContainerQuery, ImageQuery, _parse_created
from orchestrator.errors import EngineError
from orchestrator.listing import survey
from orchestrator.plan import session_filters
from orchestrator.registry import Registry

LINE = "\t".join(
    [
        "c0ffee",
        "filare-dev-a",
        "running",
        "filare-codex:smoke",
        "2026-11-27 10:30:00 +0000 UTC",
        "Up 3 minutes (healthy)",
        "a",
        "dev",
        "me",
        "/ws/a",
        "/m.yml",
        "",
        "",
    ]
)


def fake_docker(folder: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """A `docker` that appends its arguments to `calls` and then runs `body`."""
    calls = folder / "calls"
    fake = folder / "docker"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n{body}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return calls


def test_a_survey_reads_the_answer_asked_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_docker(tmp_path, monkeypatch, f"printf '%s\\n' '{LINE}'")
    registry = Registry(tmp_path / "state")
    with ContainerQuery(session_filters(registry.root)) as asked:
        fleet = survey(registry, asked=asked)
    assert [(v.session_id, v.status) for v in fleet.sessions] == [("a", "orphan")]
    assert len(calls.read_text().splitlines()) == 1


def test_an_answer_to_another_question_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_docker(tmp_path, monkeypatch, "true")
    registry = Registry(tmp_path / "state")
    with ContainerQuery(session_filters(tmp_path / "other")) as asked:
        assert survey(registry, asked=asked).sessions == []
    asked_for = [line.rsplit("=", 1)[-1] for line in calls.read_text().splitlines()]
    assert sorted(asked_for) == sorted([str(tmp_path / "other"), str(registry.root)])


def test_a_failed_answer_is_the_engine_error_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch, "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    call = Call("ps")
    with pytest.raises(EngineError, match="Docker daemon is not running"):
        call.output()
    with pytest.raises(EngineError, match="Docker daemon is not running"):
        call.output()


def test_a_call_nobody_reads_ends_with_its_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    fake_docker(tmp_path, monkeypatch, f"echo $$ > {pid_file}\nexec sleep 30")
    with Call("ps"):
        while not pid_file.exists() or not pid_file.read_text().strip():
            time.sleep(0.01)
        pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_without_a_docker_cli_a_call_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineError, match=r"^docker CLI not found"):
        engine.list_containers(["label=x=y"])


def test_creation_times_are_read_as_docker_prints_them() -> None:
    assert _parse_created("2026-11-27 10:30:00 +0000 UTC") == datetime(
        2026, 11, 27, 10, 30, tzinfo=UTC
    )
    assert _parse_created("2026-11-27 12:30:00 +0200 CEST") == datetime(
        2026, 11, 27, 10, 30, tzinfo=UTC
    )
    for text in ("", "2026-11-27", "2026-11-27 10:30:00 UTC", "yesterday at noon +0000"):
        assert _parse_created(text) is None


def test_an_image_query_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_docker(tmp_path, monkeypatch, "echo 'Error: No such image: gone:1' >&2; exit 1")
    with ImageQuery(["here:1", "gone:1"]) as asked:
        assert asked.missing() == {"gone:1"}
    fake_docker(tmp_path, monkeypatch, "echo 'Cannot connect to the Docker daemon' >&2; exit 1")
    with pytest.raises(EngineError, match="Docker daemon is not running"):
        ImageQuery(["here:1"]).missing()
    assert ImageQuery([]).missing() == set()


def test_a_bytes_call_carries_any_byte_and_names_whose_call_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * 4
    fake_docker(tmp_path, monkeypatch, "cat")
    assert engine.docker_bytes("exec", "-i", "c", about="session 'a'", stdin=data) == data
    fake_docker(tmp_path, monkeypatch, "echo 'Error: No such container: c' >&2; exit 1")
    with pytest.raises(EngineError, match=r"^session 'a': .*No such container: c"):
        engine.docker_bytes("exec", "c", about="session 'a'")
    fake_docker(tmp_path, monkeypatch, "exec sleep 30")
    with pytest.raises(EngineError, match=r"^session 'a': 'docker exec' did not answer within"):
        engine.docker_bytes("exec", "c", about="session 'a'", timeout=0.2)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(EngineError, match=r"^docker CLI not found"):
        engine.docker_bytes("exec", "c", about="session 'a'")
