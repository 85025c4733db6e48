"""The operator's queue: questions agents ask (`filare-ask`), and the answers people give.

The queue is `prompts.json` in the registry's folder (`outputs/agents/prompts.json` by default),
in the origin project's format, so its readers keep working: a JSON list of objects with exactly
the fields `id, session_id, role, workspace, branch, reason, requested_action, suggested_reply,
severity, created_at, decision, decided_at, reply`.

Inside a session, `filare-ask` writes one file per question into the session's own folder
(`<registry>/<role>/<id>/agent/questions/`, mounted at `/home/agent/.filare/questions`). The
host gathers them into the queue under a lock, each once: a question's id is its session's id
and the file's, so gathering twice, or two operators gathering at once, adds nothing twice. What
a session wrote is read as untrusted input: never through a link, within size bounds, and a file
that is not a question is left where it is and reported: not JSON (or invalid UTF-8, nested too
deep, numbers out of range), a lone surrogate (`\ud800`, which no UTF-8 file can hold), a field
of the wrong kind, a `created_at` that is not an ISO 8601 time with a time zone. Nothing of such a
file reaches the queue, so no reader of it meets it.

The queue is the host's own file, but what it holds came from sessions: it is read so that an
entry of an older queue that would not pass today (a field of the wrong kind, a lone surrogate)
is shown safely instead of crashing its readers.

An answer is recorded in the queue and delivered into the session as its next turn, once: the
turn that carried it names the question, so answering again does not send it again.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from orchestrator.errors import InputError
from orchestrator.registry import Registry, SessionState, atomic_write
from orchestrator.untrusted import clean_surrogates, json_text, loads

QUEUE_FILE = "prompts.json"
QUESTIONS = "questions"
Decision = Literal["approved", "rejected"]
DECISIONS = get_args(Decision)
SEVERITIES = ("info", "warn", "block")
MAX_TEXT = 4000
MAX_QUESTION_BYTES = 64 << 10
_FILE_ID = re.compile(r"[0-9A-Za-z-]{1,64}")


@dataclass(frozen=True)
class Prompt:
    """One question to the operator, with the fields (and names) the origin's queue has."""

    id: str
    session_id: str
    role: str
    workspace: str
    branch: str
    reason: str
    requested_action: str
    suggested_reply: str | None = None
    severity: str = "info"
    created_at: str = field(default_factory=lambda: _now())
    decision: Decision | None = None
    decided_at: str | None = None
    reply: str | None = None

    @property
    def pending(self) -> bool:
        return self.decision is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prompt:
        """An entry of the queue; a value of the wrong kind becomes text (a missing optional one
        stays None), so that every reader can show it."""
        known: dict[str, Any] = {}
        for name in _FIELDS:
            if name not in data:
                continue
            value = data[name]
            if value is None and name in _OPTIONAL:
                known[name] = None
            else:
                known[name] = clean_surrogates(value if isinstance(value, str) else str(value))
        return cls(**known)


_FIELDS = tuple(Prompt.__dataclass_fields__)
_OPTIONAL = frozenset({"suggested_reply", "decision", "decided_at", "reply"})


def queue_path(registry: Registry) -> Path:
    return registry.root / QUEUE_FILE


def load_queue(queue_path: Registry | str | os.PathLike[str]) -> list[Prompt]:
    """The queue as it is on disk (an absent file is an empty queue): a registry's, or the file
    at a path, as the origin's `load_queue(queue_path)` took it."""
    path = _queue_file(queue_path)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError, RecursionError) as exc:
        raise InputError(f"{path}: unreadable question queue: {exc}") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: unreadable question queue: expected a JSON list")
    try:
        return [Prompt.from_dict(item) for item in data if isinstance(item, dict)]
    except TypeError as exc:
        raise InputError(f"{path}: unreadable question queue: {exc}") from None


def _save_queue(registry: Registry, prompts: Sequence[Prompt]) -> None:
    save_queue(queue_path(registry), prompts)


def gather(registry: Registry) -> tuple[list[Prompt], list[str]]:
    """Move every session's new questions into the queue; the queue, and what was left alone."""
    with registry.named_lock("feedback"):
        return _gather_locked(registry)


