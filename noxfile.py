"""Test, lint and benchmark sessions; `nox` with no arguments runs every default session.

Each session installs the project from `uv.lock` (dev dependency group included), so nox, CI and
`uv run` test the same versions.
"""

from __future__ import annotations

from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True

SHELL_SCRIPTS = [
    "scripts/run_codex_container.sh",
    "docker/agent-entrypoint.sh",
    "docker/filare-turn",
    "docker/filare-ask",
    ".ci/run",
    "scripts/register_runsc.sh",
]


def install(session: nox.Session) -> None:
    """Sync the session's virtualenv to the lock file, project and dev group included."""
    session.run_install(
        "uv",
        "sync",
        "--locked",
        "--quiet",
        f"--python={session.virtualenv.location}",
        env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location},
        external=True,
    )


@nox.session(tags=["test"])
def tests(session: nox.Session) -> None:
    """Unit tests: no Docker engine needed."""
    install(session)
    session.run("pytest", "-m", "not agent", *session.posargs)


@nox.session(tags=["test"])
def agent(session: nox.Session) -> None:
    """End-to-end tests on a real Docker engine (marker `agent` but not `image`); need an engine."""
    install(session)
    session.run("pytest", "-m", "agent and not image", *session.posargs)


@nox.session(tags=["image"], default=False)
def image(session: nox.Session) -> None:
    """Build the real Codex image (base included, no registry) and run Codex in it (marker `image`).

    Not a default session: the first build takes minutes and needs Debian's mirror, npm and PyPI.
    CI runs it explicitly. Fails when no engine answers.
    """
    install(session)
    session.run("pytest", "-m", "image", *session.posargs)


@nox.session(tags=["lint"])
def lint(session: nox.Session) -> None:
    """ruff, mypy --strict, generated files up to date, shellcheck and hadolint."""
    install(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")
    # The root conftest shares its module name with agents/tests/conftest.py: checked on its own.
    session.run("mypy", "conftest.py")
    session.run("inv", "commands.check")
    session.run("shellcheck", *SHELL_SCRIPTS, external=True)
    session.run("hadolint", *sorted(str(path) for path in Path("docker").glob("Dockerfile.*")))


@nox.session(default=False, tags=["bench"])
def bench(session: nox.Session) -> None:
    """Benchmark against plain Docker (needs an engine); `nox -s bench -- --rounds 7 --check`."""
    install(session)
    session.run("python", "scripts/bench.py", *session.posargs)
