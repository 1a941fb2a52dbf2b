# shellcheck shell=bash
# The Hetzner Storage Box API from bash, for agent-offboard: the one function that talks to it.
# The token comes from HCLOUD_TOKEN (as for Pulumi and the password resets) and reaches curl on
# its stdin as a config line, never on a command line; nothing printed contains it.
# HETZNER_ENDPOINT overrides the base URL (the provider's variable): https, or http on loopback
# only (tests). Needs common.sh sourced first.

AB_API_ENDPOINT=${HETZNER_ENDPOINT:-https://api.hetzner.com/v1}
AB_API_ENDPOINT=${AB_API_ENDPOINT%/}
readonly AB_API_ENDPOINT_RE='^(https://[A-Za-z0-9.-]+(:[0-9]+)?|http://(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?)(/[A-Za-z0-9._~/-]*)?$'
# Hetzner Console tokens are 64 letters and digits; anything else is refused, not quoted.
readonly AB_API_TOKEN_RE='^[A-Za-z0-9]{16,128}$'

# box_api_ready: 0 when the endpoint and the token are usable; else says why on stderr.
box_api_ready() {
  if [[ ! $AB_API_ENDPOINT =~ $AB_API_ENDPOINT_RE ]]; then
    warn "HETZNER_ENDPOINT must be an https URL (or http on loopback): $(printf '%q' "$AB_API_ENDPOINT")"
    return 1
  fi
  if [[ ! ${HCLOUD_TOKEN:-} =~ $AB_API_TOKEN_RE ]]; then
    warn "HCLOUD_TOKEN is not set or not a Hetzner API token (letters and digits)"
    return 1
  fi
}

# box_api METHOD PATH OUT: one API call; the JSON answer goes to OUT, the HTTP status to stdout
# (000 when there was no answer). PATH is made of plain segments only.
box_api() {
  local method=$1 path=$2 out=$3 status
  [[ $method =~ ^(GET|DELETE)$ && $path =~ ^(/[a-z_]+|/[0-9]{1,19})+$ ]] || die "box_api: refusing $method $(printf '%q' "$path")"
  status=$(printf 'header = "Authorization: Bearer %s"\n' "$HCLOUD_TOKEN" |
    curl -sS -K - -X "$method" -H 'Accept: application/json' --max-time 30 -o "$out" -w '%{http_code}' \
      -- "$AB_API_ENDPOINT$path" 2>/dev/null) || status=000
  printf '%s' "${status:-000}"
}

# box_api_error FILE: the API's error code and message from an answer, one line.
box_api_error() {
  jq -r '"\(.error.code // "no error code"): \(.error.message // "")"' "$1" 2>/dev/null | head -c 300 || echo "not JSON"
}

# box_api_wait_action ACTION_ID OUT: poll an action until it is no longer running (bounded: 150
# polls, AB_API_POLL seconds apart, default 2). 0 when it ended in success.
box_api_wait_action() {
  local id=$1 out=$2 status poll
  for ((poll = 1; poll <= 150; poll++)); do
    status=$(box_api GET "/storage_boxes/actions/$id" "$out")
    [[ $status == 2?? ]] || { warn "cannot follow action $id: HTTP $status $(box_api_error "$out")"; return 1; }
    case $(jq -r '.action.status // ""' "$out") in
      success) return 0 ;;
      running) sleep "${AB_API_POLL:-2}" ;;
      *) warn "action $id ended $(jq -r '.action.status' "$out"): $(jq -r '"\(.action.error.code // "") \(.action.error.message // "")"' "$out")"; return 1 ;;
    esac
  done
  warn "action $id still running after 150 polls"
  return 1
}
