"""Limits on the host's side: the manifest's fields, the inbox file, the budget at every send,
the figures and states `session.list --json` shows, and `session.budget`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import conversation, limits
from orchestrator.errors import InputError, ManifestError
from orchestrator.manifest import load_manifest
from orchestrator.registry import Registry, SessionState
from orchestrator.report import agent_cell
from orchestrator.spec import Limits
from tests.conftest import WriteManifest, session
from tests.test_registry import state
from tests.test_transcript import add_turn, view, write_turn

THREAD = [{"type": "thread.started", "thread_id": "01a22205-3385-7810-b62b-3e8143142500"}]


def test_limits_merge_field_by_field_and_notify_is_an_argv(write_manifest: WriteManifest) -> None:
    path = write_manifest(
        {
            "defaults": {
                "limits": {"tokens": 1000, "turn_seconds": 600},
                "notify": ["notify-send", "filare"],
            },
            "sessions": [session("a"), session("b", limits={"tokens": 50, "stall_seconds": 30})],
        }
    )
    a, b = load_manifest(path)
    assert a.limits == Limits(1000, 600.0, None)
    assert b.limits == Limits(50, 600.0, 30.0)
    assert a.notify == b.notify == ("notify-send", "filare")
    (one,) = load_manifest(write_manifest(session("c", notify="/usr/local/bin/ping-me")))
    assert (one.limits, one.notify) == (Limits(), ("/usr/local/bin/ping-me",))


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("limits", {"tokens": 0}, "field 'limits.tokens': must be greater than 0"),
        ("limits", {"turn_seconds": "soon"}, "field 'limits.turn_seconds': must be a number"),
        ("limits", {"token": 5}, "unknown field 'limits.token'"),
        ("notify", ["curl", ""], "field 'notify': must be a list of non-empty strings"),
    ],
)
def test_bad_limits_name_the_session_and_field(
    write_manifest: WriteManifest, field: str, value: object, problem: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(write_manifest(session("a", **{field: value})))
    assert f"session 'a': {problem}" in str(caught.value)


@pytest.fixture
def fleet(tmp_path: Path) -> tuple[Registry, SessionState, Path, Path]:
    registry = Registry(tmp_path / "state")
    record = registry.write(state("a").replace(container_id="c1", workspace=tmp_path / "ws"))
    folder = registry.session_dir("coder", "a")
    return registry, record, folder, conversation.transcript_folder(registry, record)


def ended(tokens: dict[str, int] | None, reason: str | None = None) -> dict[str, object]:
    interrupted = reason is not None
    return {"exit_code": int(interrupted), "interrupted": interrupted, "reason": reason,
            "tokens": tokens}  # fmt: skip


def test_the_inbox_file_is_the_manifests_limits_with_a_raised_budget_kept(
    fleet: tuple[Registry, SessionState, Path, Path],
) -> None:
    _, _, folder, transcripts = fleet
    limits.install(folder, Limits(100, 60.0, None))
    assert json.loads((folder / "inbox" / "limits.json").read_text()) == {
        "tokens": 100,
        "turn_seconds": 60.0,
        "stall_seconds": None,
    }
    assert limits.raise_budget("a", folder, transcripts, 500).tokens == 500
    assert limits.current(folder) == Limits(500, 60.0, None)
    # A later start from the manifest keeps the raise; a manifest that asks for more wins.
    assert limits.install(folder, Limits(100, 60.0, None)).tokens == 500
    assert limits.install(folder, Limits(900, 60.0, None)).tokens == 900


def test_a_send_past_the_budget_is_refused_until_it_is_raised(
    fleet: tuple[Registry, SessionState, Path, Path],
) -> None:
    registry, record, folder, transcripts = fleet
    limits.install(folder, Limits(tokens=10))
    add_turn(registry, record, "0001")
    write_turn(transcripts, "0001", THREAD, ended({"turn": 15, "conversation": 15}, "over budget"))
    with pytest.raises(InputError, match=r"over its token budget \(15 of 10 tokens\).*"
                       r"session.budget --session a --tokens N"):  # fmt: skip
        conversation._check_budget(registry, view(registry, record))
    status = conversation.latest_status(registry, view(registry, record))
    assert status is not None and status.status == "over budget"
    agent = conversation.agent_json(registry, view(registry, record))
    assert (agent["agent"], agent["tokens_conversation"], agent["tokens_budget"]) == (
        "over budget",
        15,
        10,
    )
    assert agent_cell(agent) == "over budget 15/10 tok"
    with pytest.raises(InputError, match="has spent 15 tokens; a budget of 12"):
        limits.raise_budget("a", folder, transcripts, 12)
    limits.set_budget(registry, "a", 40)
    conversation._check_budget(registry, view(registry, record))
    assert conversation.agent_json(registry, view(registry, record))["agent"] == "idle"
    with pytest.raises(InputError, match="no session with id 'b'"):
        limits.set_budget(registry, "b", 40)


def test_a_rewritten_record_cannot_lower_what_the_host_saw(
    fleet: tuple[Registry, SessionState, Path, Path],
) -> None:
    registry, record, folder, transcripts = fleet
    limits.install(folder, Limits(tokens=100))
    add_turn(registry, record, "0001")
    write_turn(transcripts, "0001", THREAD, ended({"turn": 80, "conversation": 80}))
    conversation._check_budget(registry, view(registry, record))
    # The session rewrites its record to look cheaper: the host remembers 80.
    write_turn(transcripts, "0001", THREAD, ended({"turn": 1, "conversation": 1}))
    assert limits.usage(folder, transcripts).conversation == 80


def test_figures_of_codex_exec_turns_are_their_cumulative_usage(
    fleet: tuple[Registry, SessionState, Path, Path],
) -> None:
    _, _, folder, transcripts = fleet

    def completed(total_in: int) -> list[object]:
        usage = {"input_tokens": total_in, "cached_input_tokens": 0, "output_tokens": 5}
        return [*THREAD, "not json", {"type": "turn.completed", "usage": usage}]

    write_turn(transcripts, "0001", completed(10), {"exit_code": 0, "interrupted": False})
    write_turn(transcripts, "0002", completed(30), {"exit_code": 0, "interrupted": False})
    assert limits.usage(folder, transcripts) == limits.Usage(35, 20)
    write_turn(transcripts, "0003", [], {"exit_code": 1, "tokens": {"conversation": "x"}})
    assert limits.usage(folder, transcripts) == limits.Usage(35, 20)


def test_a_silent_turn_is_stalled_and_a_long_one_timed_out(
    fleet: tuple[Registry, SessionState, Path, Path],
) -> None:
    registry, record, folder, transcripts = fleet
    limits.install(folder, Limits(turn_seconds=30, stall_seconds=5))
    add_turn(registry, record, "0001")
    write_turn(transcripts, "0001", THREAD, None)
    working = conversation.agent_json(registry, view(registry, record))
    assert (working["agent"], working["stalled_since"]) == ("working", None)
    assert isinstance(working["turn_elapsed_seconds"], int)
    (transcripts / "0001.stalled").write_text(json.dumps({"at": "2026-12-04T19:00:00Z"}))
    stalled = conversation.agent_json(registry, view(registry, record))
    assert (stalled["agent"], stalled["stalled_since"]) == ("stalled", "2026-12-04T19:00:00Z")
    (transcripts / "0001.stalled").write_text(json.dumps({"at": "\x1b]52;c;x\x07"}))
    assert conversation.agent_json(registry, view(registry, record))["agent"] == "working"
    (transcripts / "0001.exit").write_text(json.dumps(ended(None, "timed out")))
    timed_out = conversation.agent_json(registry, view(registry, record))
    assert timed_out["agent"] == "timed out"
    assert timed_out["agent_reason"] == (
        "the turn ran past turn_seconds (30 s) and was interrupted"
    )
    # A reason the daemon never writes is no limit's.
    (transcripts / "0001.exit").write_text(json.dumps(ended(None, "\x1b[2J")))
    assert conversation.agent_json(registry, view(registry, record))["agent"] == "interrupted"
