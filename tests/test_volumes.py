"""Sessions on engines without this machine's files, without an engine: the bounded reader of
the tar streams a session's volume sends home, and the `docker run` a start spells there."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from orchestrator import volumes
from orchestrator.errors import InputError
from orchestrator.manifest import load_manifest
from orchestrator.plan import plan_launch
from orchestrator.registry import Registry, SessionState
from orchestrator.untar import mirror, relative_name, unpack
from tests.conftest import WriteManifest, session

LIMIT = 1 << 20


def tar_of(*entries: tarfile.TarInfo | tuple[str, bytes]) -> io.BytesIO:
    """A tar stream as `docker cp CONTAINER:/home/agent/.filare -` sends it: every name under
    the copied folder's own."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as archive:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                archive.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    stream.seek(0)
    return stream


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_regular_files_and_folders_land_below_the_target(tmp_path: Path) -> None:
    stream = tar_of(
        special(".filare", tarfile.DIRTYPE),
        special(".filare/transcript", tarfile.DIRTYPE),
        (".filare/transcript/0001.jsonl", b'{"type":"x"}\n'),
        (".filare/agentd.json", b"{}"),
    )
    done = unpack(stream, tmp_path / "t", limit=LIMIT, max_entries=100)
    assert done.files == {"transcript/0001.jsonl", "agentd.json"}
    assert done.folders == {"transcript"}
    assert (tmp_path / "t" / "transcript" / "0001.jsonl").read_bytes() == b'{"type":"x"}\n'
    assert (tmp_path / "t" / "agentd.json").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "entry",
    [
        special(".filare/link", tarfile.SYMTYPE, "/etc/passwd"),
        special(".filare/hard", tarfile.LNKTYPE, ".filare/agentd.json"),
        special(".filare/dev", tarfile.CHRTYPE),
        special(".filare/block", tarfile.BLKTYPE),
        special(".filare/fifo", tarfile.FIFOTYPE),
    ],
    ids=["symlink", "hardlink", "char device", "block device", "fifo"],
)
def test_links_devices_and_fifos_are_skipped(tmp_path: Path, entry: tarfile.TarInfo) -> None:
    stream = tar_of((".filare/agentd.json", b"{}"), entry, (".filare/after", b"still read"))
    done = unpack(stream, tmp_path / "t", limit=LIMIT, max_entries=100)
    assert done.skipped == 1
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["after", "agentd.json"]
    assert not os.path.lexists(tmp_path / "t" / Path(entry.name).name)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("/etc/cron.d/x", "absolute"),
        (".filare/../../escape", "climbs out"),
        ("../escape", "climbs out"),
        (".filare/" + "d/" * 40 + "deep", "deeper than"),
        (".filare/" + "n" * 2000, "name too long"),
    ],
)
def test_names_that_leave_the_target_fail_the_whole_unpack(
    tmp_path: Path, name: str, why: str
) -> None:
    with pytest.raises(InputError, match=why):
        unpack(tar_of((name, b"x")), tmp_path / "t", limit=LIMIT, max_entries=100)
    assert not (tmp_path / "escape").exists()
    assert not (tmp_path / "t" / "escape").exists()


def test_the_size_and_entry_bounds_hold(tmp_path: Path) -> None:
    big = tar_of((".filare/big", b"x" * (LIMIT + 1)))
    with pytest.raises(InputError, match="more than 1048576 bytes"):
        unpack(big, tmp_path / "a", limit=LIMIT, max_entries=100)
    assert not (tmp_path / "a" / "big").exists()
    many = tar_of(*((f".filare/{n}", b"") for n in range(20)))
    with pytest.raises(InputError, match="more than 10 entries"):
        unpack(many, tmp_path / "b", limit=LIMIT, max_entries=10)


def test_a_file_and_a_folder_of_one_name_and_a_broken_stream_are_refused(tmp_path: Path) -> None:
    clash = tar_of((".filare/x", b"file"), (".filare/x/y", b"below a file"))
    with pytest.raises(InputError, match="a file and a folder of one name"):
        unpack(clash, tmp_path / "a", limit=LIMIT, max_entries=100)
    with pytest.raises(InputError, match="not a tar stream"):
        unpack(io.BytesIO(b"not a tar at all" * 100), tmp_path / "b", limit=LIMIT, max_entries=9)


def test_relative_names() -> None:
    assert relative_name(".filare") is None
    assert relative_name("./.filare/./a/b") == "a/b"
    with pytest.raises(InputError):
        relative_name("a/../../b")


