"""Image builds without an engine: Dockerfile facts, the CA bundle, staging, streaming, hints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from invoke.context import Context

import tasks
from filare_testing.commands import REPOSITORY, inv
from orchestrator import images
from orchestrator.errors import EngineError, InputError
from orchestrator.images import (
    BuiltImage,
    base_image_default,
    build_argv,
    ca_certificates,
    check_build_inputs,
    tls_failure_hint,
    uses_ca_bundle,
)
from orchestrator.streaming import Streamed, run_streaming

CODEX_DOCKERFILE = REPOSITORY / "docker" / "Dockerfile.codex"
SMOKE_DOCKERFILE = REPOSITORY / "docker" / "Dockerfile.smoke"
CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAbC+/=\n-----END CERTIFICATE-----"
OTHER = "-----BEGIN CERTIFICATE-----\nMIIBtDCCAVqgAwIBAgIV\n-----END CERTIFICATE-----"


def test_base_image_default_is_read_from_the_arg_before_from() -> None:
    assert base_image_default(CODEX_DOCKERFILE.read_text()) == "debian:bookworm-slim"
    assert base_image_default(SMOKE_DOCKERFILE.read_text()) is None
    assert base_image_default("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n") == ""
    assert base_image_default('ARG BASE_IMAGE="x:1"\nFROM ${BASE_IMAGE}\n') == "x:1"
    assert base_image_default("FROM scratch\nARG BASE_IMAGE=late:1\n") is None


def test_only_the_codex_dockerfile_takes_a_ca_bundle() -> None:
    assert uses_ca_bundle(CODEX_DOCKERFILE.read_text())
    assert not uses_ca_bundle(SMOKE_DOCKERFILE.read_text())


def test_ca_certificates_keeps_certificates_only() -> None:
    bundle = f"# Proxy CA\n{CERT}\r\nsome text\n{OTHER.replace(chr(10), chr(13) + chr(10))}\n"
    assert ca_certificates(bundle, "b.crt") == f"{CERT}\n{OTHER}\n"


def test_ca_bundle_with_a_private_key_or_no_certificate_is_refused() -> None:
    key = "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(InputError, match="private key"):
        ca_certificates(CERT + "\n" + key, "b.crt")
    with pytest.raises(InputError, match="no PEM certificate"):
        ca_certificates("binary junk", "b.der")


def test_check_build_inputs(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.crt"
    bundle.write_text(CERT + "\n")
    assert check_build_inputs(CODEX_DOCKERFILE, None) == ""
    assert check_build_inputs(CODEX_DOCKERFILE, bundle) == CERT + "\n"
    with pytest.raises(InputError, match="has no use"):
        check_build_inputs(SMOKE_DOCKERFILE, bundle)
    with pytest.raises(InputError, match="file not found"):
        check_build_inputs(CODEX_DOCKERFILE, tmp_path / "missing.crt")
    with pytest.raises(InputError, match="Dockerfile not found"):
        check_build_inputs(tmp_path / "Dockerfile", None)


@pytest.mark.parametrize(
    "line",
    [
        "\x1b[91mnpm ERR! code\x1b[0m\x1b[91m SELF_SIGNED_CERT_IN_CHAIN",
        "request to https://registry.npmjs.org/x failed, reason: self-signed certificate in "
        "certificate chain",
        "Err:1 https://mirror.example/debian bookworm InRelease Certificate verification failed: "
        "The certificate is NOT trusted.",
        "pip._vendor.urllib3.exceptions.SSLError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate",
        "error: invalid peer certificate: UnknownIssuer",
    ],
)
def test_tls_failures_get_the_ca_bundle_hint(line: str) -> None:
    hint = tls_failure_hint(["Step 11/19 : RUN npm install", line])
    assert hint is not None
    assert "--ca-bundle" in hint and "docs/codex-image.md" in hint
    assert "\x1b" not in hint


def test_other_failures_get_no_tls_hint() -> None:
    assert (
        tls_failure_hint(["E: Unable to locate package nosuch", "returned a non-zero code"]) is None
    )


def test_build_argv_removes_failed_step_containers() -> None:
    argv = build_argv(Path("/c/Dockerfile"), Path("/c"), "t:1", {"A": "1"}, no_cache=True)
    assert argv == [
        "docker",
        "build",
        "--force-rm",
        "--file",
        "/c/Dockerfile",
        "--tag",
        "t:1",
        "--build-arg",
        "A=1",
        "--no-cache",
        "/c",
    ]


class FakeBuild:
    """Stands in for the streamed `docker build`: records the context it was handed."""

    def __init__(self, returncode: int = 0, tail: tuple[str, ...] = ()) -> None:
        self.result = Streamed(returncode, tail)
        self.context: dict[str, str] = {}

    def __call__(self, argv: list[str], **kwargs: object) -> Streamed:
        context = Path(argv[-1])
        self.context = {p.name: p.read_text() for p in context.iterdir() if p.is_file()}
        return self.result


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> FakeBuild:
    fake = FakeBuild()
    monkeypatch.setattr(images, "run_streaming", fake)
    monkeypatch.setattr(images, "inspect_image", lambda tag: BuiltImage(tag, "sha256:1", 2))
    return fake


def test_build_stages_an_empty_ca_file_when_none_is_given(fake_build: FakeBuild) -> None:
    built = images.build_image(CODEX_DOCKERFILE, "t:1")
    assert built == BuiltImage("t:1", "sha256:1", 2)
    assert fake_build.context["extra-ca.crt"] == ""
    assert "agent-entrypoint.sh" in fake_build.context


def test_build_stages_the_certificates_of_the_bundle(fake_build: FakeBuild, tmp_path: Path) -> None:
    bundle = tmp_path / "proxy.pem"
    bundle.write_text(f"Proxy CA\n{CERT}\n")
    images.build_image(CODEX_DOCKERFILE, "t:1", ca_bundle=bundle)
    assert fake_build.context["extra-ca.crt"] == CERT + "\n"


def test_failed_build_explains_a_tls_failure(fake_build: FakeBuild) -> None:
    fake_build.result = Streamed(1, ("npm ERR! code SELF_SIGNED_CERT_IN_CHAIN",))
    with pytest.raises(EngineError, match="--ca-bundle"):
        images.build_image(CODEX_DOCKERFILE, "t:1")
    fake_build.result = Streamed(1, ("E: Unable to locate package nosuch",))
    with pytest.raises(EngineError, match="see the output above"):
        images.build_image(CODEX_DOCKERFILE, "t:1")


def test_codex_dockerfile_promises() -> None:
    """What sessions and the docs rely on, checked without building."""
    text = CODEX_DOCKERFILE.read_text()
    assert "ARG CODEX_VERSION=0.171.0" in text
    assert '"@openai/codex@${CODEX_VERSION}"' in text
    assert '"uv==${UV_VERSION}"' in text
    assert 'org.filare.codex.version="${CODEX_VERSION}"' in text
    assert 'org.opencontainers.image.base.name="${BASE_IMAGE}"' in text
    assert 'ENTRYPOINT ["/usr/local/bin/agent-entrypoint"]' in text
    assert 'CMD ["sleep", "infinity"]' in text
    assert "-perm /6000" in text and "chmod a-s" in text
    assert "curl" not in text and "| sh" not in text


def test_streaming_shows_every_line_and_keeps_the_tail() -> None:
    shown: list[str] = []
    code = "import sys\nfor i in range(300): print(i)\nprint('bad', file=sys.stderr)\nsys.exit(3)"
    result = run_streaming([sys.executable, "-c", code], timeout=30, what="t", echo=shown.append)
    assert result.returncode == 3 and not result.ok
    assert shown[0] == "0" and shown[-1] == "bad" and len(shown) == 301
    assert len(result.tail) == 200 and result.tail[-1] == "bad"


def test_streaming_stops_a_program_that_runs_too_long() -> None:
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    with pytest.raises(EngineError, match=r"did not finish within 0\.5 s"):
        run_streaming(argv, timeout=0.5, what="sleeper", echo=lambda line: None)


def test_streaming_names_a_missing_program() -> None:
    with pytest.raises(EngineError, match="no-such-program not found: install it"):
        run_streaming(["no-such-program"], timeout=5, what="x", install_hint="install it")


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("Dockerfile.codex", "filare-codex"),
        ("Dockerfile.smoke", "filare-codex:smoke"),
        ("Dockerfile.gpu", "filare-codex:gpu"),
        ("Dockerfile.codex-0.171", "filare-codex:codex-0.171"),
    ],
)
def test_the_default_tag_follows_from_the_dockerfile_s_name(name: str, tag: str) -> None:
    assert images.default_tag(Path("docker") / name) == tag


@pytest.mark.parametrize("name", ["Dockerfile", "Containerfile", "Dockerfile.", "Dockerfile.a b"])
def test_a_dockerfile_without_a_name_to_tag_by_needs_a_tag(name: str) -> None:
    with pytest.raises(InputError, match="give one with --tag"):
        images.default_tag(Path(name))


def test_building_a_smoke_dockerfile_never_replaces_the_codex_image(
    fake_build: FakeBuild, tmp_path: Path
) -> None:
    smoke = tmp_path / "Dockerfile.smoke"
    smoke.write_text("FROM scratch\n")
    assert images.build_image(smoke).tag == "filare-codex:smoke"
    assert images.build_image(smoke, "mine:1").tag == "mine:1"


def test_codex_build_tags_from_the_dockerfile_unless_told(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[str | None] = []

    def fake(
        dockerfile: Path, tag: str | None = None, *args: object, **kwargs: object
    ) -> BuiltImage:
        built.append(tag)
        return BuiltImage(tag or "?", "sha256:1", 2)

    monkeypatch.setattr(images, "build_image", fake)
    task = tasks.ns["codex.build"]
    task(Context(), dockerfile="docker/Dockerfile.smoke")
    task(Context(), dockerfile="docker/Dockerfile.smoke", tag="filare-codex:mine")
    assert built == ["filare-codex:smoke", "filare-codex:mine"]
    assert "built filare-codex:smoke" in capsys.readouterr().out


def test_codex_build_of_a_dockerfile_with_no_tag_of_its_own_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    result = inv("codex.build", "--dockerfile", str(tmp_path / "Dockerfile"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'Dockerfile'}: no tag follows from its name (only Dockerfile.NAME "
        "builds filare-codex:NAME by default); give one with --tag"
    ]


def test_the_legacy_builder_banner_is_left_out_of_the_build_output() -> None:
    from orchestrator.images import without_legacy_banner

    shown: list[str] = []
    echo = without_legacy_banner(shown.append)
    for line in [
        "DEPRECATED: The legacy builder is deprecated and will be removed in a future release.",
        "            Install the buildx component to build images with BuildKit:",
        "            https://docs.docker.com/go/buildx/",
        "",
        "Sending build context to Docker daemon  2.048kB",
        "",
        "Step 1/2 : FROM scratch",
    ]:
        echo(line)
    assert shown == [
        "Sending build context to Docker daemon  2.048kB",
        "",
        "Step 1/2 : FROM scratch",
    ]
