"""The base of the Codex image: a public Debian image, or one made here from Debian's mirror.

Where no container registry answers, `make_base_image` bootstraps a minimal Debian
(`debootstrap --variant=minbase`) from the mirror the host's apt already uses and imports it
with `docker import` as `filare-base:<suite>`. `resolve_base` then picks the base a build uses:
the one asked for, else the Dockerfile's default when it is present or can be pulled, else the
local `filare-base` image of the same Debian suite.

Planning (mirror choice, argv, the files written into the root file system) is pure and
unit-tested; running debootstrap, tar and docker happens in the few functions at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import engine
from orchestrator.errors import EngineError, InputError
from orchestrator.images import BuiltImage, inspect_image
from orchestrator.streaming import run_streaming

DEFAULT_SUITE = "bookworm"
LOCAL_BASE_REPOSITORY = "filare-base"
VARIANT = "minbase"
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
APT_DIR = Path("/etc/apt")
DEBOOTSTRAP_TIMEOUT = 1800.0
TAR_TIMEOUT = 600.0
IMPORT_TIMEOUT = 600.0
UMOUNT_TIMEOUT = 60.0
PATH_ENV = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What Debian's own slim images leave out: documentation (but not licences), manuals, locales.
DPKG_EXCLUDES = """\
# Written by filare-agents (inv codex.base): keep the image small, as Debian's slim images do.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
_OFFICIAL_DEBIAN = re.compile(r"^(?:docker\.io/)?(?:library/)?debian:([a-z]+)(?:-slim)?$")


# --- the host's apt sources (pure parsing) -----------------------------------------------------


@dataclass(frozen=True)
class AptSource:
    """One `deb` source: a mirror URI and the suites and components it serves."""

    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...] = ("main",)


def parse_one_line_sources(text: str) -> list[AptSource]:
    """`deb [options] URI SUITE COMPONENT...` lines of a `sources.list` file; `deb-src` skipped."""
    sources = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        line = re.sub(r"\[[^\]]*\]", " ", line)
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "deb":
            sources.append(AptSource(parts[1].rstrip("/"), (parts[2],), tuple(parts[3:])))
    return sources


def parse_deb822_sources(text: str) -> list[AptSource]:
    """The `Types: deb` paragraphs of a `.sources` file that are not `Enabled: no`."""
    sources = []
    for paragraph in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for raw in paragraph.splitlines():
            if raw.startswith("#"):
                continue
            if raw[:1] in {" ", "\t"} and key:
                fields[key] += " " + raw.strip()
                continue
            key, sep, value = raw.partition(":")
            if not sep:
                key = ""
                continue
            key = key.strip().lower()
            fields[key] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = tuple(fields.get("suites", "").split())
        components = tuple(fields.get("components", "").split())
        for uri in fields.get("uris", "").split():
            sources.append(AptSource(uri.rstrip("/"), suites, components))
    return sources


def read_host_sources(apt_dir: Path = APT_DIR) -> list[AptSource]:
    """Every enabled `deb` source of the host: `sources.list`, then `sources.list.d/` in order."""
    files = [apt_dir / "sources.list"]
    folder = apt_dir / "sources.list.d"
    if folder.is_dir():
        files += sorted(p for p in folder.iterdir() if p.suffix in {".list", ".sources"})
    sources: list[AptSource] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        parse = parse_deb822_sources if path.suffix == ".sources" else parse_one_line_sources
        sources += parse(text)
    return sources


