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

# cfg KEY [DEFAULT]: a parsed config value.
cfg() { printf '%s' "${CFG[$1]:-${2:-}}"; }
