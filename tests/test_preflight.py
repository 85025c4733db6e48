"""File checks before any start: env files by Docker's rules, keys, folders; never echo values."""

from __future__ import annotations

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
