"""Base image planning: the host's apt sources, the argv of each step, the base a build uses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from orchestrator import base_image, engine
from orchestrator.base_image import (
    AptSource,
    choose_base,
    local_fallback,
    mounts_under,
    no_base_message,
    parse_deb822_sources,
    parse_one_line_sources,
    plan_base,
    prepare_rootfs,
    read_host_sources,
)
from orchestrator.errors import EngineError, InputError
from orchestrator.images import BuiltImage
from orchestrator.streaming import Streamed

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example.org/debian
Suites: bookworm

Types: deb
Enabled: no
URIs: http://disabled.example.org/debian
Suites: bookworm
"""

HOST = parse_deb822_sources(DEB822)


def test_deb822_paragraphs_become_sources_skipping_deb_src_and_disabled() -> None:
    expected = [
        AptSource("http://deb.debian.org/debian", ("bookworm", "bookworm-updates"), ("main",)),
        AptSource("http://deb.debian.org/debian-security", ("bookworm-security",), ("main",)),
    ]
    assert expected == HOST


def test_deb822_continuation_lines_and_several_uris() -> None:
    text = "Types: deb\nURIs: http://a.example/debian\n http://b.example/debian/\nSuites: sid\n"
    assert [s.uri for s in parse_deb822_sources(text)] == [
        "http://a.example/debian",
        "http://b.example/debian",
    ]


def test_one_line_sources_with_options_and_comments() -> None:
    text = (
        "# a comment\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm main contrib\n"
        "deb-src http://mirror.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main # trailing\n"
    )
    assert parse_one_line_sources(text) == [
        AptSource("http://mirror.example/debian", ("bookworm",), ("main", "contrib")),
        AptSource("http://security.example/debian-security", ("bookworm-security",), ("main",)),
    ]


def test_host_sources_read_list_and_sources_files_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://one.example/debian bookworm main\n")
    folder = tmp_path / "sources.list.d"
    folder.mkdir()
    (folder / "debian.sources").write_text(DEB822)
    (folder / "other.list.disabled-by-someone").write_text("deb http://no.example/ x main\n")
    uris = [s.uri for s in read_host_sources(tmp_path)]
    assert uris == [
        "http://one.example/debian",
        "http://deb.debian.org/debian",
        "http://deb.debian.org/debian-security",
    ]


def test_plan_uses_the_hosts_mirror_updates_and_security() -> None:
    plan = plan_base(HOST)
    assert plan.mirror == "http://deb.debian.org/debian"
    assert plan.tag == "filare-base:bookworm"
    assert plan.sources_list().splitlines()[1:] == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]
    assert plan.labels["org.filare.base.mirror"] == plan.mirror
    assert plan.labels["org.filare.base.suite"] == "bookworm"


def test_plan_with_an_explicit_mirror_and_tag() -> None:
    plan = plan_base(HOST, mirror="https://mirror.example/debian/", tag="my-base:1")
    assert plan.mirror == "https://mirror.example/debian"
    assert plan.tag == "my-base:1"
    assert "bookworm-updates" not in plan.sources_list()


def test_plan_fails_with_a_hint_when_no_source_serves_the_suite() -> None:
    with pytest.raises(InputError, match="--mirror"):
        plan_base(HOST, suite="trixie")
    with pytest.raises(InputError, match="http"):
        plan_base(HOST, mirror="file:///srv/mirror")
    with pytest.raises(InputError, match="release name"):
        plan_base(HOST, suite="bookworm; rm -rf /")


def test_debootstrap_argv_checks_signatures_and_adds_ca_certificates_for_https() -> None:
    plan = plan_base(HOST)
    assert plan.debootstrap_argv(Path("/tmp/x/rootfs")) == [
        "debootstrap",
        "--variant=minbase",
        "--keyring=/usr/share/keyrings/debian-archive-keyring.gpg",
        "bookworm",
        "/tmp/x/rootfs",
        "http://deb.debian.org/debian",
    ]
    https = plan_base(HOST, mirror="https://mirror.example/debian")
    assert "--include=ca-certificates" in https.debootstrap_argv(Path("/r"))


