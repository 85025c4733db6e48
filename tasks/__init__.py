"""Invoke namespaces of filare-agents, one module each; `tasks.py` at the root loads them."""

from tasks.collection import namespace

ns = namespace()
