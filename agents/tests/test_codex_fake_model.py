"""The real Codex CLI in the real image, driven by the scripted fake model (filare_testing).

Each test starts `codex exec --json` in a fresh container as an arbitrary UID (4242), with a
Codex home and a workspace from the host, and the fake model on the host reached through
`host.docker.internal`. They pin what the orchestrator relies on in Codex 0.171.0: the JSON
events of a turn, shell commands run in the workspace, resuming a thread, a model error ending
the turn at once, and what reaches the model (instructions, skills).

Marked `agent` and `image`: the image is built as test_codex_image.py builds it (`inv
codex.base`, then `inv codex.build`, seconds from Docker's cache once built).
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_helpers import docker, sh

from conftest import BuiltCodexImage
from filare_testing.fake_model import (
    API_KEY_ENV,
    CONTAINER_CODEX_HOME,
    CONTAINER_WORKSPACE,
    FakeModel,
    apply_patch,
    failed,
    http_error,
    mcp_tool_call,
    message,
    shell,
    slow,
    write_codex_home,
)

pytestmark = [pytest.mark.agent, pytest.mark.image]

UID = 4242
LABEL = "filare.test=codex-research"
UNATTENDED = ["--json", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check"]


@dataclass
class Session:
    """A Codex home and a git workspace on the host, mounted where the image expects them."""

    image: str
    fake: FakeModel
    home: Path
    workspace: Path


@dataclass(frozen=True)
class Run:
    returncode: int
    events: list[dict[str, Any]]
    stderr: str
    seconds: float

    def items(self, kind: str, event: str = "item.completed") -> list[dict[str, Any]]:
        return [e["item"] for e in self.events if e["type"] == event and e["item"]["type"] == kind]

    @property
    def thread_id(self) -> str:
        return str(self.events[0]["thread_id"])

    def explain(self) -> str:
        return f"exit {self.returncode}\n{json.dumps(self.events, indent=1)}\n{self.stderr}"


@pytest.fixture
def session(codex_image: BuiltCodexImage, tmp_path: Path) -> Iterator[Session]:
    home = tmp_path / "codex-home"
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "README.md").write_text("fake model test\n")
    sh("git", "-C", str(workspace), "init", "-q", "-b", "main")
    sh("git", "-C", str(workspace), "add", ".")
    sh(
        "git",
        "-C",
        str(workspace),
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-qm",
        "i",
    )
    with FakeModel() as fake:
        write_codex_home(home, fake.container_url)
        # UID 4242 is nobody on the host: it needs to write both folders.
        for path in (home, workspace, *workspace.rglob("*")):
            path.chmod(0o777 if path.is_dir() else 0o666)
        yield Session(codex_image.tag, fake, home, workspace)


def container_args(session: Session, name: str) -> list[str]:
    """`docker run` options for a session container: UID 4242, its mounts, the fake's address."""
    return [
        "--name",
        name,
        "--label",
        LABEL,
        "--pull",
        "never",
        "--user",
        f"{UID}:{UID}",
        "--add-host",
        "host.docker.internal:host-gateway",
        "-e",
        f"CODEX_HOME={CONTAINER_CODEX_HOME}",
        "-e",
        f"{API_KEY_ENV}=dummy-key",
        "-v",
        f"{session.home}:{CONTAINER_CODEX_HOME}",
        "-v",
        f"{session.workspace}:{CONTAINER_WORKSPACE}",
        session.image,
    ]


def parse_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def codex(session: Session, *args: str, timeout: float = 120) -> Run:
    """`codex ARGS` in a fresh container as UID 4242; stdin closed, as the orchestrator runs it."""
    name = f"codex-fake-model-{uuid.uuid4().hex[:12]}"
    argv = ["docker", "run", "--rm", *container_args(session, name), "codex", *args]
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    finally:
        docker("rm", "-f", name, check=False)
    elapsed = time.monotonic() - started
    return Run(result.returncode, parse_events(result.stdout), result.stderr, elapsed)


def test_plain_reply_is_the_final_agent_message(session: Session) -> None:
    session.fake.enqueue(message("Hello from the fake model"))
    run = codex(session, "exec", *UNATTENDED, "say hello")
    assert run.returncode == 0, run.explain()
    assert [e["type"] for e in run.events] == [
        "thread.started",
        "turn.started",
        "item.completed",
        "turn.completed",
    ], run.explain()
    assert run.items("agent_message") == [
        {"id": "item_0", "type": "agent_message", "text": "Hello from the fake model"}
    ]
    assert set(run.events[-1]["usage"]) >= {"input_tokens", "output_tokens"}
    (request,) = session.fake.model_requests
    assert request.texts("user")[-1] == "say hello"
    assert request.headers["originator"] == "codex_exec"
    assert request.headers["authorization"] == "<redacted>"
    assert "exec_command" in request.tool_names
    assert session.fake.unscripted == []


