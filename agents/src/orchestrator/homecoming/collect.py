"""`session.collect`: each session's work into `refs/agents/<id>/…` of its seed repository.

The bundle the session's git made is checked before any of it reaches the repository: its
header is parsed by the tool (ref names and commits, nothing else), then every object is
indexed by `git index-pack --strict` in a quarantine folder that borrows the repository's
objects (git's own `fetch` from a bundle runs no object checks, whatever `transfer.fsckObjects`
says), and only a bundle that passes is fetched, with the checks on as well. The refs then move
in one transaction, so a refused bundle changes nothing in the repository.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from orchestrator import engine
from orchestrator.errors import InputError, OrchestratorError, did_you_mean
from orchestrator.homecoming import inside, refs, review
from orchestrator.homecoming.flags import flags_of
from orchestrator.homecoming.hostgit import FSCK_ERRORS, Repository, last_line
from orchestrator.homecoming.record import collect_folder, write_result
from orchestrator.plan import session_filters
from orchestrator.registry import Registry, SessionState, now, read_no_follow

ANSWER_FILE = "answer"
BUNDLE_FILE = "work.bundle"
MAX_PARALLEL = 4


@dataclass(frozen=True)
class Collected:
    """One session's collect: what happened, and what its work holds."""

    session: str
    result: str  # collected | unchanged | failed
    reason: str = ""
    exit_code: int = 0
    ahead: int = 0
    files: int = 0
    flagged: dict[str, list[str]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    base: str = ""
    head: str = ""
    worktree: str = ""
    at: str = ""

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def find_sessions(
    registry: Registry,
    *,
    session_ids: Sequence[str] = (),
    manifest: Path | None = None,
    everything: bool = False,
) -> list[SessionState]:
    """The recorded sessions a command names: ids (unknown ones refused), a manifest's, or all."""
    if not (session_ids or manifest or everything):
        raise InputError("say which sessions: --session, --manifest or --all")
    states = registry.states()
    by_id = {state.session_id: state for state in states}
    for session_id in session_ids:
        if session_id not in by_id:
            hint = did_you_mean(session_id, by_id)
            raise InputError(f"no session with id {session_id!r} in {registry.root}{hint}")
    wanted = manifest.expanduser().resolve() if manifest else None
    chosen = [
        state
        for state in states
        if everything or state.session_id in session_ids or (wanted and state.manifest == wanted)
    ]
    if wanted is not None and not chosen:
        raise InputError(f"{manifest}: no recorded session of this manifest in {registry.root}")
    return chosen


def collect_sessions(
    registry: Registry, states: Sequence[SessionState], *, parallel: int = MAX_PARALLEL
) -> list[Collected]:
    """Collect each session (a few at once); one session's failure is its own line."""
    if not states:
        return []
    running = _running_containers(registry, {state.engine for state in states})

    def one(state: SessionState) -> Collected:
        try:
            return collect(registry, state, running=running.get(state.session_id))
        except OrchestratorError as exc:
            return Collected(state.session_id, "failed", str(exc), exc.exit_code, at=_now())

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(states)))) as pool:
        return list(pool.map(one, states))


def _running_containers(registry: Registry, engines: set[str | None]) -> dict[str, str]:
    """Session id -> id of its running container, from one `docker ps` per engine the sessions
    run on."""
    return {
        container.session_id: container.id
        for context in engines
        for container in engine.Engine(context).list_containers(session_filters(registry.root))
        if container.state == "running"
    }


def collect(registry: Registry, state: SessionState, *, running: str | None) -> Collected:
    """Bring one session's work home; raises `OrchestratorError` (exit 2 for bad input)."""
    session_id = state.session_id
    names = refs.session_refs(session_id)
    if state.base_commit is None or state.seed_repository is None:
        raise InputError(
            f"session {session_id!r}: no base recorded: it was never started from a seed "
            "repository (start it with session.start; a workspace seeded before its base was "
            "recorded needs a fresh workspace)"
        )
    if not refs.valid_branch(state.branch):
        raise InputError(f"session {session_id!r}: its branch {state.branch!r} is not valid")
    repo = Repository.open(state.seed_repository)
    folder = collect_folder(registry, state)
    with registry.lock(state.role, session_id):
        start_ref = [state.base_ref] if state.base_ref else []
        base, head, worktree, *start = repo.resolve_all(
            [state.base_commit, names["head"], names["worktree"], *start_ref]
        )
        if base is None:
            raise InputError(
                f"session {session_id!r}: its base {state.base_commit[:12]} is no longer in "
                f"{state.seed_repository}"
            )
        known = inside.Known(base, head, worktree)
        (folder / BUNDLE_FILE).unlink(missing_ok=True)
        inside.run_collect(state, running=running, known=known, out=folder / ANSWER_FILE)
        status = receive(repo, folder, session_id, known)
        start_tip = start[0] if start else None
        if (status.head, status.worktree) == (known.head, known.worktree):
            return _finish(registry, state, repo, status, "unchanged", start_tip)
        _move_refs(repo, names, base, status)
        return _finish(registry, state, repo, status, "collected", start_tip)


def receive(
    repo: Repository, folder: Path, session_id: str, known: inside.Known
) -> refs.CollectStatus:
    """Read what the collect script wrote to `folder`; fetch its bundle's objects into `repo`
    once every one passed the checks (no ref moves here). Raises `InputError` for a corrupt or
    hostile answer, with nothing changed in `repo`."""
    answer, bundle = folder / ANSWER_FILE, folder / BUNDLE_FILE
    status, header = _read_answer(answer, bundle, session_id)
    if (status.head, status.worktree) == (known.head, known.worktree):
        return status
    if header is not None:
        _fetch_checked(repo, bundle, header, status, session_id)
    else:
        _check_tips(repo, status, session_id)
    return status


