# shellcheck shell=bash disable=SC2154,SC2034 # variables of agent-restore, which sources this file
# restore-paths.sh: the end of `agent-restore --path`, sourced by agent-restore once the members
# asked for passed its one screening and were extracted and made the agent's, private, into the
# root-only folder that is its working directory. Here: check them against the archive's manifest,
# then put each in place by one atomic rename (scripts/lib/rename-at: no symlink followed on the way).
# Into a live home (--into-live) a SQLite store is never swapped under the agent, nor a folder a
# process holds files in: the restored copy goes beside it, NAME.restored-ARCHIVE, and the commands
# to swap it by hand are printed. What replaces a live file or folder takes its owner and mode.
# Uses agent-restore's variables (paths, plan, archive, target, pdir, parent_fd, target_name, ...).

# --- check what came back against the manifest: checksums, store integrity and rows --------------
manifest=.agent-backup/manifest.json
if [[ ! -f $manifest || -L $manifest ]] || (($(stat -c %s -- "$manifest") > MAX_MANIFEST_BYTES)) ||
  ! jq -e 'type == "object"' "$manifest" >/dev/null 2>&1; then
  die "the manifest of $archive is missing or unreadable: $target untouched"
fi
cp -- "$manifest" "$work/manifest.json"
asked() { local p; for p in "${paths[@]}"; do [[ $1 != "$p" && $1 != "$p"/* ]] || return 0; done; return 1; }
if ! asked "$manifest"; then
  rm -f -- "$manifest"
  rmdir -- .agent-backup 2>/dev/null || true
fi
manifest=$work/manifest.json
awk -F'\t' '$1 == "restore" && $3 == "f" { print $5 }' "$plan" | grep -vxF .agent-backup/manifest.json >"$work/files" || true
sql() { timeout --kill-after=10 "$SQL_TIMEOUT" sqlite3 -safe -readonly -bail -separator $'\t' "file:$(uri_path "$1")?mode=ro" "$2"; }
declare -A sums=()
while IFS=$'\t' read -r -d '' rel sum; do sums[$rel]=$sum; done < <(
  jq -j '.sha256 | objects | to_entries[] | select((.key | test("^[^\t\n\u0000]+$")) and (.value | type) == "string")
    | .key + "\t" + .value + "\u0000"' "$manifest")
bad=() n_sums=0 n_stores=0
while IFS= read -r rel; do
  [[ -n ${sums[$rel]:-} ]] || continue
  n_sums=$((n_sums + 1))
  [[ $(timeout 120 sha256sum -- "$rel" | cut -d' ' -f1) == "${sums[$rel]}" ]] || bad+=("$(shown "$rel"): checksum differs")
done <"$work/files"
while IFS= read -r -d '' rel; do
  grep -qxF -- "$rel" "$work/files" || continue
  n_stores=$((n_stores + 1))
  integrity=$(sql "$rel" 'PRAGMA integrity_check' 2>&1 | head -n 3 | tr -c '[:print:]\n' '?' | paste -sd' ' -) || true
  if [[ $integrity != ok ]]; then bad+=("$(shown "$rel"): integrity_check: $integrity"); continue; fi
  sql "$rel" "SELECT name FROM sqlite_schema WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL TABLE%'" >"$work/tables" 2>/dev/null || : >"$work/tables"
  while IFS=$'\t' read -r table expected; do
    grep -qxF -- "$table" "$work/tables" || { bad+=("$(shown "$rel"): $table is not an ordinary table of the store"); continue; }
    actual=$(sql "$rel" "SELECT count(*) FROM \"$table\"" 2>/dev/null) || actual='?'
    [[ $actual == "$expected" ]] || bad+=("$(shown "$rel"): $table: $actual rows, manifest $expected")
  done < <(jq -r --arg p "$rel" '.stores[] | objects | select(.path == $p) | .tables | objects | to_entries[]
    | select((.key | test("^[A-Za-z0-9_]+$")) and (.value | type) == "number") | "\(.key)\t\(.value)"' "$manifest")
done < <(jq -j '.stores | arrays | .[] | objects | .path | strings | select(test("^[^\n\u0000]+$")) | . + "\u0000"' "$manifest")
if ((${#bad[@]} > 0)); then
  for b in "${bad[@]}"; do warn "$b"; done
  die "the restored paths of $archive do not match its manifest: $target untouched"
fi
log "checked against the manifest of $archive: $n_sums checksums, $n_stores stores"

# --- put each in place ----------------------------------------------------------------------------
stores_globs=()
while IFS= read -r g; do [[ -z $g || $g == \#* ]] || stores_globs+=("$g"); done <"$AB_STORES_FILE"
# shellcheck disable=SC2053 # the right side is a glob of sqlite-stores
is_store() { local g; for g in "${stores_globs[@]}"; do [[ ${1##*/} != $g ]] || return 0; done; return 1; }
# The agent's command for an item: hermes, or hermes -p NAME inside profiles/NAME.
hermes_cmd() { if [[ $1 =~ ^profiles/([A-Za-z0-9._-]+)(/|$) ]]; then echo "hermes -p ${BASH_REMATCH[1]}"; else echo hermes; fi; }
done_lines=() todo=()
if [[ $target_exists == false ]]; then
  chown -- "$owner_uid:$owner_gid" .
  "$AB_LIB_DIR/rename-at" "$parent_fd" "$tmp_name" "$parent_fd" "$target_name" noreplace || die "cannot move the restore to $target"
  tmp_name='' swapped=true
  for p in "${paths[@]}"; do done_lines+=("$p"); done
