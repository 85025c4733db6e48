"""A real restart of a Docker daemon under running sessions, on an engine of the tests' own.

Ours come back as `exited` and a start brings them up again; a container that is not ours is
neither restarted nor removed. The restarted engine is the `test_engine` fixture's (a second
`dockerd` in a network namespace of its own), never the machine's: the tool reaches it through
`DOCKER_HOST`, the launch script's `docker run` included.
"""

from __future__ import annotations

import json
import uuid

import pytest
from agent_helpers import MakeManifest, inv, our_containers

from filare_testing.commands import results
from filare_testing.engines import OwnEngine
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent


def test_daemon_restart_under_running_sessions(
    registry: Registry,
    make_manifest: MakeManifest,
    test_engine: OwnEngine,
    test_engine_smoke_image: str,
) -> None:
    def task(*args: str) -> tuple[int, str, str]:
        result = inv(*args, state=registry.root, DOCKER_HOST=test_engine.host)
        return result.returncode, result.stdout, result.stderr

    # Open egress: the proxy's image is the machine engine's, not this one's.
    manifest = make_manifest(ids=("alpha", "beta"), egress="open")
    code, _, err = task("session.start", "--manifest", str(manifest))
    assert code == 0, err
    # On the test engine only: DOCKER_HOST reached every docker call, `docker run` included.
    assert our_containers(registry, host=test_engine.host) == [
        "filare-coder-alpha",
        "filare-reviewer-beta",
    ]
    assert our_containers(registry) == []
    foreign = f"not-filare-{uuid.uuid4().hex[:8]}"
    test_engine.docker("run", "-d", "--name", foreign, test_engine_smoke_image, "sleep", "1d")
    try:
        test_engine.restart()
        code, out, err = task("session.list", "--json")
        assert code == 0, err
        assert [(v["session"], v["status"]) for v in json.loads(out)] == [
            ("alpha", "exited"),
            ("beta", "exited"),
        ]
        code, out, err = task("session.start", "--manifest", str(manifest))
        assert code == 0, err
        assert results(out) == {"alpha": "started", "beta": "started"}
        assert our_containers(registry, all_states=False, host=test_engine.host) == [
            "filare-coder-alpha",
            "filare-reviewer-beta",
        ]
        assert task("session.prune")[0] == 0
        state = json.loads(test_engine.docker("inspect", foreign))[0]["State"]
        assert state["Running"] is False
        assert state["Status"] == "exited"
    finally:
        test_engine.docker("rm", "-f", foreign)
    assert task("session.stop", "--all")[0] == 0
    assert our_containers(registry, host=test_engine.host) == []