def test_mirror_replaces_what_changed_and_removes_what_is_gone(tmp_path: Path) -> None:
    target = tmp_path / "agent"
    (target / "questions").mkdir(parents=True)
    (target / "questions" / "taken.json").write_text("{}")
    (target / "stale").mkdir()
    (target / "agentd.json").write_text("old")
    outside = tmp_path / "outside"
    outside.write_text("the host's")
    (target / "planted").symlink_to(outside)
    (target / "transcript").mkdir()
    (target / "transcript" / "kept").write_text("mirrored elsewhere")
    stream = tar_of(
        special(".filare/questions", tarfile.DIRTYPE),
        (".filare/agentd.json", b"new"),
        (".filare/planted", b"a file now"),
    )
    done = unpack(stream, tmp_path / "staging", limit=LIMIT, max_entries=100)
    mirror(tmp_path / "staging", target, done, skip="transcript")
    assert sorted(p.name for p in target.iterdir()) == [
        "agentd.json",
        "planted",
        "questions",
        "transcript",
    ]
    assert list((target / "questions").iterdir()) == []
    assert (target / "agentd.json").read_text() == "new"
    assert not (target / "planted").is_symlink()
    assert outside.read_text() == "the host's"
    assert (target / "transcript" / "kept").read_text() == "mirrored elsewhere"


# --- the start's docker run ------------------------------------------------------------------