def _web(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def mirror_for(sources: Iterable[AptSource], suite: str) -> str | None:
    """The first http(s) mirror that serves `suite` itself."""
    return next((s.uri for s in sources if suite in s.suites and _web(s.uri)), None)


def security_mirror_for(sources: Iterable[AptSource], suite: str) -> str | None:
    """The first http(s) source that serves `<suite>-security`."""
    return mirror_for(sources, f"{suite}-security")


# --- the plan (pure) ---------------------------------------------------------------------------


def local_base_tag(suite: str) -> str:
    return f"{LOCAL_BASE_REPOSITORY}:{suite}"


@dataclass(frozen=True)
class BasePlan:
    """Everything `make_base_image` will do, decided before it does any of it."""

    suite: str
    mirror: str
    tag: str
    updates: bool = False
    security_mirror: str | None = None
    keyring: Path | None = DEBIAN_KEYRING
    labels: dict[str, str] = field(default_factory=dict)

    def debootstrap_argv(self, rootfs: Path) -> list[str]:
        argv = ["debootstrap", f"--variant={VARIANT}"]
        if self.keyring is not None:
            argv.append(f"--keyring={self.keyring}")
        if self.mirror.startswith("https://"):
            # apt in the new system needs the CA store to keep using an https mirror.
            argv.append("--include=ca-certificates")
        return [*argv, self.suite, str(rootfs), self.mirror]

    def sources_list(self) -> str:
        """The image's `/etc/apt/sources.list`: the suite, its updates and its security fixes."""
        lines = [
            "# Written by filare-agents (inv codex.base) from the host's apt sources.",
            f"deb {self.mirror} {self.suite} main",
        ]
        if self.updates:
            lines.append(f"deb {self.mirror} {self.suite}-updates main")
        if self.security_mirror:
            lines.append(f"deb {self.security_mirror} {self.suite}-security main")
        return "\n".join(lines) + "\n"

    def tar_argv(self, rootfs: Path, tarball: Path) -> list[str]:
        """Pack the root file system; the contents of kernel and scratch folders stay out."""
        excludes = [f"--exclude=./{name}/*" for name in ("dev", "proc", "sys", "run", "tmp")]
        return ["tar", "--numeric-owner", *excludes, "-C", str(rootfs), "-cf", str(tarball), "."]

    def import_args(self, tarball: Path) -> list[str]:
        """`docker import` arguments (after `docker`): labels, PATH, a shell as command."""
        args = ["import", "--message", f"debootstrap --variant={VARIANT} {self.suite}"]
        changes = [f"ENV PATH={PATH_ENV}", 'CMD ["bash"]']
        changes += [f'LABEL {key}="{value}"' for key, value in sorted(self.labels.items())]
        for change in changes:
            args += ["--change", change]
        return [*args, str(tarball), self.tag]


def plan_base(
    sources: Sequence[AptSource],
    *,
    suite: str = DEFAULT_SUITE,
    mirror: str | None = None,
    tag: str | None = None,
    keyring: Path | None = DEBIAN_KEYRING,
) -> BasePlan:
    """Which mirror, suites and tag a base image of `suite` is made from.

    Without `mirror`, the host's own apt source for `suite` is used, so the image is made from
    the mirror that is known to answer here.
    """
    if not re.fullmatch(r"[a-z][a-z0-9-]*", suite):
        raise InputError(f"--suite {suite!r}: expected a Debian release name such as 'bookworm'")
    chosen = (mirror or "").rstrip("/") or mirror_for(sources, suite)
    if not chosen:
        raise InputError(
            f"none of the host's apt sources serves {suite!r}; name a Debian mirror with "
            "--mirror (for example --mirror http://deb.debian.org/debian)"
        )
    if not _web(chosen):
        raise InputError(f"--mirror {chosen!r}: expected an http:// or https:// URL")
    updates = any(s.uri == chosen and f"{suite}-updates" in s.suites for s in sources)
    security = security_mirror_for(sources, suite)
    labels = {
        "org.opencontainers.image.title": f"{LOCAL_BASE_REPOSITORY} {suite}",
        "org.opencontainers.image.description": (
            f"Debian {suite} ({VARIANT}) made by debootstrap from {chosen}"
        ),
        "org.filare.image.kind": "base",
        "org.filare.base.suite": suite,
        "org.filare.base.mirror": chosen,
        "org.filare.base.variant": VARIANT,
    }
    return BasePlan(
        suite=suite,
        mirror=chosen,
        tag=tag or local_base_tag(suite),
        updates=updates,
        security_mirror=security,
        keyring=keyring,
        labels=labels,
    )


# --- choosing the base of a build (pure) -------------------------------------------------------


@dataclass(frozen=True)
class BaseChoice:
    """The base image a build uses, and why, in words for the build's first line of output."""

    image: str
    reason: str

    def line(self) -> str:
        return f"base image: {self.image} ({self.reason})"


def local_fallback(default: str) -> str | None:
    """`filare-base:<suite>` for an official Debian default such as `debian:bookworm-slim`."""
    match = _OFFICIAL_DEBIAN.match(default)
    return local_base_tag(match.group(1)) if match else None


def choose_base(
    requested: str | None,
    default: str,
    present: Callable[[str], bool],
) -> BaseChoice | None:
    """The base from what is present locally, or None when only a pull could provide it.

    Order: the requested image; the Dockerfile's default; the local `filare-base` image of the
    default's Debian suite. A local image wins over a pull, so a machine with no registry never
    waits on one when `inv codex.base` has been run.
    """
    if requested:
        return BaseChoice(requested, "as asked") if present(requested) else None
    if default and present(default):
        return BaseChoice(default, "the Dockerfile's default, present locally")
    fallback = local_fallback(default)
    if fallback and present(fallback):
        return BaseChoice(
            fallback,
            f"made by codex.base; the default {default} is not present locally",
        )
    return None


def no_base_message(image: str, default: str, reason: str, *, requested: bool) -> str:
    fallback = local_fallback(default) or local_base_tag(DEFAULT_SUITE)
    then = (
        f"then pass --base-image {fallback}"
        if requested
        else f"'uv run inv codex.build' then uses {fallback} by itself"
    )
    return (
        f"no base image: {image} is not present locally and cannot be pulled ({reason}); make "
        f"one from the Debian mirror with 'uv run inv codex.base' (as root), {then}"
    )


# --- effects -----------------------------------------------------------------------------------


def resolve_base(
    requested: str | None, default: str, *, on_engine: str | None = None
) -> BaseChoice:
    """The base a build uses: present on the engine it builds on (`on_engine`, default the
    current one), else pulled there; raises with what to do when neither."""
    choice = choose_base(requested, default, engine.Engine(on_engine).image_exists)
    if choice is not None:
        return choice
    wanted = requested or default
    if not wanted:
        raise InputError("the Dockerfile names no default base image: pass --base-image IMAGE")
    try:
        engine.Engine(on_engine).pull(wanted)
    except EngineError as exc:
        message = no_base_message(wanted, default, _short(str(exc)), requested=bool(requested))
        raise InputError(message) from None
    how = "as asked" if requested else "the Dockerfile's default"
    return BaseChoice(wanted, f"{how}, pulled")


@dataclass(frozen=True)
class BaseOutcome:
    """The base image now under the tag; `replaced` is the id `--force` took the tag from."""

    image: BuiltImage
    made: bool
    replaced: str | None = None


def make_base_image(
    plan: BasePlan,
    *,
    force: bool = False,
    workdir: Path | None = None,
    echo: Callable[[str], None] | None = None,
) -> BaseOutcome:
    """Bootstrap Debian into a temporary folder and import it as `plan.tag`.

    An existing image of that tag is kept unless `force`: the base changes only when asked.
    Needs root (debootstrap creates device nodes and chroots) and debootstrap on PATH.
    """
    previous = inspect_image(plan.tag) if engine.image_exists(plan.tag) else None
    if previous is not None and not force:
        return BaseOutcome(previous, made=False)
    _check_can_bootstrap(plan)
    (echo or _to_stdout)(
        f"making {plan.tag}: debootstrap --variant={VARIANT} {plan.suite} from {plan.mirror}"
    )
    scratch = Path(tempfile.mkdtemp(prefix="filare-base-", dir=workdir))
    rootfs = scratch / "rootfs"
    try:
        result = run_streaming(
            plan.debootstrap_argv(rootfs),
            timeout=DEBOOTSTRAP_TIMEOUT,
            what="debootstrap",
            install_hint="apt-get install debootstrap",
            echo=echo,
        )
        if not result.ok:
            raise EngineError(
                f"debootstrap of {plan.suite} from {plan.mirror} failed: "
                f"{_debootstrap_reason(rootfs, result.tail)}"
            )
        prepare_rootfs(rootfs, plan)
        tarball = scratch / "rootfs.tar"
        _run(plan.tar_argv(rootfs, tarball), timeout=TAR_TIMEOUT, what="tar")
        engine.docker(*plan.import_args(tarball), timeout=IMPORT_TIMEOUT)
    finally:
        _remove_scratch(scratch)
    made = inspect_image(plan.tag)
    replaced = previous.id if previous is not None and previous.id != made.id else None
    return BaseOutcome(made, made=True, replaced=replaced)


def prepare_rootfs(rootfs: Path, plan: BasePlan) -> None:
    """Make the bootstrapped tree an image: apt sources, slim dpkg rules, no host leftovers."""
    (rootfs / "etc/apt/sources.list").write_text(plan.sources_list(), encoding="utf-8")
    dpkg_cfg = rootfs / "etc/dpkg/dpkg.cfg.d"
    dpkg_cfg.mkdir(parents=True, exist_ok=True)
    (dpkg_cfg / "filare-slim").write_text(DPKG_EXCLUDES, encoding="utf-8")
    # debootstrap copies the host's name and resolver; Docker provides both at run time.
    (rootfs / "etc/hostname").write_text("localhost\n", encoding="utf-8")
    (rootfs / "etc/resolv.conf").write_text("", encoding="utf-8")
    for name in ("etc/hostname", "etc/resolv.conf"):
        (rootfs / name).chmod(0o644)
    for folder in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / folder).glob("*"):
            if entry.is_file() and entry.name != "lock":
                entry.unlink()


