// agent-backup against real borg, sshd and sqlite3: the archive holds exactly the precious set of
// a home shaped like the real agent's, consistent while a writer keeps writing, and nothing else.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import YAML from "yaml";
import { cleanupTemp, fingerprint, makeAgentHome, runScript, sql, startWriter, tempDir, tornSessions, type AgentHome } from "../lib/agent-home";
import { repoRoot, startStorageBox, type StorageBox } from "../lib/storage-box";

const scriptsLib = path.join(repoRoot, "scripts", "lib");
let box: StorageBox;
let work: string;
let agent: AgentHome;
let config: string;
let metricsDir: string;
let archive: string;
let extracted: string;
let backupLog: string;
let homeBefore: Map<string, string>;
let manifest: {
  archive: string;
  paths: string[];
  classes: Record<string, { files: number; bytes: number }>;
  excluded: Record<string, { paths: number; bytes: number }>;
  sha256: Record<string, string>;
  stores: { path: string; integrity: string; tables: Record<string, number> }[];
  redactionMarker: string;
};

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["acme"] });
  work = tempDir();
  agent = makeAgentHome(path.join(work, "home"), { profiles: 2, sessions: 40 });
  metricsDir = path.join(work, "metrics");
  config = box.writeConfig("acme", { agentHome: agent.home, metricsDir });
  const init = runScript("agent-backup", ["--config", config, "--init"], box.clientEnv);
  expect(init.status, init.stderr).toBe(0);

  homeBefore = fingerprint(agent.home);
  // The writer runs through the whole backup.
  const writer = await startWriter(agent.home, { rate: 100 });
  const r = runScript("agent-backup", ["--config", config], box.clientEnv);
  await writer.stop();
  backupLog = r.stderr;
  expect(r.status, r.stderr).toBe(0);

  const list = box.borg("acme", "maintenance", ["list", "--short"]);
  archive = list.stdout.trim().split("\n").pop() ?? "";
  extracted = path.join(work, "extracted");
  fs.mkdirSync(extracted);
  const x = spawnSync("borg", ["extract", `::${archive}`], { cwd: extracted, env: box.borgEnv("acme", "drill"), encoding: "utf8" });
  expect(x.status, x.stderr).toBe(0);
  manifest = JSON.parse(fs.readFileSync(path.join(extracted, ".agent-backup", "manifest.json"), "utf8"));
});

afterAll(async () => {
  await box?.stop();
  cleanupTemp();
});

function archivePaths(): string[] {
  const r = box.borg("acme", "maintenance", ["list", "--format", "{path}{NL}", `::${archive}`]);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split("\n").filter((p) => p !== "" && p !== ".");
}

