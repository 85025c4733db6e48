"""Manifests written for the Filare project load here unchanged, through the names it imports.

These tests use only `orchestrator.config`'s public names, as the Filare project's own code and
tests do, and its way of writing manifests: YAML text in a temporary folder, paths relative to it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from filare_testing.commands import REPOSITORY
from orchestrator.config import AgentSessionConfig, ManifestError, load_manifest, select_sessions

SPEC_SOURCE = REPOSITORY / "agents" / "src" / "orchestrator" / "spec.py"

DEFAULTS = """\
defaults:
  workspace: work
  env_file: env/.env
  ssh_key: keys/id_rsa
  branch: main
"""


def write(tmp_path: Path, text: str) -> Path:
    manifest = tmp_path / "manifest.yml"
    manifest.write_text(text)
    return manifest


def one_session(tmp_path: Path, fields: str) -> AgentSessionConfig:
    """The single session of a manifest made of DEFAULTS and one session with `fields`."""
    body = "".join(f"    {line}\n" for line in fields.strip().splitlines())
    (session,) = load_manifest(write(tmp_path, DEFAULTS + "sessions:\n  - id: alpha\n" + body))
    return session


def test_load_manifest_with_defaults(tmp_path: Path) -> None:
    manifest = write(
        tmp_path,
        DEFAULTS
        + """\
sessions:
  - id: alpha
    role: FEATURE
    goal: "Do work"
    tags: [fast, demo]
""",
    )

    sessions = load_manifest(manifest)

    assert len(sessions) == 1
    session = sessions[0]
    assert isinstance(session, AgentSessionConfig)
    assert session.id == "alpha"
    assert session.role == "FEATURE"
    assert session.branch == "main"
    assert session.goal == "Do work"
    assert session.image == "filare-codex"
    assert session.workspace == tmp_path / "work"
    assert session.env_file == tmp_path / "env/.env"
    assert session.ssh_key == tmp_path / "keys/id_rsa"
    assert all(
        isinstance(path, Path) and path.is_absolute()
        for path in (session.workspace, session.env_file, session.ssh_key)
    )
    assert session.tags == ["fast", "demo"]
    assert session.manifest_path == manifest.resolve()


def test_a_session_overrides_the_defaults(tmp_path: Path) -> None:
    session = one_session(tmp_path, "role: FIXER\nbranch: fix/bug-y\nimage: filare-codex:1")
    assert (session.branch, session.image) == ("fix/bug-y", "filare-codex:1")


def test_a_single_tag_is_a_list_of_one(tmp_path: Path) -> None:
    assert one_session(tmp_path, "role: DOCUMENTATION\ntags: docs").tags == ["docs"]


def test_manifest_requires_branch(tmp_path: Path) -> None:
    manifest = write(
        tmp_path,
        """\
sessions:
  - id: missingbranch
    role: FEATURE
    workspace: work
    env_file: env/.env
    ssh_key: keys/id_rsa
""",
    )
    with pytest.raises(ManifestError, match="'branch'"):
        load_manifest(manifest)


def test_duplicate_ids_raise(tmp_path: Path) -> None:
    manifest = write(
        tmp_path,
        DEFAULTS
        + """\
sessions:
  - id: dup
    role: FEATURE
  - id: dup
    role: TOOLS
    workspace: work-tools
""",
    )
    with pytest.raises(ManifestError, match="duplicate id"):
        load_manifest(manifest)


def test_ids_differing_only_in_case_are_refused(tmp_path: Path) -> None:
    manifest = write(
        tmp_path,
        DEFAULTS
        + """\
sessions:
  - id: Alpha
    role: FEATURE
  - id: alpha
    role: FEATURE
    workspace: work-2
""",
    )
    with pytest.raises(ManifestError, match="only in case"):
        load_manifest(manifest)


def test_select_sessions(tmp_path: Path) -> None:
    sessions = load_manifest(
        write(
            tmp_path,
            DEFAULTS
            + """\
sessions:
  - {id: alpha, role: FEATURE, workspace: a}
  - {id: beta, role: VALIDATOR, workspace: b}
""",
        )
    )

    assert select_sessions(sessions, None) == sessions
    assert [s.id for s in select_sessions(sessions, "alpha")] == ["alpha"]
    with pytest.raises(ManifestError, match="gamma"):
        select_sessions(sessions, "gamma")


def test_operator_contact_as_a_mapping_is_kept(tmp_path: Path) -> None:
    session = one_session(
        tmp_path,
        """\
