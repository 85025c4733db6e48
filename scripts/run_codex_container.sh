#!/usr/bin/env bash
# Run the Codex agent image for one session.
#
# The one place that assembles `docker run` and seeds workspaces: used by hand for an interactive
# shell, and by the orchestrator library (with --detach, --name, --label, --ssh-dir) for sessions
# that stay up until stopped.
#
# An empty workspace is seeded from a git repository with rsync: tracked and untracked-but-not-
# ignored files plus `.git`, never ignored build products (`.venv`, `outputs/`), never a file
# holding a private key, never a path given with --exclude or --secret. The copied repository
# configuration loses what holds credentials (`http.<url>.extraheader`, credential helpers,
# tokens, user info in URLs). A linked worktree
# (`git worktree add`) seeds too: the workspace gets a repository of its own. Seeding fills a
# fresh folder beside the workspace and renames it into place, so a workspace exists only once it
# is whole, and a workspace an agent has written to is never seeded over.
#
# A session's agent can write anything in its workspace, so nothing here runs git in a workspace
# that was handed to an agent, or follows a link found there.
set -euo pipefail

readonly CONTAINER_HOME="/home/agent"
readonly SEED_PREFIX=".filare-seed."
# The UID:GID sessions run as when this script runs as root: sessions never run as root.
readonly UNPRIVILEGED_USER="10001:10001"

