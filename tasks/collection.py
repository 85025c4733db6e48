"""Assembles the task namespaces; the one place `tasks.py` and `import tasks` both build from."""

from __future__ import annotations

from invoke.collection import Collection


def namespace() -> Collection:
    """The root collection: one namespace per module, nothing else done at import time."""
    from tasks import codex, commands, demo, feedback, session

    ns = Collection()
    ns.add_collection(Collection.from_module(codex), "codex")
    ns.add_collection(Collection.from_module(commands), "commands")
    ns.add_collection(Collection.from_module(demo), "demo")
    ns.add_collection(Collection.from_module(feedback), "feedback")
    ns.add_collection(Collection.from_module(session), "session")
    return ns
