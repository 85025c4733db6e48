"""Talking to a session's Codex in turns: send, wait, interrupt, and the state of its agent.

A turn runs inside the session's container, so a long turn outlives the command that started
it, and its events land in the session's transcript folder on the host as they come. Two ways
in, one record:

- The Codex image runs `filare-agentd`, the session's agent daemon, as the container's
  long-lived process. Once it is up, it says so in its ready file (`agent/agentd.json`), and a
  turn is started by writing files into the session's inbox only: the message, the role's
  instructions, then the request (`N.json`: the conversation to continue, and the daemon's boot
  id), which the daemon watches for. It keeps one `codex app-server` running between turns, so
  a turn does not pay Codex's start-up (most of a short turn). `N.interrupt` ends the turn.
- Otherwise (an image without the daemon, or a daemon not up yet), `filare-turn` runs the turn
  as `codex exec`, started with `docker exec -d`; `filare-turn --interrupt` ends it.

Both write the same transcript: Codex's JSON events (`N.jsonl`) and how the turn ended
(`N.exit`). The first turn starts the session's conversation; every later turn continues it, so
the agent remembers. The conversation's id is kept in the session's record, and its Codex home
outlives the container, so `session.stop` and `session.start`, or a daemon restart, do not end
the conversation.

One rule for a busy session: a turn is refused (bad input, exit 2) while the session's previous
turn is still working; `session.wait` waits for it and `session.interrupt` ends it.

The ready file is the session's to write, so a daemon that says it is up may be forged, stopped
or stuck. The host never waits on it forever: a turn sent to the daemon that it has not taken
within `PICKUP_SECONDS` (no `N.stderr`, `N.jsonl` or `N.exit` in the transcript folder) has
failed, saying so, and its request is withdrawn from the inbox when the next turn is sent; the
next turn then goes through `filare-turn` instead. `session.interrupt` always ends what the host
started: when the session does not end the turn within its grace time, the host records the
turn as interrupted itself (`turns/N.ended`), and the session can take turns again.

Host-only files of a session (`<registry>/<role>/<id>/`): `turns/N.json` (when and what turn N
was sent, and to which daemon), `turns/N.ended` (a turn the host ended), `inbox/N.message`,
`inbox/N.instructions`, `inbox/N.json` and `inbox/N.interrupt` (mounted read-only into the
container). The transcript folder and the agent folder hold what the container wrote; see
`orchestrator.transcript`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import engine, limits, transcript
from orchestrator.errors import EngineError, InputError, OrchestratorError
from orchestrator.listing import SessionView, survey
from orchestrator.plan import CONTAINER_WORKSPACE
from orchestrator.registry import Registry, SessionState, atomic_write, now
from orchestrator.spec import SessionSpec
from orchestrator.transcript import EventReader, TranscriptEvent, TurnEnd
from orchestrator.untrusted import loads, printable, read_limited

if TYPE_CHECKING:
    # Imported where a turn is sent, waited for or interrupted: `session.list` reads agent
    # state through this module and needs none of it.
    from orchestrator import volumes

TURNS = "turns"
INBOX = "inbox"
# The agent daemon's ready file, in the session's agent folder (`~/.filare` in the container).
AGENT_FOLDER = "agent"
AGENTD_FILE = "agentd.json"
AGENTD_PROTOCOL = 1
MAX_AGENTD_BYTES = 4096
_BOOT_ID = re.compile(r"[0-9a-f]{8,64}")
_HOSTNAME = re.compile(r"[0-9a-f]{12,64}")
# How long the agent daemon may take to take a turn sent to it before the turn has failed.
PICKUP_SECONDS = 10.0
# What the daemon writes in the transcript folder once it has taken a turn (or refused it).
TAKEN_SUFFIXES = ("stderr", "jsonl", "exit")
# A turn the host ended itself: `session.interrupt` when the session did not end it in time.
HOST_END_SUFFIX = "ended"
MAX_HOST_END_BYTES = 4096
# The longest a waiting command sleeps before it looks again for the end of a turn (it wakes
# sooner when the session writes there: `folder_events`).
POLL_SECONDS = 0.02
# How often a waiting command asks the engine whether the containers still run.
SURVEY_SECONDS = 2.0
# How often `session.log --follow` looks for new events.
FOLLOW_SECONDS = 0.25
# Turns a session keeps; older ones (transcript, message, record) are removed as new ones start.
MAX_TURNS = 1000
MAX_MESSAGE_BYTES = 1 << 20
# The origin's role files, in the workspace: `agents/AGENT.<ROLE>.md`.
ROLE_FILE = "agents/AGENT.{role}.md"
SHORT = 80


@dataclass(frozen=True)
class TurnRecord:
    """What the host knows of a turn it started: never written by the session."""

    session_id: str
    role: str
    number: str
    kind: str
    started_at: datetime
    container_id: str
    thread_id: str | None
    # The operator's question whose answer this turn carried (`feedback.answer`).
    question: str | None = None
    # The boot id of the agent daemon the turn was sent to; None for a `filare-turn` turn.
    agentd: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "session_id": self.session_id,
                "role": self.role,
                "number": self.number,
                "kind": self.kind,
                "started_at": self.started_at.isoformat(),
                "container_id": self.container_id,
                "thread_id": self.thread_id,
                "question": self.question,
                "agentd": self.agentd,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: bytes) -> TurnRecord:
        data = json.loads(text)
        data["started_at"] = datetime.fromisoformat(data["started_at"])
        return cls(**data)

    @property
    def sent_to_daemon(self) -> bool:
        return self.agentd is not None


@dataclass(frozen=True)
class TurnStatus:
    """A turn as the host sees it now: `working`, `completed`, `failed` or `interrupted`."""

    record: TurnRecord
    status: str
    reason: str | None
    end: TurnEnd | None

    @property
    def done(self) -> bool:
        return self.status != "working"


@dataclass(frozen=True)
class Sent:
    """One session's share of `send`: the turn it started, or why it did not."""

    session_id: str
    turn: str | None = None
    error: OrchestratorError | None = None
    status: TurnStatus | None = None
    final_message: str | None = None

    @property
    def result(self) -> str:
        """`started` (not waited for), `working` (still, after a wait), `failed` (no turn), or
        how the turn ended: `completed`, `failed`, `interrupted`."""
        if self.status is None:
            return "failed" if self.error is not None else "started"
        if self.error is not None:
            return "working"
        return self.status.status

    @property
    def detail(self) -> str:
        if self.status is None or self.error is not None:
            return str(self.error or "")
        return self.final_message or self.status.reason or ""


