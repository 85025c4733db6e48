"""Manifest loading: the three shapes, path resolution, and one-line errors naming what is wrong."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

import pytest

from orchestrator.config import DEFAULT_IMAGE
from orchestrator.errors import ManifestError
from orchestrator.manifest import load_manifest, select_sessions
from tests.conftest import WriteManifest, session

REQUIRED = ("id", "role", "branch", "workspace", "env_file", "ssh_key")


def test_list_shape(write_manifest: WriteManifest) -> None:
    path = write_manifest([session("alpha"), session("beta", env_file="b.env")])
    alpha, beta = load_manifest(path)
    assert (alpha.id, beta.id) == ("alpha", "beta")
    assert beta.env_file == path.parent / "b.env"


def test_single_mapping_shape(write_manifest: WriteManifest) -> None:
    (only,) = load_manifest(write_manifest(session("solo")))
    assert only.id == "solo"


def test_defaults_are_merged_under_each_session(write_manifest: WriteManifest) -> None:
    path = write_manifest(
        {
            "defaults": {"role": "coder", "image": "filare-codex:1", "resources": {"cpus": 2}},
            "sessions": [
                {k: v for k, v in session("a").items() if k != "role"},
                session("b", role="reviewer", resources={"memory": "2g"}),
            ],
        }
    )
    a, b = load_manifest(path)
    assert (a.role, a.image, a.resources.cpus) == ("coder", "filare-codex:1", 2)
    assert (b.role, b.image) == ("reviewer", "filare-codex:1")
    assert (b.resources.cpus, b.resources.memory) == (2, "2g")


def test_optional_fields_default(write_manifest: WriteManifest) -> None:
    (one,) = load_manifest(write_manifest({k: v for k, v in session().items() if k != "codex_dir"}))
    assert one.image == DEFAULT_IMAGE
    assert one.owner == getpass.getuser()
    assert one.codex_dir == Path("~/.codex").expanduser()
    assert one.tags == ()
    assert one.goal is None


def test_a_user_without_a_name_owns_as_its_uid(
    write_manifest: WriteManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unknown() -> str:
        raise KeyError("getpwuid(): uid not found")

    monkeypatch.setattr(getpass, "getuser", unknown)
    (one,) = load_manifest(write_manifest(session()))
    assert one.owner == f"uid-{os.getuid()}"


def test_no_home_folder_is_a_one_line_error_naming_the_field(
    write_manifest: WriteManifest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No $HOME and no passwd entry: `~` cannot expand (os.path.expanduser leaves it as is)."""
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)
    defaulted = write_manifest({k: v for k, v in session().items() if k != "codex_dir"})
    with pytest.raises(ManifestError, match=r"field 'codex_dir': no home folder to find '~' in"):
        load_manifest(defaulted)
    with pytest.raises(ManifestError, match=r"session 'alpha': field 'ssh_key': no home folder"):
        load_manifest(write_manifest(session(ssh_key="~/.ssh/id")))


def test_paths_resolve_against_manifest_folder_and_expand_home(
    write_manifest: WriteManifest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = write_manifest(session(workspace="../elsewhere/ws", codex_dir="~/.codex-alt"))
    (one,) = load_manifest(path)
    assert one.workspace == path.parent.parent / "elsewhere" / "ws"
    assert one.codex_dir == tmp_path / "home" / ".codex-alt"
    assert one.manifest_path == path
    assert one.ssh_key.is_absolute()


def test_tags_accept_a_string_or_a_list(write_manifest: WriteManifest) -> None:
    path = write_manifest([session("a", tags="urgent"), session("b", tags=["x", "y"])])
    a, b = load_manifest(path)
    assert (a.tags, b.tags) == (("urgent",), ("x", "y"))


def test_existing_manifest_format_loads_unchanged(write_manifest: WriteManifest) -> None:
    text = """\
defaults:
  image: filare-codex
  env_file: a.env
  ssh_key: id_test
  owner: orchestrator
sessions:
  - id: tools-1
    role: tools
    branch: feat/tools-0003
    workspace: ws/tools-1
    goal: Build the lifecycle helpers
    tags: [tools, docker]
    startup_script: scripts/bootstrap.sh
    operator_contact: ops@example.org
    resources: {cpus: 1.5, memory: 4g}
"""
    (one,) = load_manifest(write_manifest(text))
    assert one.owner == "orchestrator"
    assert one.goal == "Build the lifecycle helpers"
    assert one.startup_script == "scripts/bootstrap.sh"
    assert one.resources.cpus == 1.5


@pytest.mark.parametrize("field", REQUIRED)
def test_every_required_field_is_named_when_missing(
    write_manifest: WriteManifest, field: str
) -> None:
    data = session()
    del data[field]
    path = write_manifest([data])
    with pytest.raises(ManifestError) as error:
        load_manifest(path)
    message = str(error.value)
    assert str(path) in message
    assert f"'{field}'" in message
    assert "\n" not in message
    where = "session #1" if field == "id" else "session 'alpha'"
    assert where in message


def test_duplicate_ids_are_an_error(write_manifest: WriteManifest) -> None:
    path = write_manifest([session("a"), session("a", workspace="ws/other")])
    with pytest.raises(ManifestError, match=r"session 'a': field 'id': duplicate id"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"role": ["x"]}, "role"),
        ({"resources": {"cpus": "many"}}, "resources.cpus"),
        ({"resources": {"memory": "lots"}}, "resources.memory"),
        ({"tags": 3}, "tags"),
        ({"shared_workspace": "maybe"}, "shared_workspace"),
    ],
)
def test_wrong_types_name_the_field(
    write_manifest: WriteManifest, overrides: dict[str, object], field: str
) -> None:
    with pytest.raises(ManifestError, match=rf"session 'alpha': field '{field}'"):
        load_manifest(write_manifest(session("alpha", **overrides)))


