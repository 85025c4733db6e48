"""Where the benchmark's inputs live, the images it runs and the
labels by which it finds what it made."""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]


LAUNCH_SCRIPT = REPOSITORY / "scripts" / "run_codex_container.sh"


DEFAULT_OUTPUT = REPOSITORY / "outputs" / "bench"


SMOKE_TAG = "filare-codex:smoke"


SMOKE_DOCKERFILE = "docker/Dockerfile.smoke"


CODEX_TAG = "filare-codex"  # what `inv codex.build` makes


ROLE = "bench"


RUN_LABEL = "bench.run"


REGISTRY_LABEL = "filare.registry"


PROXY_REGISTRY_LABEL = "filare.egress-registry"


COMMAND_TIMEOUT = 600.0


CONTAINER_WORKSPACE = "/home/agent/workspace"
