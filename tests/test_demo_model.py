"""The no-account demo's parts that need no engine: the scripted answers, the model's process,
the Codex home it writes, and the warning for sessions whose Codex could not log in."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

from orchestrator import demo
from orchestrator.demo_model import COMMAND, SCRIPTED, answer
from orchestrator.errors import InputError
from orchestrator.preflight import login_warnings
from orchestrator.scripted_model import API_KEY_ENV, Recorded, parse_sse
from orchestrator.spec import SessionSpec


def request(*items: Mapping[str, object]) -> Recorded:
    return Recorded("POST", "/v1/responses", {}, {"input": list(items)}, scripted=False)


def reply_items(recorded: Recorded) -> list[dict[str, object]]:
    events = parse_sse(b"".join(_sse(e) for e in answer(recorded).events).decode())
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


def _sse(event: dict[str, object]) -> bytes:
    from orchestrator.scripted_model import sse

    return sse(event)


def test_a_turn_runs_the_command_then_answers_with_its_output_saying_it_is_scripted() -> None:
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    (call,) = reply_items(request(user))
    assert call["type"] == "function_call" and COMMAND in str(call["arguments"])
    output = {
        "type": "function_call_output",
        "output": "Chunk ID: 1\nProcess exited with code 0\nOutput:\n/home/agent/workspace\n",
    }
    (said,) = reply_items(request(user, call, output))
    text = said["content"][0]["text"]  # type: ignore[index]
    assert "exited with code 0 and printed:\n\n/home/agent/workspace\n" in text
    assert text.endswith(SCRIPTED)


def test_the_model_serves_from_a_process_of_its_own_until_stopped(tmp_path: Path) -> None:
    folder = tmp_path / "demo-model"
    model = demo.start_model(folder)
    try:
        assert model.started
        assert demo.start_model(folder) == demo.ScriptedModel(model.pid, model.port, False)
        body = json.dumps({"input": []}).encode()
        url = f"http://127.0.0.1:{model.port}/v1/responses"
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10) as got:
            assert COMMAND in got.read().decode()
    finally:
        stopped = demo.stop_model(folder)
    assert stopped is not None and stopped.pid == model.pid
    assert demo.running_model(folder) is None
    assert demo.stop_model(folder) is None
    again = demo.start_model(folder)  # on the port it had, for sessions that still name it
    try:
        assert again.port == model.port
    finally:
        demo.stop_model(folder)


def test_the_scripted_codex_home_never_replaces_a_configuration_of_someone_else(
    tmp_path: Path,
) -> None:
    home = tmp_path / "codex"
    demo.write_scripted_codex_home(home, 4242)
    config = (home / "config.toml").read_text()
    assert config.startswith(demo.SCRIPTED_CONFIG_MARK)
    assert "http://host.docker.internal:4242/v1" in config and API_KEY_ENV in config
    demo.write_scripted_codex_home(home, 4343)  # ours: rewritten
    assert ":4343/v1" in (home / "config.toml").read_text()
    own = tmp_path / "mine"
    own.mkdir()
    (own / "config.toml").write_text('model = "gpt-5"\n')
    with pytest.raises(InputError, match="a Codex configuration of its own"):
        demo.write_scripted_codex_home(own, 4242)
    assert (own / "config.toml").read_text() == 'model = "gpt-5"\n'


def spec(tmp_path: Path, session_id: str, env: str, **overrides: object) -> SessionSpec:
    env_file = tmp_path / f"{session_id}.env"
    env_file.write_text(env)
    fields: dict[str, object] = {
        "id": session_id,
        "role": "coder",
        "branch": "b",
        "workspace": tmp_path / "ws",
        "env_file": env_file,
        "ssh_key": tmp_path / "key",
        "codex_dir": tmp_path / f"codex-{session_id}",
        "image": "filare-codex",
        "owner": "me",
        **overrides,
    }
    return SessionSpec(**fields)  # type: ignore[arg-type]


def test_sessions_that_could_not_log_in_are_warned_about_once(tmp_path: Path) -> None:
    bare = spec(tmp_path, "bare", "OTHER=1\n")
    keyed = spec(tmp_path, "keyed", "# a comment\nOPENAI_API_KEY=sk-secret-value\n")
    smoke = spec(tmp_path, "smoke", "", image="filare-codex:smoke")
    logged_in = spec(tmp_path, "login", "")
    logged_in.codex_dir.mkdir()
    (logged_in.codex_dir / "auth.json").write_text("{}")
    scripted = spec(tmp_path, "scripted", f"{API_KEY_ENV}=x\n")
    demo.write_scripted_codex_home(scripted.codex_dir, 1)
    unkeyed = spec(tmp_path, "unkeyed", "OPENAI_API_KEY=x\n")  # its provider reads another
    demo.write_scripted_codex_home(unkeyed.codex_dir, 1)

    assert login_warnings([keyed, smoke, logged_in, scripted]) == []
    (line,) = login_warnings([bare, keyed, unkeyed, smoke])
    assert line.startswith("warning: sessions 'bare', 'unkeyed': no Codex login (")
    assert "run 'codex login', or add OPENAI_API_KEY to the env file" in line
    assert "sk-secret-value" not in line
    many = [spec(tmp_path, f"s{n}", "") for n in range(5)]
    (line,) = login_warnings(many)
    assert "sessions 's0', 's1', 's2' and 2 more:" in line


def test_throwaway_env_files_carry_the_scripted_key(tmp_path: Path) -> None:
    one = spec(tmp_path, "one", "")
    one.env_file.unlink()
    (tmp_path / "key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    made = demo.ensure_throwaway_files([one], env={API_KEY_ENV: "scripted"})
    assert made == [one.env_file]
    assert f"{API_KEY_ENV}=scripted\n" in one.env_file.read_text()
    assert one.env_file.stat().st_mode & 0o777 == 0o600
