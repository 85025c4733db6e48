"""One run names every problem of a manifest: fields, duplicate ids, and the files it names; and
advice is given only where it helps."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import load_manifest
from orchestrator.errors import InputError, ManifestError
from orchestrator.feedback import add
from orchestrator.registry import Registry, SessionState
from orchestrator.runtime import load_checked
from tests.conftest import WriteManifest, session


def test_fields_duplicates_and_files_are_reported_in_one_run(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    path = write_manifest(
        [
            {**session("alpha"), "brnch": "x"},
            session("alpha", workspace="ws/other"),
            session("beta", env_file="missing.env", resources={"memory": "lots"}),
            session("alpha", workspace="ws/third"),
        ]
    )
    with pytest.raises(ManifestError) as error:
        load_checked(path, Registry(tmp_path / "state"))
    lines = error.value.problems
    prefix = f"{path}: session "
    assert lines == [
        f"{prefix}'alpha': unknown field 'brnch' (did you mean 'branch'?)",
        f"{prefix}'beta': field 'resources.memory': 'lots' is not a size: a number with an "
        "optional unit b, k, m or g",
        f"{prefix}'alpha': field 'id': duplicate id: sessions #1 and #2",
        f"{prefix}'alpha': field 'id': duplicate id: sessions #1 and #4",
        f"{prefix}'beta': field 'env_file': {path.parent / 'missing.env'} does not exist",
    ]
    assert not (tmp_path / "state").exists()


def test_ids_differing_in_case_name_both_positions(write_manifest: WriteManifest) -> None:
    path = write_manifest([session("Alpha"), session("alpha", workspace="ws/b")])
    with pytest.raises(ManifestError, match=r"only in case \(sessions #1 and #2\)"):
        load_manifest(path)


def test_a_shared_tmp_workspace_is_not_told_to_consent(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    """`/tmp` is refused whatever the sessions say: `shared_workspace: true` would not help."""
    path = write_manifest([session("a", workspace="/tmp"), session("b", workspace="/tmp")])
    with pytest.raises(ManifestError) as error:
        load_checked(path, Registry(tmp_path / "state"))
    text = "\n".join(error.value.problems)
    assert "shared_workspace" not in text
    assert "/tmp is also the workspace of session 'a'" in text
    assert "/tmp cannot be a workspace: it is /tmp, which every user shares" in text


def test_a_shared_workspace_that_may_be_shared_is_told_how(write_manifest: WriteManifest) -> None:
    path = write_manifest([session("a", workspace="ws"), session("b", workspace="ws")])
    with pytest.raises(ManifestError, match="set 'shared_workspace: true' on both to allow it"):
        load_manifest(path)


def test_a_question_added_by_hand_names_the_option_and_value(tmp_path: Path) -> None:
    state = SessionState(
        session_id="a", role="coder", branch="b", workspace=tmp_path, image="i", owner="o",
        container_name="filare-coder-a", status="running", ssh_dir=tmp_path / "ssh",
    )  # fmt: skip
    with pytest.raises(InputError) as error:
        add(Registry(tmp_path / "state"), state, reason="may I?", severity="urgent")
    assert str(error.value) == "--severity must be info, warn or block, not 'urgent'"
    with pytest.raises(InputError, match=r"^--reason is missing$"):
        add(Registry(tmp_path / "state"), state, reason="")
