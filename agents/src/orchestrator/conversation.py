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

Host-only files of a session (`<registry>/<role>/<id>/`): `turns/N.json` (when and what turn N
was sent), `inbox/N.message`, `inbox/N.instructions`, `inbox/N.json` and `inbox/N.interrupt`
(mounted read-only into the container). The transcript folder and the agent folder hold what
the container wrote; see `orchestrator.transcript`.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import engine, transcript
from orchestrator.errors import EngineError, InputError, OrchestratorError
from orchestrator.listing import SessionView, survey
from orchestrator.plan import CONTAINER_WORKSPACE
from orchestrator.registry import Registry, SessionState, atomic_write, now
from orchestrator.spec import SessionSpec
from orchestrator.transcript import TranscriptEvent, TurnEnd

TURNS = "turns"
INBOX = "inbox"
# The agent daemon's ready file, in the session's agent folder (`~/.filare` in the container).
AGENT_FOLDER = "agent"
AGENTD_FILE = "agentd.json"
AGENTD_PROTOCOL = 1
MAX_AGENTD_BYTES = 4096
_BOOT_ID = re.compile(r"[0-9a-f]{8,64}")
_HOSTNAME = re.compile(r"[0-9a-f]{12,64}")
# How often a waiting command looks for the end of a turn.
POLL_SECONDS = 0.02
# How often a waiting command asks the engine whether the containers still run.
SURVEY_SECONDS = 2.0
# How often `session.log --follow` looks for new events.
FOLLOW_SECONDS = 0.25
# Turns a session keeps; older ones (transcript, message, record) are removed as new ones start.
MAX_TURNS = 1000
MAX_MESSAGE_BYTES = 1 << 20
MAX_ROLE_FILE_BYTES = 256 << 10
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
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: bytes) -> TurnRecord:
        data = json.loads(text)
        data["started_at"] = datetime.fromisoformat(data["started_at"])
        return cls(**data)


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

    def start(view: SessionView) -> Sent:
        message = messages[view.session_id]
        try:
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


def _start_turn(
    registry: Registry, view: SessionView, message: str, kind: str, question: str | None = None
) -> str:
    state = view.state
    assert state is not None and view.container is not None
    with registry.lock(view.role, view.session_id):
        state = registry.read(view.role, view.session_id) or state
        thread = conversation_of(registry, state)
        folder = registry.session_dir(view.role, view.session_id)
        number = _next_turn(folder / TURNS)
        inbox = folder / INBOX
        atomic_write(inbox / f"{number}.message", message, mode=0o644)
        instructions = role_instructions(state)
        if instructions is not None:
            atomic_write(inbox / f"{number}.instructions", _toml_string(instructions), mode=0o644)
        record = TurnRecord(
            view.session_id, view.role, number, kind, now(), view.container.id, thread, question
        )
        atomic_write(folder / TURNS / f"{number}.json", record.to_json() + "\n")
        boot = agentd_boot(registry, view)
        if boot is not None:
            # Written last: the daemon takes the turn when this file appears, so it never reads a
            # message or instructions half written.
            request = {"turn": number, "thread": thread, "agentd": boot}
            atomic_write(inbox / f"{number}.json", json.dumps(request) + "\n", mode=0o644)
        else:
            argv = ["agent-entrypoint", "filare-turn", number, *([thread] if thread else [])]
            engine.exec_detached(view.container.id, argv, workdir=CONTAINER_WORKSPACE)
        _forget_old_turns(folder, state)
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
    raw = transcript.read_limited(path, MAX_AGENTD_BYTES)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return None
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
    then recorded). Called under the session's lock."""
    if state.thread_id:
        return state.thread_id
    folder = transcript_folder(registry, state)
    for number in transcript.turns(folder):
        found = transcript.thread_id(folder, number)
        if found is not None:
            registry.write(state.replace(thread_id=found))
            return found
    return None


