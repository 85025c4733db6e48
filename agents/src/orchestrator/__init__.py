"""Run many Codex agent sessions side by side, one Docker container per session.

Import the submodules you need (`orchestrator.config`, `orchestrator.runtime`, ...): this package
imports nothing heavy itself, so that command-line start-up stays cheap.
"""

__version__ = "0.1.0"
