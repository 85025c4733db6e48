"""`session.watch`: the events of the fleet, one line each, and the operator's notify command.

An event is a session becoming:

- `waiting`: a question to the operator (`question` is its id),
- `idle`: a turn completed,
- `failed`, `timed out`, `over budget`: a turn ended so,
- `stalled`: Codex said nothing in a working turn for the session's `stall_seconds`.

(A turn ended by `session.interrupt` is the operator's own doing: no event.)

Events are derived from the records the sessions already keep (the turns, their ends, the
questions, `N.stalled`), read every `interval` seconds; nothing runs in the containers. Each
event is printed, then handed to the session's `notify` command (`orchestrator.notify`), then
recorded as delivered in `<registry>/.watch/delivered.json`: a watcher started again repeats
nothing delivered, and delivers what happened while none ran, bounded: at most `CATCH_UP`
events per session, none older than `MAX_AGE_SECONDS` (older ones are counted in one line and
skipped). A question answered before any watcher saw it, and a stall that ended before, are not
delivered. One watcher per registry: a second one is refused.

The event, as `--json` prints it and `notify` reads it on stdin (one JSON object):
`event` (an id, unique per session), `session`, `role`, `state`, `turn`, `question`, `reason`,
`time`. `reason` is text the session may have written (a question's reason, a failure's
message): it is sanitized for a terminal in the text lines, escaped in JSON.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from orchestrator import conversation, feedback, limits, notify, transcript
from orchestrator.conversation import TurnRecord
from orchestrator.errors import InputError
from orchestrator.listing import SessionView, survey
from orchestrator.registry import Registry, atomic_write, now
from orchestrator.untrusted import json_text, loads, printable, read_limited

FOLDER = ".watch"
JOURNAL = "delivered.json"
LOCK = "lock"
MAX_JOURNAL_BYTES = 8 << 20
# What a watcher started again delivers of what happened while none ran.
CATCH_UP = 20
MAX_AGE_SECONDS = 24 * 3600
# Question ids remembered per session as delivered.
MAX_QUESTIONS = 500
# How often the manifests (for `notify`) are read again.
MANIFEST_SECONDS = 30.0
MAX_REASON_CHARS = 500
TURN_EVENTS = {
    "completed": "idle",
    "failed": "failed",
    limits.TIMED_OUT: limits.TIMED_OUT,
    limits.OVER_BUDGET: limits.OVER_BUDGET,
}


@dataclass(frozen=True)
class Event:
    """One thing an operator may want to hear about, once."""

    session: str
    role: str
    state: str
    time: str
    turn: str | None = None
    question: str | None = None
    reason: str | None = None
    # Recorded as behind us, never shown: a turn the operator interrupted.
    silent: bool = False

    @property
    def key(self) -> str:
        if self.question is not None:
            return f"question:{self.question}"
        if self.state == limits.STALLED:
            return f"stalled:{self.turn}:{self.time}"
        return f"turn:{self.turn}"

    def as_json(self) -> dict[str, object]:
        return {
            "event": self.key,
            "session": self.session,
            "role": self.role,
            "state": self.state,
            "turn": self.turn,
            "question": self.question,
            "reason": self.reason,
            "time": self.time,
        }

    def line(self) -> str:
        """One line for a person; every text of the session's made safe for a terminal."""
        what = f"question {self.question}" if self.question else f"turn {self.turn or '-'}"
        reason = f"  {printable(' '.join((self.reason or '').split()), limit=200)}"
        text = f"{self.time}  {self.session}  {self.state}  {what}{reason if self.reason else ''}"
        return printable(text)


# --- the journal of what was delivered ---------------------------------------------------------


