"""A real restart of the Docker daemon under running sessions.

Ours come back as `exited` and a start brings them up again; a container that is not ours is
neither restarted nor removed. The test restarts the daemon the way it runs here: through
systemd when systemd manages it, else by stopping the process and starting it again with its
own command line.
"""

from __future__ import annotations

import json
import uuid

import pytest
from agent_helpers import MakeManifest, docker, inspect, inv, our_containers, restart_daemon

from filare_testing.commands import results
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent


def test_daemon_restart_under_running_sessions(
    registry: Registry, make_manifest: MakeManifest, smoke_image: str
) -> None:
    manifest = make_manifest(ids=("alpha", "beta"))
    assert inv("session.start", "--manifest", str(manifest), state=registry.root).returncode == 0
    foreign = f"not-filare-{uuid.uuid4().hex[:8]}"
    docker("run", "-d", "--name", foreign, smoke_image, "sleep", "infinity")
    live_restore = docker("info", "--format", "{{.LiveRestoreEnabled}}") == "true"
    try:
        restart_daemon()
        listed = json.loads(inv("session.list", "--json", state=registry.root).stdout)
        expected = "running" if live_restore else "exited"
        assert [(v["session"], v["status"]) for v in listed] == [
            ("alpha", expected),
            ("beta", expected),
        ]
        again = inv("session.start", "--manifest", str(manifest), state=registry.root)
        assert again.returncode == 0, again.stderr
        verb = "already running" if live_restore else "started"
        assert results(again.stdout) == {"alpha": verb, "beta": verb}
        assert our_containers(registry, all_states=False) == [
            "filare-coder-alpha",
            "filare-reviewer-beta",
        ]
        assert inv("session.prune", state=registry.root).returncode == 0
        assert inspect(foreign)["State"]["Running"] is live_restore
    finally:
        docker("rm", "-f", foreign)
    assert inv("session.stop", "--all", state=registry.root).returncode == 0
    assert our_containers(registry) == []
