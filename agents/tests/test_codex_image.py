"""The real Codex image: built as the docs say, started as a session, and Codex runs in it.

Marked `agent` (a real engine) and `image` (a real build: Debian's mirror, npm and PyPI, a few
minutes the first time). `nox -s agent` leaves these out; `nox -s image` runs only these. With no
engine they fail, never skip: `docker_engine` (conftest) sees to that.

The build follows docs/codex-image.md on a machine with no container registry: `inv codex.base`
(kept when it exists), then `inv codex.build`, which picks that base up by itself when the
default one is absent. Behind a TLS-intercepting proxy the build needs the proxy's CA: the host's
bundle is passed (`$FILARE_CA_BUNDLE` overrides it). The image keeps its tag afterwards, so the
next run builds from Docker's layer cache in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from agent_helpers import CODEX_TEST_IMAGE, docker, inv, remove_ours, sh

from conftest import BuiltCodexImage, explain

pytestmark = [pytest.mark.agent, pytest.mark.image]

IMAGE = CODEX_TEST_IMAGE
CODEX_VERSION = "0.171.0"
SESSION_ID = "image-check"
ROLE = "imagetest"
BRANCH = "agent/image-check"
CODEX_CONFIG = 'model = "image-test"\n'
# Who a session runs as: the caller, or an unprivileged user when the caller is root.
SESSION_USER = f"{os.getuid()}:{os.getgid()}" if os.getuid() else "10001:10001"

# (command, text its output must contain): what an agent needs from the image.
TOOLS = [
    ("codex --version", f"codex-cli {CODEX_VERSION}"),
    ("git --version", "git version "),
    ("ssh -G example.org", "hostname example.org"),
    ("tmux -V", "tmux "),
    ("rg --version", "ripgrep "),
    ("jq --version", "jq-"),
    ("python3 --version", "Python 3."),
    ("uv --version", "uv "),
    ("whoami", ""),
]


def run_as(uid: str, image: str, command: str) -> subprocess.CompletedProcess[str]:
    """`docker run` the image as an arbitrary UID:GID, hardened as sessions are."""
    return sh(
        "docker",
        "run",
        "--rm",
        "--init",
        "--pull",
        "never",
        "--security-opt",
        "no-new-privileges",
        "--user",
        uid,
        image,
        "sh",
        "-c",
        command,
        check=False,
    )


# --- the image itself --------------------------------------------------------------------------


def test_labels_record_codex_version_and_base(codex_image: BuiltCodexImage) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", IMAGE))
    labels = config["Labels"]
    assert labels["org.filare.codex.version"] == CODEX_VERSION
    assert labels["org.opencontainers.image.base.name"] == codex_image.base
    assert config["Entrypoint"] == ["/usr/local/bin/agent-entrypoint"]
    assert config["Cmd"] == ["sleep", "infinity"]


def test_no_program_in_the_image_is_setuid_or_setgid(codex_image: BuiltCodexImage) -> None:
    result = run_as("0:0", IMAGE, "find / -xdev -perm /6000 -type f")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


def test_no_secret_or_proxy_setting_in_the_image(codex_image: BuiltCodexImage) -> None:
    config = json.loads(docker("image", "inspect", "--format", "{{json .Config.Env}}", IMAGE))
    names = {entry.split("=", 1)[0] for entry in config}
    assert not {n for n in names if "TOKEN" in n or "KEY" in n or "SECRET" in n or "PROXY" in n}
    keys = run_as("0:0", IMAGE, "grep -rl 'PRIVATE KEY-----' /etc /home /root /opt || true")
    assert keys.stdout == ""


@pytest.mark.parametrize(("command", "expected"), TOOLS, ids=[c.split()[0] for c, _ in TOOLS])
def test_tools_work_for_an_arbitrary_uid(
    codex_image: BuiltCodexImage, command: str, expected: str
) -> None:
    result = run_as("4242:4242", IMAGE, command)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    assert expected in result.stdout


def test_codex_is_the_native_binary_with_what_its_node_wrapper_would_set(
    codex_image: BuiltCodexImage,
) -> None:
    """`codex` on PATH is Codex's own executable, not npm's Node wrapper, so no Node process
    stands between any caller and Codex; it gets the variables the wrapper sets for an npm
    install, and they name the installed package."""
    script = (
        'codex="$(readlink -f "$(command -v codex)")"; echo "$codex"; '
        'od -An -c -N4 "$codex" | tr -d " "; '
        'echo "$CODEX_MANAGED_BY_NPM"; '
        'jq -r ".name + \\" \\" + .version" "$CODEX_MANAGED_PACKAGE_ROOT/package.json"; '
        'readlink -f "$CODEX_MANAGED_PACKAGE_ROOT/bin/codex.js"'
    )
    result = run_as("4242:4242", IMAGE, script)
    assert result.returncode == 0, result.stderr
    native, magic, managed, package, wrapper = result.stdout.splitlines()
    assert native.startswith("/usr/local/lib/node_modules/@openai/codex/node_modules/@openai/")
    assert native.endswith("-unknown-linux-musl/bin/codex"), native
    assert magic == "177ELF"  # a program, not a script with a #! line
    assert managed == "1"
    assert package == f"@openai/codex {CODEX_VERSION}"
    assert wrapper == "/usr/local/lib/node_modules/@openai/codex/bin/codex.js"


def test_arbitrary_uid_gets_a_name_and_a_writable_home(codex_image: BuiltCodexImage) -> None:
    result = run_as(
        "4242:4242", IMAGE, "id -u; whoami; touch ~/probe ~/workspace/probe ~/.codex/probe; pwd"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["4242", "agent", "/home/agent/workspace"]


# --- a session on the image --------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    container_id: str
    workspace: Path
    state: Path
    manifest: Path


def make_project(root: Path) -> Path:
    """Workspace, key, env file, Codex home and a manifest naming them, all under `root`."""
    workspace = root / "workspace"
    workspace.mkdir()
    (workspace / "README.md").write_text("image test\n")
    sh("git", "-C", str(workspace), "init", "-q", "-b", BRANCH)
    sh("git", "-C", str(workspace), "add", ".")
    git = ["git", "-C", str(workspace), "-c", "user.name=t", "-c", "user.email=t@t"]
    sh(*git, "commit", "-qm", "initial")
    if os.getuid() == 0:
        # A workspace of its own must be the session's; as the start's error message says.
        sh("chown", "-R", SESSION_USER, str(workspace))
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "image-test", "-f", str(root / "key"))
    (root / "session.env").write_text("FILARE_IMAGE_TEST=yes\n")
    (root / "codex-home").mkdir()
    (root / "codex-home" / "config.toml").write_text(CODEX_CONFIG)
    manifest = root / "manifest.yml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "id": SESSION_ID,
                "role": ROLE,
                "branch": BRANCH,
                "workspace": "workspace",
                "env_file": "session.env",
                "ssh_key": "key",
                "codex_dir": "codex-home",
                "image": IMAGE,
            },
            sort_keys=False,
        )
    )
    return manifest


@pytest.fixture(scope="module")
def session(
    codex_image: BuiltCodexImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Session]:
    """One session on the image, started and (at the end, whatever happens) stopped by the tasks."""
    root = tmp_path_factory.mktemp("codex-image-session")
    manifest = make_project(root)
    state = root / "state"
    started = inv("session.start", "--manifest", str(manifest), state=state)
    try:
        assert started.returncode == 0, explain(started)
        listed = inv("session.list", "--json", state=state)
        assert listed.returncode == 0, explain(listed)
        (view,) = [v for v in json.loads(listed.stdout) if v["session"] == SESSION_ID]
        assert view["status"] == "running", view
        yield Session(view["container_id"], root / "workspace", state, manifest)
    finally:
        inv("session.stop", "--session", SESSION_ID, state=state)
        remove_ours(state)


def exec_in(session: Session, command: str) -> subprocess.CompletedProcess[str]:
    """`docker exec` with no --user: it runs as the session does, the forwarded host UID."""
    return sh("docker", "exec", session.container_id, "sh", "-c", command, check=False)


def test_session_runs_as_the_host_uid_never_root(session: Session) -> None:
    result = exec_in(session, "id -u; id -g; echo $HOME; pwd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        *SESSION_USER.split(":"),
        "/home/agent",
        "/home/agent/workspace",
    ]


@pytest.mark.parametrize(("command", "expected"), TOOLS, ids=[c.split()[0] for c, _ in TOOLS])
def test_tools_work_in_the_session(session: Session, command: str, expected: str) -> None:
    result = exec_in(session, command)
    assert result.returncode == 0, f"{command}: {result.stderr}"
    assert expected in result.stdout


def test_ssh_in_the_session_uses_its_key_and_a_writable_known_hosts(session: Session) -> None:
    result = exec_in(session, "ssh -G example.org")
    assert result.returncode == 0, result.stderr
    assert "identityfile /home/agent/.ssh/id_rsa" in result.stdout
    assert "userknownhostsfile /home/agent/.filare/known_hosts" in result.stdout


def test_files_the_session_writes_belong_to_the_session_user(session: Session) -> None:
    result = exec_in(session, "echo from-agent > /home/agent/workspace/agent-note.txt")
    assert result.returncode == 0, result.stderr
    note = session.workspace / "agent-note.txt"
    assert note.read_text() == "from-agent\n"
    assert f"{note.stat().st_uid}:{note.stat().st_gid}" == SESSION_USER


def test_git_works_on_the_workspace(session: Session) -> None:
    result = exec_in(session, "git status --short --branch && git log --format=%s")
    assert result.returncode == 0, result.stderr
    assert f"## {BRANCH}" in result.stdout


def test_codex_home_and_env_file_reach_the_session(session: Session) -> None:
    result = exec_in(session, "cat /home/agent/.codex/config.toml")
    assert result.returncode == 0, result.stderr
    # The user's configuration, then what sessions need: host-only skills disabled.
    assert result.stdout.startswith(CODEX_CONFIG)
    assert 'name = "session-start"\nenabled = false' in result.stdout
    assert exec_in(session, "printenv FILARE_IMAGE_TEST").stdout == "yes\n"


def test_session_stop_removes_the_container(session: Session) -> None:
    """Last on purpose: the tests above use the running session."""
    stopped = inv("session.stop", "--session", SESSION_ID, state=session.state)
    assert stopped.returncode == 0, explain(stopped)
    assert docker("ps", "-aq", "--filter", f"id={session.container_id}") == ""
    state = json.loads((session.state / ROLE / SESSION_ID / "state.json").read_text())
    assert state["status"] == "stopped"