def _read_answer(
    answer: Path, bundle: Path, session_id: str
) -> tuple[refs.CollectStatus, refs.BundleHeader | None]:
    """The script's status line and, when it sent one, the bundle (moved to a file of its own,
    as `git fetch` wants it) with its header checked."""
    prefix = f"session {session_id!r}"
    data = read_no_follow(answer, refs.MAX_HEADER_BYTES)
    end = data.find(b"\n")
    if not data.startswith(refs.STATUS_PREFIX) or end < 0:
        raise InputError(f"{prefix}: the collect script gave no answer")
    try:
        status = refs.parse_status(data[: end + 1])
        if status.kind != "bundle":
            return status, None
        header = refs.parse_bundle_header(data, end + 1)
    except InputError as exc:
        raise InputError(f"{prefix}: bundle refused: {exc}") from None
    with answer.open("rb") as source, bundle.open("wb") as target:
        source.seek(end + 1)
        shutil.copyfileobj(source, target)
    answer.unlink()
    header = refs.BundleHeader(header.prerequisites, header.refs, header.pack_offset - (end + 1))
    expected = {refs.BUNDLE_HEAD: status.head}
    if status.worktree is not None:
        expected[refs.BUNDLE_WORKTREE] = status.worktree
    if any(expected.get(name) != sha for name, sha in header.refs.items()):
        raise InputError(f"{prefix}: bundle refused: its refs are not the tips it announced")
    return status, header


def _fetch_checked(
    repo: Repository,
    bundle: Path,
    header: refs.BundleHeader,
    status: refs.CollectStatus,
    session_id: str,
) -> None:
    """Every object of the bundle checked in quarantine, the tips it announced found there,
    then the bundle fetched with the checks on."""
    prefix = f"session {session_id!r}"
    objects = repo.git_dir / "objects"
    strict = ",".join(f"{message}=error" for message in FSCK_ERRORS)
    with tempfile.TemporaryDirectory(prefix="filare-quarantine.") as quarantine:
        (Path(quarantine) / "pack").mkdir()
        env = {
            "GIT_OBJECT_DIRECTORY": quarantine,
            "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(objects),
        }
        checked = repo.git(
            "index-pack",
            "--stdin",
            "--fix-thin",
            f"--strict={strict}",
            check=False,
            env=env,
            input_file=bundle,
            input_offset=header.pack_offset,
        )
        if checked.code != 0:
            raise InputError(f"{prefix}: bundle refused: {last_line(checked.stderr)}")
        _check_tips(repo, status, session_id, env=env)
    config = [
        "transfer.fsckObjects=true",
        "fetch.fsckObjects=true",
        "protocol.file.allow=always",
        *(f"fetch.fsck.{message}=error" for message in FSCK_ERRORS),
    ]
    fetched = repo.git(
        "fetch",
        "--quiet",
        "--no-tags",
        "--no-write-fetch-head",
        "--no-auto-gc",
        "--no-recurse-submodules",
        str(bundle),
        *header.refs,
        config=config,
        check=False,
    )
    if fetched.code != 0:
        raise InputError(f"{prefix}: bundle refused: {last_line(fetched.stderr)}")


def _check_tips(
    repo: Repository,
    status: refs.CollectStatus,
    session_id: str,
    env: dict[str, str] | None = None,
) -> None:
    """The tips the script announced are commits (in the quarantine, with `env`), and the
    uncommitted work sits on the head."""
    prefix = f"session {session_id!r}"
    tips = [sha for sha in (status.head, status.worktree) if sha is not None]
    names = [*tips, f"{status.worktree}^1"] if status.worktree is not None else tips
    found = repo.resolve_all(names, env)
    for sha, commit in zip(tips, found, strict=False):
        if commit != sha:
            raise InputError(f"{prefix}: bundle refused: commit {sha[:12]} did not arrive")
    if status.worktree is not None:
        parent = found[-1]
        if parent != status.head:
            raise InputError(f"{prefix}: bundle refused: its uncommitted work is not on its head")


def _move_refs(
    repo: Repository, names: dict[str, str], base: str, status: refs.CollectStatus
) -> None:
    lines = [f"update {names['base']} {base}", f"update {names['head']} {status.head}"]
    if status.worktree is not None:
        lines.append(f"update {names['worktree']} {status.worktree}")
    else:
        lines.append(f"delete {names['worktree']}")
    repo.git("update-ref", "--stdin", stdin=("\n".join(lines) + "\n").encode())


def _finish(
    registry: Registry,
    state: SessionState,
    repo: Repository,
    status: refs.CollectStatus,
    result: str,
    start_tip: str | None,
) -> Collected:
    """Summarize the collected work (commits ahead, files, flags, conflicts with the branch it
    started from) and keep it in the session's record for `session.list`."""
    base = state.base_commit or ""
    tip = status.worktree or status.head
    changes = review.changes(repo, base, tip)
    conflicts = review.merge_conflicts(repo, start_tip, tip) if start_tip else []
    collected = Collected(
        state.session_id,
        result,
        ahead=int(repo.text("rev-list", "--count", f"{base}..{status.head}") or 0),
        files=len(changes),
        flagged={c.path: flags for c in changes if (flags := flags_of(c))},
        conflicts=conflicts or [],
        base=base,
        head=status.head,
        worktree=status.worktree or "",
        at=_now(),
    )
    write_result(registry, state, collected.as_json())
    return collected


def _now() -> str:
    return now().isoformat(timespec="seconds")
