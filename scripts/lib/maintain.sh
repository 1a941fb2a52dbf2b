# shellcheck shell=bash
# agent-maintain's trusted bookkeeping, as jq programs: when each archive was first seen by a
# trusted run, the retention plan computed from those observations, and the findings of borg's
# object check. Sourced by scripts/agent-maintain only. Inputs are files and numbers the caller
# produced; nothing here runs borg or touches the repository.

# jq definitions shared by the programs below.
# shellcheck disable=SC2016 # jq's $variables, not the shell's
readonly MAINTAIN_JQ_DEFS='
  def epoch: sub("\\.[0-9]+$"; "") | sub("Z$"; "") + "Z" | fromdateiso8601;
  def checkpoint_re: "\\.checkpoint(\\.[0-9]+)?$";
  # Text the host chose (archive names, member paths in borg messages), safe for a log line and a
  # terminal: control characters, backslash and bidi overrides as \uXXXX.
  def hex4: [(. / 4096 | floor) % 16, (. / 256 | floor) % 16, (. / 16 | floor) % 16, . % 16]
    | map("0123456789abcdef"[.:.+1]) | join("");
  def printable: tostring | explode | map(
      if . < 32 or (. >= 127 and . < 160) or . == 92 or . == 8232 or . == 8233
         or (. >= 8234 and . <= 8238) or (. >= 8294 and . <= 8297)
      then "\\u" + hex4 else [.] | implode end) | join("");
  # A state written before first-seen times were recorded (version 1): every archive it lists
  # counts as first seen when that state was recorded, with no earlier bound (like a baseline).
  def normalized_state:
    if . == null then null else
      . as $s
      | ($s.seen_epoch // $s.recorded_epoch) as $seen
      | $s + {seen_epoch: $seen,
              objects_checked_epoch: ($s.objects_checked_epoch // null),
              archives: ($s.archives | map(
                if has("first_seen") then . else . + {first_seen: $seen, seen_after: null} end))}
    end;
  # The trusted time of an archive: its own (host-chosen) time clamped into the window in which the
  # trusted side first saw it: after the previous trusted observation, at most its first sighting.
  def trusted_time:
    (.time | epoch) as $h
    | (if .seen_after == null then $h else ([$h, .seen_after] | max) end) as $lo
    | [$lo, .first_seen] | min;
  # Newest first. Across windows trusted times are ordered by the windows; first_seen breaks the
  # tie of an archive clamped to the very second its predecessor window ended.
  def newest_first: sort_by([.t, .first_seen, .name]) | reverse;
'

# state_normalized STATE_FILE: the state in the current shape (see normalized_state), or "null".
state_normalized() {
  jq -c "$MAINTAIN_JQ_DEFS normalized_state" "$1"
}

# archives_observed KNOWN_JSON LIST_FILE SEEN_EPOCH AFTER_EPOCH: the archives of a `borg list
# --json` output, each with the trusted run that first saw it. An archive already known (by id)
# keeps its first sighting; a new one was first seen now (SEEN_EPOCH) and appeared after the
# previous trusted observation (AFTER_EPOCH, "null" for a baseline without one).
archives_observed() {
  jq -c --argjson known "$1" --argjson seen "$3" --argjson after "$4" '
    ($known | map({key: .id, value: .}) | from_entries) as $k
    | .archives | map({name, id, time}
        + (if $k[.id] != null then {first_seen: $k[.id].first_seen, seen_after: $k[.id].seen_after}
           else {first_seen: $seen, seen_after: $after} end))
  ' "$2"
}

# retention_plan ARCHIVES_JSON NOW WITHIN_SECONDS DAILY WEEKLY MONTHLY NAME_RE [PINNED_IDS_JSON]: which archives the
# trusted side keeps and why, from trusted observations only. Prints
# {"keep": [...], "delete": [...]}, each archive with its trusted time "t" (and "why" when kept).
#   - trusted time: the archive's own (host-chosen) time, clamped into the window in which the
#     trusted side first saw it: after the previous trusted observation, at most its first sighting;
#   - keep-within, keep-daily/weekly/monthly and the "oldest archive when a rule has periods to
#     spare" follow borg prune (1.2), on trusted times;
#   - the archive that represents a period is the newest of those first seen by the earliest
#     trusted run among the period's archives: an archive first seen later never displaces one
#     seen earlier, so the host's clock orders only archives first seen in the same window;
#   - the newest archive is always kept (borg keeps it too, as the newest period's newest);
#   - checkpoints: only the newest, and only while no complete archive is newer (as borg prune);
#   - only names matching NAME_RE are considered; anything else is never deleted;
#   - a pinned archive (its id in PINNED_IDS_JSON: the shrink guard's) is always kept; pins are
#     applied after the rules, so they never take a period's place and shift the others.
retention_plan() {
  jq -c -n --argjson archives "$1" --argjson now "$2" --argjson within "$3" \
    --argjson daily "$4" --argjson weekly "$5" --argjson monthly "$6" --arg name_re "$7" \
    --argjson pinned "${8:-[]}" "$MAINTAIN_JQ_DEFS"'
    def period($rule):
      if $rule == "daily" then strftime("%Y-%m-%d")
      elif $rule == "weekly" then strftime("%G-%V")
      else strftime("%Y-%m") end;
    # The representative of one period: the newest of the archives the earliest run saw.
    def representative:
      (map(.first_seen) | min) as $first
      | map(select(.first_seen == $first)) | newest_first | .[0];
    def keep_by_rule($archives; $rule; $n):
      if $n == 0 then . else
        reduce ($archives | group_by(.t | period($rule)) | reverse[] | representative) as $rep
          ({kept: ., count: 0};
            if .count >= $n or .kept[$rep.id] != null then .
            else .count += 1 | .kept[$rep.id] = "\($rule) #\(.count)" end)
        | if .count < $n and ($archives | length) > 0 and .kept[$archives[-1].id] == null
          then .kept[$archives[-1].id] = "\($rule) [oldest]" else . end
        | .kept
      end;

    [$archives[] | select(.name | test($name_re)) | . + {t: trusted_time}] as $all
    | ($all | map(select(.name | test(checkpoint_re) | not)) | newest_first) as $regular
    | ($all | map(select(.name | test(checkpoint_re))) | newest_first) as $checkpoints
    | reduce ($regular[] | select(.t > $now - $within)) as $a ({}; .[$a.id] = "within")
    | keep_by_rule($regular; "daily"; $daily)
    | keep_by_rule($regular; "weekly"; $weekly)
    | keep_by_rule($regular; "monthly"; $monthly)
    | if ($regular | length) > 0 and .[$regular[0].id] == null then .[$regular[0].id] = "newest" else . end
    | if ($checkpoints | length) > 0
         and (($regular | length) == 0 or ([$checkpoints[0] | .t, .first_seen] > [$regular[0] | .t, .first_seen]))
      then .[$checkpoints[0].id] = "newest checkpoint" else . end
    | reduce ($all[] | select(.id as $i | $pinned | index($i))) as $a (.; .[$a.id] //= "pinned")
    | . as $why
    | {keep: [$all | newest_first | .[] | select($why[.id] != null) | . + {why: $why[.id]}],
       delete: [$all | newest_first | .[] | select($why[.id] == null)]}
  '
}

# object_check_findings LOG_FILE: the ERROR messages of a `borg check --log-json` run, one per
# line, made printable: they name archive members, which are the host's choice.
object_check_findings() {
  jq -R -r "$MAINTAIN_JQ_DEFS"'fromjson? | select(type == "object" and .type == "log_message")
    | select(.levelname == "ERROR" or .levelname == "CRITICAL") | .message | printable' "$1"
}

# newest_regular ARCHIVES_JSON NAME_RE: the complete archives (no checkpoint) of strict names,
# each with its trusted time "t", newest first: the order of the ledger and the shrink guard.
newest_regular() {
  jq -c -n --argjson archives "$1" --arg name_re "$2" "$MAINTAIN_JQ_DEFS"'
    [$archives[] | select(.name | test($name_re)) | select(.name | test(checkpoint_re) | not) | . + {t: trusted_time}]
    | newest_first'
}

# manifest_summary MANIFEST_FILE: what the shrink guard compares, from an archive's
# .agent-backup/manifest.json (written by scripts/agent-side/collect). The manifest is the host's
# word: only counts that are non-negative integers are taken, every label is made printable and
# cut short, and the number of stores and tables read is bounded. Prints
#   {rows: {"<store> <table>": n}, precious: {files, bytes}, memories: {"<folder>": {files, bytes}},
#    souls: {"<path>": bytes|null}, unclassified: n|null}
# (bytes null when the manifest has no sizes: format 2 before sizes were added). Fails on anything
# that is not a manifest object.
manifest_summary() {
  jq -c "$MAINTAIN_JQ_DEFS"'
    def count: if type == "number" and . >= 0 and . < 1e15 and . == floor then . else null end;
    # Cut short before and after escaping: a finding ("rows of <store> <table>") stays under 200
    # characters, the bound the fleet reader (tools/fleet-inputs.ts) accepts.
    def shown_name: tostring | .[0:90] | printable | .[0:90];
    def obj: if type == "object" then . else {} end;
    def arr: if type == "array" then . else [] end;
    if type != "object" or (.format | type) != "number" then error("not a manifest object") else . end
    | (.sha256 | obj | keys_unsorted[:10000]) as $checked
    | (.sizes | obj) as $sizes
    | (has("sizes") and (.sizes | type) == "object") as $sized
    | {
        rows: ([.stores | arr | .[:200][] | obj | (.path | shown_name) as $p
                | .tables | obj | to_entries[:500][] | select(.value | count != null)
                | {key: "\($p) \(.key | shown_name)", value: .value}] | from_entries),
        precious: {files: (.classes | obj | .precious | obj | .files | count),
                   bytes: (.classes | obj | .precious | obj | .bytes | count)},
        memories: ([$checked[] | select(test("(^|/)memories/"))
                    | {folder: (capture("^(?<f>(.*/)?memories)/").f | shown_name),
                       bytes: (if $sized then ($sizes[.] | count) else null end)}]
                   | group_by(.folder)
                   | map({key: .[0].folder,
                          value: {files: length,
                                  bytes: (if $sized then (map(.bytes // 0) | add) else null end)}})
                   | from_entries),
        souls: ([$checked[] | select(test("(^|/)SOUL[.]md$"))
                 | {key: shown_name, value: (if $sized then ($sizes[.] | count) else null end)}] | from_entries),
        unclassified: (.unclassifiedCount | count)
      }' "$1"
}

# shrink_findings BEFORE_SUMMARY AFTER_SUMMARY ROWS_PERCENT BYTES_PERCENT MIN_ROWS MIN_BYTES SOUL_BYTES:
# the sharp drops between two manifest summaries, as [{what, before, after}] (at most 50):
#   - rows of a store table, precious files, memory files: from at least MIN_ROWS (files: any
#     count, for memories) to less than (100 - ROWS_PERCENT)% of before; a table or store that is
#     gone counts as 0 rows;
#   - precious bytes, bytes of a memories folder: from at least MIN_BYTES to less than
#     (100 - BYTES_PERCENT)% of before; a memories folder that lost every file;
#   - a SOUL.md that is gone, or that shrank from more than SOUL_BYTES to SOUL_BYTES or less.
shrink_findings() {
  jq -c -n --argjson b "$1" --argjson a "$2" --argjson rows_pct "$3" --argjson bytes_pct "$4" \
    --argjson min_rows "$5" --argjson min_bytes "$6" --argjson soul_bytes "$7" '
    def dropped($before; $after; $pct; $min):
      $before != null and $after != null and $before >= $min and ($after * 100) < ($before * (100 - $pct));
    [
      ($b.rows | to_entries[] | .key as $k | .value as $n | ($a.rows[$k] // 0) as $m
        | select(dropped($n; $m; $rows_pct; $min_rows)) | {what: "rows of \($k)", before: $n, after: $m}),
      # A count the new manifest no longer gives is taken as 0: a manifest cannot hide a drop by
      # leaving a number out.
      ($b.precious.files as $n | ($a.precious.files // 0) as $m
        | select(dropped($n; $m; $rows_pct; $min_rows)) | {what: "precious files", before: $n, after: $m}),
      ($b.precious.bytes as $n | ($a.precious.bytes // 0) as $m
        | select(dropped($n; $m; $bytes_pct; $min_bytes)) | {what: "precious bytes", before: $n, after: $m}),
      ($b.memories | to_entries[] | .key as $k | .value as $n | ($a.memories[$k] // {files: 0, bytes: 0}) as $m
        | (select($n.files > 0 and $m.files == 0) | {what: "files of \($k)", before: $n.files, after: 0}),
          (select($m.files > 0 and dropped($n.bytes; $m.bytes; $bytes_pct; $min_bytes))
            | {what: "bytes of \($k)", before: $n.bytes, after: $m.bytes})),
      ($b.souls | to_entries[] | .key as $k | .value as $n
        | if ($a.souls | has($k) | not) then {what: "\($k) is gone", before: ($n // 1), after: 0}
          elif $n != null and $a.souls[$k] != null and $n > $soul_bytes and $a.souls[$k] <= $soul_bytes
          then {what: "bytes of \($k) (near empty)", before: $n, after: $a.souls[$k]}
          else empty end)
    ] | .[:50]'
}
