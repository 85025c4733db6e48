#!/bin/sh
# Entry point of the agent images: gives the container's UID and GID names, loads the session's
# mounted env file if there is one, then runs the command.
#
# Sessions run as the host's UID:GID, which the image cannot know in advance. ssh refuses to run
# and git misbehaves for a UID with no passwd entry, so one is added at start (and an entry the
# image already has for that UID gets $HOME as its home, where ssh looks). /etc/passwd and
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
# ssh finds ~/.ssh through the passwd entry, not $HOME: an entry the image already has for this
# UID (root's, when the host user is root) is pointed at the session's home.
if [ -w /etc/passwd ] && command -v awk >/dev/null; then
  entry_home="$(awk -F: -v uid="$uid" '$3 == uid { print $6; exit }' /etc/passwd)"
  if [ -n "$entry_home" ] && [ "$entry_home" != "$home" ]; then
    passwd="$(awk -F: -v OFS=: -v uid="$uid" -v home="$home" \
      '$3 == uid && !done { $6 = home; done = 1 } { print }' /etc/passwd)"
    [ -z "$passwd" ] || printf '%s\n' "$passwd" >/etc/passwd
  fi
fi
if ! grep -q "^[^:]*:[^:]*:${gid}:" /etc/group 2>/dev/null && [ -w /etc/group ]; then
  printf 'agent%s:x:%s:\n' "$gid" "$gid" >>/etc/group
fi

exec "$@"