def test_shell_call_runs_in_the_workspace_as_the_container_uid(session: Session) -> None:
    session.fake.enqueue(
        shell("echo made > made-by-codex.txt && id -u"),
        shell("echo failing; exit 3"),
        message("done"),
    )
    run = codex(session, "exec", *UNATTENDED, "make a file")
    assert run.returncode == 0, run.explain()
    made = session.workspace / "made-by-codex.txt"
    assert made.read_text() == "made\n"
    assert (made.stat().st_uid, made.stat().st_gid) == (UID, UID)

    started = run.items("command_execution", "item.started")
    assert [s["status"] for s in started] == ["in_progress", "in_progress"]
    first, second = run.items("command_execution")
    assert first["command"] == "/bin/sh -lc 'echo made > made-by-codex.txt && id -u'"
    assert (first["exit_code"], first["status"], first["aggregated_output"]) == (
        0,
        "completed",
        f"{UID}\n",
    )
    assert (second["exit_code"], second["status"]) == (3, "failed")
    assert run.items("agent_message")[-1]["text"] == "done"

    _, after_first, after_second = session.fake.model_requests
    (output,) = after_first.tool_outputs()
    assert output["type"] == "function_call_output"
    assert "Process exited with code 0" in output["output"]
    assert "Process exited with code 3" in after_second.tool_outputs()[-1]["output"]


def test_apply_patch_shows_as_a_file_change(session: Session) -> None:
    patch = "*** Begin Patch\n*** Add File: notes.txt\n+from a patch\n*** End Patch\n"
    session.fake.enqueue(apply_patch(patch), message("patched"))
    run = codex(session, "exec", *UNATTENDED, "write notes")
    assert run.returncode == 0, run.explain()
    (change,) = run.items("file_change")
    assert change["changes"] == [{"path": f"{CONTAINER_WORKSPACE}/notes.txt", "kind": "add"}]
    assert change["status"] == "completed"
    assert (session.workspace / "notes.txt").read_text() == "from a patch\n"


# A stdio MCP server with one tool, `echo`, for python3 in the image.
MCP_ECHO = """\
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    params = msg.get("params") or {}
    result = {
        "initialize": {
            "protocolVersion": params.get("protocolVersion", "2025-06-18"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "echo", "version": "1"},
        },
        "tools/list": {"tools": [{"name": "echo", "description": "Echo text back",
            "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}}]},
        "tools/call": {"content": [{"type": "text",
            "text": "echo: " + str(params.get("arguments", {}).get("text"))}]},
    }.get(msg["method"], {})
    print(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}), flush=True)
"""


def test_mcp_tool_call_reaches_the_server_through_its_namespace(session: Session) -> None:
    (session.home / "mcp_echo.py").write_text(MCP_ECHO)
    with (session.home / "config.toml").open("a") as config:
        script = f"{CONTAINER_CODEX_HOME}/mcp_echo.py"
        config.write(f'\n[mcp_servers.demo]\ncommand = "python3"\nargs = ["{script}"]\n')
    session.fake.enqueue(mcp_tool_call("demo", "echo", {"text": "ping"}), message("done"))
    run = codex(session, "exec", *UNATTENDED, "--strict-config", "call the tool")
    assert run.returncode == 0, run.explain()
    (call,) = run.items("mcp_tool_call")
    assert (call["server"], call["tool"], call["status"]) == ("demo", "echo", "completed")
    assert call["result"]["content"] == [{"type": "text", "text": "echo: ping"}]
    first, after = session.fake.model_requests
    assert "mcp__demo" in first.tool_names
    assert "echo: ping" in json.dumps(after.tool_outputs())


def test_resume_continues_the_thread(session: Session) -> None:
    session.fake.enqueue(message("first answer"))
    first = codex(session, "exec", *UNATTENDED, "first question")
    assert first.returncode == 0, first.explain()

    session.fake.enqueue(message("second answer"))
    second = codex(session, "exec", "resume", *UNATTENDED, first.thread_id, "second question")
    assert second.returncode == 0, second.explain()
    assert second.thread_id == first.thread_id
    assert second.items("agent_message")[-1]["text"] == "second answer"

    _, resumed = session.fake.model_requests
    assert resumed.texts("user")[-2:] == ["first question", "second question"]
    assert resumed.texts("assistant") == ["first answer"]
    rollouts = list((session.home / "sessions").rglob(f"rollout-*-{first.thread_id}.jsonl"))
    assert len(rollouts) == 1