usage() {
  cat <<'EOF'
Usage: run_codex_container.sh --workspace DIR --env-file FILE --ssh-key FILE [options] [-- CMD...]

Required:
  --workspace DIR      host folder bound at /home/agent/workspace (seeded when empty)
  --env-file FILE      passed to docker run --env-file (see --env-mount)
  --ssh-key FILE       private key, copied to /home/agent/.ssh/id_rsa (read-only mount)

Options:
  --image IMAGE        image to run (default: filare-codex)
  --name NAME          container name
  --label KEY=VALUE    container label (repeatable)
  --user UID:GID       user the container runs as (default: yours, or 10001:10001 for root;
                       never 0); what this script creates for the session is owned by it
  --detach             run in the background with a long-lived init-wrapped command (the
                       image's filare-agentd when it has one, else sleep infinity);
                       prints only the container id on stdout (needs --ssh-dir)
  --ssh-dir DIR        caller-owned folder to fill with the key (kept after exit)
  --known-hosts FILE   pin SSH host keys: only the hosts in FILE are trusted
  --codex-dir DIR      Codex home bound at /home/agent/.codex (default: ~/.codex)
  --agent-dir DIR      the session's writable folder, bound at /home/agent/.filare (learnt
                       host keys, questions to its operator)
  --transcript-dir DIR bound at /home/agent/.filare/transcript (turn transcripts)
  --inbox-dir DIR      bound read-only at /run/filare/inbox (messages of the session's turns)
  --mount SRC:DST[:ro] extra bind mount (repeatable)
  --network NAME       network to join (created by the caller)
  --context NAME       the Docker context of the engine to run on (`docker --context NAME`;
                       DOCKER_HOST and DOCKER_CONTEXT are then ignored); default: the current one
  --pids-limit N       docker run --pids-limit
  --log-max-size SIZE  rotate the container's log (json-file) at SIZE (e.g. 10m)
  --log-max-files N    keep at most N rotated log files (with --log-max-size)
  --egress-proxy URL   the session's only way out (http://NAME:PORT on its --network): the
                       proxy variables name it, ssh goes through it, and the host's
                       host.docker.internal entry is left out
  --runtime NAME       docker run --runtime (runsc: gVisor)
  --health-interval S  how often the image's health check runs (seconds; default: the image's)
  --seed-from DIR      repository to seed an empty workspace from (default: the current one)
  --no-seed            refuse an empty workspace instead of seeding it
  --exclude PATH       never seed PATH (repeatable; e.g. other sessions' workspaces)
  --secret PATH        never seed PATH, and warn when git does not ignore it (repeatable)
  --branch NAME        branch the workspace must be on (checked out, created when missing)
  --seed-record FILE   when this run seeds the workspace, write there the commit it was
                       seeded at and the source's ref it came from ("SHA REF"), for the
                       orchestrator to record: the base its work is compared with later
  --cpus N             docker run --cpus
  --memory SIZE        docker run --memory
  --env-mount          bind the env file read-only at /run/filare/env instead, for the
                       entry point to load: `docker inspect` then shows no values
  --dry-run            print the docker command line (one line, shell-quoted) and run nothing
  --seed-only          seed (or check) the workspace, then exit without running docker
  -h, --help           show this help
EOF
}

die() {
  printf 'run_codex_container.sh: %s\n' "$*" >&2
  exit 2
}

warn() {
  printf 'run_codex_container.sh: warning: %s\n' "$*" >&2
}

# One argument as a shell word, in REPLY: as it is when it holds only characters no shell treats
# specially, else in single quotes (a quote inside becomes '\''). A line of these splits back into
# the exact argv (`shlex.split`, `sh -c`), and a label like filare.tags=a,b reads as it is set.
shell_word() {
  local safe='^[A-Za-z0-9_./:=@%+,-]+$' quote="'" escaped="'\\''"
  if [[ $1 =~ $safe ]]; then
    REPLY=$1
  else
    REPLY="'${1//$quote/$escaped}'"
  fi
}

image="filare-codex"
name=""
workspace=""
env_file=""
ssh_key=""
ssh_dir=""
known_hosts=""
codex_dir="${HOME}/.codex"
agent_dir=""
transcript_dir=""
inbox_dir=""
network=""
context=""
pids_limit=""
log_max_size=""
log_max_files=""
egress_proxy=""
runtime=""
health_interval=""
user=""
seed_from=""
no_seed=0
branch=""
seed_record=""
cpus=""
memory=""
detach=0
dry_run=0
seed_only=0
env_mount=0
labels=()
mounts=()
# Temporary files and folders this run made, removed however it ends.
temporary=()
trap 'rm -rf ${temporary[@]+"${temporary[@]}"}' EXIT
excludes=()
secrets=()

while (($# > 0)); do
  case "$1" in
    --detach) detach=1; shift; continue ;;
    --dry-run) dry_run=1; shift; continue ;;
    --seed-only) seed_only=1; shift; continue ;;
    --env-mount) env_mount=1; shift; continue ;;
    --no-seed) no_seed=1; shift; continue ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    --log-max-size | --log-max-files | --egress-proxy | --runtime)
      (($# >= 2)) || die "$1 needs a value"
      ;;
    --image | --name | --workspace | --env-file | --ssh-key | --ssh-dir | --codex-dir | \
      --seed-from | --branch | --cpus | --memory | --label | --user | --agent-dir | \
      --transcript-dir | --inbox-dir | --network | --pids-limit | --mount | --exclude | \
      --secret | --known-hosts | --health-interval | --context | --seed-record)
      (($# >= 2)) || die "$1 needs a value"
      ;;
    *) die "unknown option: $1 (see --help)" ;;
  esac
  case "$1" in
    --image) image="$2" ;;
    --name) name="$2" ;;
    --workspace) workspace="$2" ;;
    --env-file) env_file="$2" ;;
    --ssh-key) ssh_key="$2" ;;
    --ssh-dir) ssh_dir="$2" ;;
    --known-hosts) known_hosts="$2" ;;
    --codex-dir) codex_dir="$2" ;;
    --agent-dir) agent_dir="$2" ;;
    --transcript-dir) transcript_dir="$2" ;;
    --inbox-dir) inbox_dir="$2" ;;
    --network) network="$2" ;;
    --context) context="$2" ;;
    --pids-limit) pids_limit="$2" ;;
    --log-max-size) log_max_size="$2" ;;
    --log-max-files) log_max_files="$2" ;;
    --egress-proxy) egress_proxy="$2" ;;
    --runtime) runtime="$2" ;;
    --health-interval) health_interval="$2" ;;
    --user) user="$2" ;;
    --seed-from) seed_from="$2" ;;
    --branch) branch="$2" ;;
    --seed-record) seed_record="$2" ;;
    --cpus) cpus="$2" ;;
    --memory) memory="$2" ;;
    --exclude) excludes+=("$2") ;;
    --secret) secrets+=("$2") ;;
    --label)
      [[ "$2" == ?*=* ]] || die "--label expects KEY=VALUE"
      labels+=("$2")
      ;;
    --mount)
      [[ "$2" =~ ^[^:]+:/[^:]*(:ro)?$ ]] || die "--mount expects SOURCE:/TARGET or SOURCE:/TARGET:ro"
      mounts+=("$2")
      ;;
  esac
  shift 2
