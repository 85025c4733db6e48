#!/usr/bin/env bash
# Install gVisor's runsc (Debian's package) and register it with the local Docker engine as the
# runtime `runsc`, for sessions with `runtime: runsc`. Run as root.
#
# The engine reloads its runtimes on SIGHUP: no container stops. runsc runs with
# `--network=host`, which means the container's own network namespace as Docker made it (not
# the host's): runsc's default, its own network stack, fails on this kind of machine ("cannot run
# with network enabled in root network namespace"). See docs/egress.md for what that costs.
set -euo pipefail

readonly DAEMON_JSON="${DAEMON_JSON:-/etc/docker/daemon.json}"
readonly DOCKER_PID="${DOCKER_PID:-/var/run/docker.pid}"

if ! command -v runsc >/dev/null; then
  echo "register_runsc: installing runsc"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runsc >/dev/null
fi
runsc_path="$(command -v runsc)"
mkdir -p "$(dirname "$DAEMON_JSON")"
python3 - "$DAEMON_JSON" "$runsc_path" <<'PY'
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
try:
    with open(path) as handle:
        config = json.load(handle)
except FileNotFoundError:
    config = {}
wanted = {"path": runsc, "runtimeArgs": ["--network=host"]}
if config.get("runtimes", {}).get("runsc") != wanted:
    config.setdefault("runtimes", {})["runsc"] = wanted
    temporary = f"{path}.filare-tmp"
    with open(temporary, "w") as handle:
        json.dump(config, handle, indent=2)
        handle.write("\n")
    os.replace(temporary, path)
    print(f"register_runsc: runsc registered in {path}")
PY
if ! docker info --format '{{json .Runtimes}}' | grep -q '"runsc"'; then
  [[ -f "$DOCKER_PID" ]] || { echo "register_runsc: no $DOCKER_PID: reload dockerd by hand" >&2; exit 1; }
  kill -HUP "$(cat "$DOCKER_PID")"
  for _ in $(seq 30); do
    docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' && break
    sleep 0.5
  done
fi
docker info --format '{{json .Runtimes}}' | grep -q '"runsc"' || {
  echo "register_runsc: the engine does not list runsc after the reload" >&2
  exit 1
}
echo "register_runsc: the engine lists runsc"