def test_tar_and_import_argv() -> None:
    plan = plan_base(HOST)
    tar = plan.tar_argv(Path("/s/rootfs"), Path("/s/rootfs.tar"))
    assert tar[:2] == ["tar", "--numeric-owner"]
    assert "--exclude=./proc/*" in tar
    assert tar[-5:] == ["-C", "/s/rootfs", "-cf", "/s/rootfs.tar", "."]
    args = plan.import_args(Path("/s/rootfs.tar"))
    assert args[0] == "import"
    assert args[-2:] == ["/s/rootfs.tar", "filare-base:bookworm"]
    changes = [args[i + 1] for i, arg in enumerate(args) if arg == "--change"]
    assert 'CMD ["bash"]' in changes
    assert 'LABEL org.filare.base.suite="bookworm"' in changes


def test_prepare_rootfs_writes_sources_and_drops_host_leftovers(tmp_path: Path) -> None:
    for folder in ("etc/apt", "var/cache/apt/archives/partial", "var/lib/apt/lists"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "etc/hostname").write_text("my-host\n")
    (tmp_path / "etc/resolv.conf").write_text("nameserver 10.0.0.1\n")
    (tmp_path / "var/cache/apt/archives/bash.deb").write_text("x")
    (tmp_path / "var/cache/apt/archives/lock").write_text("")
    (tmp_path / "var/lib/apt/lists/deb.debian.org_Packages").write_text("x")
    plan = plan_base(HOST)
    prepare_rootfs(tmp_path, plan)
    assert (tmp_path / "etc/apt/sources.list").read_text() == plan.sources_list()
    assert (tmp_path / "etc/hostname").read_text() == "localhost\n"
    assert (tmp_path / "etc/resolv.conf").read_text() == ""
    assert (
        "path-exclude /usr/share/doc/*"
        in (tmp_path / "etc/dpkg/dpkg.cfg.d/filare-slim").read_text()
    )
    assert sorted(p.name for p in (tmp_path / "var/cache/apt/archives").iterdir()) == [
        "lock",
        "partial",
    ]
    assert not any((tmp_path / "var/lib/apt/lists").iterdir())


def test_mounts_under_lists_deepest_first_and_ignores_others() -> None:
    mountinfo = (
        "22 1 8:1 / / rw - ext4 /dev/vda rw\n"
        "90 22 0:5 / /tmp/filare-base-x/rootfs/proc rw - proc proc rw\n"
        "91 90 0:6 / /tmp/filare-base-x/rootfs/proc/sys/fs/binfmt_misc rw - binfmt x rw\n"
        "92 22 0:7 / /tmp/filare-base-xy/rootfs/sys rw - sysfs sysfs rw\n"
    )
    assert mounts_under(Path("/tmp/filare-base-x"), mountinfo) == [
        Path("/tmp/filare-base-x/rootfs/proc/sys/fs/binfmt_misc"),
        Path("/tmp/filare-base-x/rootfs/proc"),
    ]


@pytest.mark.parametrize(
    ("default", "fallback"),
    [
        ("debian:bookworm-slim", "filare-base:bookworm"),
        ("debian:trixie", "filare-base:trixie"),
        ("docker.io/library/debian:bookworm-slim", "filare-base:bookworm"),
        ("ubuntu:24.04", None),
        ("", None),
    ],
)
def test_local_fallback_follows_the_defaults_debian_suite(
    default: str, fallback: str | None
) -> None:
    assert local_fallback(default) == fallback


def test_choose_base_prefers_what_is_asked_then_the_default_then_the_local_base() -> None:
    default = "debian:bookworm-slim"
    everything = {default, "filare-base:bookworm", "mine:1"}
    assert choose_base("mine:1", default, everything.__contains__) == base_image.BaseChoice(
        "mine:1", "as asked"
    )
    chosen = choose_base(None, default, everything.__contains__)
    assert chosen is not None and chosen.image == default
    local_only = {"filare-base:bookworm"}
    chosen = choose_base(None, default, local_only.__contains__)
    assert chosen is not None and chosen.image == "filare-base:bookworm"
    assert "made by codex.base" in chosen.line()
    assert choose_base(None, default, set().__contains__) is None
    assert choose_base("mine:1", default, local_only.__contains__) is None


def test_no_base_message_says_how_to_make_one() -> None:
    message = no_base_message(
        "debian:bookworm-slim", "debian:bookworm-slim", "no route", requested=False
    )
    assert "uv run inv codex.base" in message and "filare-base:bookworm" in message
    message = no_base_message("x:1", "debian:bookworm-slim", "no route", requested=True)
    assert "--base-image filare-base:bookworm" in message


