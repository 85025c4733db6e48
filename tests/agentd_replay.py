"""A stand-in for `codex app-server` that replays what the real one said in a captured turn.

`filare-agentd` runs it in the unit tests (through `FILARE_AGENTD_CODEX`) instead of Codex: it
answers `initialize`, then answers each further request with the next response of the sample,
followed by the notifications that came after it, up to the next response (all of them after
the last one); once played out, a further request gets the last response and what followed it
again, as a further turn would. Response ids are those of the requests it is answering, so any
sample of thread/start (or resume), turn/start and turn/interrupt replays against the daemon's
own ids.

    python agentd_replay.py SAMPLE [--log FILE] [--die-after N] app-server

`--log` appends every message the daemon sent (and `"stdin closed"`); `--die-after N` exits
with code 3 once N lines of the sample are out, as an app-server that crashes mid-turn.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("sample", type=Path)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--die-after", type=int, default=-1)
    # The daemon adds `app-server`, as to Codex: whatever else is on the line is not ours.
    args, _ = parser.parse_known_args()
    sample: list[dict[str, Any]] = [
        json.loads(line) for line in args.sample.read_text().splitlines() if line.strip()
    ]
    sent = 0

    def log(entry: object) -> None:
        if args.log is not None:
            with args.log.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")

    def emit(message: dict[str, Any]) -> None:
        nonlocal sent
        if sent == args.die_after:
            sys.stdout.flush()
            sys.exit(3)
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()
        sent += 1

    position = 0
    for line in sys.stdin:
        request = json.loads(line)
        log(request)
        if "id" not in request:
            continue
        if request.get("method") == "initialize":
            emit({"id": request["id"], "result": {"userAgent": "agentd-replay"}})
            continue
        if position >= len(sample):
            # Played out: a further turn gets the sample's last turn again.
            position = max(i for i, message in enumerate(sample) if "id" in message)
        # Up to the next response, which answers this request.
        while position < len(sample) and "id" not in sample[position]:
            emit(sample[position])
            position += 1
        if position < len(sample):
            emit({**sample[position], "id": request["id"]})
            position += 1
        # Then what the server said before the next request was answered.
        while position < len(sample) and "id" not in sample[position]:
            emit(sample[position])
            position += 1
    log("stdin closed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
