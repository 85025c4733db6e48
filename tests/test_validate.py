"""`session.validate`: a manifest checked as `session.start` checks it, printed resolved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from filare_testing.commands import REPOSITORY, inv
from orchestrator import catalog
from orchestrator.manifest import load_manifest
from orchestrator.registry import Registry
from orchestrator.runtime import resolved_session
from tests.conftest import WriteManifest, session


@pytest.fixture
def manifest(write_manifest: WriteManifest, session_files: Path) -> Path:
    (session_files / "data").mkdir()
    return write_manifest(
        {
            "defaults": {"tags": ["fast", "demo"], "resources": {"cpus": 1}},
            "sessions": [
                session(
                    "alpha",
                    role="FEATURE",
                    operator_contact={"requires_approval_for": ["network"]},
                ),
                session("beta", role="VALIDATOR", mounts=["data:/data:ro"], goal="check"),
            ],
        }
    )


def validate(*args: str, state: Path) -> tuple[int, str, str]:
    result = inv("session.validate", *args, FILARE_STATE_DIR=str(state))
    return result.returncode, result.stdout, result.stderr


def without_manifest(data: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in data.items() if key != "manifest_path"}


def test_the_yaml_is_a_manifest_of_the_resolved_sessions(manifest: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    code, out, err = validate("--manifest", str(manifest), state=state)
    assert (code, err) == (0, "")
    printed = tmp_path / "elsewhere" / "resolved.yml"
    printed.parent.mkdir()
    printed.write_text(out)

    loaded = load_manifest(printed)

    expected = [resolved_session(s, Registry(state)) for s in load_manifest(manifest)]
    assert [s.id for s in loaded] == ["alpha", "beta"]
    assert [without_manifest(s.to_dict()) for s in loaded] == [
        without_manifest(s.to_dict()) for s in expected
    ]
    assert loaded[0].role == "FEATURE"
    assert loaded[1].mounts[0].source == manifest.parent / "data"
    assert not state.exists()


def test_validating_the_output_prints_it_again(manifest: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    _, first, _ = validate("--manifest", str(manifest), state=state)
    printed = tmp_path / "resolved.yml"
    printed.write_text(first)

    code, second, err = validate("--manifest", str(printed), state=state)

    assert (code, err) == (0, "")
    assert second == first


def test_json_is_an_array_with_the_manifest_path(manifest: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    code, out, _ = validate("--manifest", str(manifest), "--json", state=state)
    assert code == 0
    data = json.loads(out)
    assert isinstance(data, list)
    assert [(one["id"], one["role"]) for one in data] == [
        ("alpha", "FEATURE"),
        ("beta", "VALIDATOR"),
    ]
    assert {one["manifest_path"] for one in data} == {str(manifest)}
    assert data[0]["operator_contact"] == {"requires_approval_for": ["network"]}
    assert data[0]["tags"] == ["fast", "demo"]
    assert data[0]["transcript_dir"] == str(state / "FEATURE" / "alpha" / "agent" / "transcript")


def test_session_selects(manifest: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    code, out, _ = validate("--manifest", str(manifest), "--session", "beta", "--json", state=state)
    assert code == 0
    assert [one["id"] for one in json.loads(out)] == ["beta"]
    code, _, err = validate("--manifest", str(manifest), "--session", "gamma", state=state)
    assert code == 2
    assert err.strip().splitlines() == [f"error: {manifest}: no session with id 'gamma'"]


def test_bad_input_is_one_line_per_problem_exit_2_and_writes_nothing(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    path = write_manifest(
        [
            {**session("alpha"), "imgae": "x"},
            session("beta", resources={"memory": "lots"}),
            session("gamma", env_file="missing.env"),
        ]
    )
    state = tmp_path / "state"

    code, out, err = validate("--manifest", str(path), state=state)

    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 3, lines  # fields and the files they name, in one run
    assert all(line.startswith(f"error: {path}: session '") for line in lines)
    assert "unknown field 'imgae'" in lines[0]
    assert "'lots' is not a size" in lines[1]
    assert "session 'gamma': field 'env_file'" in lines[2] and "does not exist" in lines[2]
    assert not state.exists()
    assert not (path.parent / "ws").exists()

    fixed = write_manifest([session("alpha"), session("gamma", env_file="missing.env")])
    code, out, err = validate("--manifest", str(fixed), state=state)
    assert (code, out) == (2, "")
    (line,) = err.strip().splitlines()
    assert "session 'gamma': field 'env_file'" in line
    assert not state.exists()


def test_validate_is_a_task_a_recipe_and_a_catalog_entry() -> None:
    listed = inv("--list")
    assert listed.returncode == 0
    assert "session.validate" in listed.stdout.split()
    justfile = (REPOSITORY / catalog.AGENTS_JUSTFILE).read_text(encoding="utf-8")
    assert '\nsession-validate *args:\n    @{{ _invoke }} session.validate "$@"\n' in justfile
    entries = catalog.load_catalog((REPOSITORY / catalog.CATALOG).read_text(encoding="utf-8"))
    entry = entries.commands["session-validate"]
    assert isinstance(entry, catalog.InvokeCommand)
    assert (entry.task, entry.run) == ("session.validate", "just session-validate")