def _check_can_bootstrap(plan: BasePlan) -> None:
    if os.geteuid() != 0:
        raise InputError(
            "debootstrap needs root (it creates device nodes and runs chroot): run it as root, "
            "for example 'sudo uv run inv codex.base'"
        )
    if shutil.which("debootstrap") is None:
        raise InputError("debootstrap not found: apt-get install debootstrap")
    if plan.keyring is not None and not plan.keyring.is_file():
        raise InputError(
            f"{plan.keyring} not found: apt-get install debian-archive-keyring, so that "
            "debootstrap can check the mirror's signatures"
        )


def _run(argv: Sequence[str], *, timeout: float, what: str) -> None:
    try:
        result = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise EngineError(f"{what}: {argv[0]} not found") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"{what} did not finish within {timeout:g} s") from None
    if result.returncode != 0:
        raise EngineError(f"{what} failed: {_short(result.stderr) or 'no error output'}")


def _debootstrap_reason(rootfs: Path, tail: Sequence[str]) -> str:
    """The last error debootstrap reported (its log knows more than its output)."""
    lines = list(tail)
    log = rootfs / "debootstrap" / "debootstrap.log"
    if log.is_file():
        lines += log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
    errors = [line for line in lines if line.startswith(("E:", "W: Failure", "Err"))]
    chosen = errors[-1] if errors else next((line for line in reversed(lines) if line), "")
    return _short(chosen) or "no error output (see above)"


