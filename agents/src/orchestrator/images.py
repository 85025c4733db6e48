"""Building the agent images: the real Codex image and the tiny offline smoke image.

A Dockerfile may ask for host files in its build context with a directive comment,

    # stage: busybox=/bin/busybox:/usr/bin/busybox

(name in the context, then candidate host paths, first existing one wins). The smoke image uses
it for a static busybox, so it builds with no registry and no binary in the repository.

Every build context also holds `extra-ca.crt`: the certificates of the CA bundle given to
`build_image` (for a TLS-intercepting proxy), or an empty file, so that a Dockerfile can `COPY`
it unconditionally. Only certificates are staged; a bundle holding a private key is refused.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator import engine
from orchestrator.errors import EngineError, InputError
from orchestrator.streaming import run_streaming

BUILD_TIMEOUT = 3600.0
DEFAULT_TAG = "filare-codex"
SMOKE_TAG = "filare-codex:smoke"
CODEX_DOCKERFILE = "Dockerfile.codex"
_DOCKERFILE_NAME = re.compile(r"Dockerfile\.([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})")
CA_BUNDLE_NAME = "extra-ca.crt"
BASE_ARG = "BASE_IMAGE"
_STAGE = re.compile(r"^#\s*stage:\s*([\w.-]+)=(\S+)\s*$", re.MULTILINE)
_CERTIFICATE = re.compile(
    r"-----BEGIN CERTIFICATE-----\r?\n[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----"
)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_FROM = re.compile(r"^\s*FROM\s", re.MULTILINE | re.IGNORECASE)
_BASE_ARG = re.compile(rf"^\s*ARG\s+{BASE_ARG}(?:=(\S*))?\s*$", re.MULTILINE | re.IGNORECASE)
_COPIES_CA_BUNDLE = re.compile(
    rf"^\s*(?:COPY|ADD)\s.*\b{re.escape(CA_BUNDLE_NAME)}\b", re.MULTILINE | re.IGNORECASE
)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# What apt (GnuTLS), npm/node (OpenSSL), pip (Python ssl) and uv (rustls) print when a proxy
# re-signs TLS with a CA the build does not trust.
_TLS_FAILURES = (
    "self-signed certificate in certificate chain",
    "self signed certificate in certificate chain",
    "SELF_SIGNED_CERT_IN_CHAIN",
    "unable to get local issuer certificate",
    "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
    "CERTIFICATE_VERIFY_FAILED",
    "invalid peer certificate",
    "Certificate verification failed",
)


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    id: str
    size_bytes: int

    def summary(self, verb: str = "built") -> str:
        return f"{verb} {self.tag}  id {self.id[:19]}  size {self.size_bytes / 1e6:.1f} MB"


def default_tag(dockerfile: Path) -> str:
    """The tag a Dockerfile builds when none is given, so that only `Dockerfile.codex` ever
    replaces `filare-codex`: `Dockerfile.codex` → `filare-codex`, `Dockerfile.NAME` →
    `filare-codex:NAME` (`Dockerfile.smoke` → `filare-codex:smoke`).

    Any other file name gives no tag of its own: the caller must name one.
    """
    if dockerfile.name == CODEX_DOCKERFILE:
        return DEFAULT_TAG
    match = _DOCKERFILE_NAME.fullmatch(dockerfile.name)
    if match is None:
        raise InputError(
            f"{dockerfile}: no tag follows from its name (only Dockerfile.NAME builds "
            f"{DEFAULT_TAG}:NAME by default); give one with --tag"
        )
    return f"{DEFAULT_TAG}:{match.group(1)}"


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
    on_engine: str | None = None,
) -> list[str]:
    # --force-rm: a failed step's container is removed too, never left behind on the engine.
    build = ["build", "--force-rm", "--file", str(dockerfile), "--tag", tag]
    argv = engine.command_argv(*build, context=on_engine)
    for key, value in build_args.items():
        argv += ["--build-arg", f"{key}={value}"]
    if no_cache:
        argv.append("--no-cache")
    argv.append(str(context))
    return argv


def base_image_default(dockerfile_text: str) -> str | None:
    """The default of `ARG BASE_IMAGE` declared before the first `FROM`; None when not declared.

    An empty string means the Dockerfile takes a base image but names no default.
    """
    first_from = _FROM.search(dockerfile_text)
    header = dockerfile_text[: first_from.start()] if first_from else dockerfile_text
    match = _BASE_ARG.search(header)
    if match is None:
        return None
    return (match.group(1) or "").strip("\"'")


def uses_ca_bundle(dockerfile_text: str) -> bool:
    """Whether the Dockerfile copies the staged CA bundle (`extra-ca.crt`) into the image."""
    return _COPIES_CA_BUNDLE.search(dockerfile_text) is not None


def ca_certificates(text: str, source: str) -> str:
    """The PEM certificates of a CA bundle, one after the other; everything else is dropped.

    Refuses a bundle with a private key (it would end up in an image layer) and one with no
    certificate at all (a DER file, or the wrong file).
    """
    if _PRIVATE_KEY.search(text):
        raise InputError(
            f"{source}: holds a private key; a CA bundle must hold certificates only, "
            "and a key would stay in the image"
        )
    certificates = [block.replace("\r\n", "\n") for block in _CERTIFICATE.findall(text)]
    if not certificates:
        raise InputError(
            f"{source}: no PEM certificate (-----BEGIN CERTIFICATE-----) found; convert a DER "
            "file with 'openssl x509 -inform der -in FILE -out FILE.crt'"
        )
    return "\n".join(certificates) + "\n"


def read_ca_bundle(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise InputError(f"--ca-bundle {path}: file not found") from None
    except OSError as exc:
        raise InputError(f"--ca-bundle {path}: cannot read it: {exc.strerror}") from None
    return ca_certificates(text, f"--ca-bundle {path}")


def tls_failure_hint(lines: Iterable[str]) -> str | None:
    """A hint when build output shows a TLS certificate the build did not trust."""
    for raw in lines:
        line = _ANSI.sub("", raw).strip()
        if any(marker.lower() in line.lower() for marker in _TLS_FAILURES):
            return (
                "the build could not verify a TLS certificate ("
                + line[:160]
                + "); behind a TLS-intercepting proxy, pass its CA: 'uv run inv codex.build "
                "--ca-bundle /etc/ssl/certs/ca-certificates.crt' (see docs/codex-image.md)"
            )
    return None


def parse_build_args(items: Sequence[str]) -> dict[str, str]:
    args = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InputError(f"--build-arg {item!r}: expected KEY=VALUE")
        args[key] = value
    return args


def check_build_inputs(dockerfile: Path, ca_bundle: Path | None) -> str:
    """Fail before building on a missing Dockerfile or an unusable CA bundle; the certificates."""
    if not dockerfile.is_file():
        raise InputError(f"{dockerfile}: Dockerfile not found")
    if ca_bundle is None:
        return ""
    if not uses_ca_bundle(dockerfile.read_text(encoding="utf-8")):
        raise InputError(f"{dockerfile}: does not copy {CA_BUNDLE_NAME}, so --ca-bundle has no use")
    return read_ca_bundle(ca_bundle)


def build_image(
    dockerfile: Path,
    tag: str | None = None,
    build_args: Mapping[str, str] | None = None,
    *,
    no_cache: bool = False,
    extra_files: Mapping[str, Path] | None = None,
    ca_bundle: Path | None = None,
    on_engine: str | None = None,
) -> BuiltImage:
    """Build with the Dockerfile's folder as context (plus staged files); output streams through.

    `tag` defaults to the one the Dockerfile's name gives (`default_tag`). `ca_bundle` is staged
    as `extra-ca.crt` (an empty file when None); giving one to a Dockerfile that does not copy it
    is an error rather than a silent no-op. `on_engine` names the Docker context to build on
    (default: the current one).
    """
    dockerfile = dockerfile.resolve()
    tag = tag or default_tag(dockerfile)
    certificates = check_build_inputs(dockerfile, ca_bundle)
    files = {**staged_files(dockerfile), **(extra_files or {})}
    with tempfile.TemporaryDirectory(prefix="filare-build-") as tmp:
        context = Path(tmp) / "context"
        shutil.copytree(dockerfile.parent, context)
        (context / CA_BUNDLE_NAME).write_text(certificates, encoding="utf-8")
        for name, source in files.items():
            shutil.copy2(source, context / name)
        argv = build_argv(
            context / dockerfile.name,
            context,
            tag,
            build_args or {},
            no_cache=no_cache,
            on_engine=on_engine,
        )
        result = run_streaming(
            argv,
            timeout=BUILD_TIMEOUT,
            what="docker build",
            install_hint=engine.INSTALL_HINT,
            echo=without_legacy_banner(),
        )
    if not result.ok:
        reason = tls_failure_hint(result.tail) or "see the output above"
        raise EngineError(f"docker build of {dockerfile.name} as {tag} failed: {reason}")
    return inspect_image(tag) if on_engine is None else inspect_image(tag, on_engine=on_engine)


_LEGACY_BANNER = "DEPRECATED: The legacy builder is deprecated"


def without_legacy_banner(echo: Callable[[str], None] | None = None) -> Callable[[str], None]:
    """Docker's output, less the banner it prints when BuildKit (buildx) is not installed: the
    build works either way, and the banner reads like a failure to a newcomer. It runs from its
    first line to the blank line after it."""
    write = echo or (lambda line: print(line, flush=True))
    in_banner = False

    def line(text: str) -> None:
        nonlocal in_banner
        if text.startswith(_LEGACY_BANNER):
            in_banner = True
        elif in_banner and not text.strip():
            in_banner = False
        elif not in_banner:
            write(text)

    return line


def inspect_image(tag: str, *, on_engine: str | None = None) -> BuiltImage:
    image_id, size = engine.docker(
        "image", "inspect", "--format", "{{.Id}} {{.Size}}", tag, context=on_engine
    ).split()
    return BuiltImage(tag, image_id, int(size))