def _gather_locked(registry: Registry) -> tuple[list[Prompt], list[str]]:
    from orchestrator import volumes

    prompts = load_queue(registry)
    known = {p.id for p in prompts}
    problems: list[str] = []
    gathered: list[tuple[SessionState, str]] = []
    states = registry.states()
    volumes.refresh_states(registry, states)
    for state in states:
        for file_id, prompt in _session_questions(registry, state, problems):
            if prompt.id not in known:
                prompts.append(prompt)
                known.add(prompt.id)
            gathered.append((state, file_id))
    if gathered:
        _save_queue(registry, prompts)
        for state, file_id in gathered:
            _remove_question_file(registry, state, file_id)
    return prompts, problems


def pending_questions(
    registry: Registry, states: Sequence[SessionState] | None = None
) -> list[Prompt]:
    """Questions without an answer: the queue's and those not gathered yet; writes nothing.

    `states`: the registry's records when the caller has just read them (one scan, not two).
    """
    prompts = [p for p in load_queue(registry) if p.pending]
    known = {p.id for p in prompts}
    states = registry.states() if states is None else states
    if any(s.labels.get("filare.storage") == "volumes" for s in states):
        # Sessions on engines without this machine's files (`session.list` and the dashboard
        # come here: the module is imported only when one is recorded).
        from orchestrator import volumes

        volumes.refresh_states(registry, states)
    for state in states:
        for _, prompt in _session_questions(registry, state, []):
            if prompt.id not in known:
                prompts.append(prompt)
    return sorted(prompts, key=lambda p: (p.created_at, p.id))


def add(
    registry: Registry,
    state: SessionState,
    *,
    reason: str,
    requested_action: str = "",
    suggested_reply: str | None = None,
    severity: str = "info",
) -> Prompt:
    """Add a question for a session by hand (as the origin's `feedback add` did)."""
    prompt = _validated(
        state,
        {
            "id": f"{state.session_id}-{os.urandom(6).hex()}",
            "reason": reason,
            "requested_action": requested_action,
            "suggested_reply": suggested_reply,
            "severity": severity,
            "created_at": _now(),
        },
        where="",
    )
    with registry.named_lock("feedback"):
        prompts = load_queue(registry)
        _save_queue(registry, [*prompts, prompt])
    return prompt


@dataclass(frozen=True)
class Answered:
    """What `answer` did: the question as recorded, and the turn that carried the answer
    (`delivered_in`), or the earlier turn that already had (`already_delivered`)."""

    prompt: Prompt
    turn: str | None
    already_delivered: bool


def answer(registry: Registry, question_id: str, decision: str, reply: str | None) -> Answered:
    """Record the decision and deliver it into the question's session as its next turn, once.

    Everything that can refuse is checked before the queue changes: the decision, the question
    (it exists; an answered one may only be answered the same way again), and its session (it
    runs and is not busy). A second answer delivers nothing new; if the first one was recorded
    but not delivered (an engine fault), the second delivers it.
    """
    from orchestrator import conversation

    if decision not in DECISIONS:
        raise InputError(f"--decision must be approved or rejected, not {decision!r}")
    if reply is not None and len(reply) > MAX_TEXT:
        raise InputError(f"--reply is longer than {MAX_TEXT} characters")
    with registry.named_lock("feedback"):
        prompts, _ = _gather_locked(registry)
        index = next((i for i, p in enumerate(prompts) if p.id == question_id), None)
        if index is None:
            from orchestrator.errors import did_you_mean

            hint = did_you_mean(question_id, [p.id for p in prompts])
            where = queue_path(registry)
            raise InputError(f"no question with id {question_id!r} in {where}{hint}")
        prompt = prompts[index]
        delivered = conversation.turn_of_question(
            registry, prompt.role, prompt.session_id, prompt.id
        )
        if not prompt.pending and (prompt.decision, prompt.reply) != (decision, reply):
            carried = (
                f"delivered in turn {delivered} of {prompt.session_id}"
                if delivered is not None
                else "not delivered yet (answer it the same way to deliver it)"
            )
            raise InputError(
                f"question {question_id!r} was already answered: {prompt.decision} at "
                f"{prompt.decided_at}, {carried}"
            )
        if delivered is not None:
            return Answered(prompt, delivered, already_delivered=True)
        conversation.check_ready(registry, prompt.session_id)
        if prompt.pending:
            prompt = replace(prompt, decision=decision, decided_at=_now(), reply=reply)  # type: ignore[arg-type]
            prompts[index] = prompt
            _save_queue(registry, prompts)
        (sent,) = conversation.send_each(
            registry, {prompt.session_id: answer_message(prompt)}, kind="answer", question=prompt.id
        )
        if sent.error is not None:
            raise sent.error
        return Answered(prompt, sent.turn, already_delivered=False)


