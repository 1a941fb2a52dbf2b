# shellcheck shell=bash disable=SC2154,SC2034 # variables of agent-restore, which sources this file
# archive-report.sh: `agent-restore --list-files` and `agent-restore --diff A B`, sourced by
# agent-restore after its options and connection are checked. Archives are read only through its
# one screening (`screen`: bounded, archive-screen.jq, the backup set) and `manifest_of` (bounded);
# every name is printed escaped, and a manifest is attacker input: only well-formed entries count.
# Uses agent-restore's variables (mode, archive, diff_from, diff_to, json, work, lock_wait).

# --- --list-files: an archive's paths, sizes and classes -----------------------------------------
# shown in jq: a name as it is when plain, else as a JSON string (the rule of `shown` in common.sh).
readonly JQ_SHOWN='def shown: if test("^[A-Za-z0-9._/+@:=,-]+$") then . else tojson end;'
if [[ $mode == list-files ]]; then
  archive=$(resolve "$archive")
  screen "$archive" "$work/a"
  jq -Rr --argjson json "$json" "$JQ_SHOWN"'
    split("\t")
    | if .[0] == "unsafe" then {path: (.[2] | fromjson), type: null, bytes: null, class: "unsafe", unsafe: .[1], restored: false}
      else {path: .[4], type: .[2], bytes: (.[3] | tonumber), class: .[1], restored: (.[0] == "restore")} end
    | if $json then tojson
      else "\(.type // "?") \((.bytes // "-") | tostring | (" " * (12 - length) // "") + .)  \(if .unsafe then "UNSAFE (\(.unsafe)), never restored" elif .restored then .class else "\(.class), not restored" end)  \(.path | tostring | shown)"
      end' "$work/a/plan" "$work/a/unsafe"
  return 0
fi

# --- --diff A B: what changed, per class, and the stores' rows from the manifests ----------------
diff_to=$(resolve "$diff_to")
for side in from to; do
  name_var=diff_$side
  screen "${!name_var}" "$work/$side"
  manifest_of "${!name_var}" "$work/$side"
done
{ timeout --kill-after=30 "$LIST_TIMEOUT" borg diff --lock-wait "$lock_wait" --content-only --json-lines "::$diff_from" "$diff_to" 2>"$work/err"; echo $? >"$work/diff-rc"; } |
  head -c $((MAX_LISTING_BYTES + 1)) >"$work/changes" || true