class Journal:
    """What was delivered, per session (`role/id`): the last turn, the last stall, the questions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = loads(read_limited(path, MAX_JOURNAL_BYTES))
        self.existed = isinstance(data, dict)
        sessions = data.get("sessions") if isinstance(data, dict) else None
        self.sessions: dict[str, dict[str, object]] = {
            key: value
            for key, value in (sessions.items() if isinstance(sessions, dict) else [])
            if isinstance(value, dict)
        }

    def entry(self, role: str, session_id: str) -> dict[str, object]:
        return self.sessions.setdefault(f"{role}/{session_id}", {})

    def last_turn(self, role: str, session_id: str) -> int:
        value = self.entry(role, session_id).get("turn")
        return value if isinstance(value, int) else 0

    def delivered(self, event: Event) -> bool:
        entry = self.entry(event.role, event.session)
        if event.question is not None:
            questions = entry.get("questions")
            return isinstance(questions, list) and event.question in questions
        if event.state == limits.STALLED:
            return entry.get("stall") == event.key
        return event.turn is not None and int(event.turn) <= self.last_turn(
            event.role, event.session
        )

    def record(self, event: Event) -> None:
        entry = self.entry(event.role, event.session)
        if event.question is not None:
            questions = entry.get("questions")
            kept = (
                [q for q in questions if isinstance(q, str)] if isinstance(questions, list) else []
            )
            entry["questions"] = [*kept, event.question][-MAX_QUESTIONS:]
        elif event.state == limits.STALLED:
            entry["stall"] = event.key
        elif event.turn is not None:
            entry["turn"] = max(int(event.turn), self.last_turn(event.role, event.session))

    def save(self) -> None:
        atomic_write(self.path, json.dumps({"sessions": self.sessions}) + "\n")


# --- the events -----------------------------------------------------------------------------------


def session_events(registry: Registry, view: SessionView, journal: Journal) -> list[Event]:
    """The session's events not delivered yet, oldest first."""
    if view.state is None:
        return []
    found: list[Event] = []
    last = journal.last_turn(view.role, view.session_id)
    folder = conversation.transcript_folder(registry, view.state)
    for record in _turns_after(registry, view, last):
        status = conversation.turn_status(registry, view, record)
        if status.status == "working":
            stalled = limits.stalled_since(folder, record.number)
            if stalled is not None:
                found.append(
                    Event(
                        view.session_id,
                        view.role,
                        limits.STALLED,
                        stalled,
                        record.number,
                        reason="no word from Codex for the session's stall_seconds",
                    )
                )
            break
        state = TURN_EVENTS.get(status.status)
        at = _moment((status.end.ended_at if status.end else None) or record.started_at)
        if state is None:
            # Interrupted by the operator: nothing to say, but it is behind us.
            found.append(
                Event(view.session_id, view.role, status.status, at, record.number, silent=True)
            )
            continue
        reason = status.reason if state != "idle" else None
        found.append(Event(view.session_id, view.role, state, at, record.number, reason=reason))
    return [event for event in found if not journal.delivered(event)]


def _turns_after(registry: Registry, view: SessionView, last: int) -> Iterator[TurnRecord]:
    """The session's turns after `last`, oldest first, reading only their records (a session
    keeps up to a thousand, and the watcher looks every few seconds)."""
    folder = registry.session_dir(view.role, view.session_id) / conversation.TURNS
    for number in transcript.numbered(folder, "json"):
        if int(number) <= last:
            continue
        try:
            yield TurnRecord.from_json((folder / f"{number}.json").read_bytes())
        except (OSError, ValueError, TypeError, KeyError):
            continue


def _moment(value: str | datetime) -> str:
    """A time as UTC `YYYY-MM-DDTHH:MM:SSZ`, so that times sort as text; text that is no time
    (a session can write its turns' ends) is kept, cut short."""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    except ValueError:
        return printable(value, limit=40)
    if moment.tzinfo is None:
        return printable(str(value), limit=40)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_order(events: list[Event]) -> list[Event]:
    """The events of all sessions by time, each session's turns in their own order: a time a
    session wrote cannot put its turns out of order."""
    keyed = []
    latest: dict[tuple[str, str, bool], str] = {}
    for index, event in enumerate(events):
        key = (event.role, event.session, event.question is None)
        moment = max(latest.get(key, ""), event.time)
        latest[key] = moment
        keyed.append((moment, index, event))
    return [event for _, _, event in sorted(keyed, key=lambda item: (item[0], item[1]))]


def question_events(
    registry: Registry, views: Sequence[SessionView], journal: Journal
) -> list[Event]:
    states = [view.state for view in views if view.state is not None]
    roles = {view.session_id: view.role for view in views}
    found = []
    for prompt in feedback.pending_questions(registry, states):
        role = roles.get(prompt.session_id)
        if role is None:
            continue
        event = Event(
            prompt.session_id,
            role,
            "waiting",
            _moment(prompt.created_at),
            question=prompt.id,
            reason=prompt.reason[:MAX_REASON_CHARS],
        )
        if not journal.delivered(event):
            found.append(event)
    return found


