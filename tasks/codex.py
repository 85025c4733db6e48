"""`codex.*`: build the Codex agent image (or the tiny offline smoke image) and its base."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from tasks.catalog_task import CatalogTask
from tasks.locations import repository_path


@task(
    klass=CatalogTask,
    category="image",
    safe_for_agents=False,
    runs_in="host",
    legacy_names=["codex-container-build"],
    example="just codex-build --tag filare-codex:0.171.0 --build-arg CODEX_VERSION=0.171.0",
    confirm=(
        "which image tag will be built or replaced, and that the machine may spend minutes and "
        "network traffic on the build"
    ),
    iterable=["build_arg"],
    help={
        "tag": (
            "image tag (default: from the Dockerfile's name: Dockerfile.codex builds filare-codex, "
            "Dockerfile.NAME builds filare-codex:NAME; pin versions with e.g. "
            "filare-codex:0.171.0)"
        ),
        "dockerfile": "Dockerfile to build; its folder is the build context",
        "build_arg": "build argument KEY=VALUE (repeatable), e.g. CODEX_VERSION=0.171.0",
        "no_cache": "build without Docker's layer cache",
        "base_image": (
            "base image (default: the Dockerfile's, else the local filare-base made by "
            "codex.base when that one is absent)"
        ),
        "ca_bundle": (
            "PEM CA bundle that apt, npm and pip trust during the build and that stays in the "
            "image's trust store (for TLS-intercepting proxies)"
        ),
        "engine": "Docker context of the engine to build on (default: the current one)",
    },
)
def build(
    c: Context,
    tag: str = "",
    dockerfile: str = "docker/Dockerfile.codex",
    build_arg: list[str] | None = None,
    no_cache: bool = False,
    base_image: str = "",
    ca_bundle: str = "",
    engine: str = "",
) -> None:
    """Build the Codex agent image, streaming Docker's output; prints base, id, tag and size.

    Without --tag, the tag follows from the Dockerfile's name, so building the smoke image
    (docker/Dockerfile.smoke, tagged filare-codex:smoke) never replaces the real filare-codex.
    --ca-bundle trusts extra CA certificates during the build (apt, npm, pip).
    """
    from orchestrator.base_image import resolve_base
    from orchestrator.engine import context_hosts
    from orchestrator.errors import InputError
    from orchestrator.images import (
        BASE_ARG,
        base_image_default,
        build_image,
        check_build_inputs,
        default_tag,
        parse_build_args,
    )

    path = repository_path(dockerfile)
    bundle = Path(ca_bundle).expanduser() if ca_bundle else None
    check_build_inputs(path, bundle)
    on_engine = engine or None
    if on_engine is not None:
        context_hosts([on_engine])  # an unknown context is bad input, before any build
    tag = tag or default_tag(path)
    args = parse_build_args(build_arg or [])
    default = base_image_default(path.read_text(encoding="utf-8"))
    requested = base_image or args.pop(BASE_ARG, "")
    if default is not None:
        choice = resolve_base(requested or None, default, on_engine=on_engine)
        print(choice.line(), flush=True)
        args[BASE_ARG] = choice.image
    elif requested:
        raise InputError(f"{path}: declares no ARG {BASE_ARG}, so --base-image has no use")
    built = build_image(path, tag, args, no_cache=no_cache, ca_bundle=bundle, on_engine=on_engine)
    print(built.summary())


@task(
    klass=CatalogTask,
    category="image",
    safe_for_agents=False,
    runs_in="host",
    example="just codex-base --suite bookworm",
    confirm=(
        "that the base image may be made on this machine (it runs debootstrap as root and "
        "downloads from the Debian mirror), and whether an existing tag may be replaced (--force)"
    ),
    help={
        "suite": "Debian release to bootstrap",
        "mirror": "Debian mirror URL (default: the host's apt source for the suite)",
        "tag": "image tag (default: filare-base:SUITE, which codex.build looks for)",
        "force": "make the image again even when the tag already exists",
    },
)
def base(
    c: Context, suite: str = "bookworm", mirror: str = "", tag: str = "", force: bool = False
) -> None:
    """Make a Debian base image from the distribution's mirror, for machines with no registry.

    debootstrap --variant=minbase, then docker import; needs root. An existing tag is kept
    unless --force. codex.build picks it up.
    """
    from orchestrator.base_image import make_base_image, plan_base, read_host_sources

    plan = plan_base(read_host_sources(), suite=suite, mirror=mirror or None, tag=tag or None)
    outcome = make_base_image(plan, force=force)
    if outcome.made:
        print(outcome.image.summary())
        if outcome.replaced:
            print(
                f"the previous {plan.tag} ({outcome.replaced[:19]}) is untagged now; remove it "
                f"with 'docker rmi {outcome.replaced[7:19]}' once no image is built on it"
            )
    else:
        print(f"{outcome.image.summary('kept')}  (it exists; --force makes it again)")
    print(
        "next: uv run inv codex.build (it uses this base when the default is not present locally)"
    )