# --- sending --------------------------------------------------------------------------------------


def send(
    registry: Registry,
    session_ids: Sequence[str],
    message: str,
    *,
    kind: str = "message",
    wait: float | None = None,
) -> list[Sent]:
    """Start a turn with `message` in each session, in parallel; results in the order given.

    Bad input for any session (unknown, not running, busy, an empty message) is refused for all
    before any turn starts. An engine fault while starting one session's turn is that session's
    error; the others go on. With `wait` (seconds), wait for the turns started, as `wait` does,
    and give how each ended.
    """
    return send_each(registry, dict.fromkeys(session_ids, message), kind=kind, wait=wait)


def send_each(
    registry: Registry,
    messages: dict[str, str],
    *,
    kind: str = "message",
    question: str | None = None,
    wait: float | None = None,
) -> list[Sent]:
    """Start a turn in each session with its own message; see `send`."""
    for message in messages.values():
        if not message.strip():
            raise InputError("the message is empty")
        if len(message.encode()) > MAX_MESSAGE_BYTES:
            raise InputError(f"the message is longer than {MAX_MESSAGE_BYTES} bytes")
    if wait is not None:
        _check_timeout(wait)
    views = _running_views(registry, list(messages))
    for view in views:
        _check_has_codex(view)
        _check_idle(registry, view)
        _check_budget(registry, view)

    def start(view: SessionView) -> Sent:
        message = messages[view.session_id]
        try:
            _check_record(registry, view)
            turn = _start_turn(registry, view, message, kind, question)
            return Sent(view.session_id, turn=turn)
        except OrchestratorError as exc:
            return Sent(view.session_id, error=exc)

    with ThreadPoolExecutor(max_workers=max(1, min(16, len(views)))) as pool:
        sent = list(pool.map(start, views))
    if wait is None:
        return sent
    # The views the turns were started from are as fresh as a new survey would be: no second
    # engine call. A container that dies meanwhile is noticed by the wait's own surveys.
    started = [view for view, one in zip(views, sent, strict=True) if one.turn is not None]
    waited = {one.session_id: one for one in _wait_for(registry, started, timeout=wait)}
    return [waited.get(one.session_id, one) for one in sent]


def _check_record(registry: Registry, view: SessionView) -> None:
    """Past the bound on its record, the session's turn fails; the others go on."""
    from orchestrator.record_bound import check_record

    folder = registry.session_dir(view.role, view.session_id) / "agent"
    transcripts = view.state.transcript_dir if view.state is not None else None
    check_record(view.session_id, [folder, *([transcripts] if transcripts else [])])


def goal_message(session: SessionSpec) -> str:
    """A session's first turn: its goal, framed by its role."""
    return (
        f"You are the {session.role} agent of session {session.id}, working in "
        f"{CONTAINER_WORKSPACE} on the git branch {session.branch}.\n\n"
        f"Your goal:\n\n{(session.goal or '').strip()}\n"
    )


def _running_views(registry: Registry, session_ids: Sequence[str]) -> list[SessionView]:
    """The sessions named, each running; one engine call for all of them."""
    views = _known_views(registry, session_ids)
    for view in views:
        if view.status not in {"running", "unhealthy"}:
            raise InputError(
                f"session {view.session_id!r} is {view.status}, not running; start it with "
                "'uv run inv session.start' (or session.resume)"
            )
    return views


