"""A Docker engine of the tests' own: a second `dockerd` in a network namespace of its own.

Tests that restart an engine, stop one, or need a second one must never do it to the machine's
own engine: every unrelated container without a restart policy would die with it. `OwnEngine`
starts a daemon with its own data root, exec root, socket, pidfile and bridge, inside a network
namespace reached by a veth pair (a second daemon on the first one's network would take that
network down), and removes all of it afterwards.

Entered with `nsenter --net` and a private mount namespace: `ip netns exec` remounts /sys and
hides the cgroup mounts, and dockerd then refuses to start. Needs root, as the engine itself does.

Its containers reach this machine as on the machine's engine: `--add-host
host.docker.internal:host-gateway` names the machine's end of the veth (`--host-gateway-ip`),
not the namespace's own bridge, so a server listening on all of the machine's addresses (the
tests' fake model) answers them. `claimed_engine` gives a test run the first free index of a
range, held by an flock, so two runs on one machine never share an engine.

Usable by hand too, for a developer who wants an engine to try things on:
`python -m filare_testing.engines start 3` prints the `DOCKER_HOST` to export; `stop 3` ends it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from filare_testing.commands import sh

# Indices 1-200 give distinct /30 veth links and bridges; the machine's own engine uses neither.
MAX_INDEX = 200


@dataclass(frozen=True)
class OwnEngine:
    """One test engine, named by a small index so several can run side by side."""

    index: int
    # A resolv.conf the daemon reads instead of the machine's (bind-mounted in its own mount
    # namespace): where its containers' DNS is forwarded to.
    resolv_conf: Path | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.index <= MAX_INDEX:
            raise ValueError(f"engine index must be 1-{MAX_INDEX}, not {self.index}")

    @property
    def name(self) -> str:
        return f"filare-test-{self.index}"

    @property
    def netns(self) -> str:
        return self.name

    @property
    def root(self) -> Path:
        return Path("/run") / self.name

    @property
    def data_root(self) -> Path:
        return Path("/var/lib") / self.name

    @property
    def socket(self) -> Path:
        return self.root / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "docker.pid"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    @property
    def host(self) -> str:
        """The value for `DOCKER_HOST` (or `docker -H`) that reaches this engine."""
        return f"unix://{self.socket}"

    @property
    def host_address(self) -> str:
        """The machine's end of the veth link: how the engine's containers reach this host."""
        return f"10.{77 + self.index // 250}.{self.index % 250}.1"

    @property
    def engine_address(self) -> str:
        return f"10.{77 + self.index // 250}.{self.index % 250}.2"

    @property
    def bridge(self) -> str:
        """The engine's default bridge (`--bip`)."""
        return f"172.30.{self.index}.1/24"

    @property
    def _veth(self) -> tuple[str, str]:
        return f"fte{self.index}a", f"fte{self.index}b"

    def docker(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        return sh("docker", "-H", self.host, *args, check=check, timeout=timeout).stdout.strip()

    def answers(self) -> bool:
        result = sh("docker", "-H", self.host, "info", check=False, timeout=20)
        return result.returncode == 0

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def start(self, timeout: float = 60) -> None:
        """Make the namespace and link (when absent), start the daemon, return once it answers."""
        if self.running_pid() is not None and self.answers():
            return
        self._network_up()
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_root.mkdir(parents=True, exist_ok=True)
        log = self.log.open("ab")
        daemon = [
            "dockerd",
            "--data-root", str(self.data_root),
            "--exec-root", str(self.root / "exec"),
            "--pidfile", str(self.pidfile),
            "-H", self.host,
            "--bip", self.bridge,
            # `--add-host host.docker.internal:host-gateway` then names this machine (the veth's
            # far end), as it does on the machine's engine, not the namespace's own bridge.
            "--host-gateway-ip", self.host_address,
            # Its own containerd namespaces, should it find a containerd the machine's engine uses.
            "--containerd-namespace", self.name,
            "--containerd-plugins-namespace", f"{self.name}-plugins",
            "--default-address-pool", f"base=172.31.{self.index}.0/24,size=28",
        ]  # fmt: skip
        subprocess.Popen(  # the daemon outlives this call; `stop` ends it by its pidfile
            [
                "nsenter",
                f"--net=/run/netns/{self.netns}",
                "unshare",
                "-m",
                "sh",
                "-c",
                'mount --make-rprivate / && { [ -z "$RESOLV" ] || mount --bind "$RESOLV" '
                '/etc/resolv.conf; } && exec "$@"',
                "sh",
                *daemon,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, "RESOLV": str(self.resolv_conf or "")},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"test engine {self.name} did not answer:\n{tail}")
            time.sleep(0.3)

    def stop_daemon(self, timeout: float = 60) -> None:
        """End the daemon (its containers stop with it); the namespace and data root stay."""
        pid = self.running_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.2)

    def restart(self) -> None:
        """What a reboot or a daemon upgrade does to the sessions on this engine."""
        self.stop_daemon()
        self.start()

    def stop(self) -> None:
        """End the daemon and remove everything `start` made."""
        self.stop_daemon()
        # Mounts the daemon left under its roots (it unmounts its own on a clean exit).
        for root in (self.root, self.data_root):
            for line in reversed(Path("/proc/mounts").read_text().splitlines()):
                target = line.split()[1]
                if target == str(root) or target.startswith(f"{root}/"):
                    sh("umount", "-l", target, check=False)
            shutil.rmtree(root, ignore_errors=True)
        sh("ip", "link", "del", self._veth[0], check=False)
        sh("ip", "netns", "del", self.netns, check=False)

    def load_image(self, tag: str) -> None:
        """Copy an image of the machine's engine into this one (no registry here)."""
        with subprocess.Popen(["docker", "save", tag], stdout=subprocess.PIPE) as save:
            load = subprocess.run(
                ["docker", "-H", self.host, "load", "-q"],
                stdin=save.stdout,
                capture_output=True,
                timeout=600,
                check=False,
            )
        if save.returncode != 0 or load.returncode != 0:
            raise RuntimeError(f"copying {tag} into {self.name} failed: {load.stderr.decode()}")

    def _network_up(self) -> None:
        outer, inner = self._veth
        if not Path(f"/run/netns/{self.netns}").exists():
            sh("ip", "netns", "add", self.netns)
        if sh("ip", "link", "show", outer, check=False).returncode != 0:
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", inner, "netns", self.netns)
            sh("ip", "addr", "add", f"{self.host_address}/30", "dev", outer)
            sh("ip", "link", "set", outer, "up")
            inside = ["ip", "netns", "exec", self.netns]
            sh(*inside, "ip", "addr", "add", f"{self.engine_address}/30", "dev", inner)
            sh(*inside, "ip", "link", "set", inner, "up")
            sh(*inside, "ip", "link", "set", "lo", "up")
            sh(*inside, "ip", "route", "add", "default", "via", self.host_address)


