"""Helpers shared by both test suites (`tests/` and `agents/tests/`), importable by either.

pytest puts `agents/testing` on `sys.path` (`pythonpath` in pyproject.toml), so neither suite
imports the other's package.
"""