def mounts_under(folder: Path, mountinfo: str) -> list[Path]:
    """Mount points at or below `folder` in /proc/self/mountinfo text, deepest first."""
    found = []
    for line in mountinfo.splitlines():
        parts = line.split()
        if len(parts) < 5:
            continue
        point = Path(parts[4].replace("\\040", " "))
        if point == folder or folder in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _remove_scratch(scratch: Path) -> None:
    """Delete the temporary tree, but never through a mount debootstrap may have left behind.

    Runs in a `finally`: it reports a leftover on stderr instead of raising over the error that
    may be on its way out.
    """
    scratch = scratch.resolve()
    for point in mounts_under(scratch, _mountinfo()):
        subprocess.run(
            ["umount", str(point)], capture_output=True, timeout=UMOUNT_TIMEOUT, check=False
        )
    left = mounts_under(scratch, _mountinfo())
    if left:
        print(
            f"warning: {left[0]} is still mounted, so {scratch} was kept: unmount it, then "
            "delete the folder",
            file=sys.stderr,
        )
        return
    shutil.rmtree(scratch, ignore_errors=True)


def _mountinfo() -> str:
    try:
        return Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    except OSError:
        return ""


def _to_stdout(line: str) -> None:
    print(line, flush=True)


def _short(text: str, limit: int = 300) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[-1] if lines else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."