def check_ready(registry: Registry, session_id: str) -> None:
    """Refuse (bad input) unless the session runs and has no turn working."""
    (view,) = _running_views(registry, [session_id])
    _check_has_codex(view)
    _check_idle(registry, view)


def _check_has_codex(view: SessionView) -> None:
    """The smoke image (busybox, for the lifecycle) has no Codex: a turn there could only fail
    with `codex: not found`, so it is refused before anything is sent."""
    labels = view.container.labels if view.container is not None else {}
    if labels.get("org.filare.image.kind") == "smoke":
        raise InputError(
            f"session {view.session_id!r} runs the smoke image {view.image}, which has no Codex "
            "to take a turn; give it the Codex image (see 'uv run inv demo --codex')"
        )


def turn_of_question(registry: Registry, role: str, session_id: str, question: str) -> str | None:
    """The turn that carried the answer to `question`, if one did."""
    for record in turn_records(registry, role, session_id):
        if record.question == question:
            return record.number
    return None


def _check_idle(registry: Registry, view: SessionView) -> None:
    busy = latest_status(registry, view)
    if busy is not None and busy.status == "working":
        raise InputError(
            f"session {view.session_id!r} is working on turn {busy.record.number} since "
            f"{busy.record.started_at:%H:%M:%S}; wait for it (session.wait) or end it "
            "(session.interrupt)"
        )


def _check_budget(registry: Registry, view: SessionView) -> None:
    """The host's own check of the token budget, at every send (the daemon checks it too)."""
    assert view.state is not None
    folder = registry.session_dir(view.role, view.session_id)
    limits.check_budget(view.session_id, folder, transcript_folder(registry, view.state))


def _start_turn(
    registry: Registry, view: SessionView, message: str, kind: str, question: str | None = None
) -> str:
    state = view.state
    assert state is not None and view.container is not None
    from orchestrator import volumes

    with registry.lock(view.role, view.session_id):
        state = registry.read(view.role, view.session_id) or state
        thread = conversation_of(registry, state)
        folder = registry.session_dir(view.role, view.session_id)
        store = volumes.storage(registry, state.replace(container_id=view.container.id))
        boot = agentd_boot(registry, view)
        previous = latest_record(registry, view.role, view.session_id)
        withdrawn: list[str] = []
        if previous is not None and previous.sent_to_daemon and not _taken(folder, state, previous):
            # Never taken: a late daemon must not run it after the turns that follow it, and a
            # daemon that did not take it will not take the next one either.
            (folder / INBOX / f"{previous.number}.json").unlink(missing_ok=True)
            withdrawn.append(f"{previous.number}.json")
            if previous.agentd == boot:
                boot = None
        number = _next_turn(folder / TURNS)
        inbox = folder / INBOX
        atomic_write(inbox / f"{number}.message", message, mode=0o644)
        written = [f"{number}.message"]
        instructions = role_instructions(state, store)
        if instructions is not None:
            atomic_write(inbox / f"{number}.instructions", _toml_string(instructions), mode=0o644)
            written.append(f"{number}.instructions")
        record = TurnRecord(
            view.session_id,
            view.role,
            number,
            kind,
            now(),
            view.container.id,
            thread,
            question,
            agentd=boot,
        )
        atomic_write(folder / TURNS / f"{number}.json", record.to_json() + "\n")
        if boot is not None:
            # Written last: the daemon takes the turn when this file appears, so it never reads a
            # message or instructions half written.
            request = {"turn": number, "thread": thread, "agentd": boot}
            atomic_write(inbox / f"{number}.json", json.dumps(request) + "\n", mode=0o644)
            written.append(f"{number}.json")
        # On an engine without this machine's files the inbox is a volume there: the files go
        # in the order written, the request last.
        store.deliver(written, withdrawn)
        if boot is None:
            argv = ["agent-entrypoint", "filare-turn", number, *([thread] if thread else [])]
            engine.Engine(view.engine).exec_detached(
                view.container.id, argv, workdir=CONTAINER_WORKSPACE
            )
        forgotten = _forget_old_turns(folder, state)
        if forgotten:
            inbox_files = ("message", "instructions", "json")
            store.deliver(remove=[f"{n}.{suffix}" for n in forgotten for suffix in inbox_files])
            store.forget_transcripts(forgotten)
        return number


def agentd_boot(registry: Registry, view: SessionView) -> str | None:
    """The boot id of the agent daemon running in the session's current container, or None
    when there is none (an image without it, a daemon not up yet, a ready file of an earlier
    container): then turns go through `docker exec … filare-turn`.

    The ready file is in the agent folder, which the session can write: it is read without
    following a link and only up to a bound, and all it can decide is which way a turn is
    started. A forged one makes the host write a request no daemon takes, which the session's
    real daemon records as failed.
    """
    if view.container is None:
        return None
    path = registry.session_dir(view.role, view.session_id) / AGENT_FOLDER / AGENTD_FILE
    data = loads(read_limited(path, MAX_AGENTD_BYTES))
    if not isinstance(data, dict) or data.get("protocol") != AGENTD_PROTOCOL:
        return None
    container, boot = data.get("container"), data.get("boot")
    if not (isinstance(container, str) and _HOSTNAME.fullmatch(container)):
        return None
    if not view.container.id.startswith(container):
        return None
    return boot if isinstance(boot, str) and _BOOT_ID.fullmatch(boot) else None


