// docs/RESTORE.md's fenced `bash <tag>` blocks, for the tests that run the runbook as written
// (test/host/runbook.test.ts and runbook-rekey-offboard.test.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot } from "./storage-box";

export const runbookFile = path.join(repoRoot, "docs", "RESTORE.md");

export interface Block {
  tag: string;
  code: string;
  line: number;
}

/** Every `bash <tag>` block of the runbook, in page order, with its line number. */
export function blocks(): Block[] {
  const text = fs.readFileSync(runbookFile, "utf8");
  const out: Block[] = [];
  for (const m of text.matchAll(/^```bash ([a-z:-]+)\n([\s\S]*?)^```$/gm)) {
    out.push({ tag: m[1]!, code: m[2]!, line: text.slice(0, m.index).split("\n").length });
  }
  return out;
}

/** The code of every block with this tag, joined, each headed by its line in the page. */
export const codeOf = (tag: string) =>
  blocks()
    .filter((b) => b.tag === tag)
    .map((b) => `# RESTORE.md line ${b.line}\n${b.code}`)
    .join("\n");
