"""Planning is pure: names, labels and the launch script's argv from a session."""

from __future__ import annotations

from pathlib import Path

from orchestrator import __version__
from orchestrator.manifest import load_manifest
from orchestrator.plan import container_name, find_repository, plan_launch, session_filters
from tests.conftest import WriteManifest, session


def test_container_name_from_role_and_id() -> None:
    assert container_name("coder", "alpha-1") == "filare-coder-alpha-1"


def test_plan_labels_and_argv(write_manifest: WriteManifest, tmp_path: Path) -> None:
    manifest = write_manifest(
        session(tags=["t1", "t2"], resources={"cpus": 1.5, "memory": "2g"}, owner="ops")
    )
    (one,) = load_manifest(manifest)
    registry = tmp_path / "state"
    plan = plan_launch(one, registry_root=registry, script=Path("/s.sh"))
    assert plan.name == "filare-coder-alpha"
    assert plan.ssh_dir == registry / "coder" / "alpha" / "ssh"
    assert plan.labels == {
        "filare.session": "alpha",
        "filare.role": "coder",
        "filare.owner": "ops",
        "filare.branch": "agent/alpha",
        "filare.workspace": str(manifest.parent / "ws" / "alpha"),
        "filare.manifest": str(manifest),
        "filare.registry": str(registry),
        "filare.version": __version__,
        "filare.tags": "t1,t2",
    }
    argv = plan.argv
    assert argv[:3] == ["bash", "/s.sh", "--detach"]

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert value("--name") == "filare-coder-alpha"
    assert value("--ssh-dir") == str(plan.ssh_dir)
    assert value("--env-file") == str(manifest.parent / "a.env")
    assert value("--seed-from") == str(tmp_path)  # the manifest's repository
    assert value("--codex-dir") == str(registry / "coder" / "alpha" / "codex")
    assert value("--transcript-dir") == str(registry / "coder" / "alpha" / "agent" / "transcript")
    # No `egress`: the default profile, on a network of its own whose only exit is the proxy.
    assert value("--network").startswith("filare-coder-alpha-egress-")
    assert value("--egress-proxy") == "http://filare-egress:3128"
    assert value("--cpus") == "1.5"
    assert value("--memory") == "2g"
    assert value("--pids-limit") == "4096"
    assert value("--log-max-size") == "10m"
    labels = [argv[i + 1] for i, a in enumerate(argv) if a == "--label"]
    assert labels == [f"{k}={v}" for k, v in plan.labels.items()]
    assert "--dry-run" not in argv


def test_filters_always_pin_the_registry(tmp_path: Path) -> None:
    assert session_filters(tmp_path, session="a", role="r") == [
        f"label=filare.registry={tmp_path}",
        "label=filare.session=a",
        "label=filare.role=r",
    ]


def test_find_repository(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    (tmp_path / "repo" / "a" / "b").mkdir(parents=True)
    assert find_repository(tmp_path / "repo" / "a" / "b") == tmp_path / "repo"
    assert find_repository(Path("/")) in {None, Path("/")}


def test_limits_by_default_and_zero_lifts_them(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    import os

    manifest = write_manifest(
        [
            session("plain"),
            session("lifted", resources={"cpus": 0, "memory": 0, "pids": 0}),
        ]
    )
    plain, lifted = load_manifest(manifest)
    argv = plan_launch(plain, registry_root=tmp_path, script=Path("/s.sh")).argv

    def value(flag: str) -> str:
        return argv[argv.index(flag) + 1]

    assert value("--memory") == "4g"
    assert value("--cpus") == f"{min(2.0, float(os.cpu_count() or 1)):g}"
    assert value("--pids-limit") == "4096"
    assert (value("--log-max-size"), value("--log-max-files")) == ("10m", "3")
    argv = plan_launch(lifted, registry_root=tmp_path, script=Path("/s.sh")).argv
    assert not {"--memory", "--cpus", "--pids-limit"} & set(argv)
    assert "--log-max-size" in argv


def test_egress_open_joins_the_shared_bridge_and_none_has_no_network(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    manifest = write_manifest(
        [session("open", egress="open"), session("none", egress="none", runtime="runsc")]
    )
    opened, closed = load_manifest(manifest)
    argv = plan_launch(opened, registry_root=tmp_path, script=Path("/s.sh")).argv
    assert argv[argv.index("--network") + 1] == "filare-sessions"
    assert "--egress-proxy" not in argv and "--runtime" not in argv
    argv = plan_launch(closed, registry_root=tmp_path, script=Path("/s.sh")).argv
    assert argv[argv.index("--network") + 1] == "none"
    assert argv[argv.index("--runtime") + 1] == "runsc"
