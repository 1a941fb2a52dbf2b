// The generated part of docs/BACKUP-SET.md: every rule of scripts/backup-set.rules and every glob of
// scripts/sqlite-stores, in order, grouped as in the files. The doc's test compares the doc with
// this rendering; `npx tsx test/lib/backup-set-doc.ts` rewrites the doc's block.
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(__dirname, "..", "..");
export const docFile = path.join(root, "docs", "BACKUP-SET.md");
export const rulesFile = path.join(root, "scripts", "backup-set.rules");
export const storesFile = path.join(root, "scripts", "sqlite-stores");
export const BEGIN = "<!-- generated from scripts/backup-set.rules and scripts/sqlite-stores: begin -->";
export const END = "<!-- generated: end -->";

export interface Rule {
  cls: string;
  where: "home" | "any";
  glob: string;
}

/** The rules of a rules file, in order. */
export function parseRules(text: string): Rule[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.trimStart().startsWith("#"))
    .map((l) => {
      const [cls, where, glob] = l.trim().split(/\s+/);
      return { cls: cls!, where: where as Rule["where"], glob: glob! };
    });
}

const verb = (cls: string) =>
  cls.startsWith("precious") ? (cls === "precious" ? "kept" : `kept through the ${cls.split(":")[1]} redaction`) : cls === "dangerous:allowlist" ? "never kept; its allowlist lines are" : "left out";

export function renderRules(rules: string, stores: string): string {
  const out: string[] = [];
  let group: { key: string; globs: string[]; cls: string; where: string } | undefined;
  const flush = () => {
    if (group) {
      const scope = group.where === "any" ? "at any depth" : "at the home root and in every profile";
      out.push(`- **${group.cls}**, ${verb(group.cls)} (${scope}): ${group.globs.map((g) => `\`${g}\``).join(", ")}`);
    }
  };
  const parsed = parseRules(rules);
  for (const r of parsed) {
    const key = `${r.cls} ${r.where}`;
    if (!group || group.key !== key) {
      flush();
      group = { key, globs: [], cls: r.cls, where: r.where };
    }
    group.globs.push(r.glob);
  }
  flush();
  const storeGlobs = stores
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#"))
    .map((l) => `\`${l}\``);
  return [BEGIN, "", `The ${parsed.length} rules, in order (the first that matches decides; a path none matches is unclassified):`, "", ...out, "",
    `SQLite stores (scripts/sqlite-stores): ${storeGlobs.join(", ")}`, "", END].join("\n");
}

export function currentBlock(doc: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${docFile}: generated block markers missing`);
  return doc.slice(a, b + END.length);
}

if (require.main === module) {
  const doc = fs.readFileSync(docFile, "utf8");
  const block = renderRules(fs.readFileSync(rulesFile, "utf8"), fs.readFileSync(storesFile, "utf8"));
  fs.writeFileSync(docFile, doc.replace(currentBlock(doc), block));
  console.log(`updated ${docFile}`);
}