@pytest.mark.parametrize(
    "bad_id",
    ["a/b", "..", "a..b", "-a", ".a", "_a", "a b", "a" * 64, "a:b", "ä", ""],
)
def test_ids_unsafe_as_names_labels_or_paths_are_refused(
    write_manifest: WriteManifest, bad_id: str
) -> None:
    with pytest.raises(ManifestError, match=r"field 'id'"):
        load_manifest(write_manifest(session(bad_id, workspace="ws/x", branch="agent/x")))


@pytest.mark.parametrize("branch", ["", "a..b", "-x", "a b", "x.lock", "a:b", "a//b", "x/"])
def test_bad_branch_names_are_refused(write_manifest: WriteManifest, branch: str) -> None:
    with pytest.raises(ManifestError, match=r"field 'branch'"):
        load_manifest(write_manifest(session(branch=branch)))


def test_paths_that_docker_cannot_bind_are_refused(write_manifest: WriteManifest) -> None:
    with pytest.raises(ManifestError, match=r"field 'workspace': .*colon"):
        load_manifest(write_manifest(session(workspace="ws/a:b")))


def test_unknown_field_suggests_the_nearest_name(write_manifest: WriteManifest) -> None:
    data = session()
    data["brnch"] = data.pop("branch")
    with pytest.raises(ManifestError, match=r"unknown field 'brnch' \(did you mean 'branch'\?\)"):
        load_manifest(write_manifest([data]))


def test_unknown_top_level_and_default_fields(write_manifest: WriteManifest) -> None:
    with pytest.raises(ManifestError, match=r"unknown top-level field 'sesions'"):
        load_manifest(write_manifest({"defaults": {}, "sesions": [session()]}))
    with pytest.raises(ManifestError, match=r"defaults: unknown field 'imag' \(did you mean"):
        load_manifest(write_manifest({"defaults": {"imag": "x"}, "sessions": [session()]}))


def test_malformed_yaml_names_the_line(write_manifest: WriteManifest) -> None:
    path = write_manifest("- id: a\n  role: coder\n  branch: [unclosed\n")
    with pytest.raises(ManifestError, match=rf"^{path}:\d+: invalid YAML"):
        load_manifest(path)


@pytest.mark.parametrize("text", ["", "42\n", "sessions: []\n", "- 3\n"])
def test_shapes_that_hold_no_session(write_manifest: WriteManifest, text: str) -> None:
    with pytest.raises(ManifestError):
        load_manifest(write_manifest(text))


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest not found"):
        load_manifest(tmp_path / "nope.yml")


def test_shared_workspace_needs_both_sessions_to_agree(write_manifest: WriteManifest) -> None:
    shared = [session("a", workspace="ws/one"), session("b", workspace="ws/one")]
    with pytest.raises(ManifestError, match=r"session 'b': field 'workspace'.*session 'a'"):
        load_manifest(write_manifest(shared))
    for one in shared:
        one["shared_workspace"] = True
    assert len(load_manifest(write_manifest(shared))) == 2


def test_select_sessions(write_manifest: WriteManifest) -> None:
    sessions = load_manifest(write_manifest([session("a"), session("b"), session("c")]))
    assert [s.id for s in select_sessions(sessions, None)] == ["a", "b", "c"]
    assert [s.id for s in select_sessions(sessions, "b")] == ["b"]
    assert [s.id for s in select_sessions(sessions, ["c", "a"])] == ["a", "c"]
    with pytest.raises(ManifestError, match=r"no session with id 'bb' \(did you mean 'b'\?\)"):
        select_sessions(sessions, ["bb"])
