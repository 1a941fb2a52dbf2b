// The sample agent home and the live writer: the shape the backup tests rely on.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { cleanupTemp, countRows, fixturesDir, listFiles, makeAgentHome, sql, startWriter, tempDir, tornSessions } from "../lib/agent-home";

afterAll(() => cleanupTemp());

describe("make-agent-home", () => {
  const root = tempDir();
  const { home, canaries } = makeAgentHome(path.join(root, "home"), { sessions: 12, profiles: 2, seed: 7, deadWeightMb: 20 });
  const files = listFiles(home);
  const read = (rel: string) => fs.readFileSync(path.join(home, rel), "utf8");

  test("builds every class of path, at the root and again in each profile", () => {
    const perLayout = [
      "SOUL.md", "memories/MEMORY.md", "state.db", "kanban.db", "sessions/sessions.json", "skills/devops/deploy/bin/deploy.sh",
      "cron/jobs.json", "pairing/telegram-approved.json", "platforms/pairing/discord-approved.json", "channel_directory.json",
      "hooks/on_message.py", "plugins/notes/plugin.yaml", "plans/launch.md", "workspace/notes.txt", ".managed",
      "bin/uv", "node/bin/node", "cache/images/cat.png", "image_cache/a.jpg", "checkpoints/HEAD", "backups/pre-update-20260101.zip",
      "state-snapshots/20260101-000000/.env", "kanban.db-wal", "plugins/notes/node_modules/left-pad/index.js",
      "gateway.pid", "gateway_state.json", "processes.json", "cron/.tick.lock",
      ".env", "auth.json", "mcp-tokens/github.json", "whatsapp/session/creds.json", "platforms/matrix/store/crypto.db",
      "google_token.json", "slack_tokens.json", "config.yaml",
    ];
    for (const prefix of ["", "profiles/profile1/", "profiles/profile2/"]) {
      for (const rel of perLayout) expect(fs.existsSync(path.join(home, prefix + rel)), prefix + rel).toBe(true);
    }
    expect(files).toContain("hermes-agent/venv/lib/libtorch.so");
  });

  test("every secret is a unique canary, and each canary sits in a dangerous file or config.yaml", () => {
    expect(new Set(canaries).size).toBe(canaries.length);
    expect(canaries.length).toBeGreaterThan(3 * 25);
    const env = read(".env");
    expect(env).toMatch(/^TELEGRAM_ALLOWED_USERS=/m);
    expect(env).toMatch(/^SLACK_HOME_CHANNEL=/m);
    expect(read("config.yaml")).toMatch(/api_key: sk-CANARY/);
    const all = files.map((f) => fs.readFileSync(path.join(home, f)).toString("latin1")).join("\n");
    for (const c of canaries) expect(all, c).toContain(c);
  });

  test("the same seed gives the same canaries; another seed gives others", () => {
    const again = makeAgentHome(path.join(root, "again"), { sessions: 12, profiles: 2, seed: 7 }).canaries;
    const other = makeAgentHome(path.join(root, "other"), { sessions: 12, profiles: 2, seed: 8 }).canaries;
    expect(again).toEqual(canaries);
    expect(other.filter((c) => canaries.includes(c))).toEqual([]);
  });

  test("state.db has the Hermes schema with working FTS, in WAL mode, and a consistent counter", () => {
    const db = path.join(home, "state.db");
    expect(sql(db, "PRAGMA journal_mode")).toBe("wal");
    expect(countRows(db, "sessions")).toBe(12);
    expect(countRows(db, "messages")).toBe(48);
    expect(Number(sql(db, "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'topic5'"))).toBeGreaterThan(0);
    expect(Number(sql(db, "SELECT count(*) FROM messages_fts_trigram WHERE content MATCH 'opic'"))).toBe(48);
    expect(tornSessions(db)).toBe(0);
  });

  test("dead weight is sparse: large apparent size, little disk", () => {
    const st = fs.statSync(path.join(home, "hermes-agent/venv/lib/libtorch.so"));
    expect(st.size).toBe(10 * 1024 * 1024);
    expect(st.blocks * 512).toBeLessThan(64 * 1024);
  });

  test("session snapshot files: one per session by default (at most 50), any number with --session-files", () => {
    const snapshots = (dir: string) => fs.readdirSync(path.join(dir, "sessions")).filter((f) => /^session_.*\.json$/.test(f)).sort();
    expect(snapshots(home)).toHaveLength(12);
    const big = path.join(root, "many-files");
    const r = spawnSync(path.join(fixturesDir, "make-agent-home"), ["--home", big, "--sessions", "5", "--session-files", "1200", "--profiles", "1"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const files = snapshots(big);
    expect(files).toHaveLength(1200);
    // Each is a transcript of its own session, named after it, as the agent writes them.
    for (const f of [files[0]!, files[599]!, files[1199]!]) {
      const s = JSON.parse(fs.readFileSync(path.join(big, "sessions", f), "utf8")) as { session_id: string; messages: unknown[] };
      expect(f).toBe(`session_${s.session_id}.json`);
      expect(s.messages.length).toBeGreaterThan(0);
    }
    expect(new Set(files.map((f) => fs.readFileSync(path.join(big, "sessions", f), "utf8"))).size).toBe(1200);
    // Profiles keep the default: one per session of theirs (a quarter of the root's, rounded up).
    expect(snapshots(path.join(big, "profiles", "profile1"))).toHaveLength(2);
    const bad = spawnSync(path.join(fixturesDir, "make-agent-home"), ["--home", path.join(root, "bad-files"), "--session-files", "many"], { encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--session-files must be a number/);
  });

  test("refuses a non-empty home and bad numbers", () => {
    expect(() => makeAgentHome(home)).toThrow(/not empty/);
    expect(() => makeAgentHome(path.join(root, "bad"), { sessions: 0 })).toThrow(/at least 1/);
  });
});

describe("agent-writer", () => {
  test("keeps committing messages and counters in the same transactions until stopped", async () => {
    const { home } = makeAgentHome(path.join(tempDir(), "home"));
    const db = path.join(home, "state.db");
    const start = countRows(db, "messages");
    const writer = await startWriter(home, { rate: 100 });
    let seen = countRows(db, "messages");
    // Bounded: it must make progress over a few polls while running.
    for (let i = 0; i < 100 && seen < start + 20; i++) {
      await new Promise((r) => setTimeout(r, 50));
      seen = countRows(db, "messages");
    }
    expect(seen).toBeGreaterThanOrEqual(start + 20);
    expect(tornSessions(db)).toBe(0);
    await writer.stop();
    const final = countRows(db, "messages");
    await new Promise((r) => setTimeout(r, 300));
    expect(countRows(db, "messages")).toBe(final);
    expect(tornSessions(db)).toBe(0);
    expect(sql(db, "PRAGMA integrity_check")).toBe("ok");
  });
});
