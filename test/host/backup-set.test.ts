// The backup set as data: the patterns file is well formed, the docs agree with it, and the
// scripts' reading of it (backup_set_walk in scripts/lib/common.sh) classifies sample paths of
// every class, at the root, in profiles and inside user content.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cleanupTemp, tempDir } from "../lib/agent-home";
import { currentBlock, docFile, patternsFile, renderRules, storesFile } from "../lib/backup-set-doc";
import { scriptsDir } from "../lib/storage-box";

afterAll(() => cleanupTemp());
const patterns = fs.readFileSync(patternsFile, "utf8");

describe("backup-set.patterns", () => {
  test("only fm: rules, each under a #@ class marker of the four classes", () => {
    let cls = "";
    const seen = new Set<string>();
    for (const line of patterns.split("\n")) {
      const marker = /^#@ (.*)$/.exec(line);
      if (marker) {
        expect(["precious", "dead", "runtime", "dangerous"]).toContain(marker[1]);
        cls = marker[1]!;
        continue;
      }
      if (line === "" || line.startsWith("#")) continue;
      expect(line).toMatch(/^[!+] fm:[A-Za-z0-9._*?/-]+$/);
      expect(cls, line).not.toBe("");
      expect(line.startsWith("+"), line).toBe(cls === "precious");
      seen.add(cls);
    }
    expect([...seen].sort()).toEqual(["dangerous", "dead", "precious", "runtime"]);
  });

  test("docs/BACKUP-SET.md lists exactly the rules of the patterns and stores files", () => {
    const doc = fs.readFileSync(docFile, "utf8");
    const expected = renderRules(patterns, fs.readFileSync(storesFile, "utf8"));
    expect(currentBlock(doc), "regenerate with: npx tsx test/lib/backup-set-doc.ts").toBe(expected);
  });

  test("the scripts classify sample paths as the design says", () => {
    const home = tempDir();
    const expected: Record<string, string> = {
      "SOUL.md": "k precious",
      "state.db": "k precious",
      "skills/x/bin/run.sh": "k precious",
      "profiles/p/skills/x/bin/run.sh": "k precious",
      "profiles/p/workspace/proj/cache/data.txt": "k precious",
      "workspace/proj/logs/keep.txt": "k precious",
      "cron/jobs.json": "k precious",
      "some-new-thing.txt": "k unlisted",
      ".env": "x dangerous",
      "profiles/p/.env": "x dangerous",
      "skills/x/.env": "x dangerous",
      "workspace/app/my_token.json": "x dangerous",
      "profiles/p/profiles/q/auth.json": "x dangerous",
      "platforms/matrix/store/crypto.db": "x dangerous",
      "state-snapshots/1/state.db": "x dangerous",
      "state.db-wal": "x dead",
      "profiles/p/kanban.db-shm": "x dead",
      "bin/uv": "x dead",
      "profiles/p/bin/uv": "x dead",
      "profiles/p/hermes-agent/x": "x dead",
      "plugins/a/node_modules/m/i.js": "x dead",
      "sessions/request_dump_1.json": "x dead",
      "image_cache/a.png": "x dead",
      "gateway.pid": "x runtime",
      "profiles/p/processes.json": "x runtime",
      "cron/.tick.lock": "x runtime",
    };
    for (const rel of Object.keys(expected)) {
      fs.mkdirSync(path.dirname(path.join(home, rel)), { recursive: true });
      fs.writeFileSync(path.join(home, rel), "x");
    }
    const r = spawnSync("bash", ["-c", 'set -euo pipefail; source "$1/lib/common.sh"; backup_set_walk "$2" | tr "\\0" "\\n"', "bash", scriptsDir, home], {
      encoding: "utf8",
    });
    expect(r.status, r.stderr).toBe(0);
    const got = new Map<string, string>();
    for (const line of r.stdout.split("\n").filter(Boolean)) {
      const [action, cls, , , rel] = line.split("\t");
      got.set(rel!, `${action} ${cls}`);
    }
    // A path's class is that of its own record, or of the left-out folder above it.
    const classOf = (rel: string): string | undefined => {
      for (let p = rel; p !== "."; p = path.dirname(p)) {
        const v = got.get(p);
        if (v && (p === rel || v.startsWith("x"))) return v;
      }
      return undefined;
    };
    for (const [rel, want] of Object.entries(expected)) expect(classOf(rel), rel).toBe(want);
  });
});
