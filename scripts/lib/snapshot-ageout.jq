# Which storage snapshots still hold a tenant's deleted data, and when each ages out, from the
# box's snapshot plan (Storage Box API). Used by agent-offboard for the erasure record.
#   jq -n --argjson plan PLAN --argjson snapshots SNAPSHOTS --argjson deleted EPOCH -f snapshot-ageout.jq
# PLAN: the box's snapshot_plan ({max_snapshots, minute, hour, day_of_week, day_of_month} or null);
# SNAPSHOTS: the API's snapshots array; EPOCH: when the data was deleted (UTC seconds).
# Rules (docs.hetzner.com, Storage Box snapshots): a snapshot holds the data when it was taken
# before the deletion; automatic snapshots keep max_snapshots slots, and each new one removes the
# oldest once they are full, so the i-th newest automatic snapshot goes with the
# (max_snapshots - i + 1)-th run of the plan from now; manual snapshots are never removed
# automatically. day_of_week is 1 (Monday) .. 7 (Sunday); null fields mean every day/month.

def epoch_of: sub("\\.[0-9]+"; "") | sub("\\+00:00$"; "Z") | fromdateiso8601;
def iso: strftime("%Y-%m-%dT%H:%M:%SZ");

# The plan's next n runs after time t (at most 2200 days ahead: 40 monthly slots fit).
def runs_after($t; $n):
  if $plan == null then []
  else
    ((($t / 86400) | floor) * 86400) as $day0
    | [range(0; 2200)
       | ($day0 + . * 86400 + $plan.hour * 3600 + $plan.minute * 60) as $at
       | ($at | gmtime) as $g
       | select($at > $t)
       | select($plan.day_of_week == null or $plan.day_of_week == (if $g[6] == 0 then 7 else $g[6] end))
       | select($plan.day_of_month == null or $plan.day_of_month == $g[2])
       | $at][0:$n]
  end;

($snapshots | map(. + {at: (.created | epoch_of)}) | map(select(.at < $deleted))) as $holding
| ($holding | map(select(.is_automatic)) | sort_by(-.at)) as $auto
| (runs_after($deleted; ($plan.max_snapshots // 0))) as $runs
| ($auto | to_entries | map(.value + {
    agesOutAt: (if $plan == null then null
                else ($plan.max_snapshots - .key - 1) as $k
                | if $k < 0 then $runs[0] elif $k < ($runs | length) then $runs[$k] else null end
                end)
  })) as $autoOut
| ($holding | map(select(.is_automatic | not)) | map(. + {agesOutAt: null})) as $manual
| {
    plan: $plan,
    holding: (($autoOut + $manual) | sort_by(.at) | map({
      id, name, created: (.at | iso), automatic: .is_automatic,
      agesOutAt: (if .agesOutAt == null then null else (.agesOutAt | iso) end)
    })),
    allGoneBy: (if ($manual | length) > 0 or ($plan == null and ($auto | length) > 0) or any($autoOut[]; .agesOutAt == null) then null
                elif ($autoOut | length) == 0 then ($deleted | iso)
                else ($autoOut | map(.agesOutAt) | max | iso) end),
    manualSnapshots: ($manual | map(.name))
  }
