"""File checks before any start: env files by Docker's rules, keys, folders; never echo values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.errors import ManifestError
from orchestrator.manifest import load_manifest
from orchestrator.preflight import check_inputs, env_file_problems
from tests.conftest import WriteManifest, session


def problems(tmp_path: Path, content: bytes) -> list[str]:
    path = tmp_path / "x.env"
    path.write_bytes(content)
    return env_file_problems(path)


def test_valid_env_file_lines(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbfA=1\n  B=with spaces = and more\n# note\n\nPASSTHROUGH\nC=\r\n"
    assert problems(tmp_path, content) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"A=1\n=secret-value\n", "line 2: no variable name"),
        (b"MY VAR=secret-value\n", "line 1: variable name contains whitespace"),
        (b"A=1\nB=\xff\xfesecret\n", "line 2: not valid UTF-8"),
        (b"A=" + b"x" * 70000 + b"\n", "line 1: longer than"),
    ],
)
def test_lines_docker_would_reject_are_named_by_number_only(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    (found,) = problems(tmp_path, content)
    assert found.startswith(expected)
    assert "secret" not in found


def test_missing_env_file(write_manifest: WriteManifest) -> None:
    sessions = load_manifest(write_manifest(session(env_file="missing.env")))
    with pytest.raises(ManifestError, match=r"session 'alpha': field 'env_file': .*does not exist"):
        check_inputs(sessions)


def test_key_that_is_a_folder(write_manifest: WriteManifest, session_files: Path) -> None:
    (session_files / "keydir").mkdir()
    sessions = load_manifest(write_manifest(session(ssh_key="keydir")))
    with pytest.raises(ManifestError, match=r"field 'ssh_key': .*is a folder"):
        check_inputs(sessions)


def test_bad_env_line_error_names_file_session_and_line(
    write_manifest: WriteManifest, session_files: Path
) -> None:
    (session_files / "bad.env").write_text("TOKEN=sk-canary\nBAD LINE=sk-canary\n")
    sessions = load_manifest(write_manifest(session(env_file="bad.env")))
    with pytest.raises(ManifestError) as error:
        check_inputs(sessions)
    message = str(error.value)
    assert "session 'alpha': field 'env_file'" in message
    assert "bad.env: line 2" in message
    assert "sk-canary" not in message


def test_workspace_that_is_a_file(write_manifest: WriteManifest, session_files: Path) -> None:
    (session_files / "ws-file").write_text("")
    sessions = load_manifest(write_manifest(session(workspace="ws-file")))
    with pytest.raises(ManifestError, match=r"field 'workspace': .* is not a folder"):
        check_inputs(sessions)


def test_unreadable_file(write_manifest: WriteManifest, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads every file, so unreadability is simulated at the permission check itself.
    sessions = load_manifest(write_manifest(session()))
    monkeypatch.setattr("orchestrator.preflight.os.access", lambda path, mode: False)
    with pytest.raises(ManifestError, match=r"field 'env_file': .* is not readable"):
        check_inputs(sessions)


def test_an_export_line_is_named_as_such(tmp_path: Path) -> None:
    (found,) = problems(tmp_path, b"A=1\nexport TOKEN=secret-value\n")
    assert found == "line 2: 'export' is not allowed in env files; write NAME=VALUE"


PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIcanarycanarycanary test@host\n"


def test_a_public_key_is_refused_without_being_shown(
    write_manifest: WriteManifest, session_files: Path
) -> None:
    (session_files / "id_test.pub").write_text(PUBLIC_KEY)
    sessions = load_manifest(write_manifest(session(ssh_key="id_test.pub")))
    with pytest.raises(ManifestError) as error:
        check_inputs(sessions)
    (line,) = error.value.problems
    assert "session 'alpha': field 'ssh_key'" in line
    assert "is not a private key (a public key, or another file)" in line
    assert "canary" not in line and "AAAA" not in line


@pytest.mark.parametrize("where", ["/etc", "link-to-etc", "registry", "other-session", "home"])
def test_a_transcript_folder_follows_the_workspace_rules(
    write_manifest: WriteManifest, session_files: Path, where: str
) -> None:
    """It is mounted writable and given to the session's user, like a workspace."""
    registry = session_files / "state"
    (session_files / "link-to-etc").symlink_to("/etc")
    folder = {
        "/etc": "/etc",
        "link-to-etc": "link-to-etc",
        "registry": str(registry),
        "other-session": str(registry / "coder" / "beta" / "agent" / "transcript"),
        "home": "~",
    }[where]
    sessions = load_manifest(write_manifest(session(transcript_dir=folder)))
    with pytest.raises(ManifestError, match=r"field 'transcript_dir': .* cannot be a transcript"):
        check_inputs(sessions, registry_root=registry)