@pytest.mark.parametrize(
    "reply",
    [http_error(500, "boom"), http_error(400, "bad request"), failed("server_error", "down")],
    ids=["http-500", "http-400", "response-failed"],
)
def test_model_error_fails_the_turn_at_once(session: Session, reply: Any) -> None:
    session.fake.enqueue(reply)
    run = codex(session, "exec", *UNATTENDED, "fail please")
    assert run.returncode == 1, run.explain()
    assert [e["type"] for e in run.events][-2:] == ["error", "turn.failed"], run.explain()
    assert run.events[-1]["error"]["message"]
    assert len(session.fake.model_requests) == 1  # no retry with the test config
    assert run.seconds < 30


def test_instructions_and_agents_md_reach_the_model(session: Session) -> None:
    (session.home / "AGENTS.md").write_text("GLOBAL-AGENTS-MARKER\n")
    (session.workspace / "AGENTS.md").write_text("PROJECT-AGENTS-MARKER\n")
    session.fake.enqueue(message("ok"))
    run = codex(
        session,
        "exec",
        *UNATTENDED,
        "-c",
        'developer_instructions="DEVELOPER-MARKER"',
        "hello",
    )
    assert run.returncode == 0, run.explain()
    (request,) = session.fake.model_requests
    developer = request.texts("developer")
    assert developer[0] == "You are a coding agent driven by a scripted test model."
    assert developer[1] == "DEVELOPER-MARKER"
    (agents,) = [t for t in request.texts("user") if t.startswith("# AGENTS.md instructions")]
    assert agents.index("GLOBAL-AGENTS-MARKER") < agents.index("PROJECT-AGENTS-MARKER")


def skill(folder: Path, name: str, description: str) -> None:
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: {description}\n---\n\nBody of {name}.\n"
    )


def test_a_skill_disabled_in_the_config_is_kept_from_the_model(session: Session) -> None:
    skill(session.home / "skills" / "demo-skill", "demo-skill", "DEMO-DESCRIPTION")
    skill(session.workspace / ".agents/skills/other-skill", "other-skill", "OTHER-DESCRIPTION")
    with (session.home / "config.toml").open("a") as config:
        config.write('\n[[skills.config]]\nname = "other-skill"\nenabled = false\n')
    session.fake.enqueue(message("ok"))
    run = codex(session, "exec", *UNATTENDED, "--strict-config", "which skills?")
    assert run.returncode == 0, run.explain()
    (request,) = session.fake.model_requests
    (skills,) = [t for t in request.texts("developer") if t.startswith("<skills_instructions>")]
    assert "- demo-skill: DEMO-DESCRIPTION" in skills
    assert "other-skill" not in request.text()


def test_sigint_during_a_slow_reply_aborts_the_turn_and_resume_says_so(session: Session) -> None:
    """The orchestrator stops a turn by signalling `codex exec` inside the session container."""
    name = f"codex-fake-model-{uuid.uuid4().hex[:12]}"
    docker("run", "-d", "--init", *container_args(session, name), "sleep", "infinity")
    try:
        release = threading.Event()
        session.fake.enqueue(slow(message("too late"), release=release))
        turn = subprocess.Popen(
            ["docker", "exec", name, "codex", "exec", *UNATTENDED, "a slow question"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        session.fake.wait_for_requests(1, timeout=60)
        pid = docker("exec", name, "pgrep", "-o", "-f", "^codex exec")
        signalled = time.monotonic()
        docker("exec", name, "kill", "-INT", pid)
        stdout, stderr = turn.communicate(timeout=30)
        assert time.monotonic() - signalled < 10
        release.set()
        events = parse_events(stdout)
        assert turn.returncode == 1, stdout + stderr
        assert [e["type"] for e in events] == ["thread.started", "turn.started"]

        session.fake.enqueue(message("resumed"))
        resumed = codex(session, "exec", "resume", *UNATTENDED, events[0]["thread_id"], "again")
        assert resumed.returncode == 0, resumed.explain()
        users = session.fake.model_requests[-1].texts("user")
        assert users[-3] == "a slow question"
        assert users[-2].startswith("<turn_aborted>")
        assert users[-1] == "again"
    finally:
        docker("rm", "-f", name, check=False)