def conversation_of(registry: Registry, state: SessionState) -> str | None:
    """The session's conversation: from its record, else from its first turn's transcript (and
    then recorded). Called under the session's lock. Only an id of Codex's shape is taken: it
    becomes an argument of `codex resume` and of the turn's runner."""
    if transcript.is_thread_id(state.thread_id):
        return state.thread_id
    folder = transcript_folder(registry, state)
    for number in transcript.turns(folder):
        found = transcript.thread_id(folder, number)
        if found is not None:
            registry.write(state.replace(thread_id=found))
            return found
    return None


def role_instructions(state: SessionState, store: volumes.Storage | None = None) -> str | None:
    """The origin's role file in the workspace (`agents/AGENT.<ROLE>.md`), if there is one.

    The workspace is the session's: the file is read without following a link anywhere on its
    path, and only up to a bound (in a volume: read in the container, as the session's user).
    """
    from orchestrator import volumes

    where = store or volumes.BindMounts(state)
    found = where.read_workspace_file(ROLE_FILE.format(role=state.role))
    text = (found or b"").decode("utf-8", "replace").strip()
    return text or None


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, once control characters are gone (they
    become `?`, as everywhere a session's text is shown)."""
    return json.dumps(printable(text, newlines=True), ensure_ascii=False)


def _next_turn(folder: Path) -> str:
    numbers = [int(n) for n in _record_numbers(folder)]
    return f"{(max(numbers) + 1) if numbers else 1:04d}"


def _record_numbers(folder: Path) -> list[str]:
    return transcript.numbered(folder, "json")


def _forget_old_turns(folder: Path, state: SessionState) -> list[str]:
    """Remove the oldest turns past `MAX_TURNS`, here; their numbers."""
    from orchestrator.volumes import TRANSCRIPT_SUFFIXES

    numbers = _record_numbers(folder / TURNS)
    removed = numbers[:-MAX_TURNS]
    for number in removed:
        for path in (
            folder / TURNS / f"{number}.json",
            folder / TURNS / f"{number}.{HOST_END_SUFFIX}",
            folder / INBOX / f"{number}.message",
            folder / INBOX / f"{number}.instructions",
            folder / INBOX / f"{number}.json",
            folder / INBOX / f"{number}.interrupt",
        ):
            path.unlink(missing_ok=True)
        transcripts = transcript_folder_of(folder, state)
        for suffix in TRANSCRIPT_SUFFIXES:
            entry = transcripts / f"{number}.{suffix}"
            if entry.is_file() or entry.is_symlink():
                entry.unlink()
    return removed


# --- turn state -----------------------------------------------------------------------------------


def transcript_folder(registry: Registry, state: SessionState) -> Path:
    return transcript_folder_of(registry.session_dir(state.role, state.session_id), state)


def transcript_folder_of(state_dir: Path, state: SessionState) -> Path:
    return state.transcript_dir or state_dir / "agent" / "transcript"


def turn_records(registry: Registry, role: str, session_id: str) -> list[TurnRecord]:
    """Every readable turn record of the session, oldest first."""
    folder = registry.session_dir(role, session_id) / TURNS
    found = (_read_record(folder, number) for number in _record_numbers(folder))
    return [record for record in found if record is not None]


def latest_record(registry: Registry, role: str, session_id: str) -> TurnRecord | None:
    """The newest readable turn record, `turn_records(...)[-1]`, reading only as many records
    as it takes (one, unless the newest are unreadable) rather than every turn's."""
    folder = registry.session_dir(role, session_id) / TURNS
    for number in reversed(_record_numbers(folder)):
        record = _read_record(folder, number)
        if record is not None:
            return record
    return None


def _read_record(folder: Path, number: str) -> TurnRecord | None:
    try:
        return TurnRecord.from_json((folder / f"{number}.json").read_bytes())
    except (OSError, ValueError, TypeError, KeyError):
        return None


def turn_status(registry: Registry, view: SessionView, record: TurnRecord) -> TurnStatus:
    """Whether a turn still works, and how it ended if it did.

    A turn with no end recorded whose container is gone, or is another one now, was cut off (by
    `session.stop`, a crash or a daemon restart): it is interrupted, never working forever. So
    is a turn the host ended (`session.interrupt` when the session did not); a turn sent to the
    agent daemon that it did not take in time has failed.
    """
    assert view.state is not None
    state_dir = registry.session_dir(view.role, view.session_id)
    host_end = _host_end(state_dir, record)
    if host_end is not None:
        return host_end
    folder = transcript_folder(registry, view.state)
    end = transcript.turn_end(folder, record.number)
    if end is None:
        alive = (
            view.container is not None
            and view.container.running
            and view.container.id == record.container_id
        )
        if not alive:
            return TurnStatus(
                record, "interrupted", "the container stopped before the turn ended", None
            )
        if _overdue(record) and not _taken(state_dir, view.state, record):
            return TurnStatus(
                record,
                "failed",
                f"the session's agent daemon did not take the turn within {PICKUP_SECONDS:g} s "
                "(its ready file may be stale or forged); the next turn goes through filare-turn",
                None,
            )
        return TurnStatus(record, "working", None, None)
    if end.problem is not None:
        return TurnStatus(record, "failed", end.problem, end)
    if end.reason is not None:
        session_dir = registry.session_dir(view.role, view.session_id)
        reason = limits.end_reason(end.reason, limits.current(session_dir))
        return TurnStatus(record, end.reason, reason, end)
    if end.interrupted:
        return TurnStatus(record, "interrupted", "interrupted by session.interrupt", end)
    if end.exit_code == 0:
        return TurnStatus(record, "completed", None, end)
    return TurnStatus(record, "failed", _failure(folder, record.number, end), end)


def _overdue(record: TurnRecord) -> bool:
    return (now() - record.started_at).total_seconds() > PICKUP_SECONDS


def _taken(state_dir: Path, state: SessionState, record: TurnRecord) -> bool:
    """Whether the turn's runner has begun it: always for a `filare-turn` turn, which the host
    started itself; for the daemon's, once it wrote anything of the turn in the transcripts."""
    if not record.sent_to_daemon:
        return True
    folder = transcript_folder_of(state_dir, state)
    return any(os.path.lexists(folder / f"{record.number}.{suffix}") for suffix in TAKEN_SUFFIXES)


def _host_end(state_dir: Path, record: TurnRecord) -> TurnStatus | None:
    """The turn as the host ended it (`turns/N.ended`), if it did."""
    raw = read_limited(state_dir / TURNS / f"{record.number}.{HOST_END_SUFFIX}", MAX_HOST_END_BYTES)
    if not raw:
        return None
    data = loads(raw)
    reason, at = (data.get("reason"), data.get("at")) if isinstance(data, dict) else (None, None)
    if not isinstance(reason, str) or not isinstance(at, str):
        reason, at = "ended by the host", None
    return TurnStatus(record, "interrupted", reason, TurnEnd(1, True, at))


def _failure(folder: Path, number: str, end: TurnEnd) -> str:
    """Why a turn failed: Codex's `turn.failed`, which ends its transcript (only the end is
    read), else the runner's last line on stderr."""
    for event in reversed(EventReader(folder, number).tail()):
        if event.get("type") == "turn.failed" and isinstance(event.get("error"), dict):
            message = event["error"].get("message")
            if isinstance(message, str) and message:
                return message
    return transcript.last_error_line(folder, number) or f"exit code {end.exit_code}"


def latest_status(registry: Registry, view: SessionView) -> TurnStatus | None:
    record = latest_record(registry, view.role, view.session_id)
    return turn_status(registry, view, record) if record is not None else None


def final_message(registry: Registry, state: SessionState, number: str) -> str | None:
    """The turn's last agent message (the whole transcript is read, in bounded chunks)."""
    return _last_message(
        state.session_id, number, EventReader(transcript_folder(registry, state), number).read()
    )


def _last_message(session: str, number: str, events: Iterable[dict[str, object]]) -> str | None:
    last = None
    for event in events:
        normal = transcript.normalize(session, number, event)
        if normal is not None and normal.type == "agent_message":
            last = str(normal.fields["text"])
    return last


# How many of the newest turns a session's line looks into for its last message.
LAST_MESSAGE_TURNS = 2


def agent_json(registry: Registry, view: SessionView) -> dict[str, object]:
    """The agent fields of `session.list --json`: `agent` (`idle`, `working`, `failed`,
    `interrupted`, `timed out`, `over budget`, `stalled`, or `none` before the first turn),
    `agent_since`, `agent_reason`, `turns` (ended turns), `last_message` (short),
    `transcript_skipped` (lines of what was read that are not well-formed events), and the
    figures of `orchestrator.limits.agent_fields`.

    `session.list` and every dashboard refresh come here for each session: it reads the newest
    turn record and the end (`transcript.MAX_TAIL_BYTES`) of the newest transcripts only, never
    every turn the session had nor a whole transcript.
    """
    if view.state is None:
        return {}
    folder = registry.session_dir(view.role, view.session_id)
    numbers = _record_numbers(folder / TURNS)
    record = latest_record(registry, view.role, view.session_id)
    transcripts = transcript_folder(registry, view.state)
    if record is None:
        return _agent("none", None, None, 0, None, 0) | limits.agent_fields(
            {}, folder, transcripts, None
        )
    latest = turn_status(registry, view, record)
    done = len(numbers) - (0 if latest.done else 1)
    last, skipped = None, 0
    for number in list(reversed(numbers))[:LAST_MESSAGE_TURNS]:
        reader = EventReader(transcripts, number)
        last = _last_message(view.session_id, number, reader.tail())
        skipped += reader.skipped
        if last:
            break
    since = moment(latest.end.ended_at) if latest.end else None
    if latest.status == "working":
        agent = _agent("working", moment(latest.record.started_at), None, done, last, skipped)
    else:
        state = "idle" if latest.status == "completed" else latest.status
        agent = _agent(state, since, latest.reason, done, last, skipped)
    working = latest.record.number if latest.status == "working" else None
    return agent | limits.agent_fields(agent, folder, transcripts, working)


def moment(value: datetime | str | None) -> str | None:
    """One format for every time a transcript or a listing shows, whoever wrote it (the host
    records microseconds and `+00:00`, the container's daemon `Z`): ISO 8601 in UTC, to the
    second. A text that is not a time (the container's files are untrusted) is None."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def _agent(
    state: str, since: str | None, reason: str | None, turns: int, last: str | None, skipped: int
) -> dict[str, object]:
    return {
        "agent": state,
        "agent_since": since,
        "agent_reason": reason,
        "turns": turns,
        "last_message": _short(last),
        "transcript_skipped": skipped,
    }


def _short(text: str | None) -> str | None:
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= SHORT else line[: SHORT - 1] + "…"


# --- waiting and interrupting ---------------------------------------------------------------------


def wait(registry: Registry, session_ids: Sequence[str], *, timeout: float) -> list[Sent]:
    """Wait until the latest turn of each session ends (or `timeout` seconds pass)."""
    _check_timeout(timeout)
    views = _known_views(registry, session_ids)
    for view in views:
        if latest_record(registry, view.role, view.session_id) is None:
            raise InputError(f"session {view.session_id!r} has had no turn to wait for")
    return _wait_for(registry, views, timeout=timeout)


def _check_timeout(timeout: float) -> None:
    if timeout < 0:
        raise InputError(f"--timeout must be 0 or more seconds, not {timeout:g}")


def _wait_for(registry: Registry, views: Sequence[SessionView], *, timeout: float) -> list[Sent]:
    """Wait for the latest turn of each of `views` (each has had one); results in their order."""
    deadline = time.monotonic() + timeout
    pending = {v.session_id: v for v in views}
    results: dict[str, Sent] = {}
    next_survey = time.monotonic() + SURVEY_SECONDS
    from orchestrator.folder_events import FolderEvents

    # Woken as soon as a session writes where a turn's end shows (the clock stays the bound).
    with FolderEvents(_end_folders(registry, views)) as changes:
        while True:
            for session_id, view in list(pending.items()):
                ended = _ended(registry, view)
                if ended is not None:
                    results[session_id] = ended
                    del pending[session_id]
            if not pending or time.monotonic() >= deadline:
                break
            changes.wait(POLL_SECONDS)
            if time.monotonic() >= next_survey:
                # A container that died (or was replaced) ends its turn: look at the engine again.
                fresh = {v.session_id: v for v in survey(registry).sessions}
                pending = {k: fresh.get(k, v) for k, v in pending.items()}
                next_survey = time.monotonic() + SURVEY_SECONDS
    for session_id, view in pending.items():
        status = latest_status(registry, view)
        results[session_id] = Sent(
            session_id,
            status.record.number if status else None,
            error=OrchestratorError(
                f"session {session_id!r}: turn still working after {timeout:g} s"
            ),
            status=status,
        )
    return [results[v.session_id] for v in views]


def _ended(registry: Registry, view: SessionView) -> Sent | None:
    """The session's latest turn, once it has ended; None while it works."""
    if view.state is not None and view.container is not None:
        # On an engine without this machine's files: its transcript home (at most once a
        # second; nothing to do for bind mounts).
        state = view.state.replace(container_id=view.container.id)
        from orchestrator import volumes

        with contextlib.suppress(OrchestratorError, OSError):
            volumes.storage(registry, state).refresh()
    status = latest_status(registry, view)
    assert status is not None
    if not status.done:
        return None
    assert view.state is not None
    if view.state.thread_id is None:
        with registry.lock(view.role, view.session_id):
            current = registry.read(view.role, view.session_id)
            if current is not None:
                conversation_of(registry, current)
    message = final_message(registry, view.state, status.record.number)
    return Sent(view.session_id, status.record.number, status=status, final_message=message)


def _end_folders(registry: Registry, views: Sequence[SessionView]) -> list[Path]:
    """Where the end of a session's turn is written: its transcript (the session) and its turn
    records (the host, when `session.interrupt` ends it)."""
    return [
        folder
        for view in views
        if view.state is not None
        for folder in (
            transcript_folder(registry, view.state),
            registry.session_dir(view.role, view.session_id) / TURNS,
        )
    ]


def _known_views(registry: Registry, session_ids: Sequence[str]) -> list[SessionView]:
    """The recorded sessions named, in the order given; one engine call for all of them."""
    if not session_ids or any(not one for one in session_ids):
        raise InputError("--session needs a session id")
    by_id: dict[str, SessionView] = {}
    for view in survey(registry).sessions:
        if view.state is not None:
            by_id.setdefault(view.session_id, view)
    for session_id in session_ids:
        if session_id not in by_id:
            from orchestrator.errors import did_you_mean

            hint = did_you_mean(session_id, by_id)
            raise InputError(f"no session with id {session_id!r} in {registry.root}{hint}")
    return [by_id[s] for s in dict.fromkeys(session_ids)]


def interrupt(registry: Registry, session_id: str, *, timeout: float = 10.0) -> TurnStatus:
    """End the session's working turn; the container and the conversation stay.

    The session is asked to end it (the daemon through `N.interrupt`, else `filare-turn
    --interrupt`). When it has not within `timeout` seconds (a daemon that is stuck, stopped or
    never was), the host ends the turn itself: it withdraws the request, records the turn as
    interrupted, and the session can take turns again.
    """
    (view,) = _running_views(registry, [session_id])
    status = latest_status(registry, view)
    if status is None or status.done:
        raise InputError(f"session {session_id!r} has no turn working")
    assert view.container is not None and view.state is not None
    record = status.record
    folder = registry.session_dir(view.role, view.session_id)
    inbox = folder / INBOX
    from orchestrator import volumes

    store = volumes.storage(registry, view.state.replace(container_id=view.container.id))
    asked = "the session did not end it"
    if record.sent_to_daemon or (inbox / f"{record.number}.json").is_file():
        # A turn sent to the agent daemon: it ends the turn when this file appears (written
        # first, so a daemon taking the turn right now still sees it).
        atomic_write(inbox / f"{record.number}.interrupt", "", mode=0o644)
        with registry.lock(view.role, view.session_id):
            (inbox / f"{record.number}.json").unlink(missing_ok=True)
            store.deliver([f"{record.number}.interrupt"], [f"{record.number}.json"])
            store.refresh()
            if not _taken(folder, view.state, record):
                # Withdrawn before the daemon took it: it never will.
                return _end_by_host(
                    folder, record, view, registry, "before the session's agent daemon took it"
                )
    else:
        try:
            engine.Engine(view.engine).exec(
                view.container.id,
                ["agent-entrypoint", "filare-turn", "--interrupt", record.number],
            )
        except EngineError as exc:
            asked = f"filare-turn --interrupt failed ({exc})"
    deadline = time.monotonic() + timeout
    from orchestrator.folder_events import FolderEvents

    with FolderEvents([transcript_folder(registry, view.state)]) as changes:
        while True:
            store.refresh()
            status = turn_status(registry, view, record)
            if status.done:
                return status
            if time.monotonic() >= deadline:
                break
            changes.wait(POLL_SECONDS)
    with registry.lock(view.role, view.session_id):
        status = turn_status(registry, view, record)
        if status.done:
            return status
        (inbox / f"{record.number}.json").unlink(missing_ok=True)
        store.deliver(remove=[f"{record.number}.json"])
        return _end_by_host(
            folder,
            record,
            view,
            registry,
            f"after {asked} within {timeout:g} s (what the turn started in the container may "
            "run on until the session stops)",
        )


def _end_by_host(
    folder: Path, record: TurnRecord, view: SessionView, registry: Registry, why: str
) -> TurnStatus:
    """Record the turn as interrupted by the host (`turns/N.ended`); under the session's lock."""
    reason = f"interrupted by session.interrupt: the host ended the turn {why}"
    ended = {"reason": reason, "at": now().isoformat()}
    atomic_write(folder / TURNS / f"{record.number}.{HOST_END_SUFFIX}", json.dumps(ended))
    return turn_status(registry, view, record)


# --- the transcript -----------------------------------------------------------------------------


def events(registry: Registry, view: SessionView) -> Iterator[TranscriptEvent]:
    """The session's transcript, every turn in order, in the transcript's vocabulary."""
    assert view.state is not None
    folder = transcript_folder(registry, view.state)
    for record in turn_records(registry, view.role, view.session_id):
        yield from turn_events(registry, view, TurnLog(folder, record), follow=False)


class TurnLog:
    """What has been shown of one turn, so that each event is shown once: the transcript is
    read on from where the last read stopped (never again from its start)."""

    def __init__(self, folder: Path, record: TurnRecord) -> None:
        self.record = record
        self.reader = EventReader(folder, record.number)
        self.started = False
        self.closing = False
        self.noted = False
        self.ended = False


def turn_events(
    registry: Registry, view: SessionView, shown: TurnLog, *, follow: bool
) -> Iterator[TranscriptEvent]:
    """The turn's events not shown yet; with `follow`, the count of skipped lines waits for the
    turn's end, so that it is shown once."""
    session, record = view.session_id, shown.record
    if not shown.started:
        shown.started = True
        opening = {"message": _message(registry, view, record), "at": moment(record.started_at)}
        yield TranscriptEvent(session, record.number, "turn_started", opening)
    if shown.ended:
        return
    status = turn_status(registry, view, record)
    for event in shown.reader.read(final=status.done):
        normal = transcript.normalize(session, record.number, event)
        if normal is not None:
            shown.closing = shown.closing or normal.type in {"turn_completed", "turn_failed"}
            yield normal
    if shown.reader.skipped and not shown.noted and (status.done or not follow):
        shown.noted = True
        yield transcript.skipped_note(session, record.number, shown.reader.skipped)
    if not status.done:
        return
    shown.ended = True
    if shown.closing:
        return
    at = moment(status.end.ended_at) if status.end else None
    fields: dict[str, object]
    if status.status == "interrupted":
        fields = {"message": status.reason or "", "at": at}
        yield TranscriptEvent(session, record.number, "turn_interrupted", fields)
    elif status.end is not None and status.end.problem is not None:
        fields = {"message": status.end.problem}
        yield TranscriptEvent(session, record.number, "turn_failed", fields)
    else:
        code = status.end.exit_code if status.end else None
        fields = {"exit_code": code, "at": at}
        yield TranscriptEvent(session, record.number, "turn_ended", fields)


def _message(registry: Registry, view: SessionView, record: TurnRecord) -> str:
    path = registry.session_dir(view.role, view.session_id) / INBOX / f"{record.number}.message"
    return read_limited(path, MAX_MESSAGE_BYTES).decode("utf-8", "replace")


def log(
    registry: Registry, session_id: str, *, follow: bool = False, tail: int = 0
) -> Iterator[TranscriptEvent]:
    """The session's transcript (its last `tail` events when `tail`), then, with `follow`, every
    new event as it comes, until interrupted.

    Each turn's transcript is streamed in bounded chunks, and followed from where the last read
    stopped; `tail` keeps only the last events in memory.
    """
    (view,) = _known_views(registry, [session_id])
    shown: dict[str, TurnLog] = {}
    shown_denials = 0

    def new_events() -> Iterator[TranscriptEvent]:
        nonlocal shown_denials
        assert view.state is not None
        folder = transcript_folder(registry, view.state)
        for record in turn_records(registry, view.role, view.session_id):
            turn = shown.setdefault(record.number, TurnLog(folder, record))
            if not turn.ended:
                yield from turn_events(registry, view, turn, follow=follow)
        denied = _denial_events(registry, view)
        yield from denied[shown_denials:]
        shown_denials = max(shown_denials, len(denied))

    yield from deque(new_events(), maxlen=tail) if tail else new_events()
    next_survey = time.monotonic() + SURVEY_SECONDS
    while follow:
        time.sleep(FOLLOW_SECONDS)
        if time.monotonic() >= next_survey:
            view = _known_views(registry, [session_id])[0]
            next_survey = time.monotonic() + SURVEY_SECONDS
        yield from new_events()


def _denial_events(registry: Registry, view: SessionView) -> list[TranscriptEvent]:
    """What the egress proxy refused the session, as events of no turn (`egress_denied`)."""
    from orchestrator.denials import read_denials

    return [
        TranscriptEvent(view.session_id, "-", "egress_denied", denial.as_json())
        for denial in read_denials(registry.root, view.role, view.session_id)
    ]


def attach_command(registry: Registry, session_id: str) -> list[str]:
    """The `docker exec -it` argv that opens Codex's terminal on the session's conversation.

    Refused while a turn works (two Codex processes on one home contend for its databases) and
    before the first turn (there is no conversation yet: start one with session.send).
    """
    (view,) = _running_views(registry, [session_id])
    latest = latest_status(registry, view)
    if latest is not None and latest.status == "working":
        raise InputError(
            f"session {session_id!r} is working on turn {latest.record.number}; wait for it "
            "(session.wait) or end it (session.interrupt) first"
        )
    assert view.state is not None and view.container is not None
    with registry.lock(view.role, view.session_id):
        thread = conversation_of(registry, view.state)
    if thread is None:
        raise InputError(
            f"session {session_id!r} has no conversation yet; start one with session.send"
        )
    prefix = [
        *engine.command_argv(context=view.engine),
        "exec",
        "--interactive",
        "--tty",
        "--workdir",
        CONTAINER_WORKSPACE,
        view.container.id,
        "agent-entrypoint",
    ]
    if agentd_boot(registry, view) is not None:
        # The agent daemon's app-server holds the conversation between turns, and Codex lets
        # one process write a conversation: the daemon stops it first, then runs the terminal.
        return [*prefix, "filare-agentd", "--attach", thread]
    return [
        *prefix,
        "codex",
        # No daemon: the interactive CLI would otherwise copy itself (over 400 MB) into the
        # session's Codex home and leave a server running after the person leaves.
        "--no-daemon",
        "--dangerously-bypass-approvals-and-sandbox",
        "resume",
        thread,
    ]
