"""`codex.*`: build the Codex agent image (or the tiny offline smoke image)."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from tasks.catalog_task import CatalogTask
from tasks.locations import repository_path


@task(
    klass=CatalogTask,
    category="image",
    safe_for_agents=False,
    legacy_names=["codex-container-build"],
    iterable=["build_arg"],
    help={
        "tag": "image tag (pin versions with e.g. filare-codex:0.171.0)",
        "dockerfile": "Dockerfile to build; its folder is the build context",
        "build_arg": "build argument KEY=VALUE (repeatable)",
        "no_cache": "build without Docker's layer cache",
    },
)
def build(
    c: Context,
    tag: str = "filare-codex",
    dockerfile: str = "docker/Dockerfile.codex",
    build_arg: list[str] | None = None,
    no_cache: bool = False,
) -> None:
    """Build the Codex agent image, streaming Docker's output; prints id, tag and size."""
    from orchestrator.images import build_image, parse_build_args

    built = build_image(
        repository_path(dockerfile), tag, parse_build_args(build_arg or []), no_cache=no_cache
    )
    print(built.summary())