else
  exec {target_fd}<"$pdir/$target_name" || die "cannot open $target"
  tdir=/proc/self/fd/$target_fd
  [[ $(readlink -- "$tdir") == "$target" ]] || die "--target $target was swapped for a link while restoring: $target untouched"
  # First decide every move, then make them: a refusal leaves the target as it was.
  items=() modes=() how=()
  for p in "${paths[@]}"; do
    # The top-most folder of the path the target lacks comes whole: it holds only what was asked for.
    item=$p a=''
    IFS=/ read -ra comps <<<"$p"
    for c in "${comps[@]::${#comps[@]}-1}"; do
      a=${a:+$a/}$c
      [[ ! -L $tdir/$a ]] || die_usage "$target/$a is a symlink: refusing to restore through it (move it away first)"
      if [[ ! -e $tdir/$a ]]; then item=$a; break; fi
      [[ -d $tdir/$a ]] || die_usage "$target/$a is not a folder: cannot put $p below it"
    done
    [[ ! -L $tdir/$item ]] || die_usage "$target/$item is a symlink: refusing to replace it (move it away first)"
    beside=''
    if [[ $into_live == true && -e $tdir/$item ]]; then
      mapfile -t pids < <(holders "$target/$item")
      if [[ -f $item ]] && is_store "$item"; then
        beside="a SQLite store is never swapped under the agent${pids[*]:+ (pids ${pids[*]} hold it open)}"
      elif ((${#pids[@]} > 0)); then
        beside="pids ${pids[*]} hold files in it open"
      fi
    fi
    if [[ -n $beside ]]; then
      [[ ! -e $tdir/$item.restored-$archive && ! -L $tdir/$item.restored-$archive ]] ||
        die_usage "$target/$item.restored-$archive exists (an earlier put-back): move it away first"
      items+=("$item") how+=("beside") modes+=("$beside")
    elif [[ -e $tdir/$item || -L $tdir/$item ]]; then
      [[ $force == true || $into_live == true ]] || die_usage "--target $target already holds $item: refusing to replace it without --force"
      items+=("$item") how+=("exchange") modes+=("$(stat -c '%u:%g %a %F' -- "$tdir/$item")")
    else
      items+=("$item") how+=("new") modes+=("")
    fi
  done
  for i in "${!items[@]}"; do
    item=${items[i]}
    case ${how[i]} in
      beside)
        "$AB_LIB_DIR/rename-at" "$tree_fd" "$item" "$target_fd" "$item.restored-$archive" noreplace || die "cannot put $item beside $target/$item"
        done_lines+=("$item.restored-$archive (beside $item, not replaced: ${modes[i]})")
        todo+=("$item") ;;
      exchange)
        read -r own mode kind <<<"${modes[i]}"
        # The owner and mode of the agent's own copy, when it is the same kind of thing.
        if [[ $kind == regular*file && -f $item ]] || [[ $kind == directory && -d $item ]]; then
          chown -- "$own" "$item"
          chmod -- "$(printf '%o' $((8#$mode & 8#0777)))" "$item"
        fi
        "$AB_LIB_DIR/rename-at" "$tree_fd" "$item" "$target_fd" "$item" exchange || die "cannot swap $target/$item in"
        done_lines+=("$item (replaced; the copy it replaced is removed)") ;;
      new)
        "$AB_LIB_DIR/rename-at" "$tree_fd" "$item" "$target_fd" "$item" noreplace || die "cannot put $item into $target"
        done_lines+=("$item (new)") ;;
    esac
    swapped=true
  done
fi
cd /
log "restored ${#paths[@]} path(s) of $archive into $target (checked)"
echo "Restored from $archive into $target:"
for l in "${done_lines[@]}"; do echo "  $l"; done
for item in "${todo[@]}"; do
  dir=$(dirname -- "$target/$item") name=$(basename -- "$item") agent=$(hermes_cmd "$item")
  cat <<EOF

$item was not replaced: the restored copy is $name.restored-$archive beside it. Hermes has no
command that imports one store or folder (\`hermes import\` takes a whole \`hermes backup\` zip);
to use the copy, stop the agent, swap, and start it:
  $agent gateway stop    # and every other process holding it: agent-restore named their pids above
  cd $dir
EOF
  if [[ -f $tdir/$item.restored-$archive ]]; then
    echo "  for f in $name $name-wal $name-shm; do [ ! -e \"\$f\" ] || mv -- \"\$f\" \"\$f.before-restore\"; done"
  else
    echo "  mv -- $name $name.before-restore"
  fi
  echo "  mv -- $name.restored-$archive $name"
  echo "  $agent gateway start"
done