def _age(moment: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return (now() - parsed).total_seconds()


def bounded(events: list[Event], journal: Journal) -> tuple[list[Event], int]:
    """A catch-up's events: per session the newest `CATCH_UP`, none older than `MAX_AGE_SECONDS`;
    those left out are recorded as delivered, and counted."""
    kept: list[Event] = []
    skipped = 0
    by_session: dict[str, list[Event]] = {}
    for event in events:
        by_session.setdefault(f"{event.role}/{event.session}", []).append(event)
    for found in by_session.values():
        loud = [event for event in found if not event.silent]
        dropped = {id(event) for event in loud[: max(0, len(loud) - CATCH_UP)]}
        for event in found:
            age = _age(event.time)
            too_old = not event.silent and age is not None and age > MAX_AGE_SECONDS
            if id(event) in dropped or too_old:
                journal.record(event)
                skipped += 1
            else:
                kept.append(event)
    return kept, skipped


# --- the watcher ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _only_watcher(registry: Registry) -> Iterator[None]:
    folder = registry.root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"another session.watch runs on {registry.root}; one watcher delivers each event"
            ) from None
        yield
    finally:
        os.close(fd)


class Notifiers:
    """Each session's `notify` argv, from its manifest (read again every `MANIFEST_SECONDS`)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.by_manifest: dict[Path, dict[str, tuple[str, ...]]] = {}
        self.read_at = 0.0
        self.reported: set[Path] = set()

    def argv(self, view: SessionView) -> tuple[str, ...]:
        from orchestrator.errors import OrchestratorError
        from orchestrator.manifest import default_cache_dir, load_manifest

        if time.monotonic() >= self.read_at + MANIFEST_SECONDS:
            self.by_manifest.clear()
            self.read_at = time.monotonic()
        path = view.manifest
        if path is None:
            return ()
        if path not in self.by_manifest:
            try:
                sessions = load_manifest(path, cache_dir=default_cache_dir())
                self.by_manifest[path] = {s.id: s.notify for s in sessions}
            except OrchestratorError as exc:
                self.by_manifest[path] = {}
                if path not in self.reported:
                    self.reported.add(path)
                    self.log(f"notify: cannot read {path}, no notify for its sessions: {exc}")
        return self.by_manifest[path].get(view.session_id, ())


def watch(
    registry: Registry,
    *,
    interval: float = 2.0,
    notify_timeout: float = notify.DEFAULT_TIMEOUT,
    emit: Callable[[Event], None],
    log: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
    rounds: int | None = None,
) -> None:
    """Deliver the fleet's events until interrupted (or `rounds` passes, for tests): each one to
    `emit`, then to its session's notify command, then into the journal."""
    if interval <= 0:
        raise InputError(f"--interval must be more than 0, not {interval:g}")
    if notify_timeout <= 0:
        raise InputError(f"--notify-timeout must be more than 0, not {notify_timeout:g}")
    with _only_watcher(registry):
        journal = Journal(registry.root / FOLDER / JOURNAL)
        notifiers = Notifiers(log)
        first = True
        done = 0
        while rounds is None or done < rounds:
            views = [v for v in survey(registry).sessions if v.state is not None]
            events = question_events(registry, views, journal)
            for view in views:
                events += session_events(registry, view, journal)
            if first:
                events, skipped = bounded(events, journal)
                if skipped:
                    log(f"session.watch: {skipped} older events left out of the catch-up")
                first = False
            by_key = {view.key: view for view in views}
            for event in in_order(events):
                if event.silent:
                    journal.record(event)
                    journal.save()
                    continue
                emit(event)
                argv = notifiers.argv(by_key[(event.role, event.session)])
                if argv:
                    notify.run(
                        argv, json_text(event.as_json()) + "\n", timeout=notify_timeout, log=log
                    )
                journal.record(event)
                journal.save()
            if not events and not journal.existed:
                journal.save()
                journal.existed = True
            done += 1
            if rounds is None or done < rounds:
                time.sleep(interval)
