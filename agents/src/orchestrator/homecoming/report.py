"""How collect, diff and conflicts print: every path and diff an agent wrote goes through
`orchestrator.untrusted` (`printable` for the terminal, `json_text` for `--json`)."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.homecoming.collect import Collected
from orchestrator.homecoming.review import Pair, Work, changes, diff_text, flags_of
from orchestrator.report import table
from orchestrator.untrusted import json_text, printable

# Flagged paths shown in a collect line before "and N more".
SHOWN_FLAGS = 3


def collected_table(results: Sequence[Collected]) -> str:
    rows = []
    for result in results:
        if result.result == "failed":
            rows.append((result.session, "failed", "-", "-", printable(result.reason)))
            continue
        rows.append(
            (
                result.session,
                result.result,
                str(result.ahead),
                str(result.files),
                flagged_cell(result.flagged),
            )
        )
    if not rows:
        return "no sessions to collect"
    return table(("SESSION", "RESULT", "AHEAD", "FILES", "FLAGGED / WHY"), rows)


def flagged_cell(flagged: dict[str, list[str]]) -> str:
    if not flagged:
        return "-"
    items = [f"{path} ({', '.join(kinds)})" for path, kinds in sorted(flagged.items())]
    more = len(items) - SHOWN_FLAGS
    text = "; ".join(items[:SHOWN_FLAGS]) + (f"; and {more} more" if more > 0 else "")
    return printable(text)


def collected_json(results: Sequence[Collected]) -> str:
    return json_text([result.as_json() for result in results], indent=2)


def diff(work: Work, *, stat: bool, committed: bool, as_json: bool) -> str:
    text = diff_text(work, stat=stat, committed=committed)
    if not as_json:
        return printable(text, newlines=True)
    found = changes(work.repo, work.base, work.tip(committed=committed))
    document = {
        "session": work.session_id,
        "base": work.base,
        "tip": work.tip(committed=committed),
        "files": [
            {"path": c.path, "status": c.status, "mode": c.new_mode, "flags": flags_of(c)}
            for c in found
        ],
        "stat" if stat else "patch": text,
    }
    return json_text(document, indent=2) + "\n"


def conflicts_table(pairs: Sequence[Pair]) -> str:
    if not pairs:
        return "no collected sessions to compare"
    rows = []
    for pair in pairs:
        if pair.conflicts is None:
            rows.append((pair.left, pair.right, "unrelated", "-"))
        elif pair.conflicts:
            rows.append((pair.left, pair.right, "conflict", printable(", ".join(pair.conflicts))))
        else:
            rows.append((pair.left, pair.right, "clean", "-"))
    return table(("SESSION", "WITH", "RESULT", "FILES"), rows)


def conflicts_json(pairs: Sequence[Pair]) -> str:
    return json_text([pair.as_json() for pair in pairs], indent=2)
