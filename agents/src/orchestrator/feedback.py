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
that is not a question is left where it is and reported.

An answer is recorded in the queue and delivered into the session as its next turn, once: the
turn that carried it names the question, so answering again does not send it again.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from orchestrator.errors import InputError
from orchestrator.registry import Registry, SessionState, atomic_write

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
    created_at: str = ""
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
        known: dict[str, Any] = {name: data[name] for name in _FIELDS if name in data}
        return cls(**known)


_FIELDS = tuple(Prompt.__dataclass_fields__)


def queue_path(registry: Registry) -> Path:
    return registry.root / QUEUE_FILE


def load_queue(registry: Registry) -> list[Prompt]:
    """The queue as it is on disk (an absent file is an empty queue)."""
    path = queue_path(registry)
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable question queue: {exc}") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: unreadable question queue: expected a JSON list")
    try:
        return [Prompt.from_dict(item) for item in data if isinstance(item, dict)]
    except TypeError as exc:
        raise InputError(f"{path}: unreadable question queue: {exc}") from None


def _save_queue(registry: Registry, prompts: Sequence[Prompt]) -> None:
    text = json.dumps([p.to_dict() for p in prompts], indent=2, ensure_ascii=False) + "\n"
    atomic_write(queue_path(registry), text, mode=0o644)


def gather(registry: Registry) -> tuple[list[Prompt], list[str]]:
    """Move every session's new questions into the queue; the queue, and what was left alone."""
    with registry.named_lock("feedback"):
        return _gather_locked(registry)


def _gather_locked(registry: Registry) -> tuple[list[Prompt], list[str]]:
    prompts = load_queue(registry)
    known = {p.id for p in prompts}
    problems: list[str] = []
    gathered: list[tuple[SessionState, str]] = []
    for state in registry.states():
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
    for state in registry.states() if states is None else states:
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
                data = json.loads(_read_at(dir_fd, name))
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
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
        created_at=text("created_at") or _now(),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
