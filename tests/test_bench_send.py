"""The send cases: the baseline's `codex exec` and what the tool's send prints.

No Docker engine: pure parts of `scripts/benchmark`, and the tool asked only for its `--dry-run`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from scripts.benchmark import send

FILARE_TURN = Path(__file__).resolve().parents[1] / "docker" / "filare-turn"


def test_the_baseline_turn_types_the_flags_filare_turn_gives_codex() -> None:
    fresh = send.codex_turn_argv("filare-bench-x", None)
    assert fresh == [
        *("docker", "exec", "-i", "-w", "/home/agent/workspace", "filare-bench-x"),
        *("codex", "exec", "--json", "--dangerously-bypass-approvals-and-sandbox"),
        *("--skip-git-repo-check", "-"),
    ]
    resumed = send.codex_turn_argv("c", "0199-abc")
    assert resumed[6:9] == ["codex", "exec", "resume"]
    assert resumed[-2:] == ["0199-abc", "-"]
    # The contract with docker/filare-turn: the same flags, in the same order.
    script = FILARE_TURN.read_text()
    assert f'set -- "$@" {" ".join(send.CODEX_EXEC_FLAGS)}\n' in script
    assert '[ -z "$thread" ] || set -- "$@" resume' in script
    assert 'set -- "$@" -\n' in script


CODEX_OUTPUT = """\
{"type":"thread.started","thread_id":"01a2-b3"}
{"type":"turn.started"}
not json: codex prints warnings on stderr, but skip anything else here
{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"first"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","text":"x"}}
{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"ok"}}
{"type":"turn.completed","usage":{"input_tokens":10,"output_tokens":5}}
"""


def test_codex_events_give_the_conversation_the_last_message_and_the_outcome() -> None:
    assert send.parse_codex_events(CODEX_OUTPUT) == send.CodexTurn("01a2-b3", "ok", True)
    failed = CODEX_OUTPUT.replace('"turn.completed"', '"turn.failed"')
    assert send.parse_codex_events(failed).completed is False
    assert send.parse_codex_events("") == send.CodexTurn(None, None, False)
    assert send.parse_codex_events('[1]\n{"type": "thread.started", "thread_id": 3}\n') == (
        send.CodexTurn(None, None, False)
    )


def test_sent_results_read_the_send_table() -> None:
    table = (
        "SESSION       TURN  RESULT     MESSAGE\n"
        "send-a-solo   0003  completed  ok\n"
        "send-a-01     0003  completed  ok, and more  words\n"
        "send-a-02     -     failed\n"
    )
    assert send.sent_results(table) == {
        "send-a-solo": ("completed", "ok"),
        "send-a-01": ("completed", "ok, and more  words"),
        "send-a-02": ("failed", ""),
    }


def test_the_send_manifest_runs_the_real_image_on_the_scripted_models_codex_home() -> None:
    data = yaml.safe_load(send.send_manifest_text(["s-solo", "s-01"], "filare-codex:t"))
    assert data["defaults"]["image"] == "filare-codex:t"
    assert data["defaults"]["codex_dir"] == "outputs/codex-send"
    assert data["defaults"]["env_file"] == "outputs/model.env"
    assert [(s["id"], s["role"], s["workspace"]) for s in data["sessions"]] == [
        ("s-solo", "bench", "outputs/ws/s-solo"),
        ("s-01", "bench", "outputs/ws/s-01"),
    ]
