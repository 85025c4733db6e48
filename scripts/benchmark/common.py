"""The run's folder, its project, images and the helpers every family of cases shares."""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scripts.benchmark.figures import Measurement
from scripts.benchmark.process import BenchError, Completed, run
from scripts.benchmark.settings import (
    REGISTRY_LABEL,
    REPOSITORY,
    RUN_LABEL,
    SMOKE_DOCKERFILE,
    SMOKE_TAG,
)


def inv_command() -> list[str]:
    """This virtualenv's `inv` script, as a user of the checkout runs it."""
    script = Path(sys.executable).with_name("inv")
    return [str(script)] if script.exists() else [sys.executable, "-m", "invoke"]


@dataclass(frozen=True)
class Bench:
    """Temp folder, `inv` command and run id of one benchmark run."""

    root: Path
    run_id: str
    inv: tuple[str, ...]

    @classmethod
    def create(cls, work_dir: Path | None = None) -> Bench:
        root = Path(tempfile.mkdtemp(prefix="filare-bench-", dir=work_dir))
        return cls(root, uuid.uuid4().hex, tuple(inv_command()))

    @property
    def project(self) -> Path:
        return self.root / "project"

    @property
    def empty_collection(self) -> Path:
        """A folder whose `tasks.py` is an empty Invoke collection, made by `make_project`."""
        return self.root / "empty-collection"

    @property
    def run_label(self) -> str:
        return f"{RUN_LABEL}={self.run_id}"

    def inv_run(
        self, *args: str, state: Path | None = None, cwd: Path = REPOSITORY, check: bool = True
    ) -> Completed:
        """`inv ARGS` from this virtualenv; `state` becomes `FILARE_STATE_DIR`."""
        env = dict(os.environ)
        # Measure what users run: Python with its bytecode caches (written by the warm-up round).
        # An environment that forbids them makes every run recompile every module it imports.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        # Its own cache folder, warmed like a user's by the untimed first start, removed at the end.
        env["XDG_CACHE_HOME"] = str(self.root / "cache-home")
        if state is not None:
            env["FILARE_STATE_DIR"] = str(state)
        return run([*self.inv, *args], cwd=cwd, env=env, check=check)


def git(*args: str, cwd: Path) -> None:
    run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args], cwd=cwd)


def make_project(bench: Bench) -> None:
    """A small git repository for the manifests, with a key and an env file (ignored by git)."""
    project = bench.project
    (project / "src").mkdir(parents=True)
    (project / ".gitignore").write_text("outputs/\n")
    (project / "src" / "main.py").write_text("print('hello')\n")
    private = project / "outputs"
    private.mkdir()
    (private / "bench.env").write_text("BENCH=1\n")
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bench", "-f", str(private / "id")])
    git("init", "-q", "-b", "main", cwd=project)
    git("add", ".", cwd=project)
    git("commit", "-qm", "bench project", cwd=project)
    make_empty_collection(bench.empty_collection)


def make_empty_collection(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "tasks.py").write_text("from invoke import Collection\n\nns = Collection()\n")
    return folder


def invoke_startup(bench: Bench) -> Measurement:
    """Invoke's own start-up: `inv --list` of an empty collection, which does nothing else."""
    # Invoke lists an empty collection by saying so and exiting 1, after the same work.
    result = bench.inv_run("--list", cwd=bench.empty_collection, check=False)
    if result.returncode != 0 and "No tasks found" not in result.stderr:
        raise BenchError(f"inv --list of an empty collection: {result.stderr.strip()}")
    return result.measurement


def after_startup(bench: Bench, baseline: Callable[[], Measurement]) -> Measurement:
    """Invoke's start-up, then the baseline's docker work: what a tool that added nothing to
    the two would take. Wall times add up; the peak RSS is the larger."""
    startup = invoke_startup(bench)
    work = baseline()
    return Measurement(startup.seconds + work.seconds, max(startup.max_rss_kb, work.max_rss_kb))


def ensure_image(bench: Bench) -> str:
    """The smoke image's id, built with the project's own task when it is absent."""
    found = image_id(SMOKE_TAG)
    if found is None:
        print(f"building {SMOKE_TAG} ...", file=sys.stderr)
        bench.inv_run("codex.build", "--dockerfile", SMOKE_DOCKERFILE, "--tag", SMOKE_TAG)
        found = image_id(SMOKE_TAG)
    if found is None:
        raise BenchError(f"{SMOKE_TAG} is still absent after building it")
    return found


def image_id(tag: str) -> str | None:
    """The image's id; None when the engine has no such image (any other failure is an error)."""
    try:
        found = run(["docker", "image", "inspect", "--format", "{{.Id}}", tag], check=False)
    except OSError as exc:
        raise BenchError(f"docker: {exc.strerror or exc}") from None
    if found.returncode == 0:
        return found.stdout.strip()
    if "no such image" in found.stderr.lower():
        return None
    reason = found.stderr.strip().splitlines()[-1:] or [f"exit code {found.returncode}"]
    raise BenchError(f"docker image inspect {tag}: {reason[0]}")


def session_containers(registry: Path) -> dict[str, str]:
    """Session id → name of its running container, for the sessions of `registry`."""
    listing = '{{.Label "filare.session"}}\t{{.Names}}'
    argv = ["docker", "ps", "--filter", f"label={REGISTRY_LABEL}={registry}", "--format", listing]
    lines = run(argv).stdout.splitlines()
    return dict(line.split("\t", 1) for line in lines if "\t" in line)


def running_containers(label_filter: str) -> int:
    return len(run(["docker", "ps", "-q", "--filter", label_filter]).stdout.split())


Record = Callable[[str, str, Measurement], None]


Round = Callable[[bool, Record], None]


def pair(
    case: str,
    tool: Callable[[], Measurement],
    baseline: Callable[[], Measurement],
    *,
    tool_first: bool,
    record: Record,
) -> None:
    """Both sides of a case back to back, in the order this round asks for."""
    sides = [("tool", tool), ("baseline", baseline)]
    for side, action in sides if tool_first else sides[::-1]:
        record(case, side, action())
