# shellcheck shell=bash
# Shared helpers for the host scripts: logging, strict value validation, and KEY=VALUE config
# parsing. Sourced by scripts in scripts/ (never by configs: configs are parsed, not sourced).
# Exit codes used by every script: 0 ok, 1 the work failed, 2 bad usage or bad config.

AB_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AB_PROG=${AB_PROG:-$(basename "$0")}
readonly AB_EXIT_FAIL=1 AB_EXIT_USAGE=2

# One line per message on stderr, which systemd puts in the journal. Under systemd a <N> syslog
# prefix sets the journal priority; on a terminal the plain line is kinder.
ab_log() {
  local level=$1; shift
  local prio=6
  case $level in error) prio=3 ;; warn) prio=4 ;; esac
  if [[ -n ${JOURNAL_STREAM:-} ]]; then
    printf '<%s>%s: %s\n' "$prio" "$AB_PROG" "$*" >&2
  else
    printf '%s: %s%s\n' "$AB_PROG" "$([[ $level == info ]] || printf '%s: ' "$level")" "$*" >&2
  fi
}
log() { ab_log info "$@"; }
warn() { ab_log warn "$@"; }
die() { ab_log error "$@"; exit "$AB_EXIT_FAIL"; }
die_usage() { ab_log error "$@"; exit "$AB_EXIT_USAGE"; }

