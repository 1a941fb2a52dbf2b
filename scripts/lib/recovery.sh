# shellcheck shell=bash
# The control vault's recovery document (components/control-vault.ts, recoveryDocument) read on the
# trusted side by agent-rekey and agent-offboard: parsed with jq, never sourced; every value that
# reaches a command checked against scripts/lib/value-patterns; the secrets written to private
# files (0600, in a private directory) and never printed. Needs common.sh sourced first.

# The known_hosts grammar agent-install accepts: HOST TYPE KEY, nothing else.
readonly AB_KNOWN_HOSTS_LINE='^[][A-Za-z0-9.:,*-]+ (ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,2}$'

# require_private_file LABEL FILE: FILE is a regular file of ours (or root's) that nobody else reads.
require_private_file() {
  local label=$1 file=$2 mode owner
  require_valid abs_path "$label" "$file"
  [[ -f $file && -r $file ]] || die_usage "$label: $file is not a readable file"
  mode=$(stat -c %a -- "$file") owner=$(stat -c %u -- "$file")
  (((8#$mode & 8#077) == 0)) || die_usage "$label: $file has mode $mode; it holds secrets: chmod 600 $file"
  [[ $owner == "$(id -u)" || $owner == 0 ]] || die_usage "$label: $file is owned by uid $owner, expected $(id -u) or root"
}

# recovery_load LABEL FILE TENANT DIR: check FILE (the vault's JSON for TENANT) and write its
# parts to DIR/{passphrase,drill_key,maintenance_key,known_hosts,key-export}, all 0600. Sets
# REC_REPO, REC_REMOTE_BORG, REC_KEY_ID (the repository id the key export names).
recovery_load() {
  local label=$1 file=$2 tenant=$3 dir=$4 field
  require_private_file "$label" "$file"
  jq -e 'type == "object"' "$file" >/dev/null 2>&1 || die_usage "$label: $file is not a JSON object (the vault's recovery document)"
  for field in tenant repoUrl knownHosts remoteBorg passphrase repoKeyExport maintenancePrivateKey drillPrivateKey; do
    jq -e --arg f "$field" '.[$f] | type == "string" and length > 0' "$file" >/dev/null ||
      die_usage "$label: $file has no $field"
  done
  local doc_tenant
  doc_tenant=$(jq -r .tenant "$file")
  [[ $doc_tenant == "$tenant" ]] ||
    die_usage "$label: $file is tenant $(shown "$doc_tenant")'s recovery document, not $tenant's"
  REC_REPO=$(jq -r .repoUrl "$file")
  REC_REMOTE_BORG=$(jq -r .remoteBorg "$file")
  require_repo_url "$label repoUrl" "$REC_REPO"
  require_valid borg_command "$label remoteBorg" "$REC_REMOTE_BORG"

  (
    umask 077
    mkdir -p -- "$dir"
    jq -j .passphrase "$file" >"$dir/passphrase"
    jq -r .drillPrivateKey "$file" >"$dir/drill_key"
    jq -r .maintenancePrivateKey "$file" >"$dir/maintenance_key"
    jq -r .knownHosts "$file" >"$dir/known_hosts"
    jq -r .repoKeyExport "$file" >"$dir/key-export"
  )
  [[ $(wc -l <"$dir/passphrase") -eq 0 ]] || die_usage "$label: the passphrase must be one line"
  local role
  for role in drill maintenance; do
    grep -q -- '-----BEGIN OPENSSH PRIVATE KEY-----' "$dir/${role}_key" ||
      die_usage "$label: ${role}PrivateKey is not an OpenSSH private key"
  done
  local line
  while IFS= read -r line; do
    [[ -z $line || $line =~ $AB_KNOWN_HOSTS_LINE ]] ||
      die_usage "$label: knownHosts holds a line that is not 'HOST TYPE KEY': $(shown "$line")"
  done <"$dir/known_hosts"
  REC_KEY_ID=$(sed -n '1s/^BORG_KEY \([0-9a-f]\{64\}\)$/\1/p' "$dir/key-export")
  [[ -n $REC_KEY_ID ]] || die_usage "$label: repoKeyExport is not a borg key export (no BORG_KEY <id> line)"
}

# ssh_public_key FILE: the "ssh-ed25519 AAAA..." public half of a private key file (no secret).
ssh_public_key() {
  ssh-keygen -y -f "$1" 2>/dev/null | cut -d' ' -f1,2
}
