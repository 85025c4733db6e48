#!/usr/bin/env bash
# Run the Codex agent image for one session.
#
# The one place that assembles `docker run` and seeds workspaces: used by hand for an interactive
# shell, and by the orchestrator library (with --detach, --name, --label, --ssh-dir) for sessions
# that stay up until stopped.
#
# An empty workspace is seeded from a git repository with rsync: tracked and untracked-but-not-
# ignored files plus `.git`, never ignored build products (`.venv`, `outputs/`). A linked
# worktree (`git worktree add`) seeds too: the workspace gets a repository of its own. A marker
# file makes an interrupted seeding visible, so the next start seeds again instead of handing a
# half-copied tree to an agent.
set -euo pipefail

readonly SEED_MARKER=".filare-seeding"
readonly CONTAINER_HOME="/home/agent"

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
  --detach             run in the background with a long-lived init-wrapped command;
                       prints only the container id on stdout (needs --ssh-dir)
  --ssh-dir DIR        caller-owned folder to fill with the key (kept after exit)
  --codex-dir DIR      host Codex home bound at /home/agent/.codex (default: ~/.codex)
  --seed-from DIR      repository to seed an empty workspace from (default: the current one)
  --branch NAME        branch the workspace must be on (checked out, created when missing)
  --cpus N             docker run --cpus
  --memory SIZE        docker run --memory
  --env-mount          bind the env file read-only at /run/filare/env instead, for the
                       entry point to load: `docker inspect` then shows no values
  --dry-run            print the docker argv and run nothing
  --seed-only          seed (or check) the workspace, then exit without running docker
  -h, --help           show this help
EOF
}

die() {
  printf 'run_codex_container.sh: %s\n' "$*" >&2
  exit 2
}

image="filare-codex"
name=""
workspace=""
env_file=""
ssh_key=""
ssh_dir=""
codex_dir="${HOME}/.codex"
seed_from=""
branch=""
cpus=""
memory=""
detach=0
dry_run=0
seed_only=0
env_mount=0
labels=()

while (($# > 0)); do
  case "$1" in
    --detach) detach=1; shift; continue ;;
    --dry-run) dry_run=1; shift; continue ;;
    --seed-only) seed_only=1; shift; continue ;;
    --env-mount) env_mount=1; shift; continue ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    --image | --name | --workspace | --env-file | --ssh-key | --ssh-dir | --codex-dir | \
      --seed-from | --branch | --cpus | --memory | --label)
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
    --codex-dir) codex_dir="$2" ;;
    --seed-from) seed_from="$2" ;;
    --branch) branch="$2" ;;
    --cpus) cpus="$2" ;;
    --memory) memory="$2" ;;
    --label)
      [[ "$2" == ?*=* ]] || die "--label expects KEY=VALUE"
      labels+=("$2")
      ;;
  esac
  shift 2
done

[[ -n "$workspace" ]] || die "--workspace is required"
if ((seed_only == 0)); then
  [[ -n "$env_file" ]] || die "--env-file is required"
  [[ -n "$ssh_key" ]] || die "--ssh-key is required"
  [[ -f "$env_file" && -r "$env_file" ]] || die "env file not found or unreadable: $env_file"
  [[ -f "$ssh_key" && -r "$ssh_key" ]] || die "ssh key not found or unreadable: $ssh_key"
fi
((detach == 0)) || [[ -n "$ssh_dir" ]] || die "--detach needs --ssh-dir (a folder that outlives this script)"

