"""A test engine reached over ssh: an `OwnEngine` with an sshd in its network namespace, named
by a Docker context `ssh://root@<namespace address>`, as a team reaches a build box.

The engine is the tests' own (see `engines.py`); what this adds is the way there. An sshd
(Debian's openssh-server) runs in the engine's network namespace with a config, host key and
authorized key of its own, listening on the namespace's end of the veth; its sessions get
`DOCKER_HOST` set to that engine's socket (sshd's `SetEnv`), so the `docker system dial-stdio`
the docker CLI runs over ssh talks to that engine and no other. The machine's sshd, its
/etc/ssh and its ssh service are never touched (the package's binary is all that is used).

The client side leaves /root/.ssh and /root/.docker alone, as a user with a per-project setup
would: the context lives in a `DOCKER_CONFIG` of its own, and the docker CLI's ssh helper,
which runs whatever `ssh` is first on `PATH` and has no option for a config file of its own
(docker/cli#1301), finds a wrapper there that runs the real ssh with `-F` a config naming the
test key, the pinned host key and nothing else (`-F` also keeps ~/.ssh/config and the
machine's ssh_config out). A process gets all of it from `SshEngine.env`: the caller's
environment plus those two variables, without `DOCKER_HOST`/`DOCKER_CONTEXT`.

Everything lives under /run/filare-ssh-<index> (0700, as sshd's StrictModes wants for the
authorized keys), so a run killed halfway is cleaned up by the next `start` of that index.
By hand: `python -m filare_testing.ssh_engine start 20` prints the variables to export.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from filare_testing.commands import sh
from filare_testing.engines import OwnEngine, claimed_engine, own_engine

SSHD = Path("/usr/sbin/sshd")
# Compiled into Debian's sshd (its privilege separation chroot), made by the ssh service when it
# starts; an empty root-owned folder, made here when absent and left, as that service leaves it.
PRIVSEP = Path("/run/sshd")
SSH_PORT = 22
# What the docker CLI reads to pick an engine: a process on the ssh engine's context must not
# have them sent it elsewhere.
_ENGINE_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT")
INSTALL_HINT = "install Debian's openssh-server (apt-get install openssh-server)"


@dataclass(frozen=True)
class SshEngine:
    """The ssh way to one `OwnEngine`: its sshd, its client files and its Docker context.

    `multiplex` gives the client ssh's connection sharing (ControlMaster/ControlPersist), as
    Docker's documentation advises users of ssh contexts; off, every docker call makes its own
    ssh connection.
    """

    engine: OwnEngine
    multiplex: bool = False

    @property
    def context(self) -> str:
        """The Docker context's name (in `env`'s `DOCKER_CONFIG`, not the machine's)."""
        return f"filare-ssh-{self.engine.index}"

    @property
    def host(self) -> str:
        return f"ssh://root@{self.engine.engine_address}"

    @property
    def root(self) -> Path:
        return Path("/run") / f"filare-ssh-{self.engine.index}"

    @property
    def server(self) -> Path:
        return self.root / "server"

    @property
    def client(self) -> Path:
        return self.root / "client"

    @property
    def sshd_config(self) -> Path:
        return self.server / "sshd_config"

    @property
    def pidfile(self) -> Path:
        return self.server / "sshd.pid"

    @property
    def log(self) -> Path:
        return self.server / "sshd.log"

    @property
    def ssh_config(self) -> Path:
        return self.client / "ssh_config"

    @property
    def docker_config(self) -> Path:
        return self.client / "docker"

    @property
    def bin(self) -> Path:
        """The folder put first on `PATH`: the `ssh` wrapper the docker CLI runs."""
        return self.client / "bin"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a process that uses the context: this one's, plus `DOCKER_CONFIG`
        and the `PATH` with the ssh wrapper, minus what would pick another engine."""
        return environment(self, os.environ)

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        """`docker --context <ssh context> ARGS`, stdout; a failure raises with Docker's stderr."""
        result = subprocess.run(
            ["docker", "--context", self.context, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {args[0]} over {self.host} failed: {result.stderr}")
        return result.stdout.strip()

    def add_context(self, name: str, host: str) -> None:
        """Another context in this `DOCKER_CONFIG` (say, the engine's socket, or a second test
        engine, for a pool mixing them): the machine's own contexts are not seen through `env`.
        Removed with the rest by `stop`."""
        subprocess.run(
            ["docker", "context", "create", name, "--docker", f"host={host}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env=self.env,
        )

    def load_image(self, tag: str) -> None:
        """Copy an image of the machine's engine into this one, through the engine's socket
        (the quick way for a test's setup; the tool's own copying goes over the context)."""
        self.engine.load_image(tag)

    def sshd_pid(self) -> int | None:
        """sshd's listener from its pidfile; None unless that number is a live sshd (the
        pidfile of a run killed halfway may name another program by now)."""
        try:
            pid = int(self.pidfile.read_text().strip())
            program = Path(f"/proc/{pid}/exe").readlink()
        except (OSError, ValueError):
            return None
        return pid if program.name == SSHD.name and _alive(pid) else None

    def netns_inode(self) -> int | None:
        """The engine's network namespace, as `/proc/PID/ns/net` names it (None: gone)."""
        try:
            return Path(f"/run/netns/{self.engine.netns}").stat().st_ino
        except OSError:
            return None

    def processes(self, netns_inode: int | None = None) -> list[int]:
        """Every live process of this way in: sshd's listener and its connections (each an
        sshd in the engine's namespace, `netns_inode`, by default the current one), and ssh
        clients run for the context (the shared master among them), which carry its
        `DOCKER_CONFIG` in their environment. Process titles are no guide: sshd and ssh's
        master rewrite theirs."""
        inode = self.netns_inode() if netns_inode is None else netns_inode
        marker = f"DOCKER_CONFIG={self.docker_config}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                program = (entry / "exe").readlink().name
                if program == SSHD.name:
                    ours = inode is not None and (entry / "ns" / "net").stat().st_ino == inode
                elif program == "ssh":
                    ours = marker in (entry / "environ").read_bytes().split(b"\0")
                else:
                    continue
            except OSError:
                continue
            if ours and _alive(int(entry.name)):
                found.append(int(entry.name))
        return found

    def start(self, timeout: float = 30) -> None:
        """Write the server and client files, start sshd in the engine's namespace, create the
        context; return once `docker --context` answers through it. The engine must run."""
        if not SSHD.is_file():
            raise RuntimeError(f"no {SSHD}: {INSTALL_HINT}")
        self.stop()
        self.root.mkdir(mode=0o700, parents=True)
        self.server.mkdir(mode=0o700)
        self.client.mkdir(mode=0o700)
        self.docker_config.mkdir(mode=0o700)
        (self.server / "docker").mkdir(mode=0o700)
        self.bin.mkdir(mode=0o700)
        host_key = self.server / "ssh_host_ed25519_key"
        client_key = self.client / "id_ed25519"
        for key in (host_key, client_key):
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", self.context, "-f", str(key))
        (self.server / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
        self.sshd_config.write_text(self._server_config(host_key))
        kind, public = host_key.with_suffix(".pub").read_text().split()[:2]
        (self.client / "known_hosts").write_text(f"{self.engine.engine_address} {kind} {public}\n")
        self.ssh_config.write_text(self._client_config(client_key))
        real_ssh = shutil.which("ssh", path=_path_without(self.bin))
        if real_ssh is None:
            raise RuntimeError("no ssh client: install openssh-client")
        wrapper = self.bin / "ssh"
        wrapper.write_text(f'#!/bin/sh\nexec {real_ssh} -F {self.ssh_config} "$@"\n')
        wrapper.chmod(0o700)

        PRIVSEP.mkdir(mode=0o755, exist_ok=True)
        listen = [str(SSHD), "-D", "-f", str(self.sshd_config), "-E", str(self.log)]
        listener = subprocess.Popen(  # outlives this call; `stop` ends it by its pidfile
            ["nsenter", f"--net=/run/netns/{self.engine.netns}", *listen],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_for_banner(listener, timeout)
        self.add_context(self.context, self.host)
        # The engine's data root, over ssh and on its socket (its ID alone may be the machine
        # engine's, from a shared /etc/docker/key.json): should sshd's environment not reach
        # the session, its docker CLI would talk to the machine's engine instead.
        which = "{{.ID}} {{.DockerRootDir}}"
        there = self.docker("info", "--format", which, check=False)
        if not there:
            raise RuntimeError(
                f"the engine does not answer over {self.host}; sshd's log:\n"
                + self.log.read_text(errors="replace")[-2000:]
            )
        if there != self.engine.docker("info", "--format", which):
            raise RuntimeError(f"{self.host} reaches another engine than {self.engine.name}")

    def stop(self, timeout: float = 10) -> None:
        """End the shared connection, sshd and its connections; remove every file `start`
        made. The engine itself stays (its owner stops it)."""
        if self.multiplex and self.ssh_config.is_file():
            sh("ssh", "-F", str(self.ssh_config), "-O", "exit", self.host, check=False, timeout=10)
        listener = self.sshd_pid()
        if listener is not None:
            _end([listener], timeout)
        _end(self.processes(), timeout)
        shutil.rmtree(self.root, ignore_errors=True)

    def _server_config(self, host_key: Path) -> str:
        setenv = f"DOCKER_HOST={self.engine.host} DOCKER_CONFIG={self.server / 'docker'}"
        return "\n".join(
            [
                f"ListenAddress {self.engine.engine_address}:{SSH_PORT}",
                f"HostKey {host_key}",
                f"PidFile {self.pidfile}",
                f"AuthorizedKeysFile {self.server / 'authorized_keys'}",
                "AllowUsers root",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                # The session's docker CLI reaches this engine, with a config of its own.
                f"SetEnv {setenv}",
                "X11Forwarding no",
                "AllowTcpForwarding no",
                "AllowAgentForwarding no",
                # A survey of several engines, or starts in parallel, open many connections at
                # once: sshd's default (10 unauthenticated, then random drops) would refuse some.
                "MaxStartups 200",
                "MaxSessions 200",
                # A connection whose client went (a run killed with its engine's link) ends
                # instead of waiting for a peer that is gone.
                "ClientAliveInterval 15",
                "ClientAliveCountMax 2",
                "LogLevel INFO",
                "",
            ]
        )

    def _client_config(self, key: Path) -> str:
        lines = [
            f"Host {self.engine.engine_address}",
            "  User root",
            f"  IdentityFile {key}",
            "  IdentitiesOnly yes",
            "  IdentityAgent none",
            f"  UserKnownHostsFile {self.client / 'known_hosts'}",
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes",
            "  UpdateHostKeys no",
            "  BatchMode yes",
            "  LogLevel ERROR",
        ]
        if self.multiplex:
            lines += [
                "  ControlMaster auto",
                f"  ControlPath {self.client / 'control-%C'}",
                "  ControlPersist 120",
            ]
        return "\n".join([*lines, ""])

    def _wait_for_banner(self, listener: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if listener.poll() is not None:
                deadline = 0.0  # it has exited: its log says why
            with contextlib.suppress(OSError):
                address = (self.engine.engine_address, SSH_PORT)
                with socket.create_connection(address, timeout=2) as connection:
                    if connection.recv(64).startswith(b"SSH-2.0"):
                        return
            if time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
                raise RuntimeError(f"sshd for {self.engine.name} did not answer:\n{tail}")
            time.sleep(0.1)


def environment(ssh: SshEngine, base: Mapping[str, str]) -> dict[str, str]:
    """`base` as a process on `ssh`'s context needs it (see `SshEngine.env`)."""
    kept = {key: value for key, value in base.items() if key not in _ENGINE_ENV}
    path = base.get("PATH", os.defpath)
    return {**kept, "DOCKER_CONFIG": str(ssh.docker_config), "PATH": f"{ssh.bin}:{path}"}


@contextlib.contextmanager
def ssh_to(engine: OwnEngine, *, multiplex: bool = False) -> Iterator[SshEngine]:
    """The ssh way to a running `engine`, removed (sshd, files, context) when the block ends."""
    ssh = SshEngine(engine, multiplex=multiplex)
    try:
        ssh.start()
        yield ssh
    finally:
        ssh.stop()


@contextlib.contextmanager
def ssh_engine(index: int, *, multiplex: bool = False) -> Iterator[SshEngine]:
    """A started test engine at `index` reached over ssh; all of it gone when the block ends."""
    with own_engine(index) as engine, ssh_to(engine, multiplex=multiplex) as ssh:
        yield ssh


@contextlib.contextmanager
def claimed_ssh_engine(indices: Sequence[int], *, multiplex: bool = False) -> Iterator[SshEngine]:
    """`ssh_engine` at the first of `indices` no other process holds (see `claimed_engine`)."""
    with claimed_engine(indices) as engine, ssh_to(engine, multiplex=multiplex) as ssh:
        yield ssh


def _path_without(folder: Path) -> str:
    return os.pathsep.join(
        part for part in os.environ.get("PATH", os.defpath).split(os.pathsep) if part != str(folder)
    )


def _end(pids: Sequence[int], timeout: float) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"start", "stop"} or not argv[1].isdigit():
        print("usage: python -m filare_testing.ssh_engine start|stop INDEX", file=sys.stderr)
        return 2
    ssh = SshEngine(OwnEngine(int(argv[1])))
    if argv[0] == "start":
        ssh.engine.start()
        ssh.start()
        print(f"export DOCKER_CONFIG={ssh.docker_config} PATH={ssh.bin}:$PATH")
        print(f"# then: docker --context {ssh.context} info")
    else:
        ssh.stop()
        ssh.engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
