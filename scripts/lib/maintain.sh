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

# retention_plan ARCHIVES_JSON NOW WITHIN_SECONDS DAILY WEEKLY MONTHLY NAME_RE: which archives the
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
#   - only names matching NAME_RE are considered; anything else is never deleted.
retention_plan() {
  jq -c -n --argjson archives "$1" --argjson now "$2" --argjson within "$3" \
    --argjson daily "$4" --argjson weekly "$5" --argjson monthly "$6" --arg name_re "$7" "$MAINTAIN_JQ_DEFS"'
    def period($rule):
      if $rule == "daily" then strftime("%Y-%m-%d")
      elif $rule == "weekly" then strftime("%G-%V")
      else strftime("%Y-%m") end;
    def trusted_time:
      (.time | epoch) as $h
      | (if .seen_after == null then $h else ([$h, .seen_after] | max) end) as $lo
      | [$lo, .first_seen] | min;
    # Newest first. Across windows trusted times are ordered by the windows; first_seen breaks the
    # tie of an archive clamped to the very second its predecessor window ended.
    def newest_first: sort_by([.t, .first_seen, .name]) | reverse;
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
