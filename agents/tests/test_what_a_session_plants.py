"""What an agent leaves where the host later writes or reads cannot stall or break the host's
commands, and nothing of the user's beyond what a session needs reaches a session.

Each test plays the agent from inside a real session (`docker exec` as the session's user) on
the real engine, then runs what the operator runs and checks what the operator sees. The rows
of docs/faults.md, "What a session plants", name these tests.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import docker, inv, sh

from filare_testing.commands import results
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent

CANARY = "sk-canary-hostile"


def write_manifest(project: Path, image: str, sessions: list[dict[str, Any]]) -> Path:
    """A manifest of sessions of role `coder`, each with an env file of its own."""
    entries = []
    for session in sessions:
        session_id = session["id"]
        env_file = project / "outputs" / f"{session_id}.env"
        env_file.write_text(f"SESSION_NAME={session_id}\n")
        entries.append(
            {
                "role": "coder",
                "branch": f"agent/{session_id}",
                "workspace": f"outputs/ws/{session_id}",
                "ssh_key": "outputs/keys/id_test",
                "env_file": str(env_file),
                "codex_dir": "outputs/codex-home",
                **session,
            }
        )
    manifest = project / "planted.yml"
    manifest.write_text(yaml.safe_dump({"defaults": {"image": image}, "sessions": entries}))
    return manifest


def task(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    return inv(*args, state=registry.root)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def agent(container: str, script: str) -> str:
    """Run `script` in the session's container as its agent (the session's user)."""
    return docker("exec", container, "sh", "-c", script)


def without_canary(registry: Registry, *containers: str) -> None:
    """The canary is nowhere in the registry's folders (every session's) nor in the containers'
    home folders."""
    found = sh("grep", "-rl", CANARY, str(registry.root), check=False)
    assert found.stdout == "", found.stdout
    for name in containers:
        inside = docker("exec", name, "sh", "-c", f"grep -rl {CANARY} /home/agent || true")
        assert inside == "", (name, inside)


# --- a planted folder --------------------------------------------------------------------------


def test_folders_planted_where_the_host_rewrites_do_not_break_resume(
    registry: Registry, project: Path, smoke_image: str, tmp_path: Path
) -> None:
    codex_dir = project / "outputs" / "codex-home"
    (codex_dir / "skills" / "mine").mkdir(parents=True)
    (codex_dir / "skills" / "mine" / "SKILL.md").write_text("---\nname: mine\n---\n")
    (codex_dir / "config.toml").write_text('model = "gpt-test"\n')
    (codex_dir / "AGENTS.md").write_text("Be brief.\n")
    (codex_dir / "auth.json").write_text('{"token": "t"}\n')
    manifest = write_manifest(project, smoke_image, [{"id": "planter"}, {"id": "bystander"}])
    ok(task(registry, "session.start", "--manifest", str(manifest)))
    outside = tmp_path / "host-folder"
    outside.mkdir()
    (outside / "keep").write_text("the host's\n")
    agent(
        "filare-coder-planter",
        "cd ~/.codex && rm -rf config.toml auth.json AGENTS.md skills && "
        "mkdir -p config.toml/x auth.json/x AGENTS.md/x && "
        f"ln -s {outside} config.toml/x/link && ln -s {outside} skills && "
        # Deeper than a recursive removal (shutil.rmtree) can go.
        "cd AGENTS.md/x && i=0 && while [ $i -lt 2000 ]; do mkdir a && cd a && i=$((i+1)); done",
    )
    ok(task(registry, "session.stop", "--manifest", str(manifest)))
    resumed = task(registry, "session.resume", "--session", "planter", "--session", "bystander")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert results(resumed.stdout) == {"planter": "started", "bystander": "started"}
    assert "Traceback" not in resumed.stderr
    home = "/home/agent/.codex"
    assert agent("filare-coder-planter", f"cat {home}/config.toml").startswith('model = "gpt-test"')
    assert agent("filare-coder-planter", f"cat {home}/auth.json") == '{"token": "t"}'
    assert agent("filare-coder-planter", f"cat {home}/AGENTS.md") == "Be brief."
    assert "name: mine" in agent("filare-coder-planter", f"cat {home}/skills/mine/SKILL.md")
    assert sorted(p.name for p in outside.iterdir()) == ["keep"]
    assert (outside / "keep").read_text() == "the host's\n"
    listed = {
        row["session"]: row["status"]
        for row in json.loads(ok(task(registry, "session.list", "--json")))
    }
    assert listed == {"planter": "running", "bystander": "running"}
    # The same tree in its Codex home does not stop its record from being deleted.
    agent(
        "filare-coder-planter",
        "mkdir ~/.codex/deep && cd ~/.codex/deep && i=0 && "
        "while [ $i -lt 2000 ]; do mkdir a && cd a && i=$((i+1)); done",
    )
    ok(task(registry, "session.stop", "--all"))
    ok(task(registry, "session.prune", "--records"))
    assert not registry.session_dir("coder", "planter").exists()


def test_a_session_whose_folders_cannot_be_filled_fails_alone_in_one_line(
    registry: Registry, project: Path, smoke_image: str
) -> None:
    broken = project / "outputs" / "broken-codex"
    broken.mkdir(parents=True)
    (broken / "AGENTS.md").write_bytes(b"\xff\xfe not text\n")
    manifest = write_manifest(
        project,
        smoke_image,
        [{"id": "broken", "codex_dir": "outputs/broken-codex"}, {"id": "fine"}],
    )
    started = task(registry, "session.start", "--manifest", str(manifest))
    assert started.returncode != 0
    assert results(started.stdout)["fine"] == "started"
    assert "Traceback" not in started.stderr
    lines = [line for line in started.stdout.splitlines() + started.stderr.splitlines()]
    assert [line for line in lines if "AGENTS.md: not UTF-8 text" in line], lines
    assert docker("ps", "--filter", "name=^filare-coder-broken$", "-q") == ""
    ok(task(registry, "session.stop", "--all"))


# --- what is copied from the user's Codex folder ---------------------------------------------


def test_only_what_a_session_needs_is_copied_from_the_users_codex_folder(
    registry: Registry, project: Path, smoke_image: str
) -> None:
    codex_dir = project / "outputs" / "codex-home"
    codex_dir.mkdir(parents=True)
    (codex_dir / "config.toml").write_text('model = "gpt-test"\n')
    (codex_dir / "auth.json").write_text('{"token": "first-login"}\n')
    (codex_dir / ".credentials.json").write_text(json.dumps({"mcp": CANARY}))
    (codex_dir / "other.json").write_text(json.dumps({"x": CANARY}))
    (codex_dir / "history.jsonl").write_text(json.dumps({"text": CANARY}) + "\n")
    manifest = write_manifest(project, smoke_image, [{"id": "one"}, {"id": "two"}])
    ok(task(registry, "session.start", "--manifest", str(manifest)))
    without_canary(registry, "filare-coder-one", "filare-coder-two")
    home = "/home/agent/.codex"
    # `skills/` holds the sessions' own skills (the tool's), none of the user's here.
    listed = agent("filare-coder-one", f"ls -A {home}").split()
    assert listed == ["auth.json", "config.toml", "skills"]
    # The agent refreshes its token and sets a time far ahead on it; a new login on the host
    # still reaches it at the next start, and the unchanged one never overwrote its refresh.
    agent("filare-coder-one", f'echo \'{{"token": "refreshed"}}\' > {home}/auth.json')
    ok(task(registry, "session.stop", "--manifest", str(manifest)))
    ok(task(registry, "session.start", "--manifest", str(manifest)))
    assert agent("filare-coder-one", f"cat {home}/auth.json") == '{"token": "refreshed"}'
    agent("filare-coder-one", f"touch -d '2100-01-01' {home}/auth.json")
    ok(task(registry, "session.stop", "--manifest", str(manifest)))
    (codex_dir / "auth.json").write_text('{"token": "second-login"}\n')
    ok(task(registry, "session.start", "--manifest", str(manifest)))
    for name in ("filare-coder-one", "filare-coder-two"):
        assert agent(name, f"cat {home}/auth.json") == '{"token": "second-login"}'
    without_canary(registry, "filare-coder-one", "filare-coder-two")
    ok(task(registry, "session.stop", "--all"))


# --- seeding -----------------------------------------------------------------------------------


def test_seeding_copies_no_credential_of_the_repository_nor_any_sessions_codex_folder(
    registry: Registry, project: Path, smoke_image: str
) -> None:
    git = ["git", "-C", str(project)]
    sh(*git, "config", "http.https://github.com/.extraheader", f"AUTHORIZATION: basic {CANARY}")
    sh(*git, "remote", "add", "origin", f"https://x-access-token:{CANARY}@github.com/o/r.git")
    sh(*git, "config", "credential.helper", f"store --file /{CANARY}")
    # Another session's Codex folder inside the repository, which git does not ignore.
    sibling_codex = project / "codex-sibling"
    sibling_codex.mkdir()
    (sibling_codex / "auth.json").write_text(json.dumps({"token": CANARY}))
    (project / "outputs" / "codex-home").mkdir(parents=True)
    manifest = write_manifest(
        project, smoke_image, [{"id": "seeded"}, {"id": "sibling", "codex_dir": "codex-sibling"}]
    )
    started = task(registry, "session.start", "--manifest", str(manifest))
    assert started.returncode == 0, started.stdout + started.stderr
    assert CANARY not in started.stdout + started.stderr
    warnings = started.stderr.splitlines()
    assert sum("credentials from the repository configuration" in w for w in warnings) == 1
    assert any("not seeding codex-sibling" in w for w in warnings), warnings
    for session_id in ("seeded", "sibling"):
        workspace = project / "outputs" / "ws" / session_id
        found = sh("grep", "-rl", CANARY, str(workspace), check=False)
        assert found.stdout == "", found.stdout
        assert not (workspace / "codex-sibling").exists()
        url = sh(
            "git", "-C", str(workspace), "-c", "safe.directory=*", "remote", "get-url", "origin"
        )
        assert url.stdout.strip() == "https://github.com/o/r.git"
    without_canary_in_homes = docker(
        "exec", "filare-coder-seeded", "sh", "-c", f"grep -rl {CANARY} /home/agent || true"
    )
    assert without_canary_in_homes == ""
    ok(task(registry, "session.stop", "--all"))


# --- a forged ready file -----------------------------------------------------------------------


def forge_ready_file(container: str, boot: str = "deadbeefdeadbeef") -> None:
    """The ready file of a daemon that is not there: the session's own hostname, a made-up boot."""
    record = f'{{"protocol": 1, "pid": 1, "container": "\'$(hostname)\'", "boot": "{boot}"}}'
    agent(container, f"echo '{record}' > ~/.filare/agentd.json")


