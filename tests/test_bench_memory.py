"""The memory of a warm session: the process reader, its parsing and the row judged in MB.

No Docker engine: pure parts of `scripts/benchmark`, and the tool asked only for its `--dry-run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scripts.benchmark import memory


def sample(
    container: float, *processes: tuple[str, float, float] | tuple[str, float, float, float]
) -> memory.MemorySample:
    return memory.MemorySample(container, tuple(memory.ProcessMemory(*p) for p in processes))


def test_docker_stats_memory_usage_in_mb() -> None:
    assert memory.parse_mem_usage("97.4MiB / 1.944GiB") == pytest.approx(97.4)
    assert memory.parse_mem_usage("1.5GiB / 2GiB") == 1536
    assert memory.parse_mem_usage("512KiB / 23.54GiB") == 0.5
    assert memory.parse_mem_usage(" 0B / 0B") == 0
    for bad in ("", "--", "12MB / 1GB", "-- / --"):
        with pytest.raises(ValueError, match="not a docker stats memory usage"):
            memory.parse_mem_usage(bad)


def test_the_process_reader_lists_this_machines_processes() -> None:
    """PROCESS_READER runs in the session's container; here it reads this machine's /proc."""
    reader = subprocess.run(
        [sys.executable, "-c", memory.PROCESS_READER],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    processes = memory.parse_processes(reader.stdout)
    argv = Path(f"/proc/{os.getpid()}/cmdline").read_bytes().decode().split("\0")
    ours = " ".join(Path(word).name for word in argv[:2])
    assert any(
        p.command == ours and p.rss_mb > p.anon_mb > 0 and p.rss_mb >= (p.pss_mb or 0) > 0
        for p in processes
    ), processes


def test_process_lists_name_each_command_by_program_and_first_argument() -> None:
    listed = json.dumps(
        [
            [["/sbin/docker-init", "--", "agent-entrypoint"], 696, 52, None],
            [["python3", "/usr/local/bin/filare-agentd"], 19876, 10160, 12288],
            [["codex", "app-server"], 143172, 20128, 51200],
            [[], 0, 0, 0],
        ]
    )
    processes = memory.parse_processes(listed)
    assert [(p.command, p.rss_mb, p.anon_mb, p.pss_mb) for p in processes] == [
        ("docker-init --", 696 / 1024, 52 / 1024, None),
        ("python3 filare-agentd", 19876 / 1024, 10160 / 1024, 12.0),
        ("codex app-server", 143172 / 1024, 20128 / 1024, 50.0),
        ("?", 0, 0, 0),
    ]
    bad_entries = (
        "Error: no such container",
        '[["codex", 1, 2, 3]]',
        '[[["codex"], "1", 2, 3]]',
        '[[["codex"], 1, 2]]',
        '[[["codex"], 1, 2, "3"]]',
        "{}",
    )
    for bad in bad_entries:
        with pytest.raises(ValueError, match="not a process"):
            memory.parse_processes(bad)


def test_the_memory_row_judges_the_median_rss_of_the_sessions_processes() -> None:
    rounds = (
        sample(40.0, ("codex app-server", 140.0, 20.0), ("python3 filare-agentd", 20.0, 10.0)),
        sample(44.0, ("codex app-server", 90.0, 19.0), ("python3 filare-agentd", 19.0, 9.0)),
        sample(42.0, ("python3 filare-agentd", 21.0, 11.0), ("sh -c", 1.0, 0.5)),
        sample(50.0, ("sh -c", 2.0, 0.5), ("sh -c", 3.0, 0.5), ("codex app-server", 99.0, 18.0)),
    )
    warm = memory.MemoryRow(rounds)
    assert warm.rss_median == pytest.approx(106.5)  # of 160, 109, 22, 104
    assert warm.anon_median == pytest.approx(23.5)  # of 30, 28, 11.5, 19
    assert warm.container_median == 43.0
    assert warm.met is True
    assert warm.process_medians() == [
        ("codex app-server", 94.5, 18.5),  # 0 in the round where it did not run
        ("python3 filare-agentd", 19.5, 9.5),
        ("sh -c", 0.5, 0.25),  # of 0, 0, 1, 5: two processes of one command add up
    ]
    assert memory.MemoryRow(rounds[:1]).met is False  # 160 > 120
    table = warm.markdown().splitlines()
    assert table[2] == "| the session's processes | 106.5 | 23.5 | ≤ 120 | yes |"
    assert table[3] == "| `codex app-server` | 94.5 | 18.5 | - | - |"
    assert table[-1] == "| the container (`docker stats`) | 43.0 | - | - | - |"
    assert "| **no** |" in memory.MemoryRow(rounds[:1]).markdown()
    data = warm.as_json()
    assert data["rss_mb"] == [160.0, 109.0, 22.0, 104.0]
    assert data["processes_median_mb"] == {
        "codex app-server": {"rss": 94.5, "anon": 18.5},
        "python3 filare-agentd": {"rss": 19.5, "anon": 9.5},
        "sh -c": {"rss": 0.5, "anon": 0.25},
    }
    assert (data["target_mb"], data["met"]) == (120.0, True)


def test_the_warm_up_rounds_memory_is_not_counted() -> None:
    probe = memory.MemoryProbe(Path("/s"), "memory-x", "filare-bench-memory-x")
    probe.samples += [sample(99.0, ("codex app-server", 500.0, 90.0)), sample(40.0)]
    assert probe.row() == memory.MemoryRow((sample(40.0),))


def test_a_sessions_share_is_shown_when_every_process_has_one() -> None:
    shared = (
        sample(40.0, ("codex app-server", 140.0, 20.0, 50.0), ("python3 agentd", 20.0, 9.0, 12.0)),
        sample(41.0, ("codex app-server", 141.0, 21.0, 52.0), ("python3 agentd", 20.0, 9.0, 12.0)),
        sample(42.0, ("codex app-server", 141.0, 21.0, 54.0), ("docker-init --", 1.0, 0.1)),
    )
    assert [s.pss_mb for s in shared] == [62.0, 64.0, None]  # docker-init's share unknown
    row = memory.MemoryRow(shared)
    assert row.pss_median == 63.0
    size = memory.FLEET_SIZE
    assert row.markdown().splitlines()[-1] == (
        f"| its share (PSS) with {size} warm sessions on the image | 63.0 | - | - | - |"
    )
    assert row.as_json()["pss_median_mb"] == 63.0
    assert memory.MemoryRow(shared[2:]).pss_median is None
    assert "PSS" not in memory.MemoryRow(shared[2:]).markdown()
