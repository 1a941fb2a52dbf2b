# classify.awk: the backup set (scripts/backup-set.rules) applied to a list of paths.
#
#   awk -f classify.awk -v rules="EXTRA_RULES_FILE MAIN_RULES_FILE" -v stores=STORES_FILE -v globre=REGEX
# (globre: the rules_glob pattern of scripts/lib/value-patterns, the same rule the prod config's
# extra rules are validated with; callers pass it through AB_CLASSIFY of scripts/lib/common.sh)
#
# Input, one record per line: TYPE<TAB>SIZE<TAB>PATH, as `find . -printf '%y\t%s\t%P\n'` prints it
# (PATH relative to the home, no control characters: the callers take those paths out first), in
# find's order: a folder comes before everything below it.
# Output, one record per line: CLASS<TAB>TYPE<TAB>BYTES<TAB>FILES<TAB>PATH, where CLASS is
#   precious, precious:yaml, precious:json, precious:sqlite   archived (the filters say how)
#   container       a folder with precious paths further down: archived as a bare folder
#   dead, runtime, dangerous, dangerous:allowlist             left out on purpose
#   unclassified    no rule names it (or it is not a regular file or folder): left out, reported
# A left-out or unclassified folder is one record: BYTES and FILES add up everything below it, and
# nothing below it is printed; with -v each=1 every path gets its own record instead (and the input
# may come in any order). Run with LC_ALL=C: patterns and paths are bytes.

function die(msg) { printf "classify.awk: %s\n", msg > "/dev/stderr"; failed = 1; exit 2 }

# glob_re GLOB: the regex of one glob; `*` stays within a component, `?` is one character.
function glob_re(g,    out, i, c) {
  out = ""
  for (i = 1; i <= length(g); i++) {
    c = substr(g, i, 1)
    if (c == "*") out = out "[^/]*"
    else if (c == "?") out = out "[^/]"
    else if (c == "." || c == "+" || c == "~") out = out "[" c "]"
    else out = out c
  }
  return out
}

function anchor(where, alternation) {
  if (where == "home") return "^(profiles/[^/]+/)*(" alternation ")(/|$)"
  return "(^|/)(" alternation ")(/|$)"
}

# Consecutive rules of the same class and scope become one regex: same first match, fewer tests.
function flush_group() {
  if (group_alt == "") return
  n_groups++
  group_class[n_groups] = group_cls
  group_regex[n_groups] = anchor(group_where, group_alt)
  group_alt = ""
}

function add_rule(cls, where, glob,    parts, n, i, prefix) {
  if (cls != group_cls || where != group_where) flush_group()
  group_cls = cls; group_where = where
  group_alt = group_alt (group_alt == "" ? "" : "|") glob_re(glob)
  # Folders above a precious path are containers (home scope only: `any` rules are never precious).
  if (cls ~ /^precious/ && where == "home") {
    n = split(glob, parts, "/")
    prefix = ""
    for (i = 1; i < n; i++) {
      prefix = prefix (i > 1 ? "/" : "") parts[i]
      container_alt = container_alt "|" glob_re(prefix)
    }
  }
}

function load_rules(file,    line, f, n, lineno) {
  lineno = 0
  while ((getline line < file) > 0) {
    lineno++
    if (line ~ /^[ \t]*(#|$)/) continue
    n = split(line, f, /[ \t]+/)
    if (n != 3) die(file ":" lineno ": expected CLASS WHERE GLOB")
    if (f[1] !~ /^(precious|precious:yaml|precious:json|dead|runtime|dangerous|dangerous:allowlist)$/)
      die(file ":" lineno ": unknown class " f[1])
    if (f[2] != "home" && f[2] != "any") die(file ":" lineno ": WHERE must be home or any")
    if (f[3] !~ globre || f[3] ~ /(^|\/)\.\.?(\/|$)/)
      die(file ":" lineno ": refusing glob " f[3])
    if (f[1] ~ /^precious/ && f[2] == "any") die(file ":" lineno ": a precious rule must be WHERE home")
    add_rule(f[1], f[2], f[3])
    rules_read++
  }
  close(file)
}

function load_stores(file,    line, lineno) {
  lineno = 0
  while ((getline line < file) > 0) {
    lineno++
    if (line ~ /^[ \t]*(#|$)/) continue
    if (line !~ /^[A-Za-z0-9._*?-]+$/) die(file ":" lineno ": expected one file-name glob")
    stores_alt = stores_alt (stores_alt == "" ? "" : "|") glob_re(line)
  }
  close(file)
}

BEGIN {
  FS = "\t"; OFS = "\t"
  if (globre == "") die("no globre given (the rules_glob pattern)")
  n_groups = 0; group_alt = ""; container_alt = "profiles|profiles/[^/]+"; stores_alt = ""
  n = split(rules, files, / +/)
  for (i = 1; i <= n; i++) if (files[i] != "") load_rules(files[i])
  flush_group()
  if (rules_read == 0) die("no rules read from: " rules)
  container_regex = "^(profiles/[^/]+/)*(" container_alt ")$"
  if (stores != "") load_stores(stores)
  stores_regex = stores_alt == "" ? "" : "(^|/)(" stores_alt ")$"
  pruned = ""
}

function first_class(path,    g) {
  for (g = 1; g <= n_groups; g++) if (path ~ group_regex[g]) return group_class[g]
  return "unclassified"
}

function emit_pruned() {
  if (pruned != "") print pruned_class, pruned_type, pruned_bytes, pruned_files, pruned
  pruned = ""
}

failed { exit 2 }
{
  type = $1; size = $2 + 0; path = $3
  if (NF != 3 || path == "") { die("malformed record " NR) }
  # Inside a folder that is left out whole: count it there.
  if (pruned != "") {
    if (substr(path, 1, length(pruned) + 1) == pruned "/") {
      if (type != "d") { pruned_files++; if (type == "f") pruned_bytes += size }
      next
    }
    emit_pruned()
  }
  cls = first_class(path)
  if (type == "d" && cls != "dangerous" && cls != "dangerous:allowlist" && cls !~ /^precious/ && path ~ container_regex) cls = "container"
  if (cls ~ /^precious/ && type != "f" && type != "d") cls = "unclassified"
  if (cls ~ /^precious/ && type == "d") cls = "precious"
  if (cls == "precious" && type == "f" && stores_regex != "" && path ~ stores_regex) cls = "precious:sqlite"
  if (cls ~ /^precious/ || cls == "container") {
    print cls, type, (type == "f" ? size : 0), (type == "d" ? 0 : 1), path
    next
  }
  if (type == "d" && !each) {
    pruned = path; pruned_class = cls; pruned_type = type; pruned_bytes = 0; pruned_files = 0
    next
  }
  print cls, type, (type == "f" ? size : 0), 1, path
}
END {
  if (failed) exit 2
  emit_pruned()
}