def role_instructions(state: SessionState) -> str | None:
    """The origin's role file in the workspace (`agents/AGENT.<ROLE>.md`), if there is one.

    The workspace is the session's: the file is read without following a link anywhere on its
    path, and only up to a bound.
    """
    parts = ROLE_FILE.format(role=state.role).split("/")
    try:
        fd = os.open(state.workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            next_fd = os.open(
                part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
            )
            os.close(fd)
            fd = next_fd
        file_fd = os.open(
            parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd
        )
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        data = os.read(file_fd, MAX_ROLE_FILE_BYTES)
    finally:
        os.close(file_fd)
    text = data.decode("utf-8", "replace").strip()
    return text or None


def _toml_string(text: str) -> str:
    """A TOML basic string: JSON's escapes are TOML's, once control characters are gone."""
    clean = "".join(c for c in text if c in "\n\t" or c.isprintable())
    return json.dumps(clean, ensure_ascii=False)


def _next_turn(folder: Path) -> str:
    numbers = [int(n) for n in _record_numbers(folder)]
    return f"{(max(numbers) + 1) if numbers else 1:04d}"


def _record_numbers(folder: Path) -> list[str]:
    return transcript.numbered(folder, "json")


def _forget_old_turns(folder: Path, state: SessionState) -> None:
    numbers = _record_numbers(folder / TURNS)
    for number in numbers[:-MAX_TURNS]:
        for path in (
            folder / TURNS / f"{number}.json",
            folder / INBOX / f"{number}.message",
            folder / INBOX / f"{number}.instructions",
            folder / INBOX / f"{number}.json",
            folder / INBOX / f"{number}.interrupt",
        ):
            path.unlink(missing_ok=True)
        transcripts = transcript_folder_of(folder, state)
        for suffix in ("jsonl", "exit", "stderr", "pid"):
            entry = transcripts / f"{number}.{suffix}"
            if entry.is_file() or entry.is_symlink():
                entry.unlink()


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
    `session.stop`, a crash or a daemon restart): it is interrupted, never working forever.
    """
    assert view.state is not None
    folder = transcript_folder(registry, view.state)
    end = transcript.turn_end(folder, record.number)
    if end is None:
        alive = (
            view.container is not None
            and view.container.running
            and view.container.id == record.container_id
        )
        if alive:
            return TurnStatus(record, "working", None, None)
        return TurnStatus(
            record, "interrupted", "the container stopped before the turn ended", None
        )
    if end.interrupted:
        return TurnStatus(record, "interrupted", "interrupted by session.interrupt", end)
    if end.exit_code == 0:
        return TurnStatus(record, "completed", None, end)
    return TurnStatus(record, "failed", _failure(folder, record.number, end), end)


def _failure(folder: Path, number: str, end: TurnEnd) -> str:
    for event in transcript.codex_events(folder, number):
        if event.get("type") == "turn.failed" and isinstance(event.get("error"), dict):
            message = event["error"].get("message")
            if isinstance(message, str) and message:
                return message
    return transcript.last_error_line(folder, number) or f"exit code {end.exit_code}"


def latest_status(registry: Registry, view: SessionView) -> TurnStatus | None:
    record = latest_record(registry, view.role, view.session_id)
    return turn_status(registry, view, record) if record is not None else None


def final_message(registry: Registry, state: SessionState, number: str) -> str | None:
    """The turn's last agent message."""
    folder = transcript_folder(registry, state)
    last = None
    for event in transcript.codex_events(folder, number):
        normal = transcript.normalize(state.session_id, number, event)
        if normal is not None and normal.type == "agent_message":
            last = str(normal.fields["text"])
    return last


