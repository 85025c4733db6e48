"""The session's agent daemon (`docker/filare-agentd`) without Docker, and the host's side of it.

The daemon runs here as in a container, with its folders under a temporary home and a stand-in
for `codex app-server` (`tests/agentd_replay.py`) that replays what the real app-server of Codex
0.171.0 said in captured turns (`tests/fixtures/agentd/NAME.app.jsonl`). What the daemon writes
in the transcript must be what `codex exec --json` printed for the same scripted turn
(`NAME.exec.jsonl`, captured from the same image), so the host reads both kinds of turn alike.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from orchestrator import conversation, engine
from orchestrator.registry import Registry, SessionState
from tests.test_registry import state
from tests.test_transcript import add_turn, view

REPOSITORY = Path(__file__).resolve().parents[1]
AGENTD = REPOSITORY / "docker" / "filare-agentd"
REPLAY = Path(__file__).resolve().parent / "agentd_replay.py"
SAMPLES = Path(__file__).resolve().parent / "fixtures" / "agentd"
TRANSLATED = sorted(p.name.removesuffix(".exec.jsonl") for p in SAMPLES.glob("*.exec.jsonl"))


def load_agentd() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("filare_agentd", str(AGENTD))
    spec = importlib.util.spec_from_loader("filare_agentd", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


agentd = load_agentd()


def first_key_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose repeated keys keep their first value.

    `codex exec` prints a `web_search` item with two `id` keys, its own `item_N` and then the
    model's (`ws_1`); the daemon writes the item's `item_N` only, so that started and completed
    pair up by id as every other item's do.
    """
    found: dict[str, Any] = {}
    for key, value in pairs:
        found.setdefault(key, value)
    return found


def lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text().splitlines()
    return [json.loads(line, object_pairs_hook=first_key_wins) for line in text if line.strip()]