def test_a_start_there_mounts_volumes_and_a_tmpfs_never_a_host_folder(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    manifest = write_manifest(
        session(engine="far", egress="open", resources={"cpus": 1, "memory": "2g"})
    )
    (one,) = load_manifest(manifest)
    registry = tmp_path / "state"
    plan = volumes.with_volumes(plan_launch(one, registry_root=registry, script=Path("/s.sh")))
    assert plan.labels["filare.storage"] == "volumes"
    names = {p: volumes.volume_name(registry, "coder", "alpha", p) for p in volumes.PARTS}
    args = volumes._run_args(plan, names, 10001, 10001)
    assert "--volume" not in args and "-v" not in args
    mounts = [args[i + 1] for i, word in enumerate(args) if word == "--mount"]
    assert mounts == [
        f"type=volume,source={names['workspace']},target=/home/agent/workspace",
        f"type=volume,source={names['codex']},target=/home/agent/.codex",
        f"type=volume,source={names['agent']},target=/home/agent/.filare",
        f"type=volume,source={names['inbox']},target=/run/filare/inbox",
    ]
    assert args[args.index("--tmpfs") + 1] == (
        "/home/agent/.ssh:mode=0700,uid=10001,gid=10001,size=1m"
    )
    assert str(registry) not in " ".join(mounts)
    for flag, value in [
        ("--env-file", str(manifest.parent / "a.env")),
        ("--name", "filare-coder-alpha"),
        ("--network", "filare-sessions"),
        ("--add-host", "host.docker.internal:host-gateway"),
        ("--cpus", "1"),
        ("--memory", "2g"),
        ("--user", plan.user),
    ]:
        assert args[args.index(flag) + 1] == value, flag
    labels = [args[i + 1] for i, word in enumerate(args) if word == "--label"]
    assert "filare.storage=volumes" in labels and "filare.engine=far" in labels
    assert args[-4:-2] == [plan.session.image, "sh"]


def test_volume_names_tell_two_state_folders_apart(tmp_path: Path) -> None:
    one = volumes.volume_name(tmp_path / "a", "coder", "alpha", "workspace")
    two = volumes.volume_name(tmp_path / "b", "coder", "alpha", "workspace")
    assert one != two
    assert one.startswith("filare-coder-alpha-") and one.endswith("-workspace")


def test_what_an_engine_elsewhere_cannot_give(write_manifest: WriteManifest) -> None:
    manifest = write_manifest(
        {
            "sessions": [
                session(engine="far"),
                session("beta", engine="far", egress="none"),
                session("gamma", engine="far", env_mode="mount"),
            ]
        }
    )
    proxied, closed, mounted = load_manifest(manifest)
    # The egress proxy runs there too (on volumes of its own).
    assert volumes.problems(proxied, "ssh://agent@far") == []
    assert volumes.problems(closed, "ssh://agent@far") == []
    (problem,) = volumes.problems(mounted, "ssh://agent@far")
    assert problem.startswith("field 'env_mode': engine 'far' is at ssh://agent@far")


def test_a_start_there_behind_the_proxy_gets_its_variables_and_ssh_through_it(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    (one,) = load_manifest(write_manifest(session(engine="far", egress={"allow": ["a.test"]})))
    registry = tmp_path / "state"
    plan = volumes.with_volumes(plan_launch(one, registry_root=registry, script=Path("/s.sh")))
    names = {p: volumes.volume_name(registry, "coder", "alpha", p) for p in volumes.PARTS}
    args = volumes._run_args(plan, names, 10001, 10001)
    assert "--add-host" not in args
    assert args[args.index("--dns") + 1] == "192.0.2.53"
    given = {args[i + 1] for i, word in enumerate(args) if word == "--env"}
    for variable in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "ALL_PROXY", "no_proxy"):
        assert any(text.startswith(f"{variable}=") for text in given), variable
    assert "HTTPS_PROXY=http://filare-egress:3128" in given
    files = {name: data for name, data, _ in volumes._ssh_files(plan)}
    assert b"proxy-connect filare-egress 3128 %h %p" in files["config"]
    assert files["proxy-connect"].startswith(b"import os, socket, sys, threading\n")
    compile(files["proxy-connect"], "proxy-connect", "exec")


def test_the_proxy_there_mounts_labelled_volumes_and_takes_policies_through_exec(
    tmp_path: Path,
) -> None:
    from orchestrator import egress_volumes

    args = egress_volumes.volume_args("filare-egress-abc")
    assert "--volume" not in args
    assert [args[i + 1] for i, word in enumerate(args) if word == "--mount"] == [
        "type=volume,source=filare-egress-abc-policies,target=/egress/policies",
        "type=volume,source=filare-egress-abc-denials,target=/egress/denials",
    ]
    create = egress_volumes.create_volume_argv("filare-egress-abc", tmp_path, "denials")
    assert create[:2] == ["volume", "create"] and create[-1] == "filare-egress-abc-denials"
    assert f"filare.egress-registry={tmp_path}" in create
    write = egress_volumes.write_policy_argv("filare-egress-abc", "net-1")
    assert write[:5] == ["exec", "-i", "--user", "10001:10001", "filare-egress-abc"]
    assert write[-1] == "net-1" and "os.replace(" in write[-2]
    compile(write[-2], "write-policy", "exec")
    assert egress_volumes.drop_policy_argv("filare-egress-abc", "net-1")[-3:] == [
        "-f", "--", "/egress/policies/net-1.json",
    ]  # fmt: skip


def test_the_policy_script_replaces_a_stale_policy_of_the_same_subnet(tmp_path: Path) -> None:
    """What runs in the proxy, run here on a folder of the test's own."""
    import json
    import subprocess
    import sys

    from orchestrator import egress_volumes

    folder = tmp_path / "policies"
    folder.mkdir()
    (folder / "old.json").write_text(json.dumps({"subnet": "10.213.0.16/28"}))
    (folder / "other.json").write_text(json.dumps({"subnet": "10.213.0.32/28"}))
    script = egress_volumes.write_policy_argv("p", "new")[-2].replace(
        '"/egress/policies"', repr(str(folder))
    )
    policy = json.dumps({"subnet": "10.213.0.16/28", "session": "alpha"}).encode()
    subprocess.run([sys.executable, "-c", script, "new"], input=policy, check=True, timeout=30)
    assert sorted(p.name for p in folder.iterdir()) == ["new.json", "other.json"]
    assert (folder / "new.json").read_bytes() == policy


def remote_state(tmp_path: Path, **changes: Any) -> SessionState:
    """A session's record on an engine that does not share this machine's files."""
    state = SessionState(
        session_id="alpha",
        role="coder",
        owner="me",
        status="running",
        container_name="filare-coder-alpha",
        image="filare-codex",
        workspace=tmp_path / "ws",
        ssh_dir=tmp_path / "ssh",
        labels={"filare.storage": "volumes"},
        engine="far",
    )
    return state.replace(**changes)


def test_inbox_names_are_checked_before_any_engine_call(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    state = remote_state(tmp_path)
    store = volumes.storage(registry, state)
    assert isinstance(store, volumes.Volumes)
    for bad in ("../x", "-rf", ".hidden", "a b"):
        with pytest.raises(InputError, match="no inbox file"):
            store.deliver([], [bad])
    assert isinstance(volumes.storage(registry, state.replace(labels={})), volumes.BindMounts)
    assert volumes.workspace_source(state.replace(labels={})) == str(tmp_path / "ws")


def test_forgotten_turns_leave_the_volume_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past MAX_TURNS a turn is removed here and, on an engine elsewhere, in its volume: else the
    next copy home brings its transcript back and the session's folder only grows."""
    from orchestrator import conversation

    state = remote_state(tmp_path, container_id="c0ffee", user="10001:10001")
    folder = tmp_path / "state" / "coder" / "alpha"
    transcripts = folder / "agent" / "transcript"
    for path in (folder / "turns", folder / "inbox", transcripts):
        path.mkdir(parents=True)
    for number in ("0001", "0002", "0003"):
        (folder / "turns" / f"{number}.json").write_text("{}")
        (folder / "inbox" / f"{number}.message").write_text("hi")
        (transcripts / f"{number}.jsonl").write_text("{}\n")
    monkeypatch.setattr(conversation, "MAX_TURNS", 2)
    assert conversation._forget_old_turns(folder, state) == ["0001"]
    assert sorted(p.name for p in transcripts.iterdir()) == ["0002.jsonl", "0003.jsonl"]
    assert not (folder / "inbox" / "0001.message").exists()

    calls: list[list[str]] = []
    monkeypatch.setattr(volumes, "_run", lambda where, args, *rest: calls.append(list(args)))
    store = volumes.storage(Registry(tmp_path / "state"), state)
    store.forget_transcripts(["0001"])
    assert calls == [
        ["exec", "--user", "10001:10001", "c0ffee", "rm", "-f", "--"]
        + [f"/home/agent/.filare/transcript/0001.{s}" for s in ("jsonl", "exit", "stderr", "pid")]
    ]
    store.forget_transcripts(["../0001", "1 2"])  # not a turn's number: nothing is run
    assert len(calls) == 1