def test_a_transcript_folder_may_be_the_sessions_own_or_one_of_the_users(
    write_manifest: WriteManifest, session_files: Path
) -> None:
    registry = session_files / "state"
    own = registry / "coder" / "alpha" / "agent" / "transcript"
    for folder in (str(own), "transcripts/alpha"):
        sessions = load_manifest(write_manifest(session(transcript_dir=folder)))
        check_inputs(sessions, registry_root=registry)


@pytest.mark.parametrize(
    ("first", "second", "how"),
    [("ws/a", "ws/a/inner", "lies inside"), ("ws/a/inner", "ws/a", "holds")],
)
def test_a_workspace_in_another_sessions_needs_both_to_share(
    write_manifest: WriteManifest, first: str, second: str, how: str
) -> None:
    """Either agent could write what the other runs, as on one shared folder."""
    unshared = [session("alpha", workspace=first), session("beta", workspace=second)]
    with pytest.raises(ManifestError) as error:
        check_inputs(load_manifest(write_manifest(unshared)))
    assert "session 'beta': field 'workspace': " in str(error.value)
    assert f"{how} session 'alpha'" in str(error.value)
    shared = [
        session("alpha", workspace=first, shared_workspace=True),
        session("beta", workspace=second, shared_workspace=True),
    ]
    check_inputs(load_manifest(write_manifest(shared)))


@pytest.mark.parametrize(
    ("field", "denied", "what"),
    [("workspace", os.W_OK, "writable"), ("codex_dir", os.R_OK, "readable")],
)
def test_an_unusable_or_dangling_folder_is_bad_input(
    write_manifest: WriteManifest,
    session_files: Path,
    monkeypatch: pytest.MonkeyPatch,
    field: str,
    denied: int,
    what: str,
) -> None:
    """Exit code 2 before anything starts, not an engine fault half way. The workspace is
    written; the Codex folder only read (a read-only one is fine)."""
    (session_files / "folder").mkdir()
    (session_files / "dangling").symlink_to(session_files / "gone")
    dangling = load_manifest(write_manifest(session(**{field: "dangling"})))
    with pytest.raises(ManifestError, match=rf"field '{field}': .* is a link to nothing") as error:
        check_inputs(dangling)
    assert error.value.exit_code == 2
    unusable = load_manifest(write_manifest(session(**{field: "folder"})))
    # Root reads and writes everywhere, so it is simulated at the permission check itself.
    real_access = os.access
    monkeypatch.setattr(
        "orchestrator.preflight.os.access",
        lambda path, mode: not mode & denied and real_access(path, mode),
    )
    with pytest.raises(ManifestError, match=rf"field '{field}': .* is not {what}"):
        check_inputs(unusable)


def test_a_read_only_or_absent_codex_folder_is_fine(
    write_manifest: WriteManifest, session_files: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_inputs(load_manifest(write_manifest(session(codex_dir="no-such-folder"))))
    real_access = os.access
    codex = session_files / "codex"
    monkeypatch.setattr(
        "orchestrator.preflight.os.access",
        lambda path, mode: not (Path(path) == codex and mode & os.W_OK) and real_access(path, mode),
    )
    check_inputs(load_manifest(write_manifest(session(codex_dir="codex"))))


@pytest.mark.parametrize(
    ("field", "folder"), [("workspace", "/tmp"), ("workspace", "/opt"), ("transcript_dir", "/home")]
)
def test_a_folder_every_user_shares_is_no_sessions_folder(
    write_manifest: WriteManifest, field: str, folder: str
) -> None:
    sessions = load_manifest(write_manifest(session(**{field: folder})))
    with pytest.raises(ManifestError, match=f"field '{field}': {folder} cannot be .* shares"):
        check_inputs(sessions)
    inside = load_manifest(write_manifest(session(**{field: f"{folder}/filare-test-alpha"})))
    try:
        check_inputs(inside)
    except ManifestError as error:  # one the caller cannot create, unless it is root
        assert "shares" not in str(error)


@pytest.mark.parametrize(
    ("folder", "allowed"),
    [("/dev/shm/filare-ws", True), ("/dev/shm", False), ("/dev/filare-ws", False)],
)
def test_a_folder_inside_dev_shm_is_like_one_inside_tmp(folder: str, allowed: bool) -> None:
    from orchestrator.hostpaths import unsafe_reason

    reason = unsafe_reason(Path(folder), not_covered={}, private={})
    assert (reason is None) is allowed, reason