def turn_record(registry: Registry, session_id: str, number: str) -> dict[str, Any]:
    path = registry.session_dir("coder", session_id) / "turns" / f"{number}.json"
    found: dict[str, Any] = json.loads(path.read_text())
    return found


def agent_state(registry: Registry, session_id: str) -> dict[str, Any]:
    rows = json.loads(ok(task(registry, "session.list", "--json")))
    return next(row for row in rows if row["session"] == session_id)


def test_a_forged_ready_file_never_wedges_the_sessions_turns(
    registry: Registry, project: Path, turn_smoke_image: str
) -> None:
    (project / "outputs" / "codex-home").mkdir(parents=True)
    manifest = write_manifest(project, turn_smoke_image, [{"id": "forger"}])
    ok(task(registry, "session.start", "--manifest", str(manifest)))
    name = "filare-coder-forger"
    forge_ready_file(name)
    inbox = registry.session_dir("coder", "forger") / "inbox"

    # A turn sent into an inbox nobody reads: session.interrupt ends it all the same.
    out = ok(task(registry, "session.send", "--session", "forger", "--message", "one"))
    assert "started" in out
    assert turn_record(registry, "forger", "0001")["agentd"] == "deadbeefdeadbeef"
    assert agent_state(registry, "forger")["agent"] == "working"
    began = time.monotonic()
    interrupted = task(registry, "session.interrupt", "--session", "forger")
    assert interrupted.returncode == 0, interrupted.stdout + interrupted.stderr
    assert interrupted.stdout.split() == ["forger", "turn", "0001", "interrupted"]
    assert time.monotonic() - began < 60
    state = agent_state(registry, "forger")
    assert state["agent"] == "interrupted"
    assert "the host ended the turn" in state["agent_reason"]
    assert not (inbox / "0001.json").exists()

    # Sending again works: the daemon did not take the last turn, so this one goes through
    # `filare-turn` (whose Codex is missing in this image: the turn ends, failed).
    sent = task(registry, "session.send", "--session", "forger", "--message", "two", "--wait")
    assert turn_record(registry, "forger", "0002")["agentd"] is None
    assert "working" not in sent.stdout, sent.stdout + sent.stderr

    # Forged again, and nobody interrupts: the turn fails, saying why, within seconds.
    forge_ready_file(name, "feedfacefeedface")
    ok(task(registry, "session.send", "--session", "forger", "--message", "three"))
    waited = task(registry, "session.wait", "--session", "forger", "--timeout", "60", "--json")
    (row,) = json.loads(waited.stdout)
    assert row["status"] == "failed", row
    assert "did not take the turn" in row["reason"]
    ok(task(registry, "session.send", "--session", "forger", "--message", "four"))
    assert turn_record(registry, "forger", "0004")["agentd"] is None
    assert not (inbox / "0003.json").exists()
    ok(task(registry, "session.stop", "--all"))