def test_resolve_base_pulls_only_when_nothing_local_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    pulled: list[str] = []
    monkeypatch.setattr(engine, "image_exists", lambda image: False)
    monkeypatch.setattr(engine, "pull_image", pulled.append)
    choice = base_image.resolve_base(None, "debian:bookworm-slim")
    assert choice.image == "debian:bookworm-slim" and pulled == ["debian:bookworm-slim"]
    assert "pulled" in choice.reason


def test_resolve_base_without_registry_is_one_actionable_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_registry(image: str) -> None:
        raise EngineError("docker pull failed: lookup registry-1.docker.io: no such host")

    monkeypatch.setattr(engine, "image_exists", lambda image: False)
    monkeypatch.setattr(engine, "pull_image", no_registry)
    with pytest.raises(InputError, match=r"uv run inv codex\.base") as caught:
        base_image.resolve_base(None, "debian:bookworm-slim")
    assert "no such host" in str(caught.value)


def test_making_a_base_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "image_exists", lambda image: False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(InputError, match="needs root"):
        base_image.make_base_image(plan_base(HOST))


def test_an_existing_base_is_kept_without_force(monkeypatch: pytest.MonkeyPatch) -> None:
    kept = BuiltImage("filare-base:bookworm", "sha256:abc", 1)
    monkeypatch.setattr(engine, "image_exists", lambda image: True)
    monkeypatch.setattr("orchestrator.base_image.inspect_image", lambda tag: kept)
    outcome = base_image.make_base_image(plan_base(HOST))
    assert outcome == base_image.BaseOutcome(kept, made=False)


def test_debootstrap_reason_is_its_last_error(tmp_path: Path) -> None:
    tail = [
        "I: Retrieving InRelease",
        "E: Failed getting release file http://m/dists/x/Release",
        "",
    ]
    assert base_image._debootstrap_reason(tmp_path, tail).startswith("E: Failed getting release")
    assert base_image._debootstrap_reason(tmp_path, []) == "no error output (see above)"


def test_making_a_base_bootstraps_prepares_packs_imports_and_cleans_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The effects in order, with debootstrap, tar and docker faked (they need root)."""
    keyring = tmp_path / "keyring.gpg"
    keyring.write_text("")
    plan = plan_base(HOST, keyring=keyring)
    steps: list[list[str]] = []
    seen: dict[str, str] = {}

    def debootstrap(argv: list[str], **kwargs: object) -> Streamed:
        steps.append(argv)
        rootfs = Path(argv[-2])
        for folder in ("etc/apt", "var/cache/apt/archives", "var/lib/apt/lists"):
            (rootfs / folder).mkdir(parents=True)
        (rootfs / "etc/hostname").write_text("build-host\n")
        (rootfs / "etc/resolv.conf").write_text("nameserver 10.0.0.1\n")
        return Streamed(0, ())

    def tar(argv: list[str], **kwargs: object) -> None:
        steps.append(argv)
        rootfs = Path(argv[argv.index("-C") + 1])
        seen["sources"] = (rootfs / "etc/apt/sources.list").read_text()
        seen["hostname"] = (rootfs / "etc/hostname").read_text()

    def docker(*args: str, timeout: float) -> str:
        steps.append(["docker", *args])
        return "sha256:new\n"

    images = {"filare-base:bookworm": BuiltImage("filare-base:bookworm", "sha256:old", 1)}
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(engine, "image_exists", lambda tag: tag in images)
    monkeypatch.setattr(engine, "docker", docker)
    monkeypatch.setattr("orchestrator.base_image.run_streaming", debootstrap)
    monkeypatch.setattr("orchestrator.base_image._run", tar)
    monkeypatch.setattr("orchestrator.base_image.inspect_image", lambda tag: images[tag])

    kept = base_image.make_base_image(plan, workdir=tmp_path, echo=lambda line: None)
    assert kept == base_image.BaseOutcome(images["filare-base:bookworm"], made=False)
    assert steps == []

    made = base_image.make_base_image(plan, force=True, workdir=tmp_path, echo=print)
    assert [step[0] for step in steps] == ["debootstrap", "tar", "docker"]
    assert steps[2][1] == "import" and steps[2][-1] == "filare-base:bookworm"
    assert seen == {"sources": plan.sources_list(), "hostname": "localhost\n"}
    assert made.made and made.replaced is None  # the fake import kept the old id
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keyring.gpg"]