absolute() {
  # Absolute path of a file or folder that may not exist yet (its parent may not either).
  local target="$1"
  [[ "$target" == /* ]] || target="$PWD/$target"
  printf '%s\n' "$target"
}

workspace="$(absolute "$workspace")"
[[ -z "$env_file" ]] || env_file="$(absolute "$env_file")"
codex_dir="$(absolute "$codex_dir")"
[[ -z "$ssh_dir" ]] || ssh_dir="$(absolute "$ssh_dir")"

current_branch() {
  # Read HEAD directly when .git is a folder: one process less on every start.
  local head=""
  if [[ -f "$1/.git/HEAD" ]]; then
    read -r head <"$1/.git/HEAD" || true
    [[ "$head" != "ref: refs/heads/"* ]] || printf '%s\n' "${head#ref: refs/heads/}"
  else
    git -C "$1" symbolic-ref --quiet --short HEAD 2>/dev/null || true
  fi
}

workspace_needs_seed() {
  [[ ! -d "$workspace" ]] && return 0
  [[ -e "$workspace/$SEED_MARKER" ]] && return 0
  local entries
  entries=("$workspace"/* "$workspace"/.[!.]* "$workspace"/..?*)
  [[ ! -e "${entries[0]}" && ! -e "${entries[1]}" && ! -e "${entries[2]}" ]]
}

seed_workspace() {
  local src="$seed_from" rel
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
  mkdir -p "$workspace"
  : >"$workspace/$SEED_MARKER"
  src="$(cd "$src" && pwd -P)"
  rel="$(realpath -m --relative-to="$src" "$(cd "$workspace" && pwd -P)")"
  # Copy what git sees in one recursive rsync, as fast as a plain copy: everything except what
  # git ignores (untracked ignored files, whole ignored folders), nested repositories (other
  # sessions' workspaces, vendored clones; listed by git as "dir/") and the workspace itself
  # when it lies inside the repository. Paths become anchored rsync rules, wildcards escaped.
  local excludes
  excludes="$(mktemp)"
  {
    git -C "$src" ls-files -z --others --ignored --exclude-standard --directory
    git -C "$src" ls-files -z --others --exclude-standard | { grep -z '/$' || true; }
    [[ "$rel" == ".." || "$rel" == ../* ]] || printf '%s/\0' "$rel"
    ((linked == 0)) || printf '.git\0'
  } | sed -z -e 's/[[*?]/\\&/g' -e 's|^|/|' >"$excludes"
  rsync -a --from0 --exclude-from="$excludes" "$src/" "$workspace/"
  rm -f "$excludes"
  ((linked == 0)) || copy_linked_repository "$src"
  [[ -z "$branch" ]] || switch_branch
  rm -f "$workspace/$SEED_MARKER"
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
    "$common/" "$workspace/.git/"
  rsync -a --exclude=/commondir --exclude=/gitdir --exclude=/locked --exclude=/worktrees/ \
    "$own/" "$workspace/.git/"
  git -C "$workspace" config core.bare false
  git -C "$workspace" config --unset-all core.worktree || true
}

switch_branch() {
  # Point the fresh copy at the session's branch. A branch that is new, or that names the commit
  # already checked out, only moves HEAD: `git checkout` would re-read every copied file (their
  # stat data changed in the copy) for nothing. Another commit needs a real checkout.
  local target head
  target="$(git -C "$workspace" rev-parse --quiet --verify "refs/heads/$branch^{commit}" || true)"
  head="$(git -C "$workspace" rev-parse --quiet --verify "HEAD^{commit}" || true)"
  if [[ -n "$target" && "$target" != "$head" ]]; then
    git -C "$workspace" checkout --quiet "$branch" ||
      die "cannot check out branch $branch in $workspace"
  elif [[ -n "$head" ]]; then
    [[ -n "$target" ]] || git -C "$workspace" branch "$branch" ||
      die "cannot create branch $branch in $workspace"
    git -C "$workspace" symbolic-ref HEAD "refs/heads/$branch"
  else
    git -C "$workspace" checkout --quiet -b "$branch" ||
      die "cannot create branch $branch in $workspace"
  fi
}

check_branch() {
  [[ -n "$branch" && -e "$workspace/.git" ]] || return 0
  local actual
  actual="$(current_branch "$workspace")"
  [[ "$actual" == "$branch" ]] ||
    die "workspace $workspace is on branch '${actual:-(detached)}', expected '$branch'"
}

fill_ssh_dir() {
  local dir="$1"
  install -d -m 0700 "$dir"
  install -m 0600 "$ssh_key" "$dir/id_rsa"
  # The folder is mounted read-only: keep known hosts somewhere writable.
  (
    umask 077
    printf '%s\n' "Host *" "  IdentityFile ${CONTAINER_HOME}/.ssh/id_rsa" \
      "  UserKnownHostsFile /tmp/.ssh_known_hosts" "  StrictHostKeyChecking accept-new" \
      >"$dir/config"
  )
}

docker_args=(
  --init
  --pull never
  --user "${EUID}:$(id -g)"
  --env "HOME=${CONTAINER_HOME}"
  --workdir "${CONTAINER_HOME}/workspace"
  --security-opt no-new-privileges
  --volume "${workspace}:${CONTAINER_HOME}/workspace"
  --volume "${codex_dir}:${CONTAINER_HOME}/.codex"
)
if ((env_mount)); then
  docker_args+=(--volume "${env_file}:/run/filare/env:ro")
else
  docker_args+=(--env-file "$env_file")
fi
[[ -z "$name" ]] || docker_args+=(--name "$name")
[[ -z "$cpus" ]] || docker_args+=(--cpus "$cpus")
[[ -z "$memory" ]] || docker_args+=(--memory "$memory")
for label in ${labels[@]+"${labels[@]}"}; do
  docker_args+=(--label "$label")
done

if ((detach)); then
  run_mode=(--detach)
  command=(sleep infinity)
else
  run_mode=(--rm --interactive)
  [[ ! -t 0 ]] || run_mode+=(--tty)
  command=("$@")
fi

if [[ -z "$ssh_dir" ]] && ((dry_run == 0 && seed_only == 0)); then
  ssh_dir="$(mktemp -d)"
  trap 'rm -rf "$ssh_dir"' EXIT
fi
argv=(docker run "${run_mode[@]}" "${docker_args[@]}"
  --volume "${ssh_dir:-/tmp/ssh-folder}:${CONTAINER_HOME}/.ssh:ro" "$image" ${command[@]+"${command[@]}"})

if ((dry_run)); then
  printf '%q ' "${argv[@]}"
  printf '\n'
  exit 0
fi

if workspace_needs_seed; then
  command -v rsync >/dev/null || die "rsync not found: it is needed to seed $workspace"
  seed_workspace
else
  check_branch
fi
((seed_only == 0)) || exit 0
command -v docker >/dev/null || die "docker not found: install a Docker engine"
[[ -d "$codex_dir" ]] || mkdir -p "$codex_dir"
fill_ssh_dir "$ssh_dir"

if ((detach)); then
  exec "${argv[@]}"
fi
"${argv[@]}"
