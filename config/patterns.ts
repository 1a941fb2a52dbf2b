// Strict value patterns, read from scripts/lib/value-patterns so that the Pulumi config schema and
// the host scripts refuse exactly the same values.
import * as fs from "fs";
import * as path from "path";

export type PatternName =
  | "tenant"
  | "abs_path"
  | "rel_path"
  | "hostname"
  | "port"
  | "unix_user"
  | "borg_command"
  | "archive_prefix"
  | "archive_name"
  | "ssh_pubkey"
  | "url"
  | "uint"
  | "on_calendar"
  | "rules_glob"
  | "aws_region"
  | "secret_id";

/** Classes an operator can give a path of one tenant's home (scripts/backup-set.rules), in the order they are read. */
export const extraRuleClasses = ["dangerous", "runtime", "dead", "precious"] as const;
/** A tenant's own backup-set rules: globs relative to each home root, per class. */
export type ExtraRules = Partial<Record<(typeof extraRuleClasses)[number], string[]>>;

export const valuePatternsFile = path.join(__dirname, "..", "scripts", "lib", "value-patterns");

function loadPatterns(): Record<PatternName, RegExp> {
  const patterns: Record<string, RegExp> = {};
  for (const line of fs.readFileSync(valuePatternsFile, "utf8").split("\n")) {
    if (line.trim() === "" || line.startsWith("#")) continue;
    const [name, regex] = line.split("\t");
    if (!name || !regex) throw new Error(`${valuePatternsFile}: malformed line: ${line}`);
    patterns[name] = new RegExp(regex);
  }
  return patterns as Record<PatternName, RegExp>;
}

export const valuePatterns: Readonly<Record<PatternName, RegExp>> = loadPatterns();

/** True when `value` matches the named strict pattern (the same test the host scripts apply). */
export function matchesPattern(name: PatternName, value: string): boolean {
  const re = valuePatterns[name];
  if (!re) throw new Error(`unknown value pattern ${name}`);
  return re.test(value);
}