def answer_message(prompt: Prompt) -> str:
    """The turn that carries an answer into the session's conversation."""
    lines = [
        f"Your operator answered your question {prompt.id}: {prompt.decision}.",
        "",
        f"Your question: {prompt.reason}",
    ]
    if prompt.requested_action:
        lines.append(f"What you asked to do: {prompt.requested_action}")
    lines += ["", f"Reply: {prompt.reply}" if prompt.reply else "No reply was given."]
    return "\n".join(lines) + "\n"


def _session_questions(
    registry: Registry, state: SessionState, problems: list[str]
) -> Iterable[tuple[str, Prompt]]:
    """(file id, question) of each question file in the session's folder."""
    folder = registry.session_dir(state.role, state.session_id) / "agent" / QUESTIONS
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    found = []
    try:
        for name in sorted(os.listdir(dir_fd)):  # noqa: PTH208 - a descriptor: no link followed
            file_id = name.removesuffix(".json")
            if not name.endswith(".json") or not _FILE_ID.fullmatch(file_id):
                continue
            where = f"{folder / name}"
            try:
                data = loads(_read_at(dir_fd, name), lone_surrogates=False)
                if not isinstance(data, dict):
                    raise ValueError(
                        "not a JSON object of valid UTF-8 without lone surrogates, nested "
                        "too deep or a number out of range"
                    )
                found.append(
                    (
                        file_id,
                        _validated(state, {**data, "id": f"{state.session_id}-{file_id}"}, where),
                    )
                )
            except (OSError, ValueError, InputError) as exc:
                problems.append(f"{where}: left alone: {exc}")
    finally:
        os.close(dir_fd)
    return found


def _read_at(dir_fd: int, name: str) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        return os.read(fd, MAX_QUESTION_BYTES)
    finally:
        os.close(fd)


