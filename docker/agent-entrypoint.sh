#!/bin/sh
# Entry point of the agent images: gives the container's UID and GID names, then runs the command.
#
# Sessions run as the host's UID:GID, which the image cannot know in advance. ssh refuses to run
# and git misbehaves for a UID with no passwd entry, so one is added at start. /etc/passwd and
# /etc/group are writable for this reason; the images carry no setuid programs, so an entry
# written here grants nothing.
set -eu

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
