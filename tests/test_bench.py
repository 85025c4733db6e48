"""The pure parts of the benchmark (`scripts/bench.py`): figures, rendering and the baseline argv.

No Docker engine: the one test that runs the tool only asks it for its `--dry-run` argv.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import yaml

from filare_testing.commands import inv
from scripts import bench
from tests.conftest import WriteManifest, session

CASE = bench.Case("start-8", "inv session.start", "8 docker run -d", 0.8, sessions=8)


def row(tool: tuple[float, ...], baseline: tuple[float, ...], case: bench.Case = CASE) -> bench.Row:
    return bench.Row(case, tool, baseline, tool_max_rss_kb=44_032, baseline_max_rss_kb=20_480)


def test_median_and_ratio() -> None:
    assert bench.median([3.0, 1.0, 2.0, 100.0, 2.5]) == 2.5
    assert bench.ratio(3.0, 2.0) == 1.5
    assert bench.ratio(1.0, 0.0) == math.inf
    with pytest.raises(ValueError):
        bench.median([])


def test_row_compares_medians_with_the_target() -> None:
    fast = row((1.0, 9.0, 2.0), (4.0, 3.0, 0.1))
    assert (fast.tool_median, fast.baseline_median, fast.ratio, fast.met) == (2.0, 3.0, 2 / 3, True)
    slow = row((2.5,), (3.0,))
    assert slow.met is False  # 0.83 > 0.8
    untargeted = row((1.0,), (1.0,), bench.Case("start-32", "t", "b", None, sessions=32))
    assert untargeted.met is None


def test_row_markdown_and_json() -> None:
    line = row((2.0,), (4.0,)).markdown()
    assert line == "| start-8 | 2.000 | 4.000 | 0.50 | - | ≤ 0.8 | yes | 43.0 / 20.0 |"
    assert "| 1.25 | - | ≤ 0.8 | **no** |" in row((5.0,), (4.0,)).markdown()
    data = row((1.0, 2.0), (0.0, 0.0)).as_json()
    assert data["ratio"] is None  # infinite: JSON has no value for it
    assert data["tool_seconds"] == [1.0, 2.0]
    assert data["met"] is False


def test_floors_add_invokes_start_up_to_the_baseline() -> None:
    listed = row((0.4,), (0.03,), bench.CASE_BY_NAME["list-8"])
    stop = row((1.2,), (1.3,), bench.CASE_BY_NAME["stop-8"])
    assert bench.with_floors([listed, stop]) == [listed, stop]  # no inv-list: no floor known
    startup = row((0.31,), (0.27,), bench.CASE_BY_NAME["inv-list"])
    floored, unfloored, _ = bench.with_floors([listed, stop, startup])
    assert floored.floor == pytest.approx(10.0)
    assert unfloored.floor is None
    assert "| 13.33 | 10.00 | ≤ 2.5 | **no** |" in floored.markdown()
    assert floored.as_json()["floor"] == pytest.approx(10.0)


def test_tables_judge_targeted_cases_and_scale_per_session() -> None:
    scale = bench.Case("start-32", "t", "b", None, sessions=32)
    rows = [row((2.0,), (4.0,)), row((8.0,), (16.0,), scale)]
    results = bench.results_table(rows).splitlines()
    assert len(results) == 3  # header, rule, start-8 only
    scaling = bench.scaling_table(rows).splitlines()
    assert scaling[2] == "| 8 | 2.000 | 0.250 | 4.000 | 0.500 | 0.50 |"
    assert scaling[3] == "| 32 | 8.000 | 0.250 | 16.000 | 0.500 | 0.50 |"
    assert bench.missed([*rows, row((5.0,), (4.0,))]) == [row((5.0,), (4.0,))]


DRY_RUN = """\
# a: docker run --detach --name filare-coder-a --label filare.registry=/s --volume \
/s/coder/a/ssh:/home/agent/.ssh:ro --volume /w/with\\ space:/home/agent/workspace img sleep infinity
"""


def test_parse_dry_run_reads_shell_quoted_argv() -> None:
    argv = bench.parse_dry_run(DRY_RUN)["a"]
    assert argv[:2] == ["docker", "run"]
    assert "/w/with space:/home/agent/workspace" in argv
    with pytest.raises(ValueError, match="not a docker run"):
        bench.parse_dry_run("# a: rm -rf /\n")
    with pytest.raises(ValueError, match="no '# <id>"):
        bench.parse_dry_run("nothing\n")


def test_baseline_argv_changes_only_name_registry_and_ssh_folder() -> None:
    argv = bench.parse_dry_run(DRY_RUN)["a"]
    out = bench.baseline_argv(
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
        bench.baseline_argv(
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
    argvs = bench.parse_dry_run(result.stdout)
    assert sorted(argvs) == ["a", "b"]
    assert f"{tmp_path}/ws/with space:/home/agent/workspace" in argvs["b"]
    out = bench.baseline_argv(
        argvs["b"], name="n", tool_registry=state, registry=tmp_path / "base", run_id="r"
    )
    assert shlex.join(out).count(str(state)) == 0


def test_targets_show_their_hundredths() -> None:
    assert [bench.format_target(t) for t in (0.8, 1.15, 1.0, 2.5)] == ["0.8", "1.15", "1.0", "2.5"]
    assert "| ≤ 1.15 |" in row((1.0,), (1.0,), bench.CASE_BY_NAME["send-1"]).markdown()


def test_the_results_table_shows_reference_rows_but_not_the_scaling_only_ones() -> None:
    reference = row((5.0,), (4.0,), bench.CASE_BY_NAME["send-8-par"])
    scale = row((8.0,), (16.0,), bench.CASE_BY_NAME["start-32"])
    lines = bench.results_table([reference, scale]).splitlines()
    assert lines[2:] == ["| send-8-par | 5.000 | 4.000 | 1.25 | - | - | - | 43.0 / 20.0 |"]
    assert bench.missed([reference]) == []


FILARE_TURN = Path(__file__).resolve().parents[1] / "docker" / "filare-turn"


def test_the_baseline_turn_types_the_flags_filare_turn_gives_codex() -> None:
    fresh = bench.codex_turn_argv("filare-bench-x", None)
    assert fresh == [
        *("docker", "exec", "-i", "-w", "/home/agent/workspace", "filare-bench-x"),
        *("codex", "exec", "--json", "--dangerously-bypass-approvals-and-sandbox"),
        *("--skip-git-repo-check", "-"),
    ]
    resumed = bench.codex_turn_argv("c", "0199-abc")
    assert resumed[6:9] == ["codex", "exec", "resume"]
    assert resumed[-2:] == ["0199-abc", "-"]
    # The contract with docker/filare-turn: the same flags, in the same order.
    script = FILARE_TURN.read_text()
    assert f'set -- "$@" {" ".join(bench.CODEX_EXEC_FLAGS)}\n' in script
    assert '[ -z "$thread" ] || set -- "$@" resume' in script
    assert 'set -- "$@" -\n' in script


CODEX_OUTPUT = """\
{"type":"thread.started","thread_id":"01a2-b3"}
{"type":"turn.started"}
not json: codex prints warnings on stderr, but skip anything else here
{"type":"item.completed","item":{"id":"item_0","type":"agent_message","text":"first"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","text":"x"}}
{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"ok"}}
{"type":"turn.completed","usage":{"input_tokens":10,"output_tokens":5}}
"""


def test_codex_events_give_the_conversation_the_last_message_and_the_outcome() -> None:
    assert bench.parse_codex_events(CODEX_OUTPUT) == bench.CodexTurn("01a2-b3", "ok", True)
    failed = CODEX_OUTPUT.replace('"turn.completed"', '"turn.failed"')
    assert bench.parse_codex_events(failed).completed is False
    assert bench.parse_codex_events("") == bench.CodexTurn(None, None, False)
    assert bench.parse_codex_events('[1]\n{"type": "thread.started", "thread_id": 3}\n') == (
        bench.CodexTurn(None, None, False)
    )


def test_sent_results_read_the_send_table() -> None:
    table = (
        "SESSION       TURN  RESULT     MESSAGE\n"
        "send-a-solo   0003  completed  ok\n"
        "send-a-01     0003  completed  ok, and more  words\n"
        "send-a-02     -     failed\n"
    )
    assert bench.sent_results(table) == {
        "send-a-solo": ("completed", "ok"),
        "send-a-01": ("completed", "ok, and more  words"),
        "send-a-02": ("failed", ""),
    }


def test_codex_groups_are_left_out_without_the_real_image_and_refused_when_asked() -> None:
    select = partial(bench.select_groups, codex_image="filare-codex")
    everything, note = select(None, codex_image_present=True)
    # engines needs root (an engine of its own), contain a registered runsc: asked for only.
    assert everything == [g for g in bench.GROUPS if g not in bench.ASKED_ONLY]
    assert {"send", "memory"} <= set(everything) and note is None
    without, note = select(None, codex_image_present=False)
    assert without == [g for g in bench.GROUPS if g not in bench.ASKED_ONLY | bench.CODEX_GROUPS]
    assert select(["engines"], codex_image_present=False) == (["engines"], None)
    assert note is not None and "'uv run inv codex.build'" in note and "\n" not in note
    assert select(["fleet", "seed"], codex_image_present=False) == (["fleet", "seed"], None)
    assert select(["inv-list", "send"], codex_image_present=True) == (["send", "inv-list"], None)
    for group in ("send", "memory"):
        with pytest.raises(bench.BenchError, match=r"codex\.build --tag mine:1'"):
            bench.select_groups([group], codex_image="mine:1", codex_image_present=False)


def test_the_send_manifest_runs_the_real_image_on_the_scripted_models_codex_home() -> None:
    data = yaml.safe_load(bench.send_manifest_text(["s-solo", "s-01"], "filare-codex:t"))
    assert data["defaults"]["image"] == "filare-codex:t"
    assert data["defaults"]["codex_dir"] == "outputs/codex-send"
    assert data["defaults"]["env_file"] == "outputs/model.env"
    assert [(s["id"], s["role"], s["workspace"]) for s in data["sessions"]] == [
        ("s-solo", "bench", "outputs/ws/s-solo"),
        ("s-01", "bench", "outputs/ws/s-01"),
    ]


def test_a_run_without_the_send_group_needs_no_codex_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only asking for send looks for the real image; --only without it never does."""
    looked: list[str] = []
    measured: list[list[str]] = []

    def image_id(tag: str) -> str | None:
        looked.append(tag)
        return None

    def measure(rounds: int, groups: list[str], *args: object) -> None:
        measured.append(groups)
        raise bench.BenchError("stop here")

    monkeypatch.setattr(bench, "image_id", image_id)
    monkeypatch.setattr(bench, "measure", measure)
    assert bench.main(["--only", "fleet"]) == 2
    assert looked == [] and measured == [["fleet"]]
    assert bench.main(["--only", "send", "--codex-image", "x:1"]) == 2
    assert looked == ["x:1"] and len(measured) == 1
    assert bench.main([]) == 2
    left_out = bench.ASKED_ONLY | bench.CODEX_GROUPS
    assert measured[-1] == [g for g in bench.GROUPS if g not in left_out]


def test_clean_up_asks_a_restarting_engine_again_then_says_what_may_be_left(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers: list[str | None] = ["down", None, "down", "down", "down"]

    def remove(_: bench.Bench) -> None:
        answer = answers.pop(0)
        if answer:
            raise bench.BenchError(answer)

    monkeypatch.setattr(bench, "remove_containers", remove)
    first = bench.Bench(tmp_path / "one", "r1", ("inv",))
    first.root.mkdir()
    bench.clean_up(first, pause=0)
    assert not first.root.exists() and capsys.readouterr().err == ""
    second = bench.Bench(tmp_path / "two", "r2", ("inv",))
    second.root.mkdir()
    bench.clean_up(second, pause=0)
    err = capsys.readouterr().err
    assert not second.root.exists() and answers == []
    assert err.startswith("warning: containers of this run may be left (down)")
    assert "bench.run=r2" in err and str(second.root) in err


# --- the memory of a warm session ----------------------------------------------------------------


def sample(container: float, *processes: tuple[str, float, float]) -> bench.MemorySample:
    return bench.MemorySample(container, tuple(bench.ProcessMemory(*p) for p in processes))


def test_docker_stats_memory_usage_in_mb() -> None:
    assert bench.parse_mem_usage("97.4MiB / 1.944GiB") == pytest.approx(97.4)
    assert bench.parse_mem_usage("1.5GiB / 2GiB") == 1536
    assert bench.parse_mem_usage("512KiB / 23.54GiB") == 0.5
    assert bench.parse_mem_usage(" 0B / 0B") == 0
    for bad in ("", "--", "12MB / 1GB", "-- / --"):
        with pytest.raises(ValueError, match="not a docker stats memory usage"):
            bench.parse_mem_usage(bad)


def test_the_process_reader_lists_this_machines_processes() -> None:
    """PROCESS_READER runs in the session's container; here it reads this machine's /proc."""
    reader = subprocess.run(
        [sys.executable, "-c", bench.PROCESS_READER],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    processes = bench.parse_processes(reader.stdout)
    argv = Path(f"/proc/{os.getpid()}/cmdline").read_bytes().decode().split("\0")
    ours = " ".join(Path(word).name for word in argv[:2])
    assert any(p.command == ours and p.rss_mb > p.anon_mb > 0 for p in processes), processes


def test_process_lists_name_each_command_by_program_and_first_argument() -> None:
    listed = json.dumps(
        [
            [["/sbin/docker-init", "--", "agent-entrypoint"], 696, 52],
            [["python3", "/usr/local/bin/filare-agentd"], 19876, 10160],
            [["codex", "app-server"], 143172, 20128],
            [[], 0, 0],
        ]
    )
    processes = bench.parse_processes(listed)
    assert [(p.command, p.rss_mb, p.anon_mb) for p in processes] == [
        ("docker-init --", 696 / 1024, 52 / 1024),
        ("python3 filare-agentd", 19876 / 1024, 10160 / 1024),
        ("codex app-server", 143172 / 1024, 20128 / 1024),
        ("?", 0, 0),
    ]
    for bad in ("Error: no such container", '[["codex", 1, 2]]', '[[["codex"], "1", 2]]', "{}"):
        with pytest.raises(ValueError, match="not a process"):
            bench.parse_processes(bad)


def test_the_memory_row_judges_the_median_rss_of_the_sessions_processes() -> None:
    rounds = (
        sample(40.0, ("codex app-server", 140.0, 20.0), ("python3 filare-agentd", 20.0, 10.0)),
        sample(44.0, ("codex app-server", 90.0, 19.0), ("python3 filare-agentd", 19.0, 9.0)),
        sample(42.0, ("python3 filare-agentd", 21.0, 11.0), ("sh -c", 1.0, 0.5)),
        sample(50.0, ("sh -c", 2.0, 0.5), ("sh -c", 3.0, 0.5), ("codex app-server", 99.0, 18.0)),
    )
    memory = bench.MemoryRow(rounds)
    assert memory.rss_median == pytest.approx(106.5)  # of 160, 109, 22, 104
    assert memory.anon_median == pytest.approx(23.5)  # of 30, 28, 11.5, 19
    assert memory.container_median == 43.0
    assert memory.met is True
    assert memory.process_medians() == [
        ("codex app-server", 94.5, 18.5),  # 0 in the round where it did not run
        ("python3 filare-agentd", 19.5, 9.5),
        ("sh -c", 0.5, 0.25),  # of 0, 0, 1, 5: two processes of one command add up
    ]
    assert bench.MemoryRow(rounds[:1]).met is False  # 160 > 120
    table = memory.markdown().splitlines()
    assert table[2] == "| the session's processes | 106.5 | 23.5 | ≤ 120 | yes |"
    assert table[3] == "| `codex app-server` | 94.5 | 18.5 | - | - |"
    assert table[-1] == "| the container (`docker stats`) | 43.0 | - | - | - |"
    assert "| **no** |" in bench.MemoryRow(rounds[:1]).markdown()
    data = memory.as_json()
    assert data["rss_mb"] == [160.0, 109.0, 22.0, 104.0]
    assert data["processes_median_mb"] == {
        "codex app-server": {"rss": 94.5, "anon": 18.5},
        "python3 filare-agentd": {"rss": 19.5, "anon": 9.5},
        "sh -c": {"rss": 0.5, "anon": 0.25},
    }
    assert (data["target_mb"], data["met"]) == (120.0, True)


def test_the_warm_up_rounds_memory_is_not_counted() -> None:
    probe = bench.MemoryProbe(Path("/s"), "memory-x", "filare-bench-memory-x")
    probe.samples += [sample(99.0, ("codex app-server", 500.0, 90.0)), sample(40.0)]
    assert probe.row() == bench.MemoryRow((sample(40.0),))


CONTEXT = {
    "rounds": 5,
    "cpus": 2,
    "loadavg_before": [1.0, 1.0, 1.0],
    "loadavg_after": [1.0, 1.0, 1.0],
    "docker_server": "20.10",
    "images": {"filare-codex:x": "sha256:1"},
    "work_dir": "/tmp",
}


def test_a_memory_only_run_reports_and_checks_its_target(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    over = bench.MemoryRow((sample(45.0, ("codex app-server", 143.0, 20.0)),))

    def measure(*args: object) -> tuple[list[bench.Row], bench.MemoryRow, dict[str, object]]:
        return [], over, dict(CONTEXT)

    monkeypatch.setattr(bench, "image_id", lambda tag: "sha256:1")
    monkeypatch.setattr(bench, "measure", measure)
    out = tmp_path / "out"
    argv = ["--only", "memory", "--output-dir", str(out)]
    assert bench.main(argv) == 0
    assert bench.main([*argv, "--check"]) == 1
    report = (out / "results.md").read_text()
    assert "## Memory of a warm session" in report and "| case |" not in report
    assert "| the session's processes | 143.0 | 20.0 | ≤ 120 | **no** |" in report
    data = json.loads((out / "results.json").read_text())
    assert data["rows"] == [] and data["memory"]["met"] is False
