# redact.jq: remove every secret-looking value from a parsed config document (config.yaml and its
# copies through yq, the memory-provider JSON configs through jq), keeping its shape. The backup
# archives the result; a document that does not parse is never archived (agent-side/collect).
#   by key name, at any depth: any value under a key that looks like a credential, and every value
#     under MCP-style `headers`, `env` and `environment` mappings;
#   by value shape, under any key: provider key prefixes, bearer/basic credentials, private keys,
#     JWTs, bot tokens, URLs with a password;
#   in argument lists: the value after a secret-looking flag, and `--flag=value` forms.
def marker: "REDACTED-BY-AGENT-BACKUP";
def secret_word: "key|token|secret|pass|pwd|auth|bearer|credential|cookie|private|dsn|webhook|signature|cert|session";
def secret_key: type == "string" and test(secret_word; "i");
def secret_flag: type == "string" and test("^--?[A-Za-z0-9_.-]*(" + secret_word + ")[A-Za-z0-9_.-]*$"; "i");
def secret_flag_assignment: type == "string" and test("^--?[A-Za-z0-9_.-]*(" + secret_word + ")[A-Za-z0-9_.-]*="; "i");
def secret_value:
  type == "string" and test(
    "(sk|pk|rk)-[A-Za-z0-9_-]{6,}|xox[abeprs]-|xapp-|gh[pousr]_[A-Za-z0-9]|github_pat_|glpat-"
    + "|AKIA[0-9A-Z]{12,}|AIza[0-9A-Za-z_-]{20,}|ya29[.]|hf_[A-Za-z0-9]{12,}|-----BEGIN [A-Z ]*PRIVATE KEY"
    + "|[Bb]earer[ \t]+[^ \t]|[Bb]asic[ \t]+[A-Za-z0-9+/=]{8,}|[A-Za-z][A-Za-z0-9+.-]*://[^/@ \t:]+:[^/@ \t]*@"
    + "|eyJ[A-Za-z0-9_-]{8,}[.][A-Za-z0-9_-]{8,}|[0-9]{6,12}:[A-Za-z0-9_-]{30,}");
# blank: the same shape with every value replaced.
def blank:
  if type == "object" then map_values(blank)
  elif type == "array" then map(blank)
  elif . == null then null
  else marker end;
def redact:
  if type == "object" then
    with_entries(
      if (.key | secret_key) or (.key | test("^(headers|env|environment)$"; "i")) then .value |= blank
      else .value |= redact end)
  elif type == "array" then
    . as $list
    | [range(0; length) as $i
       | $list[$i] as $item
       | if $i > 0 and ($list[$i - 1] | secret_flag) then ($item | blank)
         elif ($item | secret_flag_assignment) then ($item | sub("=.*$"; "=" + marker))
         else ($item | redact) end]
  elif secret_value then marker
  else . end;
redact
