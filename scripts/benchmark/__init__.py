"""Benchmark the session commands against plain Docker on the tiny offline image.

Each case times the command a user types (`inv ...` from this virtualenv) against a baseline that
does the same container work with Docker alone. The baseline's `docker run` argv is the one
`inv session.start --dry-run` prints, so both sides use the same flags, labels, mounts, env file
and user; only the container name, the `filare.registry` label value and the SSH folder differ
(so the two sides never see each other's containers), and the baseline carries one extra
`bench.run` label.

The `collect` group brings the small changes of 8 sessions on the real Codex image home with one
`inv session.collect --all`, against eight `docker exec … git bundle create` of the same
branches typed one after another (the bundle a person would make to carry the work out by hand).

The `send` group runs real Codex turns in sessions on the real Codex image (`--codex-image`),
against a scripted model this process serves (`agents/src/orchestrator/scripted_model.py`);
the baseline types the same `codex exec` by hand in the same containers. The `memory` group
reads what a warm session on that image holds (its container's memory, and each process's RSS)
after each turn; it has no baseline: its target is in MB. Without `--only`, the groups on the
real image are left out, with a note, when that image is absent.

The `engines` group (`--only engines`; root: it starts a Docker engine of its own, as the agent
tests do) times eight sessions spread over two engines against the same eight on one: the
tool on both sides, since spreading is what is measured.

Tool and baseline alternate within every round, and the side that goes first alternates from
round to round; one warm-up round is not counted. The report compares medians as ratios: absolute
times depend on the machine and are never judged.

    uv run python scripts/bench.py [--rounds 5] [--only GROUP]... [--check] [--codex-image TAG]
    uv run nox -s bench -- --rounds 7 --check

Writes outputs/bench/results.md and results.json and prints the table. Exit code 0 whatever the
figures (it is a measurement, not a test); with --check, 1 when a target is missed; 2 when the
benchmark could not run.
"""
