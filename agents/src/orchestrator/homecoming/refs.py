"""Names and small formats of the homecoming, parsed as hostile input where an agent wrote them.

Ref names are always made here from the session id, never taken from a bundle. The collect
script's status line and the bundle's header come out of the session's container, so each
field is checked against a strict pattern and anything else refuses the whole bundle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orchestrator.errors import InputError

REF_ROOT = "refs/agents"
# The two refs the collect script puts in its bundle; nothing else is accepted from it.
BUNDLE_HEAD = "refs/filare/head"
BUNDLE_WORKTREE = "refs/filare/worktree"
STATUS_PREFIX = b"FILARE-COLLECT "
# The status line, the bundle's signature, prerequisites and two refs fit well in this.
MAX_HEADER_BYTES = 64 * 1024

_SHA = re.compile(r"[0-9a-f]{40}")
_BRANCH = re.compile(r"[A-Za-z0-9._/@+-]{1,200}")


def session_refs(session_id: str) -> dict[str, str]:
    """`base`, `head` and `worktree` refs of one session, under `refs/agents/<id>/`."""
    check_ref_part(session_id)
    return {name: f"{REF_ROOT}/{session_id}/{name}" for name in ("base", "head", "worktree")}


def check_ref_part(session_id: str) -> None:
    """Session ids are safe names already; git refuses a few of those as a ref's part."""
    if session_id.endswith((".lock", ".")) or session_id.startswith(".") or ".." in session_id:
        raise InputError(f"session {session_id!r}: its id cannot name a git ref")


def is_sha(text: str) -> bool:
    return bool(_SHA.fullmatch(text))


def valid_branch(name: str) -> bool:
    """A branch name as the tool accepts it (what `git check-ref-format --branch` allows, and
    narrower): no spaces, no control characters, no `..`, no leading dash."""
    return (
        bool(_BRANCH.fullmatch(name))
        and ".." not in name
        and "//" not in name
        and "@{" not in name
        and not name.startswith(("-", "/", "."))
        and not name.endswith(("/", ".", ".lock"))
        and "/." not in name
    )


def parse_seed_record(text: str) -> tuple[str, str | None] | None:
    """(commit, ref or None) from the launch script's `SHA REF` line; None when malformed."""
    parts = text.strip().split(" ")
    if len(parts) != 2 or not is_sha(parts[0]):
        return None
    ref = parts[1]
    if ref == "-":
        return parts[0], None
    if not ref.startswith("refs/heads/") or not valid_branch(ref.removeprefix("refs/heads/")):
        return parts[0], None
    return parts[0], ref


@dataclass(frozen=True)
class CollectStatus:
    """What the collect script said: whether it sent a bundle, and the tips it found."""

    kind: str  # "bundle" | "unchanged" | "nothing"
    head: str
    worktree: str | None


def parse_status(line: bytes) -> CollectStatus:
    """The first line the collect script printed: `FILARE-COLLECT KIND HEAD WORKTREE|-`."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise InputError("the collect script's answer is not ASCII") from None
    parts = text.rstrip("\n").split(" ")
    if (
        len(parts) != 4
        or parts[0] != STATUS_PREFIX.decode().strip()
        or parts[1] not in {"bundle", "unchanged", "nothing"}
        or not is_sha(parts[2])
        or not (parts[3] == "-" or is_sha(parts[3]))
    ):
        raise InputError("the collect script's answer is malformed")
    return CollectStatus(parts[1], parts[2], None if parts[3] == "-" else parts[3])


@dataclass(frozen=True)
class BundleHeader:
    """A v2 bundle's prerequisites and refs, and where its pack begins."""

    prerequisites: tuple[str, ...]
    refs: dict[str, str]
    pack_offset: int


def parse_bundle_header(data: bytes, start: int = 0) -> BundleHeader:
    """The header of the v2 bundle at `data[start:]`; refuses anything the collect script would
    not have written (another version, capabilities, other ref names, a ref twice)."""
    end = data.find(b"\n\n", start)
    if end < 0:
        raise InputError("the bundle has no complete header")
    lines = data[start:end].split(b"\n")
    if lines[0] != b"# v2 git bundle":
        raise InputError("the bundle is not a v2 git bundle")
    prerequisites: list[str] = []
    refs: dict[str, str] = {}
    for raw in lines[1:]:
        try:
            line = raw.decode("ascii")
        except UnicodeDecodeError:
            raise InputError("the bundle's header is not ASCII") from None
        if line.startswith("-"):
            sha = line[1:].split(" ", 1)[0]
            if not is_sha(sha):
                raise InputError("the bundle names a malformed prerequisite")
            prerequisites.append(sha)
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not is_sha(parts[0]):
            raise InputError("the bundle's header holds a malformed line")
        if parts[1] not in {BUNDLE_HEAD, BUNDLE_WORKTREE} or parts[1] in refs:
            raise InputError("the bundle holds a ref the collect script does not write")
        refs[parts[1]] = parts[0]
    if not refs:
        raise InputError("the bundle holds no ref")
    return BundleHeader(tuple(prerequisites), refs, end + 2)
