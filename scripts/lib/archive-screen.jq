# archive-screen.jq: every member of an archive is attacker input (a compromised host can
# `borg import-tar` anything). Reads `borg list --json-lines` and prints one line per member:
#   ok<TAB>TYPE<TAB>SIZE<TAB>PATH        a folder or a regular file at a plain relative path
#   unsafe<TAB>REASON<TAB>PATH-AS-JSON  anything else: never extracted
# agent-restore then classifies the ok members with the backup set (scripts/backup-set.rules).
def unsafe_path:
  (type != "string") or (length == 0) or (length > 4096) or test("[\u0000-\u001f\u007f]")
  or startswith("/") or (split("/") | any(. == "" or . == "." or . == ".." or (utf8bytelength > 255)));
if (.path | unsafe_path) then "unsafe\tpath\t\(.path | tojson)"
elif .type == "d" then "ok\td\t0\t\(.path)"
elif .type == "-" and (.mode | startswith("h")) then "unsafe\thard link\t\(.path | tojson)"
elif .type == "-" and ((.size | type) == "number") and .size >= 0 then "ok\tf\t\(.size)\t\(.path)"
elif .type == "l" then "unsafe\tsymlink\t\(.path | tojson)"
elif .type == "c" or .type == "b" then "unsafe\tdevice node\t\(.path | tojson)"
elif .type == "p" then "unsafe\tFIFO\t\(.path | tojson)"
elif .type == "s" then "unsafe\tsocket\t\(.path | tojson)"
else "unsafe\ttype \(.type | tojson)\t\(.path | tojson)" end
