// The backup set as data: the rules file is well formed, the docs agree with it, and the scripts'
// reading of it (classify_tree in scripts/lib/common.sh, scripts/lib/classify.awk) classifies sample
// paths of every class, at the root, in profiles at any depth and inside user content, default deny.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cleanupTemp, tempDir } from "../lib/agent-home";
import { currentBlock, docFile, parseRules, renderRules, rulesFile, storesFile } from "../lib/backup-set-doc";
import { scriptsDir } from "../lib/storage-box";

afterAll(() => cleanupTemp());
const rules = fs.readFileSync(rulesFile, "utf8");

describe("backup-set.rules", () => {
  test("every rule is CLASS WHERE GLOB of the known classes; precious rules are home-scoped", () => {
    const parsed = parseRules(rules);
    expect(parsed.length).toBeGreaterThan(100);
    for (const r of parsed) {
      expect(["precious", "precious:yaml", "precious:json", "dead", "runtime", "dangerous", "dangerous:allowlist"], JSON.stringify(r)).toContain(r.cls);
      expect(["home", "any"]).toContain(r.where);
      expect(r.glob).toMatch(/^[A-Za-z0-9._*?~+-]+(\/[A-Za-z0-9._*?~+-]+)*$/);
      if (r.cls.startsWith("precious")) expect(r.where, r.glob).toBe("home");
    }
  });

  test("the classifier refuses a malformed rules file instead of guessing", () => {
    const bad = path.join(tempDir(), "bad.rules");
    // A good line passes, so a refusal below is the line's fault.
    fs.writeFileSync(bad, "precious home notes\n");
    const ok = spawnSync("bash", ["-c", 'source "$1/lib/common.sh"; "${AB_CLASSIFY[@]}" -v rules="$2" </dev/null', "bash", scriptsDir, bad], { encoding: "utf8" });
    expect(ok.status, ok.stderr).toBe(0);
    for (const line of ["precious anywhere x", "secret home x", "precious any x", "dead home ../x", "dead home a b c", "dead home x;rm"]) {
      fs.writeFileSync(bad, `${line}\n`);
      const r = spawnSync("bash", ["-c", 'source "$1/lib/common.sh"; "${AB_CLASSIFY[@]}" -v rules="$2" </dev/null', "bash", scriptsDir, bad], { encoding: "utf8" });
      expect(r.status, line).not.toBe(0);
      expect(r.stderr, line).toMatch(/classify\.awk: .*bad\.rules:1:/);
    }
  });

  test("docs/BACKUP-SET.md lists exactly the rules of the rules and stores files", () => {
    const doc = fs.readFileSync(docFile, "utf8");
    const expected = renderRules(rules, fs.readFileSync(storesFile, "utf8"));
    expect(currentBlock(doc), "regenerate with: npx tsx test/lib/backup-set-doc.ts").toBe(expected);
  });

  test("the scripts classify sample paths as the design says", () => {
    const home = tempDir();
    const expected: Record<string, string> = {
      "SOUL.md": "precious",
      "state.db": "precious:sqlite",
      "skills/x/bin/run.sh": "precious",
      "profiles/p/skills/x/bin/run.sh": "precious",
      "profiles/p/workspace/proj/cache/data.txt": "precious",
      "workspace/proj/logs/keep.txt": "precious",
      "cron/jobs.json": "precious",
      "cache/images/cat.png": "precious",
      "profiles/p/profiles/q/memories/M.md": "precious",
      "config.yaml": "precious:yaml",
      "config.yaml.bak.20260901_120000": "precious:yaml",
      "honcho.json": "precious:json",
      "hindsight/config.json": "precious:json",
      "some-new-thing.txt": "unclassified",
      "profiles/p/new-dir/x": "unclassified",
      "cron/new-file": "unclassified",
      ".env": "dangerous:allowlist",
      "profiles/p/.env": "dangerous:allowlist",
      "skills/x/.env": "dangerous",
      ".env_k3j9x2a1.tmp": "dangerous",
      "auth.json.tmp.4242.abc": "dangerous",
      "workspace/app/my_token.json": "dangerous",
      "profiles/p/profiles/q/auth.json": "dangerous",
      "platforms/matrix/store/crypto.db": "dangerous",
      "state-snapshots/1/state.db": "dangerous",
      "vault/vault.key": "dangerous",
      "browser-profile/Default/Cookies": "dangerous",
      "profiles/p/chrome-debug/Default/Cookies": "dangerous",
      "shared/nous_auth.json": "dangerous",
      "home/.config/gh/hosts.yml": "dangerous",
      "cache/op_cache.json": "dangerous",
      "state.db-wal": "dead",
      "profiles/p/kanban.db-shm": "dead",
      "bin/uv": "dead",
      "profiles/p/bin/uv": "dead",
      "profiles/p/hermes-agent/x": "dead",
      "plugins/a/node_modules/m/i.js": "dead",
      "sessions/request_dump_1.json": "dead",
      "image_cache/a.png": "dead",
      "cache/model_catalog.json": "dead",
      "models/tiny.gguf": "dead",
      "state.db.pre-update-emergency-20260901_000000.bak": "dangerous",
      "gateway.pid": "runtime",
      "profiles/p/processes.json": "runtime",
      "cron/.tick.lock": "runtime",
      "runtime/active_sessions.json": "runtime",
    };
    for (const rel of Object.keys(expected)) {
      fs.mkdirSync(path.dirname(path.join(home, rel)), { recursive: true });
      fs.writeFileSync(path.join(home, rel), "x");
    }
    const r = spawnSync("bash", ["-c", 'set -euo pipefail; source "$1/lib/common.sh"; classify_tree "$2"', "bash", scriptsDir, home], {
      encoding: "utf8",
    });
    expect(r.status, r.stderr).toBe(0);
    const got = new Map<string, string>();
    for (const line of r.stdout.split("\n").filter(Boolean)) {
      const [cls, , , , rel] = line.split("\t");
      got.set(rel!, cls!);
    }
    for (const [rel, want] of Object.entries(expected)) expect(got.get(rel), rel).toBe(want);
  });
});