def _remove_question_file(registry: Registry, state: SessionState, file_id: str) -> None:
    folder = registry.session_dir(state.role, state.session_id) / "agent" / QUESTIONS
    try:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.unlink(f"{file_id}.json", dir_fd=dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
    from orchestrator import volumes

    # On an engine without this machine's files, the question is gone from its volume too, so
    # the next copy home does not bring it back.
    volumes.storage(registry, state).remove_question(file_id)


def _validated(state: SessionState, data: dict[str, Any], where: str) -> Prompt:
    def named(name: str) -> str:
        # A question added by hand came from options: name the option a user typed.
        return f"{where}: {name}" if where else f"--{name.replace('_', '-')}"

    def text(name: str, *, required: bool = False) -> str:
        value = data.get(name)
        if value is None or value == "":
            if required:
                raise InputError(f"{named(name)} is missing")
            return ""
        if not isinstance(value, str) or len(value) > MAX_TEXT:
            raise InputError(f"{named(name)} must be text of at most {MAX_TEXT} characters")
        return value

    severity = text("severity") or "info"
    if severity not in SEVERITIES:
        raise InputError(f"{named('severity')} must be info, warn or block, not {severity!r}")
    return Prompt(
        id=str(data["id"]),
        session_id=state.session_id,
        role=state.role,
        workspace=str(state.workspace),
        branch=state.branch,
        reason=text("reason", required=True),
        requested_action=text("requested_action"),
        suggested_reply=text("suggested_reply") or None,
        severity=severity,
        created_at=_moment(text("created_at"), where) or _now(),
    )


def _moment(value: str, where: str) -> str:
    """`created_at` as written, when it is an ISO 8601 time with a time zone (ages are
    computed from it against an aware clock)."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InputError(
            f"{where or 'the question'}: created_at must be an ISO 8601 time with a time zone"
        )
    return value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- The origin's names ---------------------------------------------------------------------------
# laurierloi/filare's `orchestrator.feedback` took the queue file's path. Its code and scripts keep
# working through these functions, over the same reading, writing, gathering and lock as the
# commands above. Its `Prompt` is the one above (frozen: `dataclasses.replace` makes a changed
# copy).


class QueueError(InputError, ValueError):
    """Bad input to the origin's queue functions; a `ValueError`, as the origin's errors were."""


def _queue_file(queue: Registry | str | os.PathLike[str]) -> Path:
    return queue_path(queue) if isinstance(queue, Registry) else Path(queue)


def _registry_of(path: Path) -> Registry | None:
    """The registry whose queue `path` is, when it is named as one (`…/prompts.json`): questions
    waiting in its sessions' folders are gathered into it, as `feedback.list` does."""
    return Registry(path.parent) if path.name == QUEUE_FILE else None


def save_queue(queue_path: str | os.PathLike[str], prompts: Sequence[Prompt]) -> None:
    """Write the queue in one step: readers see the old file or the new one, never a mix.

    Control characters escaped: `cat prompts.json` shows what agents wrote, never runs it.
    """
    text = json_text([p.to_dict() for p in prompts], indent=2) + "\n"
    atomic_write(Path(queue_path), text, mode=0o644)


def add_prompt(queue_path: str | os.PathLike[str], prompt: Prompt) -> Prompt:
    """Append a question to the queue at `queue_path`; its id must be new there."""
    path = Path(queue_path)
    if not prompt.id:
        raise QueueError(f"{path}: a question needs an id")
    if prompt.severity not in SEVERITIES:
        raise QueueError(f"{path}: question {prompt.id!r}: severity must be info, warn or block")
    if prompt.decision is not None and prompt.decision not in DECISIONS:
        raise QueueError(f"{path}: question {prompt.id!r}: decision must be approved or rejected")
    with Registry(path.parent).named_lock("feedback"):
        prompts = load_queue(path)
        if any(p.id == prompt.id for p in prompts):
            raise QueueError(f"{path}: there is already a question with id {prompt.id!r}")
        save_queue(path, [*prompts, prompt])
    return prompt


def list_prompts(queue_path: str | os.PathLike[str]) -> list[Prompt]:
    """Every question of the queue, answered or not, oldest first as recorded."""
    path = Path(queue_path)
    registry = _registry_of(path)
    return load_queue(path) if registry is None else gather(registry)[0]


def resolve_prompt(
    queue_path: str | os.PathLike[str],
    prompt_id: str,
    decision: Decision,
    reply: str | None = None,
) -> Prompt:
    """Record the decision on a question and return it as recorded; sends nothing.

    `feedback.answer` with the same decision and reply delivers a recorded answer to its session.
    An answered question may only be answered the same way again: the record must not say
    something else than what the session was told.
    """
    path = Path(queue_path)
    if decision not in DECISIONS:
        raise QueueError(f"decision must be approved or rejected, not {decision!r}")
    registry = _registry_of(path)
    with Registry(path.parent).named_lock("feedback"):
        prompts = load_queue(path) if registry is None else _gather_locked(registry)[0]
        index = next((i for i, p in enumerate(prompts) if p.id == prompt_id), None)
        if index is None:
            raise QueueError(f"Prompt id {prompt_id!r} not found in {path}")
        prompt = prompts[index]
        if prompt.pending:
            prompt = replace(prompt, decision=decision, decided_at=_now(), reply=reply)
            prompts[index] = prompt
            save_queue(path, prompts)
        elif (prompt.decision, prompt.reply) != (decision, reply):
            raise QueueError(
                f"question {prompt_id!r} was already answered: {prompt.decision} at "
                f"{prompt.decided_at}"
            )
        return prompt
