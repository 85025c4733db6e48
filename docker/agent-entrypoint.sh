#!/bin/sh
# Entry point of the agent images: gives the container's UID and GID names, loads the session's
# mounted env file if there is one, then runs the command.
#
# Sessions run as the host's UID:GID, which the image cannot know in advance. ssh refuses to run
# and git misbehaves for a UID with no passwd entry, so one is added at start. /etc/passwd and
# /etc/group are writable for this reason; the images carry no setuid programs, so an entry
# written here grants nothing.
#
# With `env_mode: mount` the env file is bound at /run/filare/env instead of being passed with
# --env-file (which `docker inspect` shows). It is read with Docker's rules: KEY=VALUE taken
# literally, leading blanks and '#' comments skipped. Run `docker exec CONTAINER agent-entrypoint
# CMD` to give an exec'd command the same variables.
set -eu

env_file=/run/filare/env
cr="$(printf '\r')"
if [ -r "$env_file" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    line="${line%"$cr"}"
    line="${line#"${line%%[![:space:]]*}"}"
    case "$line" in
      '' | '#'*) continue ;;
      *=*) ;;
      *) continue ;;
    esac
    key="${line%%=*}"
    case "$key" in
      '' | [0-9]* | *[!A-Za-z0-9_]*) echo "agent-entrypoint: skipped variable '$key'" >&2 ;;
      *) export "${line?}" ;;
    esac
  done <"$env_file"
fi

uid="$(id -u)"
gid="$(id -g)"
home="${HOME:-/home/agent}"

if ! grep -q "^[^:]*:[^:]*:${uid}:" /etc/passwd 2>/dev/null && [ -w /etc/passwd ]; then
  name=agent
  grep -q "^${name}:" /etc/passwd && name="agent${uid}"
  printf '%s:x:%s:%s:Codex agent:%s:/bin/sh\n' "$name" "$uid" "$gid" "$home" >>/etc/passwd
fi
if ! grep -q "^[^:]*:[^:]*:${gid}:" /etc/group 2>/dev/null && [ -w /etc/group ]; then
  printf 'agent%s:x:%s:\n' "$gid" "$gid" >>/etc/group
fi

exec "$@"