@contextlib.contextmanager
def own_engine(index: int, resolv_conf: Path | None = None) -> Iterator[OwnEngine]:
    """A started test engine, removed with everything it made when the block ends."""
    engine = OwnEngine(index, resolv_conf)
    engine.stop()  # what a killed earlier run left behind
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


def _alive(pid: int) -> bool:
    """Whether the process runs; one that has exited is reaped when it is this process's child
    (the daemon started by `start` is: it would stay a zombie, seemingly alive, until then)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# Where a test run claims an engine index, so two runs on one machine never share one.
CLAIMS = Path("/run/lock")


@contextlib.contextmanager
def claimed_engine(indices: Sequence[int], resolv_conf: Path | None = None) -> Iterator[OwnEngine]:
    """A started test engine at the first of `indices` no other process holds, held (by an
    flock) and removed with everything it made when the block ends."""
    CLAIMS.mkdir(parents=True, exist_ok=True)
    for index in indices:
        claim = os.open(CLAIMS / f"filare-test-{index}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(claim, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(claim)
            continue
        try:
            with own_engine(index, resolv_conf) as engine:
                yield engine
            return
        finally:
            os.close(claim)
    raise RuntimeError(f"every test engine index of {list(indices)} is in use")


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in {"start", "stop"} or not argv[1].isdigit():
        print("usage: python -m filare_testing.engines start|stop INDEX", file=sys.stderr)
        return 2
    engine = OwnEngine(int(argv[1]))
    if argv[0] == "start":
        engine.start()
        print(f"export DOCKER_HOST={engine.host}")
    else:
        engine.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
