// The generated part of docs/BACKUP-SET.md: every rule of scripts/backup-set.patterns and every
// glob of scripts/sqlite-stores, in order, grouped as in the files. The doc's test compares the
// doc with this rendering; `npx tsx test/lib/backup-set-doc.ts` rewrites the doc's block.
import * as fs from "node:fs";
import * as path from "node:path";

const root = path.resolve(__dirname, "..", "..");
export const docFile = path.join(root, "docs", "BACKUP-SET.md");
export const patternsFile = path.join(root, "scripts", "backup-set.patterns");
export const storesFile = path.join(root, "scripts", "sqlite-stores");
export const BEGIN = "<!-- generated from scripts/backup-set.patterns and scripts/sqlite-stores: begin -->";
export const END = "<!-- generated: end -->";

export function renderRules(patterns: string, stores: string): string {
  const out: string[] = [];
  let group: { cls: string; action: string; globs: string[] } | undefined;
  const flush = () => {
    if (group && group.globs.length > 0) {
      out.push(`- **${group.cls}**, ${group.action === "!" ? "left out" : "kept"}: ${group.globs.map((g) => `\`${g}\``).join(", ")}`);
    }
  };
  let n = 0;
  let cls = "";
  for (const line of patterns.split("\n")) {
    const marker = /^#@ (\w+)$/.exec(line);
    if (marker) {
      flush();
      cls = marker[1]!;
      group = undefined;
      continue;
    }
    const rule = /^([!+]) fm:(.+)$/.exec(line);
    if (!rule) continue;
    n++;
    if (!group || group.action !== rule[1]) {
      flush();
      group = { cls, action: rule[1]!, globs: [] };
    }
    group.globs.push(rule[2]!);
  }
  flush();
  const storeGlobs = stores
    .split("\n")
    .filter((l) => l.startsWith("fm:"))
    .map((l) => `\`${l.slice(3)}\``);
  return [BEGIN, "", `The ${n} rules, in the order borg applies them (first match wins):`, "", ...out, "", `SQLite stores (scripts/sqlite-stores): ${storeGlobs.join(", ")}`, "", END].join("\n");
}

export function currentBlock(doc: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`${docFile}: generated block markers missing`);
  return doc.slice(a, b + END.length);
}

if (require.main === module) {
  const doc = fs.readFileSync(docFile, "utf8");
  const block = renderRules(fs.readFileSync(patternsFile, "utf8"), fs.readFileSync(storesFile, "utf8"));
  fs.writeFileSync(docFile, doc.replace(currentBlock(doc), block));
  console.log(`updated ${docFile}`);
}
