"""The lifecycle cases' baseline: the `docker run` argv the tool's `--dry-run` prints.

No Docker engine: pure parts of `scripts/benchmark`, and the tool asked only for its `--dry-run`.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from filare_testing.commands import inv
from scripts.benchmark import common, figures, lifecycle
from tests.conftest import WriteManifest, session

DRY_RUN = """\
# a: docker run --detach --name filare-coder-a --label filare.registry=/s --volume \
/s/coder/a/ssh:/home/agent/.ssh:ro --volume /w/with\\ space:/home/agent/workspace img sleep infinity
"""


def test_parse_dry_run_reads_shell_quoted_argv() -> None:
    argv = lifecycle.parse_dry_run(DRY_RUN)["a"]
    assert argv[:2] == ["docker", "run"]
    assert "/w/with space:/home/agent/workspace" in argv
    with pytest.raises(ValueError, match="not a docker run"):
        lifecycle.parse_dry_run("# a: rm -rf /\n")
    with pytest.raises(ValueError, match="no '# <id>"):
        lifecycle.parse_dry_run("nothing\n")


def test_baseline_argv_changes_only_name_registry_and_ssh_folder() -> None:
    argv = lifecycle.parse_dry_run(DRY_RUN)["a"]
    out = lifecycle.baseline_argv(
        argv, name="bench-x-a", tool_registry=Path("/s"), registry=Path("/b"), run_id="r1"
    )
    assert out[:4] == ["docker", "run", "--label", "bench.run=r1"]
    changed = {(a, b) for a, b in zip(argv[2:], out[4:], strict=True) if a != b}
    assert changed == {
        ("filare-coder-a", "bench-x-a"),
        ("filare.registry=/s", "filare.registry=/b"),
        ("/s/coder/a/ssh:/home/agent/.ssh:ro", "/b/coder/a/ssh:/home/agent/.ssh:ro"),
    }
    with pytest.raises(ValueError, match="no --name"):
        lifecycle.baseline_argv(
            ["docker", "run", "img"],
            name="n",
            tool_registry=Path("/s"),
            registry=Path("/b"),
            run_id="r",
        )


def test_the_tools_dry_run_is_what_the_baseline_parses(
    write_manifest: WriteManifest, tmp_path: Path
) -> None:
    """The contract with `session.start --dry-run`: one parsable line per session."""
    manifest = write_manifest([session("a"), session("b", workspace="ws/with space")])
    state = tmp_path / "state"
    result = inv(
        "session.start", "--manifest", str(manifest), "--dry-run", FILARE_STATE_DIR=str(state)
    )
    assert result.returncode == 0, result.stderr
    argvs = lifecycle.parse_dry_run(result.stdout)
    assert sorted(argvs) == ["a", "b"]
    assert f"{tmp_path}/ws/with space:/home/agent/workspace" in argvs["b"]
    out = lifecycle.baseline_argv(
        argvs["b"], name="n", tool_registry=state, registry=tmp_path / "base", run_id="r"
    )
    assert shlex.join(out).count(str(state)) == 0


def test_a_baseline_after_startup_adds_invokes_own_start_up(tmp_path: Path) -> None:
    bench = common.Bench(tmp_path, "r1", tuple(common.inv_command()))
    common.make_empty_collection(bench.empty_collection)
    alone = common.invoke_startup(bench)
    assert alone.seconds > 0.05 and alone.max_rss_kb > 10_000  # Python with Invoke imported
    work = figures.Measurement(1.0, 5)
    both = common.after_startup(bench, lambda: work)
    assert both.seconds > 1.05 and both.max_rss_kb > 10_000