def same_thread(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events with the conversation's id left out: each run of Codex starts its own."""
    return [{**e, "thread_id": "T"} if "thread_id" in e else e for e in events]


def wait_for(condition: Callable[[], object], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Daemon:
    """One filare-agentd process with its container folders under `home`."""

    home: Path
    inbox: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def transcript(self) -> Path:
        return self.home / ".filare" / "transcript"

    def ready(self) -> dict[str, Any]:
        path = self.home / ".filare" / "agentd.json"
        found: dict[str, Any] = wait_for(
            lambda: path.is_file() and json.loads(path.read_text()), "ready"
        )
        return found

    def send(
        self,
        number: str,
        message: str,
        *,
        thread: str | None = None,
        instructions: str | None = None,
        boot: str | None = None,
    ) -> None:
        """What the host writes, in its order, each file by rename."""
        files = [(f"{number}.message", message)]
        if instructions is not None:
            files.append((f"{number}.instructions", json.dumps(instructions)))
        request = {"turn": number, "thread": thread, "agentd": boot or self.ready()["boot"]}
        files.append((f"{number}.json", json.dumps(request)))
        for name, text in files:
            tmp = self.inbox / f".{name}.tmp"
            tmp.write_text(text)
            tmp.replace(self.inbox / name)

    def interrupt(self, number: str) -> None:
        tmp = self.inbox / f".{number}.interrupt.tmp"
        tmp.write_text("")
        tmp.replace(self.inbox / f"{number}.interrupt")

    def end(self, number: str, timeout: float = 15.0) -> dict[str, Any]:
        path = self.transcript / f"{number}.exit"
        found: dict[str, Any] = wait_for(
            lambda: path.is_file() and json.loads(path.read_text()), f"turn {number}", timeout
        )
        return found

    def events(self, number: str) -> list[dict[str, Any]]:
        return lines(self.transcript / f"{number}.jsonl")

    def requests(self) -> list[Any]:
        return (
            [json.loads(line) for line in self.log.read_text().splitlines()]
            if self.log.exists()
            else []
        )

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=15)


StartDaemon = Callable[..., Daemon]


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[StartDaemon]:
    started: list[Daemon] = []

    def start(
        sample: str, *replay_args: str, idle: float | None = None, inbox: bool = True
    ) -> Daemon:
        home = tmp_path / "home"
        (home / ".filare" / "transcript").mkdir(parents=True, exist_ok=True)
        (home / "workspace").mkdir(exist_ok=True)
        box = tmp_path / "inbox"
        if inbox:
            box.mkdir(exist_ok=True)
        log = tmp_path / f"requests-{len(started)}.jsonl"
        codex = [
            sys.executable,
            str(REPLAY),
            str(SAMPLES / f"{sample}.app.jsonl"),
            "--log",
            str(log),
        ]
        env = {
            **os.environ,
            "HOME": str(home),
            "FILARE_AGENTD_INBOX": str(box),
            "FILARE_AGENTD_CODEX": json.dumps([*codex, *replay_args]),
        }
        if idle is not None:
            env["FILARE_AGENTD_IDLE_SECONDS"] = str(idle)
        process = subprocess.Popen([sys.executable, str(AGENTD)], env=env, stderr=subprocess.PIPE)
        daemon = Daemon(home, box, process, log)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()


# --- what the daemon writes -----------------------------------------------------------------------


@pytest.mark.parametrize("name", TRANSLATED)
def test_a_turn_through_the_app_server_is_written_as_codex_exec_prints_it(
    start_daemon: StartDaemon, name: str
) -> None:
    daemon = start_daemon(name)
    daemon.send("0001", name)
    end = daemon.end("0001")
    assert same_thread(daemon.events("0001")) == same_thread(lines(SAMPLES / f"{name}.exec.jsonl"))
    failed = name == "model_error"
    assert (end["exit_code"], end["interrupted"]) == (1 if failed else 0, False)
    assert {"started_at", "ended_at"} <= set(end)
    assert (daemon.transcript / "0001.stderr").is_file()
    assert daemon.stop() == 0
    assert not (daemon.home / ".filare" / "agentd.json").exists()


def test_the_turn_runs_unattended_in_the_workspace_under_the_role_instructions(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon("message")
    daemon.send("0001", "hello", instructions='Quotes " and\nlines')
    daemon.end("0001")
    opened = next(r for r in daemon.requests() if r.get("method") == "thread/start")
    assert opened["params"] == {
        "cwd": str(daemon.home / "workspace"),
        "approvalPolicy": "never",
        "sandbox": "danger-full-access",
        "developerInstructions": 'Quotes " and\nlines',
    }
    started = next(r for r in daemon.requests() if r.get("method") == "turn/start")
    thread = daemon.events("0001")[0]["thread_id"]
    assert started["params"] == {"threadId": thread, "input": [{"type": "text", "text": "hello"}]}
    # The next turn continues the conversation the app-server holds: no resume needed.
    daemon.send("0002", "again", thread=thread)
    daemon.end("0002")
    methods = [r.get("method") for r in daemon.requests() if isinstance(r, dict)]
    assert methods.count("initialize") == 1 and "thread/resume" not in methods
    assert methods.count("turn/start") == 2


def test_an_interrupted_turn_ends_interrupted_and_stops_the_app_server(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon("interrupted")
    daemon.send("0001", "think slowly")
    wait_for(
        lambda: (daemon.transcript / "0001.jsonl").is_file() and len(daemon.events("0001")) == 2,
        "turn.started",
    )
    daemon.interrupt("0001")
    end = daemon.end("0001")
    assert (end["exit_code"], end["interrupted"]) == (1, True)
    # As `codex exec` interrupted by SIGINT: nothing after turn.started.
    assert [e["type"] for e in daemon.events("0001")] == ["thread.started", "turn.started"]
    interrupt = next(r for r in daemon.requests() if r.get("method") == "turn/interrupt")
    assert interrupt["params"]["threadId"] == daemon.events("0001")[0]["thread_id"]
    # Stopping the app-server ends the commands the interrupted turn left running.
    wait_for(lambda: daemon.requests()[-1:] == ["stdin closed"], "the app-server to stop")
    assert wait_for(lambda: daemon.ready()["codex"] is None, "the ready file to say so") is True


def test_a_turn_interrupted_before_it_starts_is_not_sent_to_codex(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon("message")
    daemon.interrupt("0001")
    daemon.send("0001", "never mind")
    end = daemon.end("0001")
    assert end["interrupted"] is True
    assert "turn/start" not in [r.get("method") for r in daemon.requests() if isinstance(r, dict)]


def test_an_app_server_that_dies_fails_the_turn_and_the_next_turn_starts_another(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start_daemon("message", "--die-after", "6")
    daemon.send("0001", "first")
    end = daemon.end("0001")
    assert (end["exit_code"], end["interrupted"]) == (1, False)
    last = daemon.events("0001")[-1]
    assert last["type"] == "turn.failed"
    assert "app-server ended during the turn (exit code 3)" in last["error"]["message"]
    assert daemon.ready()["codex"] is None
    thread = daemon.events("0001")[0]["thread_id"]
    daemon.send("0002", "second", thread=thread)
    assert daemon.end("0002")["exit_code"] == 1  # the stand-in dies again, at the same place
    methods = [r.get("method") for r in daemon.requests() if isinstance(r, dict)]
    assert methods.count("initialize") == 2 and "thread/resume" in methods


def test_a_turn_for_an_earlier_life_of_the_daemon_is_refused_not_run(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon("message")
    daemon.send("0001", "late", boot="0123456789abcdef")
    end = daemon.end("0001")
    assert (end["exit_code"], end["interrupted"]) == (1, False)
    (failed,) = daemon.events("0001")
    assert "sent while the session's agent was restarting" in failed["error"]["message"]
    assert daemon.requests() == []  # Codex never started


def test_a_restarted_daemon_takes_only_new_turns(start_daemon: StartDaemon) -> None:
    first = start_daemon("message")
    first.send("0001", "one")
    first.end("0001")
    assert first.stop() == 0
    state_file = first.home / ".filare" / "agentd" / "state.json"
    assert json.loads(state_file.read_text())["last_turn"] == 1
    second = start_daemon("message")
    second.ready()
    second.send("0002", "two")
    assert second.end("0002")["exit_code"] == 0
    assert len(second.events("0001")) == len(first.events("0001"))  # turn 1 not run again
    assert second.stop() == 0


def test_an_idle_app_server_stops_and_the_next_turn_starts_it_again(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon("message", idle=0.3)
    daemon.send("0001", "one")
    daemon.end("0001")
    wait_for(lambda: daemon.ready()["codex"] is None, "the idle app-server to stop")
    assert daemon.requests()[-1] == "stdin closed"


def test_attach_stops_the_idle_app_server_then_runs_codex_on_the_conversation(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    daemon = start_daemon("message")
    daemon.send("0001", "hello")
    daemon.end("0001")
    assert daemon.ready()["codex"] is not None
    thread = daemon.events("0001")[0]["thread_id"]
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "codex").write_text('#!/bin/sh\necho "$@"\n')
    (folder / "codex").chmod(0o755)
    env = {**os.environ, "HOME": str(daemon.home), "PATH": f"{folder}:{os.environ['PATH']}"}
    attach = [sys.executable, str(AGENTD), "--attach"]
    ran = subprocess.run([*attach, thread], env=env, capture_output=True, text=True, timeout=30)
    assert ran.stdout.split() == [
        "--no-daemon",
        "--dangerously-bypass-approvals-and-sandbox",
        "resume",
        thread,
    ]
    assert daemon.ready()["codex"] is None
    assert daemon.requests()[-1] == "stdin closed"
    refused = subprocess.run([*attach, "-rf /"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "is not a thread id" in refused.stderr


# --- limits ---------------------------------------------------------------------------------------


def set_limits(daemon_or_inbox: Daemon | Path, **limits: object) -> None:
    """What the host writes (by rename) into the read-only inbox: the session's limits."""
    inbox = daemon_or_inbox.inbox if isinstance(daemon_or_inbox, Daemon) else daemon_or_inbox
    inbox.mkdir(exist_ok=True)
    tmp = inbox / ".limits.json.tmp"
    tmp.write_text(json.dumps(limits))
    tmp.replace(inbox / "limits.json")


def test_the_turn_that_passes_the_budget_is_interrupted_and_the_next_refused_until_raised(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    # The captured turn counts 15 tokens: a budget of 10 is passed by the first turn.
    set_limits(tmp_path / "inbox", tokens=10)
    daemon = start_daemon("message")
    daemon.send("0001", "one")
    end = daemon.end("0001")
    assert (end["interrupted"], end["reason"]) == (True, "over budget")
    assert end["tokens"] == {"turn": 15, "conversation": 15}
    assert (
        "passed its token budget (15 of 10 tokens)"
        in (daemon.transcript / "0001.stderr").read_text()
    )
    thread = daemon.events("0001")[0]["thread_id"]
    daemon.send("0002", "two", thread=thread)
    refused = daemon.end("0002")
    assert (refused["exit_code"], refused["reason"]) == (1, "over budget")
    (failed,) = daemon.events("0002")
    assert "over its token budget (15 of 10 tokens)" in failed["error"]["message"]
    methods = [r.get("method") for r in daemon.requests() if isinstance(r, dict)]
    assert methods.count("turn/start") == 1
    # Raised: the conversation goes on where it was.
    set_limits(daemon, tokens=100)
    daemon.send("0003", "three", thread=thread)
    third = daemon.end("0003")
    assert (third["exit_code"], third["reason"]) == (0, None)
    # The stand-in's new app-server counts 15 in all: the total known already, said again.
    assert third["tokens"] == {"turn": 0, "conversation": 15}
    assert daemon.stop() == 0


def test_a_turn_past_turn_seconds_is_interrupted_as_timed_out_and_a_silence_is_a_stall(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    set_limits(tmp_path / "inbox", turn_seconds=1.5, stall_seconds=0.3)
    daemon = start_daemon("interrupted")
    daemon.send("0001", "think slowly")
    stalled = wait_for(
        lambda: (
            (daemon.transcript / "0001.stalled").is_file()
            and json.loads((daemon.transcript / "0001.stalled").read_text())
        ),
        "the stall",
    )
    assert stalled["seconds"] == 0.3 and stalled["at"].endswith("Z")
    assert not (daemon.transcript / "0001.exit").exists()  # a stall alone ends nothing
    end = daemon.end("0001")
    assert (end["exit_code"], end["interrupted"], end["reason"]) == (1, True, "timed out")
    assert not (daemon.transcript / "0001.stalled").exists()
    assert "ran past turn_seconds (1.5 s)" in (daemon.transcript / "0001.stderr").read_text()
    assert "turn/interrupt" in [r.get("method") for r in daemon.requests() if isinstance(r, dict)]


def test_limits_that_are_no_numbers_are_no_limits() -> None:
    limits = agentd.Limits.read(Path("/nonexistent/limits.json"))
    assert (limits.tokens, limits.turn_seconds, limits.stall_seconds) == (None, None, None)
    assert agentd.total_tokens({"total": {"totalTokens": 15}}) == 15
    assert agentd.total_tokens({"total": {"inputTokens": 10, "outputTokens": 5}}) == 15
    assert agentd.total_tokens({"total": {"totalTokens": True}}) is None
    assert agentd.total_tokens("15") is None


def test_a_turn_counts_what_it_spent_whether_or_not_codex_restored_the_conversations_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".filare" / "agentd").mkdir(parents=True)
    thread = "01a22205-3385-7810-b62b-3e8143142500"

    def count(turn_id: str | None, total: int, last: int) -> dict[str, Any]:
        usage = {"total": {"totalTokens": total}, "last": {"totalTokens": last}}
        return {"threadId": thread, "turnId": turn_id, "tokenUsage": usage}

    class Server:
        counts: dict[str, int]

    # The conversation spent 100 before this app-server opened it; this turn spends 30, then
    # 20. Codex restores its count (said again on resume, at the turn's start and after the
    # turn's requests), or starts again at 0.
    scripts = {
        "restored, replayed": [("u1", 100, 15), ("u2", 100, 15), ("u2", 130, 30), ("u2", 150, 20),
                               ("u2", 150, 20)],
        "restored, said at the start": [("u2", 100, 15), ("u2", 130, 30), ("u2", 150, 20)],
        "restored": [("u2", 130, 30), ("u2", 150, 20)],
        "not restored": [("u2", 30, 30), ("u2", 50, 20)],
    }  # fmt: skip
    for name, script in scripts.items():
        daemon = agentd.Daemon()
        daemon.server = Server()
        daemon.server.counts = {}
        daemon.totals = {thread: 100}
        turn = agentd.Turn("0002", thread, "go on", None)
        turn.translator = agentd.Translator(thread)
        turn.tokens_before = 100
        daemon.turn = turn
        first, *rest = script
        daemon.counted(count(*first))  # before the turn's id is known: kept for later
        turn.turn_id = "u2"
        for early in turn.early_counts:
            daemon.counted(early)
        for one in rest:
            daemon.counted(count(*one))
        assert (turn.spent, turn.tokens, daemon.totals[thread]) == (50, 150, 150), name


def test_limits_hold_across_a_restart_of_the_daemon(
    start_daemon: StartDaemon, tmp_path: Path
) -> None:
    set_limits(tmp_path / "inbox", tokens=10)
    daemon = start_daemon("message")
    first = daemon.ready()
    daemon.send("0001", "one")
    assert daemon.end("0001")["reason"] == "over budget"
    thread = daemon.events("0001")[0]["thread_id"]
    # `filare-agentd --restart` signals it: the same process starts a new life.
    daemon.process.send_signal(signal.SIGUSR2)
    again = wait_for(
        lambda: (ready := daemon.ready())["boot"] != first["boot"] and ready, "a new life"
    )
    assert again["pid"] == first["pid"] == daemon.process.pid
    daemon.send("0002", "two", thread=thread, boot=again["boot"])
    assert daemon.end("0002")["reason"] == "over budget"
    # Codex was not even started for it: the daemon remembers the conversation's count.
    assert [r.get("method") for r in daemon.requests() if isinstance(r, dict)].count(
        "initialize"
    ) == 1
    assert daemon.stop() == 0


def test_a_turn_working_when_the_daemon_restarts_ends_interrupted(
    start_daemon: StartDaemon,
) -> None:
    daemon = start_daemon("interrupted")
    first = daemon.ready()
    daemon.send("0001", "think slowly")
    wait_for(lambda: (daemon.transcript / "0001.jsonl").is_file(), "the turn")
    daemon.process.send_signal(signal.SIGUSR2)
    end = daemon.end("0001")
    assert (end["exit_code"], end["interrupted"]) == (1, True)
    assert "daemon restarted" in (daemon.transcript / "0001.stderr").read_text()
    assert wait_for(lambda: daemon.ready()["boot"] != first["boot"], "a new life")
    assert daemon.stop() == 0


def test_without_an_inbox_the_daemon_only_keeps_the_container_up(start_daemon: StartDaemon) -> None:
    daemon = start_daemon("message", inbox=False)
    time.sleep(0.5)
    assert daemon.process.poll() is None
    assert not (daemon.home / ".filare" / "agentd.json").exists()
    assert daemon.stop() == 0


# --- the translation, case by case ----------------------------------------------------------------


def test_notifications_of_another_thread_or_turn_are_not_this_turns() -> None:
    translator = agentd.Translator("t1")
    translator.turn_id = "u1"
    item = {"type": "agentMessage", "id": "m", "text": "hi"}
    assert translator.notification("item/completed", {"threadId": "t2", "item": item}) == []
    assert (
        translator.notification("item/completed", {"threadId": "t1", "turnId": "u0", "item": item})
        == []
    )
    (mine,) = translator.notification(
        "item/completed", {"threadId": "t1", "turnId": "u1", "item": item}
    )
    assert mine == {
        "type": "item.completed",
        "item": {"id": "item_0", "type": "agent_message", "text": "hi"},
    }


def test_a_failed_turn_completes_its_plan_then_says_why() -> None:
    translator = agentd.Translator("t1")
    plan = {"threadId": "t1", "plan": [{"step": "a", "status": "completed"}]}
    assert translator.notification("turn/plan/updated", plan)[0]["type"] == "item.started"
    error = {"message": "Quota exceeded", "additionalDetails": "try later"}
    assert translator.ended("failed", error) == [
        {
            "type": "item.completed",
            "item": {
                "id": "item_0",
                "type": "todo_list",
                "items": [{"text": "a", "completed": True}],
            },
        },
        {"type": "turn.failed", "error": {"message": "Quota exceeded (try later)"}},
    ]
    assert translator.ended("interrupted", None) == []


def test_items_without_a_summary_or_a_known_type() -> None:
    translator = agentd.Translator("t1")
    reasoning = {"type": "reasoning", "id": "r", "summary": [], "content": ["raw thought"]}
    (event,) = translator.notification("item/completed", {"item": reasoning})
    assert event["item"]["text"] == "raw thought"
    empty = {"type": "reasoning", "id": "r2", "summary": [], "content": []}
    assert translator.notification("item/completed", {"item": empty}) == []
    assert (
        translator.notification(
            "item/completed", {"item": {"type": "contextCompaction", "id": "c"}}
        )
        == []
    )
    declined = {"type": "fileChange", "id": "f", "changes": [], "status": "declined"}
    (change,) = translator.notification("item/completed", {"item": declined})
    assert change["item"]["status"] == "failed"
    assert change["item"]["id"] == "item_1"  # numbered in the order items appear


# --- the host's side ------------------------------------------------------------------------------


@pytest.fixture
def session(tmp_path: Path) -> tuple[Registry, SessionState]:
    registry = Registry(tmp_path / "state")
    record = registry.write(
        state("a").replace(container_id="c0ffee" * 10 + "abcd", workspace=tmp_path / "ws")
    )
    return registry, record


def ready_file(registry: Registry, record: SessionState, content: object) -> Path:
    path = registry.session_dir("coder", "a") / "agent" / "agentd.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


READY = {
    "protocol": 1,
    "pid": 7,
    "container": "c0ffeec0ffee",
    "boot": "5ca1ab1e5ca1ab1e",
    "codex": None,
}


def test_the_host_trusts_a_ready_file_only_for_the_current_container(
    session: tuple[Registry, SessionState], tmp_path: Path
) -> None:
    registry, record = session
    here = view(registry, record)
    assert conversation.agentd_boot(registry, here) is None
    path = ready_file(registry, record, READY)
    assert conversation.agentd_boot(registry, here) == "5ca1ab1e5ca1ab1e"
    for forged in (
        {**READY, "container": "0123456789ab"},  # an earlier container
        {**READY, "protocol": 2},
        {**READY, "boot": "../../etc"},
        {**READY, "container": ""},
        [READY],
        "{not json",
        json.dumps({**READY, "padding": "x" * 5000}),  # longer than a ready file is
    ):
        ready_file(registry, record, forged)
        assert conversation.agentd_boot(registry, here) is None, forged
    path.unlink()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps(READY))
    path.symlink_to(elsewhere)
    assert conversation.agentd_boot(registry, here) is None


def test_with_the_daemon_up_a_turn_is_only_files_in_the_inbox(
    session: tuple[Registry, SessionState], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, record = session
    registry.write(record.replace(thread_id="01a22205-3385-7810-b62b-3e8143142500"))
    ready_file(registry, record, READY)

    def no_exec(*args: object, **kwargs: object) -> None:
        raise AssertionError("docker exec")

    monkeypatch.setattr(engine, "exec_detached", no_exec)
    number = conversation._start_turn(registry, view(registry, record), "do it", "message")
    inbox = registry.session_dir("coder", "a") / "inbox"
    assert (inbox / f"{number}.message").read_text() == "do it"
    assert json.loads((inbox / f"{number}.json").read_text()) == {
        "turn": number,
        "thread": "01a22205-3385-7810-b62b-3e8143142500",
        "agentd": "5ca1ab1e5ca1ab1e",
    }

    # Without it, the turn starts the other way, and no request is left for a daemon.
    (registry.session_dir("coder", "a") / "agent" / "agentd.json").unlink()
    execs: list[list[str]] = []
    monkeypatch.setattr(engine, "exec_detached", lambda c, argv, workdir: execs.append(list(argv)))
    second = conversation._start_turn(registry, view(registry, record), "again", "message")
    assert execs == [
        ["agent-entrypoint", "filare-turn", second, "01a22205-3385-7810-b62b-3e8143142500"]
    ]
    assert not (inbox / f"{second}.json").exists()


def test_an_interrupt_of_a_daemons_turn_is_a_file_in_the_inbox(
    session: tuple[Registry, SessionState], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, record = session
    here = view(registry, record)
    add_turn(registry, record, "0001", container=record.container_id or "")
    inbox = registry.session_dir("coder", "a") / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "0001.json").write_text("{}")
    monkeypatch.setattr(conversation, "_running_views", lambda registry, ids: [here])
    monkeypatch.setattr(engine, "exec_in", lambda *a, **k: pytest.fail("docker exec"))
    transcripts = conversation.transcript_folder(registry, record)
    transcripts.mkdir(parents=True)

    def daemon() -> None:
        wait_for(lambda: (inbox / "0001.interrupt").exists(), "the interrupt")
        (transcripts / "0001.exit").write_text(json.dumps({"exit_code": 1, "interrupted": True}))

    thread = threading.Thread(target=daemon)
    thread.start()
    status = conversation.interrupt(registry, "a", timeout=10)
    thread.join()
    assert status.status == "interrupted"


def test_attach_asks_the_daemon_to_let_go_of_the_conversation(
    session: tuple[Registry, SessionState], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, record = session
    record = registry.write(record.replace(thread_id="01a22205-3385-7810-b62b-3e8143142500"))
    monkeypatch.setattr(
        conversation, "_running_views", lambda registry, ids: [view(registry, record)]
    )
    argv = conversation.attach_command(registry, "a")
    assert argv[-5:] == [
        "codex",
        "--no-daemon",
        "--dangerously-bypass-approvals-and-sandbox",
        "resume",
        "01a22205-3385-7810-b62b-3e8143142500",
    ]
    ready_file(registry, record, READY)
    argv = conversation.attach_command(registry, "a")
    assert argv[-3:] == ["filare-agentd", "--attach", "01a22205-3385-7810-b62b-3e8143142500"]


# /proc/self/mountinfo in a session under gVisor (runsc 2022-12-19), and under runc.
GVISOR_MOUNTS = """\
8 8 0:8 / / rw  - 9p none rw,trans=fd,rfdno=4,wfdno=4,aname=/,cache=fscache
11 8 0:10 / /proc rw,noexec  - proc none rw,dentry_cache_limit=1000
18 8 0:17 / /run/filare/inbox ro  - 9p none ro,trans=fd,rfdno=10,wfdno=10,cache=remote_revalidating
24 8 0:23 / /tmp rw  - tmpfs none rw,mode=01777
"""
RUNC_MOUNTS = """\
612 540 0:58 / / rw,relatime master:301 - overlay overlay rw,lowerdir=/var/lib/docker/l/A
650 612 254:1 /tmp/state/coder/a/inbox /run/filare/inbox ro,relatime - ext4 /dev/vda1 rw
651 612 254:1 /tmp/my\\040ws /home/agent/my\\040ws rw,relatime - ext4 /dev/vda1 rw
"""


def test_the_inbox_on_a_9p_mount_is_listed_not_watched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under gVisor the host's writes into the inbox raise no inotify event: the daemon polls."""
    inbox = Path("/run/filare/inbox")
    assert agentd.mount_type(inbox, GVISOR_MOUNTS.encode()) == "9p"
    assert agentd.mount_type(Path("/tmp/x"), GVISOR_MOUNTS.encode()) == "tmpfs"
    assert agentd.mount_type(Path("/run/filare"), GVISOR_MOUNTS.encode()) == "9p"
    assert agentd.mount_type(inbox, RUNC_MOUNTS.encode()) == "ext4"
    assert agentd.mount_type(Path("/run/filare"), RUNC_MOUNTS.encode()) == "overlay"
    assert agentd.mount_type(Path("/home/agent/my ws/x"), RUNC_MOUNTS.encode()) == "ext4"
    assert agentd.mount_type(inbox, b"garbage\n") is None

    mountinfo = tmp_path / "mountinfo"
    monkeypatch.setattr(agentd, "MOUNTINFO", mountinfo)
    mountinfo.write_text(f"1 0 0:1 / / rw - 9p none rw\n2 1 0:2 / {tmp_path} rw - ext4 x rw\n")
    watched = agentd.Inotify.watch(tmp_path)
    assert watched is not None
    os.close(watched)
    mountinfo.write_text(f"1 0 0:1 / / rw - ext4 none rw\n2 1 0:2 / {tmp_path} rw - 9p x rw\n")
    assert agentd.Inotify.watch(tmp_path) is None


def test_a_polled_inbox_is_listed_only_when_its_time_says_it_may_have_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under gVisor each tick asks for the inbox's modification time; the folder is listed (and
    the limits read) when that time moved or is recent, and every RESCAN_SECONDS regardless."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    monkeypatch.setenv("FILARE_AGENTD_INBOX", str(inbox))
    daemon = agentd.Daemon()
    assert daemon.inotify is None
    listed: list[str] = []
    real_listdir = os.listdir

    def listdir(path: str | Path) -> list[str]:
        listed.append(str(path))
        return real_listdir(path)

    monkeypatch.setattr(agentd.os, "listdir", listdir)

    def settle() -> None:  # the folder last changed ten seconds ago
        past = time.time() - 10
        os.utime(inbox, (past, past))

    settle()
    daemon.scan()
    assert len(listed) == 1  # the first look lists it
    daemon.scan()
    daemon.scan()
    assert len(listed) == 1  # unchanged and old: one stat each, no listing
    (inbox / "1.msg").write_text("hello")
    daemon.scan()
    daemon.scan()
    assert len(listed) == 3  # changed just now: listed while the change is recent
    settle()
    daemon.scan()
    assert len(listed) == 4  # its time moved (back, here): listed once more
    daemon.scan()
    assert len(listed) == 4
    daemon.next_listing = 0.0  # RESCAN_SECONDS passed
    daemon.scan()
    assert len(listed) == 5


def test_a_polled_inbox_is_looked_at_less_often_after_a_quiet_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FILARE_AGENTD_INBOX", str(tmp_path))
    daemon = agentd.Daemon()
    assert daemon.poll() == agentd.POLL_SECONDS  # just started
    quiet = time.monotonic() - agentd.ACTIVE_SECONDS - 1
    daemon.idle_since = daemon.inbox_active = quiet
    assert daemon.poll() == agentd.IDLE_POLL_SECONDS
    daemon.turn = agentd.Turn("0001", None, "hi", None)
    assert daemon.poll() == agentd.POLL_SECONDS  # a working turn may be interrupted
    daemon.turn = None
    (tmp_path / "1.msg").write_text("hello")
    assert daemon.inbox_changed()
    assert daemon.poll() == agentd.POLL_SECONDS  # the inbox just changed
    daemon.inbox_active = quiet
    daemon.idle_since = time.monotonic()  # a turn just ended
    assert daemon.poll() == agentd.POLL_SECONDS
    # A quiet inbox that changes: the look that sees it sets the next look soon.
    daemon.idle_since = daemon.inbox_active = quiet
    (tmp_path / "2.msg").write_text("again")
    daemon.scan()
    assert daemon.next_scan - time.monotonic() <= agentd.POLL_SECONDS
