"""The Filare project's own orchestrator tests, run unchanged against this project.

`tests/fixtures/origin/agents/tests/` holds them byte for byte (laurierloi/filare at commit
31748a8, `agents/tests/`); each run copies them into a folder of their own, laid out as in the
origin, and runs pytest there as the origin did (`pytest agents/tests -m agent`), so nothing of
this checkout's test configuration helps them pass.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ORIGIN = Path(__file__).resolve().parent / "fixtures" / "origin"
ORIGIN_TESTS = ORIGIN / "agents" / "tests"
# `git ls-tree 31748a8ebfba164a9c06445cb1503759eece053e agents/tests/` in laurierloi/filare.
BLOBS = {
    "conftest.py": "95839e611aedf65e8b75fd3431283d420585eddb",
    "test_config.py": "8baac99ebd58a41a74961c677f58fc4516a22d88",
    "test_feedback.py": "7fb8b54e77da1824d0c0eda3e9a3786f8c9e3590",
    "test_io.py": "d7e6bc53e8d49c04329acef46d6cb678bf834127",
    "test_runtime.py": "425b957eb1082cfb9cee832854bbf5e5fa1e1837",
}
# The origin's marker; registered so that an unknown-marker warning cannot hide anything.
PYTEST_INI = "[pytest]\nmarkers =\n    agent: the origin's orchestrator tests\n"


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def run_origin_tests(tmp_path: Path, *names: str) -> subprocess.CompletedProcess[str]:
    checkout = tmp_path / "filare"
    shutil.copytree(ORIGIN / "agents", checkout / "agents")
    (checkout / "pytest.ini").write_text(PYTEST_INI)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "agent"]
        + [f"agents/tests/{name}" for name in names],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_origin_tests_are_kept_byte_for_byte() -> None:
    assert sorted(path.name for path in ORIGIN_TESTS.iterdir()) == sorted(BLOBS)
    for name, blob in BLOBS.items():
        assert git_blob_id((ORIGIN_TESTS / name).read_bytes()) == blob, name


@pytest.mark.parametrize("name", ["test_feedback.py", "test_config.py"])
def test_the_origin_tests_pass_unchanged(tmp_path: Path, name: str) -> None:
    tests = len(re.findall(r"^def test_", (ORIGIN_TESTS / name).read_text(), flags=re.M))
    result = run_origin_tests(tmp_path, name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"\b{tests} passed\b", result.stdout), result.stdout


def test_the_origin_tmux_tests_fail_naming_what_replaced_them(tmp_path: Path) -> None:
    result = run_origin_tests(tmp_path, "test_io.py", "test_runtime.py")
    assert result.returncode != 0
    assert "ImportError: orchestrator.io.IoTarget of the Filare project was replaced" in (
        result.stdout
    )
    assert (
        "ImportError: orchestrator.runtime.build_run_command of the Filare project was replaced"
        in result.stdout
    )
    assert "inv session.send" in result.stdout
    assert "docs/migrating-from-filare.md" in result.stdout
