"""`codex.*` tasks without an engine: flags, catalog metadata and input errors before any build."""

from __future__ import annotations

from pathlib import Path

import pytest

import tasks
from filare_testing.commands import inv


@pytest.mark.parametrize("name", ["codex.build", "codex.base"])
def test_image_tasks_are_catalogued_as_unsafe_for_agents(name: str) -> None:
    task = tasks.ns[name]
    assert task.category == "image"
    assert task.safe_for_agents is False


@pytest.mark.parametrize(
    ("name", "flags"),
    [
        ("codex.build", ["--ca-bundle", "--base-image", "--build-arg", "--no-cache", "--tag"]),
        ("codex.base", ["--suite", "--mirror", "--tag", "--force"]),
    ],
)
def test_help_shows_every_flag(name: str, flags: list[str]) -> None:
    result = inv("--help", name)
    assert result.returncode == 0, result.stderr
    for flag in flags:
        assert flag in result.stdout


def test_unusable_ca_bundle_is_one_line_exit_2_before_any_build(tmp_path: Path) -> None:
    result = inv("codex.build", "--tag", "filare-codex:never", "--ca-bundle", str(tmp_path / "x"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --ca-bundle {tmp_path / 'x'}: file not found"
    ]
    assert "base image" not in result.stdout


def test_base_with_a_non_web_mirror_is_exit_2() -> None:
    result = inv("codex.base", "--mirror", "file:///srv/debian")
    assert result.returncode == 2
    assert "expected an http:// or https:// URL" in result.stderr
