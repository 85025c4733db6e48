"""Sessions on engines other than the current one: test engines of the tests' own (a second
dockerd in its own network namespace, reached through a Docker context on its socket), never
the machine's engine reconfigured, restarted or stopped."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from agent_helpers import MakeManifest, inv, our_containers, sh, wait_until

from conftest import BuiltCodexImage
from filare_testing.engines import OwnEngine, own_engine
from filare_testing.fake_model import API_KEY_ENV, FakeModel, message
from filare_testing.fake_model import write_codex_home as write_fake_codex_home
from orchestrator.registry import Registry

pytestmark = pytest.mark.agent

# Engine indices of these tests: 10-19, none shared with other test files.
FIRST_INDEX = 10


@dataclass(frozen=True)
class NamedEngine:
    """A test engine and the Docker context that names it."""

    engine: OwnEngine
    context: str

    def names(self, registry: Registry, *, running: bool = False) -> list[str]:
        """Our containers on this engine, by name."""
        args = [
            "ps",
            "--filter",
            f"label=filare.registry={registry.root}",
            "--format",
            "{{.Names}}",
        ]
        if not running:
            args.insert(1, "--all")
        return sorted(self.engine.docker(*args).split())

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.engine.docker("inspect", name))
        return data[0]


@pytest.fixture(autouse=True)
def own_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The contexts these tests make live in a Docker configuration of their own, which every
    docker and `inv` process they start reads: the user's `~/.docker` never sees them."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


@contextlib.contextmanager
def named_engine(index: int, image: str | None) -> Iterator[NamedEngine]:
    """A started test engine (holding `image`, when given), named by a context
    `filare-test-<index>`; the engine, the context and everything they made are gone
    afterwards."""
    with own_engine(index) as started:
        context = f"filare-test-{index}"
        sh("docker", "context", "rm", "--force", context, check=False)
        sh("docker", "context", "create", context, "--docker", f"host={started.host}")
        try:
            if image is not None:
                started.load_image(image)
            yield NamedEngine(started, context)
        finally:
            sh("docker", "context", "rm", "--force", context, check=False)


@pytest.fixture
def second(smoke_image: str) -> Iterator[NamedEngine]:
    with named_engine(FIRST_INDEX, smoke_image) as engine:
        yield engine


@pytest.fixture
def empty(smoke_image: str) -> Iterator[NamedEngine]:
    """A test engine with no image at all."""
    with named_engine(FIRST_INDEX + 2, None) as engine:
        yield engine


@pytest.fixture
def third(smoke_image: str) -> Iterator[NamedEngine]:
    with named_engine(FIRST_INDEX + 1, smoke_image) as engine:
        yield engine


def listed(registry: Registry, *, elsewhere: bool = False) -> dict[str, dict[str, Any]]:
    """`session.list --json --all` by session; `elsewhere`: with DOCKER_HOST and DOCKER_CONTEXT
    naming engines that are not there."""
    args = ("session.list", "--json", "--all")
    if elsewhere:
        result = inv(
            *args, state=registry.root, DOCKER_HOST="tcp://127.0.0.1:9", DOCKER_CONTEXT="x"
        )
    else:
        result = inv(*args, state=registry.root)
    assert result.returncode == 0, result.stderr
    return {one["session"]: one for one in json.loads(result.stdout)}


def with_defaults(manifest: Path, **defaults: object) -> Path:
    data = yaml.safe_load(manifest.read_text())
    data["defaults"].update(defaults)
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return manifest


def test_a_session_on_a_named_engine_runs_lists_stops_and_prunes_there(
    registry: Registry, make_manifest: MakeManifest, second: NamedEngine
) -> None:
    manifest = make_manifest(("alpha", "beta"))
    data = yaml.safe_load(manifest.read_text())
    data["sessions"][0]["engine"] = second.context  # beta stays on the current engine
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))

    start = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert start.returncode == 0, start.stderr
    assert second.names(registry, running=True) == ["filare-coder-alpha"]
    assert our_containers(registry, all_states=False) == ["filare-reviewer-beta"]
    info = second.inspect("filare-coder-alpha")
    assert info["Config"]["Labels"]["filare.engine"] == second.context
    record = registry.read("coder", "alpha")
    assert record is not None and record.engine == second.context
    assert record.container_id == info["Id"]
    # An engine reached through a socket on this machine sees its files: the workspace is there.
    assert second.engine.docker("exec", "filare-coder-alpha", "cat", "src/main.py") == (
        "print('hello')"
    )

    # What the caller's shell exports does not redirect a call on a named engine.
    views = listed(registry)
    assert {k: (v["status"], v["engine"]) for k, v in views.items()} == {
        "alpha": ("running", second.context),
        "beta": ("running", None),
    }
    elsewhere = listed(registry, elsewhere=True)
    assert elsewhere["alpha"]["status"] == "running"

    stop = inv("session.stop", "--session", "alpha", state=registry.root)
    assert stop.returncode == 0, stop.stderr
    assert second.names(registry) == []
    assert our_containers(registry, all_states=False) == ["filare-reviewer-beta"]
    assert listed(registry)["alpha"]["status"] == "stopped"

    # An exited container there is found and removed by prune, like one here.
    again = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert again.returncode == 0, again.stderr
    second.engine.docker("kill", "filare-coder-alpha")
    assert listed(registry)["alpha"]["status"] == "exited"
    prune = inv("session.prune", state=registry.root)
    assert prune.returncode == 0, prune.stderr
    assert "removed container filare-coder-alpha" in prune.stdout
    assert second.names(registry) == []
    stop_beta = inv("session.stop", "--all", state=registry.root)
    assert stop_beta.returncode == 0, stop_beta.stderr
    records = inv("session.prune", "--records", state=registry.root)
    assert records.returncode == 0, records.stderr
    assert not registry.session_dir("coder", "alpha").exists()


def test_an_unknown_engine_is_refused_before_anything_is_written(
    registry: Registry, make_manifest: MakeManifest
) -> None:
    manifest = make_manifest(("alpha",), engine="filare-test-none")
    result = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert result.returncode == 2, result.stderr
    assert "no Docker context named 'filare-test-none'" in result.stderr
    assert not registry.root.exists()
    assert not (manifest.parent / "outputs" / "ws" / "alpha").exists()


def test_pool_placement_by_room_and_fewest_live_sessions(
    registry: Registry, make_manifest: MakeManifest, second: NamedEngine, third: NamedEngine
) -> None:
    manifest = with_defaults(
        make_manifest(("s1", "s2", "s3", "s4")),
        engines=[
            {"context": second.context, "max_sessions": 3},
            {"context": third.context, "max_sessions": 1},
        ],
    )
    # Something else already runs on the second engine: it counts.
    second.engine.docker(
        "run", "-d", "--name", "someone-else", "--label", "filare.session=x", "filare-codex:smoke",
        "sleep", "600",
    )  # fmt: skip
    result = inv("session.start", "--manifest", str(manifest), state=registry.root)
    # No room for s4: bad input (the pool's sizes), as a missing image is.
    assert result.returncode == 2, result.stdout + result.stderr
    # s1 to the emptier third engine, which is then full; s2 and s3 fill the second.
    assert third.names(registry, running=True) == ["filare-coder-s1"]
    assert second.names(registry, running=True) == ["filare-coder-s2", "filare-coder-s3"]
    assert "no engine of the pool has room" in result.stdout + result.stderr
    views = listed(registry)
    assert views["s4"]["status"] == "error"
    assert views["s1"]["engine"] == third.context
    assert our_containers(registry) == []

    # A session stays where it was placed: stopped and started again, it goes back there,
    # even though the other engine now has room.
    inv("session.stop", "--session", "s1", check=True, state=registry.root)
    second.engine.docker("rm", "--force", "someone-else")
    inv("session.start", "--manifest", str(manifest), "--session", "s1", state=registry.root)
    assert third.names(registry, running=True) == ["filare-coder-s1"]


def test_an_engine_that_stops_answering_marks_only_its_sessions_then_they_resume(
    registry: Registry, make_manifest: MakeManifest, second: NamedEngine
) -> None:
    manifest = make_manifest(("alpha", "beta"))
    data = yaml.safe_load(manifest.read_text())
    data["sessions"][0]["engine"] = second.context
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    start = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert start.returncode == 0, start.stderr

    second.engine.stop_daemon()
    views = listed(registry)
    assert views["alpha"]["status"] == "unreachable"
    assert views["beta"]["status"] == "running"
    table = inv("session.list", state=registry.root)
    assert table.returncode == 0, table.stderr
    assert "unreachable" in table.stdout
    assert f"engine {second.context!r}" in table.stderr
    # Stop leaves it as it is, says why and fails; the session on the current engine stops.
    stop = inv("session.stop", "--all", state=registry.root)
    assert stop.returncode == 1
    assert "not stopped: alpha: its engine" in stop.stdout
    assert our_containers(registry) == []
    record = registry.read("coder", "alpha")
    assert record is not None and record.status == "running"

    second.engine.start()
    wait_until(lambda: listed(registry)["alpha"]["status"] == "exited", "alpha to show exited")
    resume = inv("session.resume", "--all", state=registry.root)
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert listed(registry)["alpha"]["status"] == "running"
    assert second.names(registry, running=True) == ["filare-coder-alpha"]
    stop_all = inv("session.stop", "--all", state=registry.root)
    assert stop_all.returncode == 0, stop_all.stderr


def test_an_image_the_engine_lacks_is_copied_there_with_progress_or_refused(
    registry: Registry, make_manifest: MakeManifest, empty: NamedEngine, smoke_image: str
) -> None:
    missing = make_manifest(("ghost",), name="ghost.yml", engine=empty.context)
    data = yaml.safe_load(missing.read_text())
    data["defaults"]["image"] = "filare-codex:nowhere"
    missing.write_text(yaml.safe_dump(data, sort_keys=False))
    refused = inv("session.start", "--manifest", str(missing), state=registry.root)
    assert refused.returncode == 2
    assert (
        f"image 'filare-codex:nowhere' not found on engine {empty.context!r}: build it with "
        f"'uv run inv codex.build --tag filare-codex:nowhere --engine {empty.context}'"
    ) in refused.stdout + refused.stderr
    assert empty.names(registry) == []

    manifest = make_manifest(("alpha",), engine=empty.context)
    start = inv("session.start", "--manifest", str(manifest), state=registry.root)
    assert start.returncode == 0, start.stdout + start.stderr
    progress = [line for line in start.stderr.splitlines() if "image" in line]
    assert progress[0].startswith(f"copying image {smoke_image} to engine {empty.context!r}: 0 of")
    assert progress[-1] == f"copied image {smoke_image} to engine {empty.context!r}"
    assert empty.names(registry, running=True) == ["filare-coder-alpha"]
    assert inv("session.stop", "--all", state=registry.root).returncode == 0


def test_codex_build_builds_on_the_engine_named(empty: NamedEngine) -> None:
    tag = "filare-codex:engine-build-test"
    result = inv(
        "codex.build", "--dockerfile", "docker/Dockerfile.smoke", "--tag", tag,
        "--engine", empty.context,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert f"built {tag}" in result.stdout
    assert empty.engine.docker("image", "inspect", "--format", "{{.Id}}", tag).startswith("sha256:")
    here = sh("docker", "image", "inspect", tag, check=False)
    assert here.returncode != 0  # never on the machine's own engine
    unknown = inv("codex.build", "--dockerfile", "docker/Dockerfile.smoke", "--engine", "nope-x")
    assert unknown.returncode == 2
    assert "no Docker context named 'nope-x'" in unknown.stderr


def test_turns_and_questions_go_through_the_sessions_own_engine(
    registry: Registry, make_manifest: MakeManifest, second: NamedEngine, turn_smoke_image: str
) -> None:
    manifest = make_manifest(("alpha",), engine=second.context, image=turn_smoke_image)
    assert inv("session.start", "--manifest", str(manifest), state=registry.root).returncode == 0
    try:
        second.engine.docker(
            "exec", "filare-coder-alpha", "agent-entrypoint", "filare-ask", "--reason", "from there"
        )
        questions = inv("feedback.list", "--json", state=registry.root)
        assert questions.returncode == 0, questions.stderr
        (question,) = json.loads(questions.stdout)
        assert (question["session_id"], question["reason"]) == ("alpha", "from there")

        # The smoke image has no Codex: the turn starts in the container on the second engine
        # (`docker --context … exec`) and ends there, failed, as its transcript on the host says.
        sent = inv(
            "session.send", "--session", "alpha", "--message", "hello", "--wait",
            state=registry.root,
        )  # fmt: skip
        assert "0001" in sent.stdout, sent.stdout + sent.stderr
        transcript = registry.session_dir("coder", "alpha") / "agent" / "transcript"
        assert (transcript / "0001.exit").is_file()
        log = inv("session.log", "--session", "alpha", "--json", state=registry.root)
        assert log.returncode == 0, log.stderr
        kinds = [json.loads(line)["type"] for line in log.stdout.splitlines()]
        assert kinds[0] == "turn_started" and kinds[-1] in {"turn_ended", "turn_failed"}
    finally:
        inv("session.stop", "--all", state=registry.root)


def test_what_an_engine_out_of_reach_of_this_machines_files_cannot_give_is_refused_first(
    registry: Registry, make_manifest: MakeManifest, project: Path
) -> None:
    """Such an engine runs sessions on volumes, the egress proxy too (test_remote_storage.py),
    but not this machine's folders as mounts, or a mounted env file: refused, one line each,
    before anything is written."""
    context = "filare-test-19-remote"
    sh("docker", "context", "rm", "--force", context, check=False)
    sh("docker", "context", "create", context, "--docker", "host=tcp://192.0.2.1:2376")
    try:
        (project / "shared").mkdir()
        manifest = make_manifest(
            ("alpha",), engine=context, env_mode="mount", mounts=[f"{project / 'shared'}:/data"]
        )
        result = inv("session.start", "--manifest", str(manifest), state=registry.root)
        assert result.returncode == 2, result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        where = f"engine {context!r} is at tcp://192.0.2.1:2376"
        assert len(lines) == 2 and all(where in line for line in lines), lines
        assert [line.split("field ")[1].split(":")[0] for line in lines] == [
            "'mounts'",
            "'env_mode'",
        ]
        assert not registry.root.exists()
        assert not (manifest.parent / "outputs" / "ws" / "alpha").exists()
    finally:
        sh("docker", "context", "rm", "--force", context, check=False)


@pytest.mark.image
def test_a_codex_turn_on_a_second_engine_against_the_fake_model(
    registry: Registry, project: Path, codex_image: BuiltCodexImage, fake: FakeModel
) -> None:
    """The real image, copied there by the start itself; Codex reaches the model on this host
    through the engine's link (its `host-gateway` is the engine's own bridge)."""
    with named_engine(FIRST_INDEX + 4, None) as there:
        url = f"http://{there.engine.host_address}:{fake.port}/v1"
        write_fake_codex_home(project / "outputs" / "codex-home", url)
        (project / "outputs" / "model.env").write_text(f"{API_KEY_ENV}=not-a-real-key\n")
        manifest = project / "far.yml"
        manifest.write_text(
            yaml.safe_dump(
                {
                    "defaults": {
                        "image": codex_image.tag,
                        "engine": there.context,
                        "ssh_key": "outputs/keys/id_test",
                        "env_file": "outputs/model.env",
                        "codex_dir": "outputs/codex-home",
                    },
                    "sessions": [
                        {"id": "far", "role": "coder", "branch": "agent/far", "workspace": "ws/far"}
                    ],
                }
            )
        )
        try:
            start = inv("session.start", "--manifest", str(manifest), state=registry.root)
            assert start.returncode == 0, start.stdout + start.stderr[-3000:]
            assert f"copied image {codex_image.tag} to engine {there.context!r}" in start.stderr
            fake.enqueue(message("Hello from the second engine."))
            sent = inv(
                "session.send", "--session", "far", "--message", "Say hello.", "--wait",
                state=registry.root,
            )  # fmt: skip
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert "Hello from the second engine." in sent.stdout
            assert "Say hello." in fake.model_requests[-1].texts("user")
            assert there.names(registry, running=True) == ["filare-coder-far"]
            assert our_containers(registry) == []
        finally:
            inv("session.stop", "--all", state=registry.root)
