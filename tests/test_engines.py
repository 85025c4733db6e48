"""Engines by name, without an engine: the manifest's `engine` and `engines`, the argv and
environment of a call on a context, the launch's `--context`, and placement over a pool."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from orchestrator import engine, placement
from orchestrator.engine import Container
from orchestrator.errors import EngineError, InputError, ManifestError
from orchestrator.manifest import load_manifest
from orchestrator.plan import launch_script, plan_launch
from orchestrator.registry import Registry, SessionState, now
from orchestrator.spec import EngineSlot
from tests.conftest import WriteManifest, session

POOL = [{"context": "build1", "max_sessions": 2}, {"context": "build2", "max_sessions": 1}]


def test_no_engine_field_is_the_current_context(write_manifest: WriteManifest) -> None:
    (one,) = load_manifest(write_manifest(session()))
    assert one.engine is None
    assert one.engines == ()


def test_engine_in_defaults_and_per_session(write_manifest: WriteManifest) -> None:
    manifest = write_manifest(
        {"defaults": {"engine": "build1"}, "sessions": [session("a"), session("b", engine="b2")]}
    )
    a, b = load_manifest(manifest)
    assert (a.engine, b.engine) == ("build1", "b2")


def test_pool_in_defaults_and_a_session_pinned_out_of_it(write_manifest: WriteManifest) -> None:
    own_pool = [{"context": "mine", "max_sessions": 1}]
    manifest = write_manifest(
        {
            "defaults": {"engines": POOL},
            "sessions": [session("a"), session("b", engine="solo"), session("c", engines=own_pool)],
        }
    )
    a, b, c = load_manifest(manifest)
    assert a.engine is None
    assert a.engines == (EngineSlot("build1", 2), EngineSlot("build2", 1))
    assert (b.engine, b.engines) == ("solo", ())
    assert (c.engine, c.engines) == (None, (EngineSlot("mine", 1),))
    pinned = write_manifest(
        {"defaults": {"engine": "d"}, "sessions": [session("a", engines=own_pool)]}, name="p.yml"
    )
    (one,) = load_manifest(pinned)
    assert (one.engine, one.engines) == (None, (EngineSlot("mine", 1),))


def test_pool_survives_the_manifest_cache(write_manifest: WriteManifest, tmp_path: Path) -> None:
    manifest = write_manifest({"defaults": {"engines": POOL}, "sessions": [session("a")]})
    first = load_manifest(manifest, cache_dir=tmp_path / "cache")
    again = load_manifest(manifest, cache_dir=tmp_path / "cache")
    assert first == again
    assert again[0].engines == (EngineSlot("build1", 2), EngineSlot("build2", 1))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"defaults": {"engine": "a", "engines": POOL}, "sessions": [session()]},
            "defaults: fields 'engine' and 'engines': give one engine or a pool",
        ),
        (
            {"sessions": [session(engine="a", engines=POOL)]},
            "session 'alpha': fields 'engine' and 'engines': give one engine or a pool",
        ),
        (
            {"sessions": [session(engine="-H tcp://x")]},
            "field 'engine': '-H tcp://x' is not a Docker context name",
        ),
        (
            {
                "defaults": {"engines": [{"context": "a", "max_sessions": 0}]},
                "sessions": [session()],
            },
            "field 'engines.0.max_sessions': must be greater than 0",
        ),
        (
            {"defaults": {"engines": [POOL[0], POOL[0]]}, "sessions": [session()]},
            "engine 'build1' is in the pool twice",
        ),
    ],
)
def test_engine_fields_refused_with_the_field_named(
    write_manifest: WriteManifest, data: object, problem: str
) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest(write_manifest(data))
    assert problem in str(caught.value), caught.value


def test_plan_names_the_context_in_labels_and_argv(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    (one,) = load_manifest(write_manifest(session(engine="build1")))
    plan = plan_launch(one, registry_root=tmp_path / "state", script=Path("/s.sh"))
    assert plan.labels["filare.engine"] == "build1"
    at = plan.argv.index("--context")
    assert plan.argv[at + 1] == "build1"
    (local,) = load_manifest(write_manifest(session(), name="local.yml"))
    plan = plan_launch(local, registry_root=tmp_path / "state", script=Path("/s.sh"))
    assert "--context" not in plan.argv
    assert "filare.engine" not in plan.labels


def test_a_call_on_a_context_names_it_and_ignores_docker_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere:2375")
    monkeypatch.setenv("DOCKER_CONTEXT", "other")
    assert engine.docker_argv("ps", context="build1") == ["docker", "--context", "build1", "ps"]
    env = engine.docker_env("build1")
    assert env is not None
    assert "DOCKER_HOST" not in env and "DOCKER_CONTEXT" not in env
    assert env["PATH"] == os.environ["PATH"]
    # The current context is what the caller's environment says, as before engines had names.
    assert engine.docker_argv("ps") == ["docker", "ps"]
    assert engine.docker_env(None) is None
    # A process run (or exec'd) by the caller drops them too.
    assert engine.Engine("build1").argv("info") == [
        *("env", "-u", "DOCKER_HOST", "-u", "DOCKER_CONTEXT"),
        *("docker", "--context", "build1", "info"),
    ]
    assert engine.Engine().argv("info") == ["docker", "info"]


def test_failures_name_the_engine() -> None:
    dead = "Cannot connect to the Docker daemon at unix:///x.sock. Is the docker daemon running?"
    assert engine.describe_failure("ps", dead, context="build1") == (
        "engine 'build1' does not answer: its Docker daemon is not running or not reachable"
    )
    assert "no Docker context named 'nope'" in engine.describe_failure(
        "ps", 'context "nope": context not found: open …', context="nope"
    )
    assert engine.missing_image_hint("filare-codex", context="b1").startswith(
        "image 'filare-codex' not found on engine 'b1': build it with "
        "'uv run inv codex.build --engine b1'"
    )


def test_only_a_socket_on_this_machine_shares_its_files() -> None:
    assert engine.shares_files("unix:///run/filare-test-10/docker.sock")
    assert not engine.shares_files("ssh://agent@build1")
    assert not engine.shares_files("tcp://build1:2376")


def test_launch_script_runs_docker_on_the_context(session_files: Path) -> None:
    argv = [
        "bash",
        str(launch_script()),
        "--workspace",
        str(session_files / "ws"),
        "--env-file",
        str(session_files / "a.env"),
        "--ssh-key",
        str(session_files / "id_test"),
        "--context",
        "build1",
        "--dry-run",
    ]
    env = {**os.environ, "DOCKER_HOST": "tcp://elsewhere:2375"}
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env, check=True)
    assert out.stdout.startswith("docker --context build1 run ")
    bad = [*argv[:-3], "--context", "-H", "--dry-run"]
    refused = subprocess.run(bad, capture_output=True, text=True, timeout=30, check=False)
    assert refused.returncode == 2
    assert "'-H' is not a Docker context name" in refused.stderr


# --- placement ------------------------------------------------------------------------------------


def _running(names: list[str], context: str) -> list[Container]:
    return [Container(n, n, "running", "img", None, {}, None, context) for n in names]


@pytest.fixture
def live(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str] | str]:
    """What each engine runs (container names), or the error it answers with."""
    answers: dict[str, list[str] | str] = {}

    def list_containers(
        filters: list[str], *, context: str | None = None, timeout: float = 0
    ) -> list[Container]:
        assert context is not None
        assert filters == ["label=filare.session", "status=running"]
        answer = answers[context]
        if isinstance(answer, str):
            raise EngineError(answer)
        return _running(answer, context)

    monkeypatch.setattr(engine, "list_containers", list_containers)
    return answers


def test_pool_places_by_room_then_fewest_live_sessions(
    write_manifest: WriteManifest, tmp_path: Path, live: dict[str, list[str] | str]
) -> None:
    pool = [{"context": "b1", "max_sessions": 3}, {"context": "b2", "max_sessions": 2}]
    ids = ("a", "b", "c", "d", "e")
    manifest = write_manifest(
        {"defaults": {"engines": pool}, "sessions": [session(i) for i in ids]}
    )
    sessions = load_manifest(manifest)
    live["b1"] = ["someone-else"]
    live["b2"] = []
    decided = placement.place(sessions, Registry(tmp_path / "state"))
    # b2 is emptier, then they tie (b1 first in the pool), then b2 is full and b1 takes the rest.
    assert decided.engines == {"a": "b2", "b": "b1", "c": "b2", "d": "b1"}
    assert decided.refused == {"e": "no engine of the pool has room: b1 3/3 live; b2 2/2 live"}


def test_an_unreachable_engine_of_the_pool_has_no_room(
    write_manifest: WriteManifest, tmp_path: Path, live: dict[str, list[str] | str]
) -> None:
    manifest = write_manifest({"defaults": {"engines": POOL}, "sessions": [session("a")]})
    live["build1"] = "engine 'build1' does not answer"
    live["build2"] = []
    decided = placement.place(load_manifest(manifest), Registry(tmp_path / "state"))
    assert decided.engines == {"a": "build2"}


def test_a_session_stays_on_the_engine_it_ran_on(
    write_manifest: WriteManifest, tmp_path: Path, live: dict[str, list[str] | str]
) -> None:
    registry = Registry(tmp_path / "state")
    manifest = write_manifest({"defaults": {"engines": POOL}, "sessions": [session("a")]})
    (one,) = load_manifest(manifest)
    registry.write(
        SessionState(
            session_id="a",
            role="coder",
            owner="me",
            status="stopped",
            container_name="filare-coder-a",
            image="img",
            workspace=one.workspace,
            ssh_dir=tmp_path,
            engine="build2",
            started_at=now(),
        )
    )
    live["build1"] = []
    live["build2"] = ["x"]  # full: the session goes back there all the same
    assert placement.place([one], registry).engines == {"a": "build2"}
    pinned = write_manifest({"sessions": [session("a", engine="build1")]}, name="pinned.yml")
    with pytest.raises(InputError, match="the session lives on engine 'build2'"):
        placement.place(load_manifest(pinned), registry)


# --- surveys over engines -------------------------------------------------------------------------


def _record(session_id: str, context: str | None, tmp_path: Path) -> SessionState:
    return SessionState(
        session_id=session_id,
        role="coder",
        owner="me",
        status="running",
        container_name=f"filare-coder-{session_id}",
        image="img",
        workspace=tmp_path / session_id,
        ssh_dir=tmp_path,
        container_id=f"id-{session_id}",
        engine=context,
    )


def _ours(session_id: str, context: str | None, labels: dict[str, str] | None = None) -> Container:
    own = {"filare.session": session_id, "filare.role": "coder", "filare.owner": "me"}
    return Container(
        f"id-{session_id}", f"filare-coder-{session_id}", "running", "img", None,
        own | (labels or {}), None, context,
    )  # fmt: skip


def test_an_engine_that_does_not_answer_marks_only_its_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.listing import survey

    registry = Registry(tmp_path / "state")
    for one, context in (("here", None), ("there", "b1"), ("gone", "b2")):
        registry.write(_record(one, context, tmp_path))
    asked: list[str | None] = []

    def list_containers(
        filters: list[str], *, context: str | None = None, timeout: float = 0
    ) -> list[Container]:
        asked.append(context)
        if context == "b2":
            raise EngineError("engine 'b2' does not answer")
        return [_ours("here" if context is None else "there", context)]

    monkeypatch.setattr(engine, "list_containers", list_containers)
    fleet = survey(registry)
    assert sorted(asked, key=str) == [None, "b1", "b2"]
    views = {v.session_id: v for v in fleet.sessions}
    assert {k: (v.status, v.engine) for k, v in views.items()} == {
        "here": ("running", None),
        "there": ("running", "b1"),
        "gone": ("unreachable", "b2"),
    }
    assert fleet.unreachable == {"b2": "engine 'b2' does not answer"}
    assert views["gone"].as_json()["engine"] == "b2"


def test_when_no_engine_answers_that_is_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.listing import survey

    registry = Registry(tmp_path / "state")
    registry.write(_record("there", "b1", tmp_path))

    def list_containers(
        filters: list[str], *, context: str | None = None, timeout: float = 0
    ) -> list[Container]:
        raise EngineError(f"down: {context}")

    monkeypatch.setattr(engine, "list_containers", list_containers)
    with pytest.raises(EngineError, match="down: None"):
        survey(registry)


def test_a_container_seen_through_two_contexts_of_one_engine_shows_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.listing import survey

    registry = Registry(tmp_path / "state")
    registry.write(_record("there", "b1", tmp_path))

    def list_containers(
        filters: list[str], *, context: str | None = None, timeout: float = 0
    ) -> list[Container]:
        return [_ours("there", context, {"filare.engine": "b1"})]

    monkeypatch.setattr(engine, "list_containers", list_containers)
    (view,) = survey(registry).sessions
    assert view.container is not None and view.container.engine == "b1"


# --- images on an engine --------------------------------------------------------------------------


def test_a_build_on_an_engine_names_its_context() -> None:
    from orchestrator.images import build_argv

    argv = build_argv(Path("/c/Dockerfile"), Path("/c"), "t:1", {}, on_engine="build1")
    assert argv[:8] == [
        *("env", "-u", "DOCKER_HOST", "-u", "DOCKER_CONTEXT"),
        *("docker", "--context", "build1"),
    ]
    assert argv[8:10] == ["build", "--force-rm"]
    assert build_argv(Path("/c/Dockerfile"), Path("/c"), "t:1", {})[:2] == ["docker", "build"]


def test_an_image_copy_reports_each_tenth_once() -> None:
    from orchestrator.launch import copy_progress

    said: list[str] = []
    report = copy_progress("img:1", "b1", said.append)
    for sent in range(0, 101_000_001, 5_000_000):
        report(sent, 100_000_000)
    assert len(said) == 11
    assert said[0] == "copying image img:1 to engine 'b1': 0 of 100 MB"
    assert said[-1] == "copying image img:1 to engine 'b1': 100 of 100 MB"


def test_two_names_of_one_engine_are_asked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from orchestrator.listing import survey

    config = tmp_path / "docker-config"
    for name, host in (("same", engine.DEFAULT_HOST), ("other", "ssh://agent@build2")):
        folder = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
        folder.mkdir(parents=True)
        meta = {"Name": name, "Endpoints": {"docker": {"Host": host}}}
        (folder / "meta.json").write_text(json.dumps(meta))
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    assert engine.endpoint(None) == engine.endpoint("same") == engine.endpoint("default")
    assert engine.endpoint("other") == "ssh://agent@build2"
    assert engine.endpoint("unknown") is None
    monkeypatch.setenv("DOCKER_HOST", "tcp://elsewhere:2375")
    assert engine.endpoint(None) == "tcp://elsewhere:2375"
    monkeypatch.delenv("DOCKER_HOST")

    registry = Registry(tmp_path / "state")
    registry.write(_record("here", None, tmp_path))
    registry.write(_record("there", "same", tmp_path))
    asked: list[str | None] = []

    def list_containers(
        filters: list[str], *, context: str | None = None, timeout: float = 0
    ) -> list[Container]:
        asked.append(context)
        return [_ours("here", context), _ours("there", context, {"filare.engine": "same"})]

    monkeypatch.setattr(engine, "list_containers", list_containers)
    views = {v.session_id: v for v in survey(registry).sessions}
    assert asked == [None]
    assert {k: v.status for k, v in views.items()} == {"here": "running", "there": "running"}
