"""Races, crashes, engine faults and secrets on a real engine: nothing leaked, lost or shown.

Each test names the row of docs/faults.md it proves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_helpers import REPOSITORY, MakeManifest, docker, inspect, inv, our_containers

from filare_testing.commands import results
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent


def start_process(manifest: Path, registry: Registry, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "session.start", "--manifest", str(manifest), *extra],
        cwd=REPOSITORY,
        env={**os.environ, "FILARE_STATE_DIR": str(registry.root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_containers(registry: Registry, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(our_containers(registry)) < count:
        assert time.monotonic() < deadline, "containers did not appear"
        time.sleep(0.05)


def records(registry: Registry) -> dict[str, str]:
    return {s.session_id: s.status for s in registry.states()}


def test_two_orchestrators_racing_make_one_container_per_session(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    manifest = make_manifest(ids=("alpha", "beta", "gamma"))
    racers = [start_process(manifest, registry) for _ in range(2)]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    assert our_containers(registry) == [
        "filare-coder-alpha",
        "filare-coder-gamma",
        "filare-reviewer-beta",
    ]
    first, second = (results(output[0]) for output in outputs)
    for session_id in ("alpha", "beta", "gamma"):
        assert sorted([first[session_id], second[session_id]]) == ["already running", "started"]
    for state in registry.states():
        assert state.status == "running"
        assert state.container_id == inspect(state.container_name)["Id"]


def test_one_failing_session_keeps_the_others(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    good = make_manifest(ids=("alpha",), name="good.yml")
    bad = make_manifest(ids=("beta",), name="bad.yml", image="filare-codex:absent")
    both = good.with_name("both.yml")
    good_data = good.read_text()
    both.write_text(good_data + bad.read_text().split("sessions:\n", 1)[1])
    result = inv("session.start", "--manifest", str(both), state=registry.root)
    assert result.returncode == 2  # the missing image: the user builds it
    assert results(result.stdout).get("alpha") == "started"
    assert results(result.stdout).get("beta") == "failed"
    assert our_containers(registry) == ["filare-coder-alpha"]
    assert records(registry) == {"alpha": "running", "beta": "error"}


@pytest.mark.parametrize("kill_group", [False, True], ids=["parent-only", "process-group"])
def test_sigkill_at_any_point_leaves_only_what_prune_cleans(
    registry: Registry, make_manifest: MakeManifest, kill_group: bool
) -> None:
    manifest = make_manifest(ids=("alpha", "beta"))
    for delay in (0.0, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0, 1.5):
        starter = start_process(manifest, registry)
        time.sleep(delay)
        if kill_group:
            os.killpg(starter.pid, signal.SIGKILL)
        else:
            starter.kill()
        starter.communicate(timeout=30)
        stop = inv("session.stop", "--manifest", str(manifest), state=registry.root)
        assert stop.returncode == 0, stop.stderr
        assert our_containers(registry) == [], f"after a kill at {delay} s"
    # A last kill that is not followed by a stop: prune alone must clean up what the kill left
    # half started. A session whose start ended before the kill (recorded as running) is alive,
    # not prune's: it keeps its container and its SSH folder, nothing else is left.
    starter = start_process(manifest, registry)
    time.sleep(0.5)
    os.killpg(starter.pid, signal.SIGKILL) if kill_group else starter.kill()
    starter.communicate(timeout=30)
    pruned = inv("session.prune", state=registry.root)
    assert pruned.returncode == 0, pruned.stderr
    statuses = records(registry)
    alive = sorted(sid for sid, status in statuses.items() if status == "running")
    names = [s.container_name for s in registry.states() if s.status == "running"]
    assert our_containers(registry) == sorted(names)
    assert sorted(p.parent.name for p in registry.ssh_dirs()) == alive
    assert "starting" not in statuses.values(), statuses
    listed = json.loads(inv("session.list", "--json", state=registry.root).stdout)
    assert {v["session"]: v["status"] for v in listed if v["status"] == "running"} == dict.fromkeys(
        alive, "running"
    )
    assert {v["status"] for v in listed} <= {"stopped", "error", "running"}, listed


@pytest.mark.parametrize("group", [False, True], ids=["process", "process-group"])
def test_ctrl_c_removes_what_that_start_created_and_nothing_else(
    registry: Registry, make_manifest: MakeManifest, group: bool
) -> None:
    """A terminal's Ctrl-C reaches the process group (the launch script and `docker run` too);
    `kill -INT` the orchestrator alone. Either way: `interrupted`, exit 130, nothing left half
    started, and the records say interrupted (never `stale`, never Docker's `exit code -2`)."""
    keeper = make_manifest(ids=("keeper",), name="keeper.yml")
    assert inv("session.start", "--manifest", str(keeper), state=registry.root).returncode == 0
    manifest = make_manifest(ids=("s1", "s2", "s3", "s4", "s5"), name="many.yml")
    starter = start_process(manifest, registry, "--parallel", "1")
    wait_for_containers(registry, 2)
    if group:
        os.killpg(starter.pid, signal.SIGINT)
    else:
        starter.send_signal(signal.SIGINT)
    _, err = starter.communicate(timeout=60)
    assert starter.returncode == 130, err
    assert err.strip().startswith("interrupted:"), err
    assert "Traceback" not in err
    assert our_containers(registry) == ["filare-coder-keeper"]
    assert [p.parent.name for p in registry.ssh_dirs()] == ["keeper"]
    mine = {s.session_id: s for s in registry.states() if s.session_id != "keeper"}
    assert mine, "the sessions started before the Ctrl-C have records"
    for state in mine.values():
        assert state.status == "error" and state.error is not None, state
        assert state.error.startswith("interrupted"), state.error
    listed = json.loads(inv("session.list", "--json", "--all", state=registry.root).stdout)
    assert {row["session"]: row["status"] for row in listed} == {
        "keeper": "running",
        **dict.fromkeys(mine, "error"),
    }


def test_container_gone_after_a_daemon_restart_is_seen_and_restarted(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    # A daemon restart stops containers without a restart policy: the same as killing them.
    manifest = make_manifest(ids=("alpha",))
    assert inv("session.start", "--manifest", str(manifest), state=registry.root).returncode == 0
    old_id = inspect("filare-coder-alpha")["Id"]
    docker("kill", "filare-coder-alpha")
    listed = json.loads(inv("session.list", "--json", state=registry.root).stdout)
    assert [(v["session"], v["status"]) for v in listed] == [("alpha", "exited")]
    again = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert again.returncode == 0, again.stderr
    assert results(again.stdout).get("alpha") == "started"
    assert inspect("filare-coder-alpha")["State"]["Running"] is True
    assert inspect("filare-coder-alpha")["Id"] != old_id
    assert our_containers(registry) == ["filare-coder-alpha"]
    # A record without its container is stale, and prune settles it.
    docker("rm", "-f", "filare-coder-alpha")
    listed = json.loads(inv("session.list", "--json", state=registry.root).stdout)
    assert [v["status"] for v in listed] == ["stale"]
    assert inv("session.prune", state=registry.root).returncode == 0
    assert records(registry) == {"alpha": "stopped"}


def test_a_container_that_is_not_ours_is_never_touched(
    registry: Registry, make_manifest: MakeManifest, smoke_image: str
) -> None:
    manifest = make_manifest(ids=("alpha",))
    docker("run", "-d", "--name", "filare-coder-alpha", smoke_image, "sleep", "infinity")
    try:
        result = inv("session.start", "--manifest", str(manifest), state=registry.root)
        assert result.returncode == 1
        assert results(result.stdout) == {"alpha": "failed"}
        assert "is taken by a container that is not this session's" in result.stdout
        for command in (
            ("session.prune",),
            ("session.stop", "--all"),
            ("session.stop", "--manifest", str(manifest)),
        ):
            inv(*command, state=registry.root)
        assert inspect("filare-coder-alpha")["State"]["Running"] is True
        assert registry.ssh_dirs() == []
    finally:
        docker("rm", "-f", "filare-coder-alpha")


def test_workspace_in_use_by_another_running_session_is_refused(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    first = make_manifest(ids=("alpha",), name="first.yml")
    assert inv("session.start", "--manifest", str(first), state=registry.root).returncode == 0
    second = make_manifest(ids=("other",), name="second.yml", workspace="outputs/ws/alpha")
    result = inv("session.start", "--manifest", str(second), state=registry.root)
    assert result.returncode == 2
    assert "is in use by running session 'alpha'" in result.stdout
    assert our_containers(registry) == ["filare-coder-alpha"]


def test_canary_secret_never_appears_in_output_or_records(
    registry: Registry, make_manifest: MakeManifest, project: Path
) -> None:
    canary = "sk-canary-5f1d2e9a"
    manifest = make_manifest(ids=("alpha", "beta"))
    for env_file in (project / "outputs").glob("*.env"):
        env_file.write_text(env_file.read_text() + f"OPENAI_API_KEY={canary}\n")
    key_line = (project / "outputs" / "keys" / "id_test").read_text().splitlines()[1]
    shown = []
    for command in (
        ("session.start", "--manifest", str(manifest), "--dry-run"),
        ("session.start", "--manifest", str(manifest)),
        ("session.list",),
        ("session.list", "--json"),
        ("session.stop", "--session", "beta"),
        ("session.prune", "--dry-run"),
        ("session.prune",),
    ):
        result = inv(*command, state=registry.root)
        assert result.returncode == 0, (command, result.stderr)
        shown.append(result.stdout + result.stderr)
    (project / "outputs" / "gamma.env").write_text(f"BROKEN LINE={canary}\n")
    broken = make_manifest(ids=("gamma",), name="broken.yml")
    (project / "outputs" / "gamma.env").write_text(f"BROKEN LINE={canary}\n")
    failed = inv("session.start", "--manifest", str(broken), state=registry.root)
    assert failed.returncode == 2
    shown.append(failed.stdout + failed.stderr)
    written = [p.read_text() for p in registry.root.rglob("state.json")]
    assert written
    for text in shown + written:
        assert canary not in text
        assert key_line not in text
    assert docker("exec", "filare-coder-alpha", "sh", "-c", "echo $OPENAI_API_KEY") == canary


def test_env_mode_mount_keeps_values_out_of_docker_inspect(
    registry: Registry, make_manifest: MakeManifest, project: Path
) -> None:
    canary = "sk-canary-mounted"
    manifest = make_manifest(ids=("alpha",), env_mode="mount")
    env_file = project / "outputs" / "alpha.env"
    env_file.write_text(env_file.read_text() + f"OPENAI_API_KEY={canary}\n")
    result = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert result.returncode == 0, result.stderr
    info = inspect("filare-coder-alpha")
    assert canary not in json.dumps(info)
    assert (
        docker("exec", "filare-coder-alpha", "agent-entrypoint", "sh", "-c", "echo $OPENAI_API_KEY")
        == canary
    )
    main_env = docker(
        "exec", "filare-coder-alpha", "sh", "-c", "tr '\\0' '\\n' < /proc/$(pidof sleep)/environ"
    )
    assert f"OPENAI_API_KEY={canary}" in main_env.splitlines()


def test_any_uid_gets_a_name_in_the_image(smoke_image: str) -> None:
    for user in ("4242:4242", "1000:1000", "0:0"):
        out = docker("run", "--rm", "--user", user, smoke_image, "sh", "-c", "whoami; id -gn")
        name, group = out.splitlines()
        assert name and group, user
    assert (
        docker(
            "run",
            "--rm",
            "--user",
            "4242:4242",
            smoke_image,
            "sh",
            "-c",
            "touch $HOME/x && echo ok",
        )
        == "ok"
    )


def test_two_manifests_racing_for_one_workspace_get_one_container(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    first = make_manifest(ids=("alpha",), name="first.yml")
    second = make_manifest(ids=("other",), name="second.yml", workspace="outputs/ws/alpha")
    racers = [start_process(manifest, registry) for manifest in (first, second)]
    outputs = [racer.communicate(timeout=120) for racer in racers]
    codes = sorted(racer.returncode for racer in racers)
    assert codes == [0, 2], outputs
    assert len(our_containers(registry)) == 1
    assert "is in use by running session" in "".join(out for out, _ in outputs)
