# archive-screen.jq: every member of an archive is attacker input (a compromised host can
# `borg import-tar` anything). Reads `borg list --json-lines` (slurped: jq -s) and prints one line
# per member:
#   ok<TAB>TYPE<TAB>SIZE<TAB>PATH        a folder or a regular file at a plain relative path
#   unsafe<TAB>REASON<TAB>PATH-AS-JSON  anything else: never extracted
# A member below a member that is not a folder (a link, say, followed by `link/file`) is unsafe too.
# agent-restore then classifies the ok members with the backup set (scripts/backup-set.rules).
def unsafe_path:
  (type != "string") or (length == 0) or (length > 4096) or test("[\u0000-\u001f\u007f]")
  or startswith("/") or (split("/") | any(. == "" or . == "." or . == ".." or (utf8bytelength > 255)));
def kind:
  if (.path | unsafe_path) then "path"
  elif .type == "d" then "ok"
  elif .type == "-" and ((.mode // "") | startswith("h")) then "hard link"
  elif .type == "-" and ((.size | type) == "number") and .size >= 0 then "ok"
  elif .type == "l" then "symlink"
  elif .type == "c" or .type == "b" then "device node"
  elif .type == "p" then "FIFO"
  elif .type == "s" then "socket"
  else "type \(.type | tojson)" end;
map(. + {kind: kind})
| (map(select(.kind != "path" and .type != "d") | {key: .path, value: true}) | from_entries) as $not_folders
| .[]
| (if .kind == "ok" and (.path | split("/") | [range(1; length) as $i | .[:$i] | join("/")] | any($not_folders[.]))
   then "below a member that is not a folder" else .kind end) as $kind
| if $kind == "ok" then "ok\t\(if .type == "d" then "d\t0" else "f\t\(.size)" end)\t\(.path)"
  else "unsafe\t\($kind)\t\(.path | tojson)" end