[[ $(cat "$work/diff-rc") == 0 ]] || die "cannot compare $diff_from and $diff_to: $(borg_explain "$work/err")"
(($(stat -c %s -- "$work/changes") <= MAX_LISTING_BYTES)) || die "the difference of $diff_from and $diff_to is larger than $MAX_LISTING_BYTES bytes: refusing it"
jq -n --arg from "$diff_from" --arg to "$diff_to" --rawfile pa "$work/from/plan" --rawfile pb "$work/to/plan" \
  --rawfile changes "$work/changes" --rawfile ma "$work/from/manifest.json" --rawfile mb "$work/to/manifest.json" \
  --arg qa "$(cat "$work/from/manifest-problem" 2>/dev/null)" --arg qb "$(cat "$work/to/manifest-problem" 2>/dev/null)" \
  --argjson ua "$(grep -c . "$work/from/unsafe" || true)" --argjson ub "$(grep -c . "$work/to/unsafe" || true)" '
  def rows: split("\n") | map(select(length > 0) | split("\t")
    | {action: .[0], class: (if .[4] | test("(^|/)[.]agent-backup(/|$)") then "agent-backup" else .[1] | split(":")[0] end), type: .[2], path: .[4]});
  # The manifest is attacker input: only well-formed store entries and numeric row counts count.
  def manifest($problem): if $problem != "" then {problem: $problem, stores: {}}
    else (try fromjson catch null) as $m
    | if ($m | type) != "object" then {problem: "not a JSON object", stores: {}}
      else {problem: null, stores: (($m.stores // []) | if type == "array" then . else [] end
        | map(select(type == "object" and (.path | type) == "string" and (.tables | type) == "object")
          | {key: .path, value: (.tables | with_entries(select(.value | type == "number")))}) | from_entries)} end end;
  ($pa | rows) as $A | ($pb | rows) as $B
  | ($A | map({key: .path, value: .}) | from_entries) as $a
  | ($B | map({key: .path, value: .}) | from_entries) as $b
  | [$changes | split("\n")[] | select(length > 0) | (try fromjson catch null)
     | select(type == "object" and (.path | type) == "string" and any(.changes[]?; (.type? // "") == "modified")) | .path
     | select($a[.] != null and $b[.] != null and $a[.].type == "f" and $b[.].type == "f")] as $changed
  | ($ma | manifest($qa)) as $sa | ($mb | manifest($qb)) as $sb
  | {from: $from, to: $to,
     classes: ([($B[] | select($a[.path] == null) | {class, kind: "added", path}),
                ($A[] | select($b[.path] == null) | {class, kind: "removed", path}),
                ($changed[] | {class: $b[.].class, kind: "changed", path: .})]
       | group_by(.class)
       | map(. as $g | {key: $g[0].class, value: ({added: [], removed: [], changed: []}
           + (group_by(.kind) | map({key: .[0].kind, value: map(.path)}) | from_entries))}) | from_entries),
     stores: [($sa.stores | keys) + ($sb.stores | keys) | unique[] as $p
       | {path: $p, tables: ((($sa.stores[$p] // {}) | keys) + (($sb.stores[$p] // {}) | keys) | unique
           | map(. as $t | {key: $t, value: ({from: $sa.stores[$p][$t], to: $sb.stores[$p][$t]}
               | .delta = (if .from != null and .to != null then .to - .from else null end))}) | from_entries)}],
     unsafe: {from: $ua, to: $ub},
     manifestProblems: {from: $sa.problem, to: $sb.problem}}' >"$work/diff.json"
if [[ $json == true ]]; then
  cat "$work/diff.json"
else
  jq -r "$JQ_SHOWN"'
    def some($sign; $xs): ($xs[:50][] | "    \($sign) \(shown)"), (if ($xs | length) > 50 then "    ... and \(($xs | length) - 50) more" else empty end);
    def n: if . == null then "-" else tostring end;
    "From \(.from | shown) to \(.to | shown):",
    (if (.classes | length) == 0 then "  no path added, removed or changed"
     else .classes | to_entries[] | "  \(.key | shown): \(.value.added | length) added, \(.value.removed | length) removed, \(.value.changed | length) changed",
       some("+"; .value.added), some("-"; .value.removed), some("~"; .value.changed) end),
    # Stores: the tables whose rows changed (or that one manifest lacks); the rest counted.
    def moved: .value.delta != 0;
    "Stores (rows, from the manifests):",
    (if (.stores | length) == 0 then "  none" else empty end),
    (.stores[] | select(any(.tables | to_entries[]; moved)) | (.tables | to_entries) as $t
      | "  \(.path | shown): " + ([$t[] | select(moved)
        | "\(.key | shown) \(.value.from | n) -> \(.value.to | n)\(if .value.delta == null then "" elif .value.delta >= 0 then " (+\(.value.delta))" else " (\(.value.delta))" end)"] | join("; "))
        + (($t | map(select(moved | not)) | length) as $same | if $same > 0 then "; \($same) tables the same" else "" end)),
    ([.stores[] | select(all(.tables | to_entries[]; moved | not))] | length | select(. > 0) | "  \(.) stores with the same rows in every table"),
    (.manifestProblems | to_entries[] | select(.value != null) | "  the manifest of the \(.key) archive is unusable: \(.value | shown)"),
    (.unsafe | to_entries[] | select(.value > 0) | "  the \(.key) archive holds \(.value) unsafe members (never restored; agent-restore --list-files names them)")
  ' "$work/diff.json"
fi