describe("agent-backup", () => {
  test("--init is idempotent, and the archive is named <prefix>-<UTC time>", () => {
    const again = runScript("agent-backup", ["--config", config, "--init"], box.clientEnv);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/exists already/);
    expect(archive).toMatch(/^acme-\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
    expect(manifest.archive).toBe(archive);
  });

  test("the manifest lists exactly what the archive holds", () => {
    expect([...manifest.paths].sort()).toEqual(archivePaths().sort());
  });

  test("the archive is the precious set the rules select on the live home, plus the added files", () => {
    // The rules' own reading of the live home (scripts/lib/classify.awk, one record per path).
    const r = spawnSync("bash", ["-c", 'set -euo pipefail; source "$1/common.sh"; classify_tree "$2"', "bash", scriptsLib, agent.home], {
      encoding: "utf8",
    });
    expect(r.status, r.stderr).toBe(0);
    const selected = r.stdout
      .split("\n")
      .filter(Boolean)
      .map((l) => l.split("\t"))
      .filter(([cls]) => /^(precious|container)/.test(cls!))
      .map((f) => f[4]!);
    const added = (p: string) => p === ".agent-backup" || p.endsWith("/.agent-backup") || p.includes(".agent-backup/");
    // The writer adds messages, never paths: the archive holds exactly the selected paths.
    expect(archivePaths().filter((p) => !added(p)).sort()).toEqual(selected.sort());
  });

  test("no dead weight, runtime or dangerous path is archived, wherever it sits", () => {
    const paths = new Set(archivePaths());
    const leftOut = [
      ".env", "auth.json", "mcp-tokens", "whatsapp/session", "platforms/matrix/store", "matrix/store", "google_token.json",
      "google_client_secret.json", "slack_tokens.json", ".anthropic_oauth.json", "auth/google_oauth.json",
      "webhook_subscriptions.json", "skills/devops/deploy/api_tokens.json", "skills/devops/deploy/.env", "state-snapshots",
      "hermes-agent", "bin", "node", "cache/bws_cache.json", "image_cache", "audio_cache", "browser_screenshots", "temp_vision_images",
      "checkpoints", "backups", "logs", "kanban.db-wal", "kanban.db-shm", "state.db.malformed-backup-20260101",
      "sessions/request_dump_0001.json", "plugins/notes/node_modules", "plugins/notes/__pycache__", "workspace/scratch.db-journal",
      "kanban/boards/main/workspaces", "kanban/boards/main/attachments",
      "gateway.pid", "gateway.lock", "cron.pid", "gateway_state.json", "processes.json", "auth.lock", "cron/.jobs.lock",
      "cron/.tick.lock", "cron/ticker_1", ".clean_shutdown", ".update_check",
    ];
    for (const prefix of ["", "profiles/profile1/", "profiles/profile2/"]) {
      for (const p of leftOut) {
        const full = prefix + p;
        if (full === "profiles/profile1/hermes-agent" || full === "profiles/profile2/hermes-agent") continue;
        expect(paths.has(full), full).toBe(false);
        expect([...paths].some((a) => a.startsWith(`${full}/`)), `${full}/...`).toBe(false);
      }
    }
  });

  test("the precious set is archived, in the home's own layout, byte for byte", () => {
    const kept = [
      "SOUL.md", "memories/MEMORY.md", "memories/USER.md", "sessions/sessions.json", "sessions/saved/favourite.json",
      "skills/devops/deploy/SKILL.md", "skills/devops/deploy/bin/deploy.sh", "skills/.hub/lock.json", "cron/jobs.json",
      "cron/output/daily-report/2026-01-01T09-00-00.md", "pairing/telegram-approved.json", "platforms/pairing/discord-approved.json",
      "channel_directory.json", "kanban/boards/main/board.json", "hooks/on_message.py", "plugins/notes/plugin.yaml",
      "plans/launch.md", "workspace/notes.txt", ".hermes_history", "active_profile", ".managed", ".install_method",
    ];
    for (const prefix of ["", "profiles/profile1/", "profiles/profile2/"]) {
      for (const p of kept) {
        const rel = prefix + p;
        expect(fs.existsSync(path.join(extracted, rel)), rel).toBe(true);
        expect(fs.readFileSync(path.join(extracted, rel)).equals(fs.readFileSync(path.join(agent.home, rel))), rel).toBe(true);
      }
    }
    expect(manifest.sha256["SOUL.md"]).toBe(homeBefore.get("SOUL.md"));
    expect(manifest.sha256["profiles/profile2/memories/USER.md"]).toBe(homeBefore.get("profiles/profile2/memories/USER.md"));
  });

  test("every store is a consistent page-for-page copy taken while the writer wrote, with row counts in the manifest", () => {
    const stores = manifest.stores.map((s) => s.path).sort();
    for (const prefix of ["", "profiles/profile1/", "profiles/profile2/"]) {
      for (const db of ["state.db", "kanban.db", "projects.db", "response_store.db", "memory_store.db", "verification_evidence.db"]) {
        expect(stores).toContain(prefix + db);
      }
    }
    expect(stores.some((s) => s.includes("crypto.db"))).toBe(false);
    const state = manifest.stores.find((s) => s.path === "state.db")!;
    const copy = path.join(extracted, "state.db");
    expect(sql(copy, "PRAGMA integrity_check")).toBe("ok");
    expect(tornSessions(copy)).toBe(0);
    expect(sql(copy, "INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check'); SELECT 'fts ok'", { write: true })).toBe("fts ok");
    expect(Number(sql(copy, "SELECT count(*) FROM messages"))).toBe(state.tables.messages);
    // Taken during writes: more than the generated 160 messages, fewer than the final count.
    expect(state.tables.messages!).toBeGreaterThan(160);
    expect(state.tables.messages!).toBeLessThanOrEqual(Number(sql(path.join(agent.home, "state.db"), "SELECT count(*) FROM messages")));
    // The copy keeps the live store's pages, WAL mode included, but never a -wal/-shm/-journal file.
    expect(archivePaths().filter((p) => /-(wal|shm|journal)$/.test(p))).toEqual([]);
  });

  test("no canary appears anywhere in any archived file", () => {
    const all = [...fingerprint(extracted).entries()].filter(([, v]) => v !== "dir").map(([p]) => p);
    expect(all.length).toBeGreaterThan(100);
    const text = all.map((p) => fs.readFileSync(path.join(extracted, p)).toString("latin1")).join("\n");
    const leaked = agent.canaries.filter((c) => text.includes(c));
    expect(leaked).toEqual([]);
  });

  test("config.yaml is archived with secret-looking values redacted and the rest intact", () => {
    for (const prefix of ["", "profiles/profile1/"]) {
      const doc = YAML.parse(fs.readFileSync(path.join(extracted, prefix, "config.yaml"), "utf8"));
      expect(doc.model.api_key).toBe(manifest.redactionMarker);
      expect(doc.model.default).toBe("anthropic/claude-sonnet-4");
      expect(doc.model.base_url).toBe("https://openrouter.ai/api/v1");
      expect(doc.platforms.telegram.enabled).toBe(true);
      expect(doc.mcp_servers.github.headers.Authorization).toBe(manifest.redactionMarker);
      expect(doc.toolsets).toEqual(["web", "terminal"]);
    }
  });

  test("allowlists and home channels of each .env are kept apart, without secrets", () => {
    for (const prefix of ["", "profiles/profile1/", "profiles/profile2/"]) {
      const allow = fs.readFileSync(path.join(extracted, prefix, ".agent-backup", "allowlists.env"), "utf8");
      const lines = allow.split("\n").filter((l) => l && !l.startsWith("#"));
      expect(lines.sort()).toEqual(
        ["DISCORD_ALLOWED_USERS=333333", "SLACK_HOME_CHANNEL=C0123ABCD", "TELEGRAM_ALLOWED_USERS=111111,222222", "TELEGRAM_HOME_CHANNEL=-100123"].sort(),
      );
    }
    expect(fs.existsSync(path.join(extracted, "skills/devops/deploy/.agent-backup"))).toBe(false);
  });

  test("the manifest counts files per class and what was left out", () => {
    expect(manifest.classes.precious!.files).toBeGreaterThan(50);
    expect(manifest.excluded.dangerous!.paths).toBeGreaterThan(40);
    expect(manifest.excluded.dead!.bytes).toBeGreaterThan(2 * 1024 * 1024 - 1);
    expect(Object.keys(manifest.classes)).toEqual(["precious"]);
  });

  test("each dangerous path left out is logged by name; one log line per step", () => {
    for (const p of [".env", "profiles/profile1/auth.json", "skills/devops/deploy/api_tokens.json", "profiles/profile2/mcp-tokens"]) {
      expect(backupLog).toContain(`left out (dangerous): ${p}`);
    }
    for (let step = 1; step <= 5; step++) expect(backupLog).toContain(`step ${step}/5`);
    expect(agent.canaries.filter((c) => backupLog.includes(c))).toEqual([]);
  });

  test("the live home was not modified", () => {
    // Only the root state.db, which the writer wrote to, may differ from the listing taken before.
    const now = fingerprint(agent.home);
    expect([...now.keys()].sort()).toEqual([...homeBefore.keys()].sort());
    for (const [p, h] of now) if (p !== "state.db") expect(h, p).toBe(homeBefore.get(p));
  });

  test("a backup creates nothing in the live home, not even SQLite -wal/-shm files", () => {
    const all = (dir: string): string[] =>
      (fs.readdirSync(dir, { recursive: true }) as string[]).sort();
    const before = all(agent.home);
    const r = runScript("agent-backup", ["--config", config], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(all(agent.home)).toEqual(before);
  });

  test("writes the Prometheus textfile and leaves no staging behind", () => {
    const prom = fs.readFileSync(path.join(metricsDir, "agent-backup-acme.prom"), "utf8");
    expect(prom).toMatch(/^agent_backup_last_run_success\{archive_prefix="acme"\} 1$/m);
    expect(prom).toMatch(/^agent_backup_last_success_timestamp_seconds\{archive_prefix="acme"\} \d{10}$/m);
    expect(Number(prom.match(/^agent_backup_files\{[^}]*\} (\d+)$/m)?.[1])).toBeGreaterThan(100);
    expect(Number(prom.match(/^agent_backup_original_bytes\{[^}]*\} (\d+)$/m)?.[1])).toBeGreaterThan(1_000_000);
    expect(fs.readdirSync(metricsDir)).toEqual(["agent-backup-acme.prom"]);
    const staging = path.join(box.dir, "client", "staging");
    expect(fs.readdirSync(staging).filter((f) => f.includes("stage"))).toEqual([]);
  });

  test("a read-only home on its own mount (the service's view under ProtectHome), agent writing: same set", async () => {
    const before = fingerprint(agent.home);
    const writer = await startWriter(agent.home, { rate: 100 });
    // In a private mount namespace of this test only: the home bind-mounted read-only over itself.
    const r = spawnSync(
      "unshare",
      ["-m", "--propagation", "private", "sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && exec "$2" --config "$3"', "sh",
        agent.home, path.join(repoRoot, "scripts", "agent-backup"), config],
      { env: box.clientEnv, encoding: "utf8" },
    );
    await writer.stop();
    expect(r.status, r.stderr).toBe(0);
    const after = fingerprint(agent.home);
    for (const [p, h] of after) if (p !== "state.db") expect(h, p).toBe(before.get(p));
    const latest = box.borg("acme", "maintenance", ["list", "--short", "--last", "1"]).stdout.trim();
    const list = box.borg("acme", "maintenance", ["list", "--format", "{path}{NL}", `::${latest}`]);
    expect(list.stdout.split("\n").filter(Boolean).sort()).toEqual(archivePaths().sort());
    // The store copied through the read-only mount, under writes, is consistent too.
    const dir = tempDir();
    const x = spawnSync("borg", ["extract", `::${latest}`, "state.db"], { cwd: dir, env: box.borgEnv("acme", "drill"), encoding: "utf8" });
    expect(x.status, x.stderr).toBe(0);
    expect(sql(path.join(dir, "state.db"), "PRAGMA integrity_check")).toBe("ok");
    expect(tornSessions(path.join(dir, "state.db"))).toBe(0);
  });

  test("a store is archived page for page: after a quiet spell only its header page differs from the live file", () => {
    // What lets borg deduplicate a store from one night to the next: pages the agent did not touch
    // are the same bytes in both copies (VACUUM INTO rewrote the layout, so most chunks were new).
    const live = path.join(agent.home, "state.db");
    sql(live, "PRAGMA wal_checkpoint(TRUNCATE)", { write: true });
    const r = runScript("agent-backup", ["--config", config], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/page copy in one read transaction, integrity ok/);
    const latest = box.borg("acme", "maintenance", ["list", "--short", "--last", "1"]).stdout.trim();
    const dir = tempDir();
    const x = spawnSync("borg", ["extract", `::${latest}`, "state.db"], { cwd: dir, env: box.borgEnv("acme", "drill"), encoding: "utf8" });
    expect(x.status, x.stderr).toBe(0);
    const pageSize = Number(sql(live, "PRAGMA page_size"));
    const a = fs.readFileSync(live);
    const b = fs.readFileSync(path.join(dir, "state.db"));
    expect(b.length).toBe(a.length);
    const differing: number[] = [];
    for (let off = 0; off < a.length; off += pageSize) {
      if (!a.subarray(off, off + pageSize).equals(b.subarray(off, off + pageSize))) differing.push(off / pageSize + 1);
    }
    expect(a.length / pageSize).toBeGreaterThan(100);
    // Page 1 holds the file change counter, which the copy's own commit bumps.
    expect(differing.filter((p) => p !== 1)).toEqual([]);
  });

  test("--key-export prints the repository key and nothing else on stdout", () => {
    const r = runScript("agent-backup", ["--config", config, "--key-export"], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^BORG_KEY [0-9a-f]{64}\n/);
  });
});
