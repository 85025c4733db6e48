"""The registry's files: atomic records, and a lock that really excludes another process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import OrchestratorError
from orchestrator.registry import Registry, SessionState, Status, atomic_write


def state(session_id: str = "a", status: Status = "running") -> SessionState:
    return SessionState(
        session_id=session_id,
        role="coder",
        owner="me",
        status=status,
        container_name=f"filare-coder-{session_id}",
        image="img",
        workspace=Path("/ws"),
        ssh_dir=Path("/ssh"),
    )


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    written = registry.write(state())
    assert registry.read("coder", "a") == written
    assert registry.state_path("coder", "a") == tmp_path / "coder" / "a" / "state.json"
    assert [s.session_id for s in registry.states()] == ["a"]
    assert registry.read("coder", "missing") is None


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "x" / "f.json"
    atomic_write(target, "one")
    atomic_write(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]


def test_corrupt_record_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "coder" / "a" / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(OrchestratorError, match="unreadable session state") as error:
        Registry(tmp_path).read("coder", "a")
    assert "\n" not in str(error.value)


def test_a_scan_leaves_alone_what_it_did_not_write(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.write(state("a"))
    unsafe = tmp_path / "coder" / "b" / "state.json"
    unsafe.parent.mkdir()
    unsafe.write_text(state("x").to_json().replace('"coder"', '"../victim"'))
    elsewhere = tmp_path / "coder" / "c" / "state.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(state("a").to_json())
    (tmp_path / "linked").symlink_to(tmp_path / "coder")
    scan = registry.scan()
    assert [(s.role, s.session_id) for s in scan.states] == [("coder", "a")]
    assert scan.foreign == [
        f"{unsafe}: left alone: unreadable session state: unsafe role '../victim'",
        f"{elsewhere}: left alone: it names another session",
    ]


@pytest.mark.parametrize("link", ["role", "session", "lock"])
def test_nothing_is_written_or_locked_through_a_link_in_the_registry(
    tmp_path: Path, link: str
) -> None:
    registry, elsewhere = Registry(tmp_path / "registry"), tmp_path / "elsewhere"
    elsewhere.mkdir()
    if link == "role":
        registry.root.mkdir()
        (registry.root / "coder").symlink_to(elsewhere)
    elif link == "session":
        (registry.root / "coder").mkdir(parents=True)
        (registry.root / "coder" / "a").symlink_to(elsewhere)
    else:
        (registry.root / "coder" / "a").mkdir(parents=True)
        (registry.root / "coder" / "a" / "lock").symlink_to(elsewhere / "lock")
    refused = r"refusing a link in the registry|cannot open the lock"
    with pytest.raises(OrchestratorError, match=refused), registry.lock("coder", "a"):
        registry.write(state("a"))
    assert list(elsewhere.iterdir()) == []


HOLD_LOCK = """
import sys
from orchestrator.registry import Registry
with Registry(sys.argv[1]).lock("coder", "a"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_lock_excludes_another_process(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None and holder.stdout is not None
    assert holder.stdout.readline().strip() == "locked"
    assert registry.busy("coder", "a"), "the lock did not exclude this process"
    holder.stdin.write("release\n")
    holder.stdin.close()
    holder.wait(timeout=10)
    assert not registry.busy("coder", "a")
    with registry.lock("coder", "a"):
        assert not Registry(tmp_path).busy("coder", "b")