role: FEATURE
operator_contact:
  requires_approval_for: [network, destructive_cmds]
""",
    )
    assert session.operator_contact == {"requires_approval_for": ["network", "destructive_cmds"]}


def test_operator_contact_as_text_is_kept(tmp_path: Path) -> None:
    session = one_session(tmp_path, "role: FEATURE\noperator_contact: ops@example.org")
    assert session.operator_contact == "ops@example.org"


def test_a_numeric_id_is_text(tmp_path: Path) -> None:
    (session,) = load_manifest(
        write(tmp_path, DEFAULTS + "sessions:\n  - id: 7\n    role: FEATURE\n")
    )
    assert session.id == "7"


def test_mounts_as_mappings_and_as_text_resolve_against_the_manifest(tmp_path: Path) -> None:
    session = one_session(
        tmp_path,
        """\
role: FEATURE
mounts:
  - {source: data, target: /data, read_only: true}
  - cache:/home/agent/cache
  - /opt/tools:/opt/tools:ro
""",
    )
    assert [(m.source, m.target, m.read_only) for m in session.mounts] == [
        (tmp_path / "data", "/data", True),
        (tmp_path / "cache", "/home/agent/cache", False),
        (Path("/opt/tools"), "/opt/tools", True),
    ]


@pytest.mark.parametrize(
    "target",
    [
        "/home/agent/.ssh",
        "/home/agent/.ssh/id_rsa",
        "/home/agent/workspace",
        "/home/agent/workspace/src",
        "/home/agent/.codex",
        "/home/agent",
    ],
)
@pytest.mark.parametrize("form", ["mapping", "text"])
def test_mounts_may_not_cover_the_session_s_own_folders(
    tmp_path: Path, target: str, form: str
) -> None:
    mount = f"{{source: data, target: {target}}}" if form == "mapping" else f"data:{target}:ro"
    with pytest.raises(ManifestError, match=rf"field 'mounts\.0.*': target '{target}' would"):
        one_session(tmp_path, f"role: FEATURE\nmounts:\n  - {mount}")


def test_transcript_dir_resolves_against_the_manifest(tmp_path: Path) -> None:
    session = one_session(tmp_path, "role: FEATURE\ntranscript_dir: transcripts/alpha")
    assert session.transcript_dir == tmp_path / "transcripts" / "alpha"


def test_every_problem_of_a_manifest_is_reported_at_once(tmp_path: Path) -> None:
    manifest = write(
        tmp_path,
        DEFAULTS
        + """\
sessions:
  - id: alpha
    role: FEATURE
    imgae: filare-codex
  - id: beta
    role: VALIDATOR
    workspace: b
    resources: {memory: lots}
  - id: gamma
    role: "bad role"
    workspace: c
""",
    )

    with pytest.raises(ManifestError) as error:
        load_manifest(manifest)

    lines = str(error.value).splitlines()
    assert len(lines) == 3
    assert error.value.problems == lines
    assert all(line.startswith(f"{manifest.resolve()}: session '") for line in lines)
    assert "session 'alpha': unknown field 'imgae' (did you mean 'image'?)" in lines[0]
    assert "session 'beta': field 'resources.memory': 'lots' is not a size" in lines[1]
    assert "session 'gamma': field 'role'" in lines[2]


def test_loading_the_runtime_s_manifest_module_imports_no_validation_library(
    tmp_path: Path,
) -> None:
    """`spec` <- `config` <- `manifest`, one way: importing the runtime's loader pulls in neither
    `config` nor pydantic; a load that misses the cache does."""
    manifest = write(tmp_path, DEFAULTS + "sessions:\n  - {id: alpha, role: FEATURE}\n")
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "import orchestrator.manifest as m\n"
        "before = sorted(n for n in ('pydantic', 'orchestrator.config') if n in sys.modules)\n"
        f"sessions = m.load_manifest({str(manifest)!r}, cache_dir=Path({str(tmp_path)!r}) / 'c')\n"
        "after = sorted(n for n in ('pydantic', 'orchestrator.config') if n in sys.modules)\n"
        "print(before, after, [s.role for s in sessions])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=REPOSITORY,
    )
    assert result.stdout.strip() == "[] ['orchestrator.config', 'pydantic'] ['FEATURE']"


def test_spec_imports_neither_config_nor_manifest() -> None:
    tree = ast.parse(SPEC_SOURCE.read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    assert imported.isdisjoint({"orchestrator.config", "orchestrator.manifest"}), imported