# --- strict values -------------------------------------------------------------------------------
declare -gA AB_PATTERN=()
ab_load_patterns() {
  local name regex
  while IFS=$'\t' read -r name regex; do
    [[ -z $name || $name == \#* ]] && continue
    AB_PATTERN[$name]=$regex
  done <"$AB_LIB_DIR/value-patterns"
}
ab_load_patterns

# matches_pattern NAME VALUE: true when VALUE matches the named strict pattern.
matches_pattern() {
  local regex=${AB_PATTERN[$1]:?unknown pattern $1}
  [[ $2 =~ $regex ]]
}

# require_valid NAME LABEL VALUE: refuse (exit 2) a value that does not match the pattern.
require_valid() {
  local name=$1 label=$2 value=$3
  if ! matches_pattern "$name" "$value"; then
    die_usage "$label: refusing value that is not a valid $name (${AB_PATTERN[$name]}): $(printf '%q' "$value")"
  fi
  if [[ $name == port ]] && ((value > 65535)); then
    die_usage "$label: port out of range: $value"
  fi
}

# --- KEY=VALUE config files ----------------------------------------------------------------------
# config_load FILE "REQUIRED KEYS" "OPTIONAL KEYS": parse FILE into the associative array CFG.
# Lines are KEY=VALUE (no quoting, no expansion), blank, or starting with '#'. An unknown,
# duplicate or missing key, a malformed line, or a file readable by group/others is an error.
declare -gA CFG=()
config_load() {
  local file=$1 required=$2 optional=$3
  local -A allowed=()
  local k
  for k in $required $optional; do allowed[$k]=1; done

  [[ -f $file ]] || die_usage "config $file: not a regular file (or missing)"
  [[ -r $file ]] || die_usage "config $file: not readable"
  local mode owner
  mode=$(stat -c %a -- "$file") owner=$(stat -c %u -- "$file")
  if (( (8#$mode & 8#077) != 0 )); then
    die_usage "config $file: mode $mode lets others read it; it may point at secrets: chmod 600 $file"
  fi
  if [[ $owner != "$(id -u)" && $owner != 0 ]]; then
    die_usage "config $file: owned by uid $owner, expected $(id -u) or root"
  fi

  CFG=()
  local line lineno=0 key value
  while IFS= read -r line || [[ -n $line ]]; do
    lineno=$((lineno + 1))
    [[ -z ${line//[[:space:]]/} || $line =~ ^[[:space:]]*# ]] && continue
    if [[ ! $line =~ ^([A-Z][A-Z0-9_]*)=(.*)$ ]]; then
      die_usage "config $file:$lineno: expected KEY=VALUE, got: $(printf '%q' "$line")"
    fi
    key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
    [[ -n ${allowed[$key]:-} ]] || die_usage "config $file:$lineno: unknown key $key (known: ${!allowed[*]})"
    [[ -z ${CFG[$key]+set} ]] || die_usage "config $file:$lineno: duplicate key $key"
    [[ $value != *$'\r'* ]] || die_usage "config $file:$lineno: carriage return in value of $key"
    CFG[$key]=$value
  done <"$file"
  for k in $required; do
    [[ -n ${CFG[$k]:-} ]] || die_usage "config $file: missing required key $k"
  done
}

# The keys of the host config (agent-backup.conf), read by agent-backup and agent-restore.
# shellcheck disable=SC2034 # used by the scripts that source this file
readonly AB_HOST_CONFIG_REQUIRED='AGENT_HOME BORG_REPO SSH_KEY KNOWN_HOSTS PASSPHRASE_FILE ARCHIVE_PREFIX'
# shellcheck disable=SC2034
readonly AB_HOST_CONFIG_OPTIONAL='REMOTE_BORG HEALTHCHECK_URL METRICS_DIR LOCK_WAIT STAGING_DIR AGENT_USER EXTRA_RULES STORE_TIMEOUT AGENT_TMPDIR'

# cfg KEY [DEFAULT]: a parsed config value.
cfg() { printf '%s' "${CFG[$1]:-${2:-}}"; }

# --- the backup set: scripts/backup-set.rules and scripts/sqlite-stores -------------------------
# The rules live only in those two files; scripts/lib/classify.awk applies them (see its header for
# the records it reads and prints). agent-backup's agent side, agent-restore and agent-verify use it.
AB_SCRIPTS_DIR=$(dirname "$AB_LIB_DIR")
AB_RULES_FILE=$AB_SCRIPTS_DIR/backup-set.rules
AB_STORES_FILE=$AB_SCRIPTS_DIR/sqlite-stores

# The classifier with the stores list and the glob rule; callers add -v rules="FILE..." (and each=1).
# shellcheck disable=SC2034 # used by the scripts that source this file
AB_CLASSIFY=(awk -f "$AB_LIB_DIR/classify.awk" -v "globre=${AB_PATTERN[rules_glob]}" -v "stores=$AB_STORES_FILE")

# classify_records [EXTRA_RULES_FILE]: classify.awk over TYPE<TAB>SIZE<TAB>PATH records on stdin,
# one output record per path (-v each=1).
classify_records() {
  LC_ALL=C "${AB_CLASSIFY[@]}" -v each=1 -v rules="${1:+$1 }$AB_RULES_FILE"
}

# What a restore brings back, as an awk condition on classified records: precious paths, their
# folders, unclassified paths (precious by an operator's rule when archived) and the archive's own
# .agent-backup files; never runtime, dangerous or dead weight. agent-restore and agent-verify.
# shellcheck disable=SC2016,SC2034 # awk's $1 and $5; used by the scripts that source this file
readonly AB_RESTORABLE_AWK='$1 ~ /^(precious|container|unclassified)/ || $5 ~ /^((profiles\/[^\/]+\/)*\.agent-backup)(\/(manifest\.json|allowlists\.env))?$/'

# classify_tree DIR [EXTRA_RULES_FILE]: the classified records of every path below DIR (paths with
# control characters are left out: nothing archived has them).
classify_tree() {
  (cd -- "$1" && LC_ALL=C find . -mindepth 1 '(' -name '*[[:cntrl:]]*' -prune ')' -o -printf '%y\t%s\t%P\n') |
    classify_records "${2:-}"
}

# shown NAME: a name from a home or an archive as it may be printed: as it is when it is made of
# plain characters only, else as a JSON string (escapes for every control character).
shown() {
  if [[ $1 =~ ^[A-Za-z0-9._/+@:=,-]+$ ]]; then printf '%s' "$1"; else jq -Rj '@json' <<<"$1"; fi
}

# uri_path PATH: PATH percent-encoded for a SQLite file: URI (spaces, ?, #, % and non-ASCII bytes).
uri_path() {
  local s=$1 out='' c i
  local LC_ALL=C
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    if [[ $c == [A-Za-z0-9/._-] ]]; then out+=$c; else printf -v c '%%%02X' "'$c"; out+=$c; fi
  done
  printf '%s' "$out"
}

# is_sqlite_file FILE: true when FILE starts with the SQLite header, or is an empty main file
# whose content still sits in its -wal (a WAL database never checkpointed).
is_sqlite_file() {
  local magic
  magic=$(head -c 15 -- "$1" 2>/dev/null | tr -d '\0') || return 1
  [[ $magic == 'SQLite format 3' ]] && return 0
  [[ ! -s $1 && -s $1-wal ]]
}

# --- borg over SSH -------------------------------------------------------------------------------
# require_repo_url LABEL URL: refuse anything but ssh://USER@HOST:PORT/PATH (PATH absolute, or
# /./relative as on the Storage Box); the same rule as components/host-install-plan.ts.
require_repo_url() {
  local label=$1 url=$2
  if [[ $url =~ ^ssh://([^@/]+)@([^:/]+):([0-9]+)(/.*)$ ]]; then
    local user=${BASH_REMATCH[1]} host=${BASH_REMATCH[2]} port=${BASH_REMATCH[3]} path=${BASH_REMATCH[4]}
    [[ $path == /./* ]] && path=${path:2}
    if matches_pattern unix_user "$user" && matches_pattern hostname "$host" && matches_pattern port "$port" &&
      ((port <= 65535)) && matches_pattern abs_path "$path"; then
      return 0
    fi
  fi
  die_usage "$label: refusing $(printf '%q' "$url"): expected ssh://USER@HOST:PORT/PATH"
}

# borg_env REPO SSH_KEY KNOWN_HOSTS PASSPHRASE_FILE REMOTE_BORG: export what borg needs. The
# passphrase is read by borg from the file (BORG_PASSCOMMAND), never put in the environment or
# argv. Keepalives make a dead link fail within minutes, so it cannot hold the repository lock.
borg_env() {
  export BORG_REPO=$1
  export BORG_RSH="ssh -i $2 -o BatchMode=yes -o IdentitiesOnly=yes -o UserKnownHostsFile=$3 -o StrictHostKeyChecking=yes -o ServerAliveInterval=10 -o ServerAliveCountMax=30"
  export BORG_PASSCOMMAND="cat $4"
  export BORG_REMOTE_PATH=$5
  export BORG_BASE_DIR=${BORG_BASE_DIR:-/var/lib/agent-backup/borg}
  # Answer borg's interactive questions with "no": a moved or unknown repository is an error.
  export BORG_RELOCATED_REPO_ACCESS_IS_OK=no BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no
  unset BORG_PASSPHRASE BORG_PASSPHRASE_FD
  install -d -m 0700 -- "$BORG_BASE_DIR"
}

# borg_explain STDERR_FILE: one line saying why borg failed, from its stderr.
borg_explain() {
  local err=$1
  if grep -q 'Archive .* does not exist' -- "$err"; then
    echo "no such archive in $BORG_REPO: $(grep -m1 -o 'Archive .* does not exist' -- "$err")"
  elif grep -q 'does not exist' -- "$err"; then
    echo "the repository $BORG_REPO does not exist (create it with agent-backup --init)"
  elif grep -qi 'passphrase supplied in .* is incorrect\|passphrase .*incorrect' -- "$err"; then
    echo "wrong passphrase for $BORG_REPO"
  elif grep -qi 'Failed to create/acquire the lock\|lock.*timeout' -- "$err"; then
    echo "the repository is locked by another client (gave up after the lock wait)"
  elif grep -qi 'Connection refused\|Connection timed out\|No route to host\|Could not resolve\|Connection closed by\|connection unexpectedly closed\|Host key verification failed\|Permission denied' -- "$err"; then
    # ssh's own line says why (refused, timed out, host key); borg's "Connection closed by remote
    # host" follows it, in either order since both write to stderr: prefer ssh's.
    local why
    why=$(grep -m1 '^ssh: \|Host key verification failed\|Permission denied' -- "$err" ||
      grep -i -m1 'Connection\|No route\|resolve' -- "$err")
    echo "cannot talk to the storage box: $why"
  else
    echo "borg: $(grep -v '^\s*$' -- "$err" | tail -n 3 | tr '\n' ' ')"
  fi
}