def agent_json(registry: Registry, view: SessionView) -> dict[str, object]:
    """The agent fields of `session.list --json`: `agent` (`idle`, `working`, `failed`,
    `interrupted` or `none` before the first turn), `agent_since`, `agent_reason`, `turns`
    (ended turns) and `last_message` (short)."""
    if view.state is None:
        return {}
    # `session.list` and every dashboard refresh come here for each session: read the newest
    # record and the newest transcripts only, not every turn the session ever had.
    numbers = _record_numbers(registry.session_dir(view.role, view.session_id) / TURNS)
    record = latest_record(registry, view.role, view.session_id)
    if record is None:
        return _agent("none", None, None, 0, None)
    latest = turn_status(registry, view, record)
    done = len(numbers) - (0 if latest.done else 1)
    last = None
    for number in reversed(numbers):
        last = final_message(registry, view.state, number)
        if last:
            break
    since = moment(latest.end.ended_at) if latest.end else None
    if latest.status == "working":
        return _agent("working", moment(latest.record.started_at), None, done, last)
    state = "idle" if latest.status == "completed" else latest.status
    return _agent(state, since, latest.reason, done, last)


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
    state: str, since: str | None, reason: str | None, turns: int, last: str | None
) -> dict[str, object]:
    return {
        "agent": state,
        "agent_since": since,
        "agent_reason": reason,
        "turns": turns,
        "last_message": _short(last),
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
    while True:
        for session_id, view in list(pending.items()):
            status = latest_status(registry, view)
            assert status is not None
            if status.done:
                assert view.state is not None
                if view.state.thread_id is None:
                    with registry.lock(view.role, view.session_id):
                        current = registry.read(view.role, view.session_id)
                        if current is not None:
                            conversation_of(registry, current)
                message = final_message(registry, view.state, status.record.number)
                results[session_id] = Sent(
                    session_id, status.record.number, status=status, final_message=message
                )
                del pending[session_id]
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(POLL_SECONDS)
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
    """End the session's working turn; the container and the conversation stay."""
    (view,) = _running_views(registry, [session_id])
    status = latest_status(registry, view)
    if status is None or status.done:
        raise InputError(f"session {session_id!r} has no turn working")
    assert view.container is not None
    number = status.record.number
    inbox = registry.session_dir(view.role, view.session_id) / INBOX
    if (inbox / f"{number}.json").is_file():
        # A turn the agent daemon took: it ends the turn when this file appears.
        atomic_write(inbox / f"{number}.interrupt", "", mode=0o644)
    else:
        try:
            engine.exec_in(
                view.container.id, ["agent-entrypoint", "filare-turn", "--interrupt", number]
            )
        except EngineError as exc:
            raise EngineError(f"session {session_id!r}: cannot interrupt: {exc}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = turn_status(registry, view, status.record)
        if status.done:
            return status
        time.sleep(POLL_SECONDS)
    raise EngineError(f"session {session_id!r}: the turn did not end within {timeout:g} s")


# --- the transcript -----------------------------------------------------------------------------


def events(registry: Registry, view: SessionView) -> Iterator[TranscriptEvent]:
    """The session's transcript, every turn in order, in the transcript's vocabulary."""
    assert view.state is not None
    for record in turn_records(registry, view.role, view.session_id):
        yield from turn_events(registry, view, record)


def turn_events(
    registry: Registry, view: SessionView, record: TurnRecord, *, skip: int = 0
) -> Iterator[TranscriptEvent]:
    assert view.state is not None
    folder = transcript_folder(registry, view.state)
    session = view.session_id
    started = TranscriptEvent(
        session,
        record.number,
        "turn_started",
        {"message": _message(registry, view, record), "at": moment(record.started_at)},
    )
    produced = [started]
    closing = False
    for event in transcript.codex_events(folder, record.number):
        normal = transcript.normalize(session, record.number, event)
        if normal is not None:
            produced.append(normal)
            closing = closing or normal.type in {"turn_completed", "turn_failed"}
    status = turn_status(registry, view, record)
    if status.done and not closing:
        at = moment(status.end.ended_at) if status.end else None
        if status.status == "interrupted":
            fields: dict[str, object] = {"message": status.reason or "", "at": at}
            produced.append(TranscriptEvent(session, record.number, "turn_interrupted", fields))
        else:
            code = status.end.exit_code if status.end else None
            produced.append(
                TranscriptEvent(session, record.number, "turn_ended", {"exit_code": code, "at": at})
            )
    yield from produced[skip:]


def _message(registry: Registry, view: SessionView, record: TurnRecord) -> str:
    path = registry.session_dir(view.role, view.session_id) / INBOX / f"{record.number}.message"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def log(
    registry: Registry, session_id: str, *, follow: bool = False, tail: int = 0
) -> Iterator[TranscriptEvent]:
    """The session's transcript (its last `tail` events when `tail`), then, with `follow`, every
    new event as it comes, until interrupted."""
    (view,) = _known_views(registry, [session_id])
    seen: dict[str, int] = {}
    everything = []
    for record in turn_records(registry, view.role, view.session_id):
        produced = list(turn_events(registry, view, record))
        seen[record.number] = len(produced)
        everything += produced
    yield from everything[-tail:] if tail else everything
    next_survey = time.monotonic() + SURVEY_SECONDS
    while follow:
        time.sleep(FOLLOW_SECONDS)
        if time.monotonic() >= next_survey:
            view = _known_views(registry, [session_id])[0]
            next_survey = time.monotonic() + SURVEY_SECONDS
        for record in turn_records(registry, view.role, view.session_id):
            produced = list(turn_events(registry, view, record, skip=seen.get(record.number, 0)))
            seen[record.number] = seen.get(record.number, 0) + len(produced)
            yield from produced


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
        "docker",
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
