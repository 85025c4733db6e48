"""Building the agent images: the real Codex image and the tiny offline smoke image.

A Dockerfile may ask for host files in its build context with a directive comment,

    # stage: busybox=/bin/busybox:/usr/bin/busybox

(name in the context, then candidate host paths, first existing one wins). The smoke image uses
it for a static busybox, so it builds with no registry and no binary in the repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator import engine
from orchestrator.errors import EngineError, InputError

BUILD_TIMEOUT = 3600.0
DEFAULT_TAG = "filare-codex"
SMOKE_TAG = "filare-codex:smoke"
_STAGE = re.compile(r"^#\s*stage:\s*([\w.-]+)=(\S+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    id: str
    size_bytes: int

    def summary(self) -> str:
        return f"built {self.tag}  id {self.id[:19]}  size {self.size_bytes / 1e6:.1f} MB"


def staged_files(dockerfile: Path) -> dict[str, Path]:
    """Context name → host path for every `# stage:` directive of a Dockerfile."""
    staged = {}
    for name, candidates in _STAGE.findall(dockerfile.read_text(encoding="utf-8")):
        found = next((Path(c) for c in candidates.split(":") if Path(c).is_file()), None)
        if found is None:
            raise InputError(
                f"{dockerfile}: needs '{name}' in its build context from one of {candidates}; "
                "none exists (for busybox: apt-get install busybox-static)"
            )
        staged[name] = found
    return staged


def build_argv(
    dockerfile: Path,
    context: Path,
    tag: str,
    build_args: Mapping[str, str],
    *,
    no_cache: bool = False,
) -> list[str]:
    argv = ["docker", "build", "--file", str(dockerfile), "--tag", tag]
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    if no_cache:
        argv.append("--no-cache")
    argv.append(str(context))
    return argv


def parse_build_args(items: Sequence[str]) -> dict[str, str]:
    args = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--build-arg {item!r}: expected KEY=VALUE")
        args[key] = value
    return args


def build_image(
    dockerfile: Path,
    tag: str = DEFAULT_TAG,
    build_args: Mapping[str, str] | None = None,
    *,
    no_cache: bool = False,
    extra_files: Mapping[str, Path] | None = None,
) -> BuiltImage:
    """Build with the Dockerfile's folder as context (plus staged files); output streams through."""
    dockerfile = dockerfile.resolve()
    if not dockerfile.is_file():
        raise InputError(f"{dockerfile}: Dockerfile not found")
    files = {**staged_files(dockerfile), **(extra_files or {})}
    with tempfile.TemporaryDirectory(prefix="filare-build-") as tmp:
        context = Path(tmp) / "context"
        shutil.copytree(dockerfile.parent, context)
        for name, source in files.items():
            shutil.copy2(source, context / name)
        argv = build_argv(
            context / dockerfile.name, context, tag, build_args or {}, no_cache=no_cache
        )
        try:
            result = subprocess.run(argv, timeout=BUILD_TIMEOUT, check=False)
        except FileNotFoundError:
            raise EngineError("docker CLI not found: install a Docker engine") from None
        except subprocess.TimeoutExpired:
            raise EngineError(f"docker build did not finish within {BUILD_TIMEOUT:g} s") from None
    if result.returncode != 0:
        raise EngineError(f"docker build of {dockerfile.name} as {tag} failed (see output above)")
    return inspect_image(tag)


def inspect_image(tag: str) -> BuiltImage:
    image_id, size = engine.docker("image", "inspect", "--format", "{{.Id}} {{.Size}}", tag).split()
    return BuiltImage(tag, image_id, int(size))