done

[[ -n "$workspace" ]] || die "--workspace is required"
# An image reference, never an option that docker would read (`--image -v/:/host`).
[[ "$image" =~ ^[a-z0-9][a-z0-9._/:@-]*$ ]] || die "--image: '$image' is not an image reference"
[[ -z "$pids_limit" || "$pids_limit" =~ ^[1-9][0-9]*$ ]] || die "--pids-limit expects a number"
# A context name, never an option docker would read.
[[ -z "$context" || "$context" =~ ^[A-Za-z0-9][A-Za-z0-9_.+-]*$ ]] ||
  die "--context: '$context' is not a Docker context name"
docker_cli=(docker)
if [[ -n "$context" ]]; then
  # The named engine and no other: what the caller's shell exports does not redirect the run.
  unset DOCKER_HOST DOCKER_CONTEXT
  docker_cli+=(--context "$context")
fi
[[ -z "$log_max_size" || "$log_max_size" =~ ^[1-9][0-9]*[kmg]?$ ]] ||
  die "--log-max-size expects a size (a number with an optional k, m or g)"
[[ -z "$log_max_files" || "$log_max_files" =~ ^[1-9][0-9]*$ ]] || die "--log-max-files expects a number"
[[ -z "$egress_proxy" || "$egress_proxy" =~ ^http://[A-Za-z0-9.-]+:[0-9]+$ ]] ||
  die "--egress-proxy expects http://NAME:PORT"
[[ -z "$runtime" || "$runtime" =~ ^[A-Za-z0-9._-]+$ ]] || die "--runtime expects a runtime's name"
[[ -z "$health_interval" || "$health_interval" =~ ^[1-9][0-9]*$ ]] ||
  die "--health-interval expects a number of seconds"
if [[ -z "$user" ]]; then
  user="${EUID}:$(id -g)"
  ((EUID != 0)) || user="$UNPRIVILEGED_USER"
fi
[[ "$user" =~ ^[0-9]+:[0-9]+$ ]] || die "--user expects UID:GID"
[[ "$user" != 0:* && "$user" != *:0 ]] || die "--user: sessions never run as UID or GID 0"
if ((seed_only == 0)); then
  [[ -n "$env_file" ]] || die "--env-file is required"
  [[ -n "$ssh_key" ]] || die "--ssh-key is required"
  [[ -f "$env_file" && -r "$env_file" ]] || die "env file not found or unreadable: $env_file"
  [[ -f "$ssh_key" && -r "$ssh_key" ]] || die "ssh key not found or unreadable: $ssh_key"
fi
((detach == 0)) || [[ -n "$ssh_dir" ]] || die "--detach needs --ssh-dir (a folder that outlives this script)"

absolute() {
  # Make the variable named $1 hold an absolute path (of a file or folder that may not exist
  # yet, nor its parent). In place, without a subshell: a start runs this for nine paths.
  [[ -z "${!1}" || "${!1}" == /* ]] || printf -v "$1" '%s' "$PWD/${!1}"
}

for var in workspace env_file codex_dir ssh_dir agent_dir transcript_dir inbox_dir known_hosts \
  seed_record; do
  absolute "$var"
done

# What this script makes for the session belongs to the session's user. Only root can give it
# away; anyone else runs sessions as themselves, so owns it already.
give_to_session() {
  # give_to_session [-R] PATH; links are changed themselves, never followed.
  ((EUID == 0)) || return 0
  local path="${*: -1}" options=("${@:1:$#-1}")
  chown -h -P ${options[@]+"${options[@]}"} "$user" "$path" ||
    die "cannot give $path to the session's user $user"
}

safe_git() {
  # git in a workspace this script is seeding: no hook, filesystem monitor or ssh command of the
  # copied configuration runs, and the copy's owner (the session's user) is trusted.
  local dir="$1"
  shift
  git -c core.hooksPath=/dev/null -c core.fsmonitor=false -c core.sshCommand=false \
    -c safe.directory="$dir" -C "$dir" "$@"
}

workspace_has_content() {
  [[ -d "$workspace" ]] || return 1
  local entries
  entries=("$workspace"/* "$workspace"/.[!.]* "$workspace"/..?*)
  [[ -e "${entries[0]}" || -L "${entries[0]}" || -e "${entries[1]}" || -L "${entries[1]}" ||
    -e "${entries[2]}" || -L "${entries[2]}" ]]
}

rsync_rule() {
  # An anchored rsync rule matching one path literally. rsync reads a backslash as an escape only
  # in patterns that hold a wildcard, so only those are escaped, backslashes included.
  local path="$1" tail="${2:-}"
  if [[ "$path" == *[\[*?]* ]]; then
    path="${path//\\/\\\\}"
    path="${path//\[/\\[}"
    path="${path//\*/\\*}"
    path="${path//\?/\\?}"
  fi
  printf '/%s%s\0' "$path" "$tail"
}

relative_inside() {
  # The path of $2 relative to folder $1 when it lies inside it (links resolved); fails otherwise.
  local rel
  rel="$(realpath -m --relative-to="$1" "$2")"
  [[ "$rel" != ".." && "$rel" != ../* && "$rel" != "." ]] || return 1
  printf '%s\n' "$rel"
}

seed_workspace() {
  local src="$seed_from"
  ((no_seed == 0)) || die "workspace $workspace is empty and there is no repository to seed it from (set 'seed_from')"
  if [[ -z "$src" ]]; then
    src="$(git rev-parse --show-toplevel 2>/dev/null)" ||
      die "workspace $workspace is empty and there is no repository to seed it from (use --seed-from)"
  fi
  local linked=0
  if [[ -f "$src/.git" || -L "$src/.git" ]]; then
    linked=1
    # Submodules of a linked worktree live in its own folder, and their `.git` files point there.
    local own common
    own="$(git -C "$src" rev-parse --path-format=absolute --git-dir)" ||
      die "cannot seed from $src: git cannot read its repository"
    common="$(git -C "$src" rev-parse --path-format=absolute --git-common-dir)"
    [[ "$own" == "$common" || ! -d "$own/modules" ]] ||
      die "cannot seed from $src: a linked worktree with submodules; seed from the main worktree"
  elif [[ ! -d "$src/.git" ]]; then
    die "cannot seed from $src: it is not the top folder of a git repository"
  fi
  src="$(cd "$src" && pwd -P)"
  local parent
  parent="$(dirname "$workspace")"
  mkdir -p "$parent"
  seeding="$(mktemp -d "$parent/${SEED_PREFIX}XXXXXX")"
  local rules
  rules="$(mktemp)"
  temporary+=("$seeding" "$rules")
  # Copy what git sees in one recursive rsync, as fast as a plain copy: everything except what
  # git ignores (untracked ignored files, whole ignored folders), nested repositories (other
  # sessions' workspaces, vendored clones; listed by git as "dir/"), every other seeding in
  # progress, the given paths, and files holding a private key.
  local path rel
  {
    git -C "$src" ls-files -z --others --ignored --exclude-standard --directory |
      while IFS= read -r -d '' path; do rsync_rule "$path"; done
    git -C "$src" ls-files -z --others --exclude-standard | { grep -z '/$' || true; } |
      while IFS= read -r -d '' path; do rsync_rule "$path"; done
    printf '%s*/\0' "$SEED_PREFIX"
    for path in "$workspace" ${excludes[@]+"${excludes[@]}"} ${secrets[@]+"${secrets[@]}"}; do
      if rel="$(relative_inside "$src" "$path")"; then rsync_rule "$rel"; fi
    done
    git -C "$src" grep -z -l -I -E --untracked \
      -e '^-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----' -e '^PuTTY-User-Key-File-[0-9]+:' | {
      while IFS= read -r -d '' path; do
        warn "not seeding $path: it holds a private key"
        rsync_rule "$path"
      done
    } || true
    ((linked == 0)) || printf '/.git\0'
  } >"$rules"
  for path in ${secrets[@]+"${secrets[@]}"}; do
    if rel="$(relative_inside "$src" "$path")" && ! git -C "$src" check-ignore -q -- "$rel"; then
      warn "not seeding $rel: a session's secret (env file, key or Codex folder), and git does not ignore it (add it to .gitignore)"
    fi
  done
  rsync -a --from0 --exclude-from="$rules" "$src/" "$seeding/"
  rm -f "$rules"  # `exec docker run` below would skip the EXIT trap
  ((linked == 0)) || copy_linked_repository "$src"
  drop_credentials
  # The session's base: the commit it starts from and the source's ref that held it, read from
  # the fresh copy before any agent has touched it.
  local start_ref=""
  if [[ -n "$branch" ]] && safe_git "$seeding" rev-parse --quiet --verify "refs/heads/$branch" >/dev/null; then
    start_ref="refs/heads/$branch"
  else
    start_ref="$(safe_git "$seeding" symbolic-ref --quiet HEAD || true)"
  fi
  [[ -z "$branch" ]] || switch_branch
  local base
  base="$(safe_git "$seeding" rev-parse --quiet --verify 'HEAD^{commit}' || true)"
  give_to_session -R "$seeding"
  if [[ -d "$workspace" ]]; then
    rmdir "$workspace" || die "workspace $workspace stopped being empty while it was seeded"
  fi
  mv -T "$seeding" "$workspace"
  if [[ -n "$seed_record" && -n "$base" ]]; then
    printf '%s %s\n' "$base" "${start_ref:--}" >"$seed_record.tmp" && mv -f "$seed_record.tmp" "$seed_record"
  fi
}

without_filters() {
  # Run "$@" in the copy with every attribute that converts file contents switched off: a branch
  # an agent's work was accepted into carries the agent's .gitattributes, and checking it out
  # here must not run any filter (or re-encode any file) that those attributes name. The
  # repository's own info/attributes outranks every .gitattributes and is put back afterwards.
  local attributes="$seeding/.git/info/attributes" saved="" status=0
  mkdir -p "$seeding/.git/info"
  if [[ -e "$attributes" ]]; then
    saved="$(mktemp)"
    temporary+=("$saved")
    cp -p "$attributes" "$saved"
  fi
  printf '%s\n' '* -filter -text -eol -ident -working-tree-encoding' >"$attributes"
  "$@" || status=$?
  if [[ -n "$saved" ]]; then
    cp -p "$saved" "$attributes"
  else
    rm -f "$attributes"
  fi
  return "$status"
}

# Keys of a repository configuration that hold credentials: dropped from a seeded copy.
readonly CREDENTIAL_KEY='^(credential\..*|http\..*extraheader|.*(token|password|passwd|secret|smtppass|oauth)[^.]*)$'
# `scheme://userinfo@`: user info in a URL (a token, often), dropped from a seeded copy; only
# a bare user name of an SSH URL (`ssh://git@host/…`) stays, since it holds no secret.
readonly URL_USERINFO='^([A-Za-z][A-Za-z0-9+.-]*)://([^/@]*)@'

url_without_credentials() {
  # The URL $1 without its user info, in REPLY; fails when it has none to drop.
  [[ "$1" =~ $URL_USERINFO ]] || return 1
  local scheme="${BASH_REMATCH[1]}" userinfo="${BASH_REMATCH[2]}" rest="${1:${#BASH_REMATCH[0]}}"
  case "${scheme,,}" in
    ssh | git+ssh | ssh+git) [[ "$userinfo" == *:* ]] || return 1 ;;
  esac
  REPLY="${scheme}://${rest}"
}

drop_credentials() {
  # The seeded repository's configuration files (its own, its worktree's, its submodules') keep
  # no credential: keys that hold one are removed, as are sections whose name holds user info
  # (`url.<base>` with a token in its base), and user info in URL values. Values are never
  # printed.
  local config entry key i changed=0
  while IFS= read -r -d '' config; do
    local keys=() values=() sections=() rewrite=()
    while IFS= read -r -d '' entry; do
      keys+=("${entry%%$'\n'*}")
      if [[ "$entry" == *$'\n'* ]]; then values+=("${entry#*$'\n'}"); else values+=(""); fi
    done < <(git config --file "$config" --no-includes --null --list 2>/dev/null || true)
    for ((i = 0; i < ${#keys[@]}; i++)); do
      key="${keys[i]}"
      if [[ "$key" == *.*.* && "${key%.*}" =~ ://[^/]*@ ]]; then
        sections+=("${key%.*}")
      elif [[ "${key,,}" =~ $CREDENTIAL_KEY ]]; then
        git config --file "$config" --unset-all "$key" 2>/dev/null || true
        changed=1
      elif url_without_credentials "${values[i]}"; then
        rewrite+=("$key")
      fi
    done
    # A key with a URL to clean gets all its values back, in their order, without user info.
    for key in ${rewrite[@]+"${rewrite[@]}"}; do
      git config --file "$config" --unset-all "$key" 2>/dev/null || true
    done
    for ((i = 0; i < ${#keys[@]}; i++)); do
      key="${keys[i]}"
      for entry in ${rewrite[@]+"${rewrite[@]}"}; do
        [[ "$entry" == "$key" ]] || continue
        REPLY="${values[i]}"
        url_without_credentials "${values[i]}" || true
        git config --file "$config" --add "$key" "$REPLY"
        changed=1
        break
      done
    done
    for key in ${sections[@]+"${sections[@]}"}; do
      git config --file "$config" --remove-section "$key" 2>/dev/null || true
      changed=1
    done
  done < <(find "$seeding/.git" \( -path "$seeding/.git/config" -o -path "$seeding/.git/config.worktree" \
    -o -path "$seeding/.git/modules/*/config" -o -path "$seeding/.git/modules/*/config.worktree" \) \
    -type f -print0 2>/dev/null)
  ((changed == 0)) ||
    warn "not seeding credentials from the repository configuration (extraheader, credential helpers, tokens, user info in URLs); the workspace's copy has none"
}

copy_linked_repository() {
  # A linked worktree's `.git` (a file, or a link to a folder) names its own folder inside the
  # main repository. The workspace gets a repository of its own: the shared part of the main
  # one (objects, refs, config, hooks) without the main worktree's own state (HEAD, index,
  # merge or rebase in progress, sparse checkout, worktree config) or the list of worktrees,
  # then this worktree's own state over it. It is not bare, even when the main one is.
  local common own
  common="$(git -C "$1" rev-parse --path-format=absolute --git-common-dir)"
  own="$(git -C "$1" rev-parse --path-format=absolute --git-dir)"
  rsync -a --exclude=/worktrees/ --exclude=/modules/ --exclude=/HEAD --exclude=/index \
    --exclude='/*_HEAD' --exclude='/MERGE_*' --exclude=/AUTO_MERGE --exclude='/BISECT_*' \
    --exclude=/rebase-merge/ --exclude=/rebase-apply/ --exclude=/sequencer/ \
    --exclude=/logs/HEAD --exclude=/config.worktree --exclude=/info/sparse-checkout \
    --exclude=/refs/bisect/ --exclude=/refs/worktree/ --exclude=/refs/rewritten/ \
    "$common/" "$seeding/.git/"
  rsync -a --exclude=/commondir --exclude=/gitdir --exclude=/locked --exclude=/worktrees/ \
    "$own/" "$seeding/.git/"
  safe_git "$seeding" config core.bare false
  safe_git "$seeding" config --unset-all core.worktree || true
}

switch_branch() {
  # Point the fresh copy at the session's branch. A branch that is new, or that names the commit
  # already checked out, only moves HEAD: `git checkout` would re-read every copied file (their
  # stat data changed in the copy) for nothing. Another commit needs a real checkout.
  local target head
  target="$(safe_git "$seeding" rev-parse --quiet --verify "refs/heads/$branch^{commit}" || true)"
  head="$(safe_git "$seeding" rev-parse --quiet --verify "HEAD^{commit}" || true)"
  if [[ -n "$target" && "$target" != "$head" ]]; then
    without_filters safe_git "$seeding" checkout --quiet "$branch" ||
      die "cannot check out branch $branch in $workspace"
  elif [[ -n "$head" ]]; then
    [[ -n "$target" ]] || safe_git "$seeding" branch "$branch" ||
      die "cannot create branch $branch in $workspace"
    safe_git "$seeding" symbolic-ref HEAD "refs/heads/$branch"
  else
    safe_git "$seeding" checkout --quiet -b "$branch" ||
      die "cannot create branch $branch in $workspace"
  fi
}

check_branch() {
  # The workspace has been an agent's: its HEAD is read as plain bytes, never through a link,
  # and git is not run there.
  [[ -n "$branch" ]] || return 0
  local git_dir="$workspace/.git" head=""
  if [[ -L "$git_dir" || ! -d "$git_dir" ]]; then
    warn "workspace $workspace is not a git repository (no .git folder): branch '$branch' is not checked"
    return 0
  fi
  [[ -f "$git_dir/HEAD" && ! -L "$git_dir/HEAD" ]] ||
    die "workspace $workspace has no readable .git/HEAD; expected branch '$branch'"
  head="$(dd if="$git_dir/HEAD" iflag=nofollow bs=256 count=1 status=none)" ||
    die "workspace $workspace has no readable .git/HEAD; expected branch '$branch'"
  head="${head%%$'\n'*}"
  local actual="(detached)"
  [[ "$head" != "ref: refs/heads/"* ]] || actual="${head#ref: refs/heads/}"
  [[ "$actual" =~ ^[A-Za-z0-9._/@+-]{1,200}$ ]] || actual="(unreadable)"
  [[ "$actual" == "$branch" ]] ||
    die "workspace $workspace is on branch '$actual', expected '$branch'"
}

check_owner() {
  # A session that cannot write its workspace is of no use; say so before starting it.
  ((EUID == 0)) || return 0
  local owner
  owner="$(stat -c %u "$workspace")"
  [[ "$owner" == "${user%%:*}" ]] ||
    die "workspace $workspace belongs to UID $owner but the session runs as $user: chown -R $user $workspace, or set 'user' in the manifest"
}

write_proxy_connect() {
  # ssh's way through the egress proxy: CONNECT host:port, then bytes both ways.
  cat >"$1" <<'PY'
import os, socket, sys, threading
proxy_host, proxy_port, host, port = sys.argv[1:5]
proxy = socket.create_connection((proxy_host, int(proxy_port)))
proxy.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
head = b""
while b"\r\n\r\n" not in head:
    byte = proxy.recv(1)
    if not byte:
        sys.exit("egress proxy closed the connection")
    head += byte
if head.split(b" ", 2)[1:2] != [b"200"]:
    sys.exit("egress proxy: " + head.decode("latin-1").splitlines()[0])
def up():
    while data := os.read(0, 65536):
        proxy.sendall(data)
    proxy.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := proxy.recv(65536):
    os.write(1, data)
PY
  chmod 0644 "$1"
}

fill_ssh_dir() {
  local dir="$1" hosts
  install -d -m 0700 "$dir"
  install -m 0600 "$ssh_key" "$dir/id_rsa"
  if [[ -n "$known_hosts" ]]; then
    install -m 0644 "$known_hosts" "$dir/known_hosts"
    hosts=("  UserKnownHostsFile ${CONTAINER_HOME}/.ssh/known_hosts" "  StrictHostKeyChecking yes")
  elif [[ -n "$agent_dir" ]]; then
    # Learnt host keys are kept in the session's own folder, so a restart remembers them.
    hosts=("  UserKnownHostsFile ${CONTAINER_HOME}/.filare/known_hosts"
      "  StrictHostKeyChecking accept-new")
  else
    hosts=("  UserKnownHostsFile /tmp/.ssh_known_hosts" "  StrictHostKeyChecking accept-new")
  fi
  if [[ -n "$egress_proxy" ]]; then
    write_proxy_connect "$dir/proxy-connect"
    local address="${egress_proxy#http://}"
    hosts+=("  ProxyCommand python3 ${CONTAINER_HOME}/.ssh/proxy-connect ${address%:*} ${address##*:} %h %p")
  fi
  (
    umask 077
    printf '%s\n' "Host *" "  IdentityFile ${CONTAINER_HOME}/.ssh/id_rsa" "${hosts[@]}" \
      >"$dir/config"
  )
  give_to_session -R "$dir"
}

docker_args=(
  --init
  --pull never
  --user "$user"
  --env "HOME=${CONTAINER_HOME}"
  --workdir "${CONTAINER_HOME}/workspace"
  --security-opt no-new-privileges
  --cap-drop ALL
  --volume "${workspace}:${CONTAINER_HOME}/workspace"
  --volume "${codex_dir}:${CONTAINER_HOME}/.codex"
)
[[ -z "$agent_dir" ]] || docker_args+=(--volume "${agent_dir}:${CONTAINER_HOME}/.filare")
[[ -z "$transcript_dir" ]] ||
  docker_args+=(--volume "${transcript_dir}:${CONTAINER_HOME}/.filare/transcript")
[[ -z "$inbox_dir" ]] || docker_args+=(--volume "${inbox_dir}:/run/filare/inbox:ro")
if ((env_mount)); then
  docker_args+=(--volume "${env_file}:/run/filare/env:ro")
else
  docker_args+=(--env-file "$env_file")
fi
for mount in ${mounts[@]+"${mounts[@]}"}; do
  docker_args+=(--volume "$mount")
done
[[ -z "$name" ]] || docker_args+=(--name "$name")
[[ -z "$network" ]] || docker_args+=(--network "$network")
if [[ -n "$egress_proxy" ]]; then
  for variable in HTTPS_PROXY HTTP_PROXY ALL_PROXY https_proxy http_proxy all_proxy; do
    docker_args+=(--env "$variable=$egress_proxy")
  done
  docker_args+=(--env "NO_PROXY=localhost,127.0.0.1,::1" --env "no_proxy=localhost,127.0.0.1,::1"
    --env NODE_USE_ENV_PROXY=1)
  # The proxy resolves names; the session resolves only the proxy's (Docker's embedded DNS
  # answers that). Other names would be forwarded to the host's resolvers, from the host's
  # network namespace when they are on its loopback (CVE-2024-29018, Docker before 26): a way
  # out through DNS. An upstream given with --dns is asked from the container's namespace,
  # which has no route: this one (TEST-NET-1, RFC 5737) answers nothing from anywhere.
  docker_args+=(--dns 192.0.2.53)
elif [[ "$network" != "none" ]]; then
  docker_args+=(--add-host host.docker.internal:host-gateway)
fi
[[ -z "$runtime" ]] || docker_args+=(--runtime "$runtime")
[[ -z "$pids_limit" ]] || docker_args+=(--pids-limit "$pids_limit")
if [[ -n "$log_max_size" ]]; then
  # json-file whatever the engine's default driver: it rotates and `docker logs` reads it.
  docker_args+=(--log-driver json-file --log-opt "max-size=$log_max_size")
  [[ -z "$log_max_files" ]] || docker_args+=(--log-opt "max-file=$log_max_files")
fi
[[ -z "$health_interval" ]] ||
  docker_args+=(--health-interval "${health_interval}s" --health-start-period "${health_interval}s")
[[ -z "$cpus" ]] || docker_args+=(--cpus "$cpus")
[[ -z "$memory" ]] || docker_args+=(--memory "$memory")
for label in ${labels[@]+"${labels[@]}"}; do
  docker_args+=(--label "$label")
done

if ((detach)); then
  run_mode=(--detach)
  # The session's agent daemon when the image has it (it takes the session's turns), else a
  # command that only keeps the container up. The image's entry point wraps either one.
  command=(sh -c 'if command -v filare-agentd >/dev/null 2>&1; then exec filare-agentd; fi; exec sleep infinity')
else
  run_mode=(--rm --interactive)
  [[ ! -t 0 ]] || run_mode+=(--tty)
  command=("$@")
fi

if [[ -z "$ssh_dir" ]] && ((dry_run == 0 && seed_only == 0)); then
  ssh_dir="$(mktemp -d)"
  temporary+=("$ssh_dir")
fi
argv=("${docker_cli[@]}" run "${run_mode[@]}" "${docker_args[@]}"
  --volume "${ssh_dir:-/tmp/ssh-folder}:${CONTAINER_HOME}/.ssh:ro" "$image" ${command[@]+"${command[@]}"})

if ((dry_run)); then
  line=()
  for word in "${argv[@]}"; do
    shell_word "$word"
    line+=("$REPLY")
  done
  printf '%s\n' "${line[*]}"
  exit 0
fi

if workspace_has_content; then
  check_branch
else
  command -v rsync >/dev/null || die "rsync not found: it is needed to seed $workspace"
  seed_workspace
fi
((seed_only == 0)) || exit 0
check_owner
command -v docker >/dev/null || die "docker not found: install a Docker engine"
# The caller prepares a session's folders; by hand, missing ones are made for the session.
for dir in "$codex_dir" "$agent_dir" "$transcript_dir"; do
  [[ -z "$dir" || -d "$dir" ]] || { mkdir -p "$dir" && give_to_session "$dir"; }
done
# The inbox is the host's, readable by the session's user (the caller makes it so).
[[ -z "$inbox_dir" || -d "$inbox_dir" ]] || install -d -m 0755 "$inbox_dir"
fill_ssh_dir "$ssh_dir"

if ((detach)); then
  exec "${argv[@]}"
fi
"${argv[@]}"
