"""What a user who mistypes a command line is told: one `error:` line, the closest name, exit 2.

Also where `--manifest` is looked for: from the current folder, else from the checkout, the same
way in every task.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from filare_testing.commands import REPOSITORY, inv
from tests.conftest import WriteManifest, session


def one_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    (line,) = result.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("session.start", "--manifest"), "error: --manifest needs a value"),
        (("session.log", "--tail"), "error: --tail needs a value"),
        (("session.send", "--message"), "error: --message needs a value"),
        (("session.send", "--session"), "error: --session needs a value"),
        (("session.start", "--manifest", "--dry-run"), "error: --manifest needs a value"),
    ],
)
def test_an_option_without_its_value_is_one_line_exit_2(
    args: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    result = inv(*args, FILARE_STATE_DIR=str(tmp_path / "state"))
    assert one_error(result) == expected
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("session.lst",),
            "error: no task 'session.lst' (did you mean 'session.list'?); "
            "'uv run inv --list' lists them",
        ),
        (
            ("session.list", "--jsno"),
            "error: session.list has no option --jsno (did you mean '--json'?)",
        ),
        (
            ("session.start", "--manfest", "x"),
            "error: session.start has no option --manfest (did you mean '--manifest'?)",
        ),
        (("nothing",), "error: no task 'nothing'; 'uv run inv --list' lists them"),
        (
            ("session.list", "stray"),
            "error: session.list takes options only, not 'stray' (give them as --name VALUE)",
        ),
    ],
)
def test_an_unknown_task_or_option_names_the_closest_exit_2(
    args: tuple[str, ...], expected: str
) -> None:
    assert one_error(inv(*args)) == expected


def test_a_timeout_without_wait_is_refused(tmp_path: Path) -> None:
    result = inv(
        "session.send", "--session", "x", "--message", "hi", "--timeout", "5",
        FILARE_STATE_DIR=str(tmp_path),
    )  # fmt: skip
    assert one_error(result) == "error: --timeout is how long --wait waits: give --wait too"


def test_a_send_without_text_says_which_options_give_it(tmp_path: Path) -> None:
    result = inv("session.send", "--session", "x", FILARE_STATE_DIR=str(tmp_path))
    assert one_error(result) == (
        "error: give the turn's text: --message TEXT or --message-file PATH"
    )


@pytest.mark.parametrize(
    "args",
    [
        ("session.start",),
        ("session.validate",),
        ("session.stop",),
        ("session.resume",),
        ("demo",),
    ],
)
def test_a_misspelt_manifest_is_the_same_answer_in_every_task(
    args: tuple[str, ...], tmp_path: Path
) -> None:
    typed = "agents/manifests/misspelt.yml"
    result = inv(*args, "--manifest", typed, FILARE_STATE_DIR=str(tmp_path / "state"))
    assert one_error(result) == f"error: {REPOSITORY / typed}: manifest not found"
    assert not (tmp_path / "state").exists()


def test_a_manifest_path_from_the_checkout_works_from_any_folder(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    """From `docker/`, `agents/manifests/…` is the checkout's; a path that exists from the
    current folder is taken from there."""
    state = str(tmp_path / "state")
    result = inv(
        "session.validate", "--manifest", "agents/manifests/demo.yml", "--json",
        cwd=REPOSITORY / "docker", FILARE_STATE_DIR=state,
    )  # fmt: skip
    # The demo's throwaway files may not exist yet: either way, the checkout's manifest was read.
    assert str(REPOSITORY / "agents/manifests/demo.yml") in result.stdout + result.stderr
    manifest = write_manifest([session("alpha")])
    result = inv(
        "--search-root", str(REPOSITORY), "session.validate", "--manifest", manifest.name,
        "--json", cwd=manifest.parent, FILARE_STATE_DIR=state,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert str(manifest) in result.stdout
    result = inv(
        "session.resume", "--manifest", "agents/manifests/misspelt.yml",
        cwd=REPOSITORY / "docker", FILARE_STATE_DIR=state,
    )  # fmt: skip
    assert one_error(result) == (
        f"error: {REPOSITORY / 'docker/agents/manifests/misspelt.yml'}: manifest not found "
        f"(nor {REPOSITORY / 'agents/manifests/misspelt.yml'})"
    )


def test_ctrl_c_in_a_task_says_interrupted_exit_130() -> None:
    from invoke.context import Context
    from invoke.exceptions import Exit

    from tasks.catalog_task import CatalogTask

    def body(c: object) -> None:
        raise KeyboardInterrupt

    task = CatalogTask(body, category="x", safe_for_agents=True, runs_in="anywhere")
    with pytest.raises(Exit) as stopped:
        task(Context())
    assert (stopped.value.code, stopped.value.message) == (130, "interrupted")


def test_ctrl_c_while_waiting_says_the_turns_go_on() -> None:
    from invoke.exceptions import Exit

    from tasks.session import _turns_go_on

    with pytest.raises(Exit) as stopped, _turns_go_on(["alpha", "b c"]):
        raise KeyboardInterrupt
    assert stopped.value.code == 130
    assert stopped.value.message == (
        "interrupted: the turns go on; "
        "wait again with: uv run inv session.wait --session alpha --session 'b c'"
    )


def test_leaving_attach_says_how_to_come_back(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Codex prints `codex resume <id>` as it leaves, which means nothing on the host."""
    import sys

    from invoke.context import Context
    from invoke.exceptions import Exit

    from orchestrator import conversation
    from tasks import session

    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setattr(
        conversation, "attach_command", lambda registry, name: ["sh", "-c", "echo codex; exit 3"]
    )
    with pytest.raises(Exit) as left:
        session.attach(Context(), session="alpha")
    assert left.value.code == 3
    assert capsys.readouterr().out.endswith(
        "Left session alpha; it keeps running. Back to this conversation: "
        "uv run inv session.attach --session alpha\n"
    )
