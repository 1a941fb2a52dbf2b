// The sample agent home and the live writer: the shape the backup tests rely on.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { agentUser, chownToAgent, cleanupTemp, countRows, fixturesDir, listFiles, makeAgentHome, runScript, sql, startWriter, tempDir, tornSessions } from "../lib/agent-home";
import { Hermes, requireHermes } from "../lib/hermes-agent";

afterAll(() => {
  cleanupTemp();
  // The worker may be ended without running exit handlers: remove the agent's user here.
  spawnSync("userdel", [agentUser().name]);
});

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

  test("sessions have the agent's ids (started-at time and 6 hex digits), and the saved session names one of them", () => {
    const ids = sql(path.join(home, "state.db"), "SELECT id FROM sessions ORDER BY started_at").split("\n");
    expect(ids).toHaveLength(12);
    for (const id of ids) expect(id).toMatch(/^\d{8}_\d{6}_[0-9a-f]{6}$/);
    expect(ids[0]).toMatch(/^20260101_000100_/);
    expect(JSON.parse(read("sessions/saved/favourite.json")).session_id).toBe(ids[0]);
    expect(fs.existsSync(path.join(home, `sessions/session_${ids[11]}.json`))).toBe(true);
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

describe("make-agent-home next to the real agent (hermes-agent, pinned)", () => {
  const root = tempDir();
  const home = path.join(root, "home");
  makeAgentHome(home, { sessions: 9, profiles: 1, seed: 3 });
  const schema = (db: string) =>
    sql(db, "SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY type, name");

  test("state.db and cron/jobs.json have exactly the shape the agent writes itself", () => {
    // A home the agent makes: its own state.db (any command opens it) and a cron job of its own.
    const own = path.join(root, "own");
    const userHome = path.join(root, "own-user");
    fs.mkdirSync(own, { mode: 0o700 });
    fs.mkdirSync(userHome, { mode: 0o700 });
    chownToAgent(own);
    chownToAgent(userHome);
    const hermes = new Hermes(requireHermes(), agentUser(), userHome, own);
    hermes.ok(["cron", "create", "--name", "digest", "0 9 * * *", "Summarise the day"]);
    expect(hermes.stats()).toEqual({ sessions: 0, messages: 0 });
    // cron/executions.db is made on the first `cron list`.
    expect(hermes.ok(["cron", "list"])).toContain("digest");

    expect(schema(path.join(home, "state.db"))).toBe(schema(path.join(own, "state.db")));
    expect(sql(path.join(home, "state.db"), "SELECT version FROM schema_version")).toBe(sql(path.join(own, "state.db"), "SELECT version FROM schema_version"));
    expect(sql(path.join(home, "state.db"), "SELECT version FROM schema_version")).toBe("22");
    expect(schema(path.join(home, "cron/executions.db"))).toBe(schema(path.join(own, "cron/executions.db")));

    const shape = (file: string) => {
      const j = JSON.parse(fs.readFileSync(file, "utf8")) as { jobs: Record<string, unknown>[] };
      return { top: Object.keys(j), job: j.jobs.map((job) => Object.keys(job)), schedule: j.jobs.map((job) => Object.keys(job.schedule as object)) };
    };
    const agents = shape(path.join(own, "cron/jobs.json"));
    const fixtures = shape(path.join(home, "cron/jobs.json"));
    expect(fixtures.top).toEqual(agents.top);
    expect(fixtures.job).toHaveLength(2);
    for (const keys of fixtures.job) expect(keys).toEqual(agents.job[0]);
    for (const keys of fixtures.schedule) expect(keys).toEqual(agents.schedule[0]);
    expect(fs.statSync(path.join(home, "cron/jobs.json")).mode & 0o777).toBe(0o600);
  });

  test("the agent's own checks (agent-check-hermes) pass on it, and the agent migrates nothing", () => {
    const before = schema(path.join(home, "state.db"));
    chownToAgent(home);
    const r = runScript("agent-check-hermes", ["--hermes", requireHermes().bin], { ...process.env, HERMES_HOME: home });
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok {3}default:sessions-stats: 9 sessions, 36 messages$/m);
    expect(r.stdout).toMatch(/^ok {3}default:sessions-list: 9 sessions listed$/m);
    expect(r.stdout).toMatch(/^ok {3}default:cron-list: 2 jobs of cron\/jobs.json listed$/m);
    expect(r.stdout).toMatch(/^ok {3}profile:profile1:sessions-stats: 3 sessions, 12 messages$/m);
    expect(schema(path.join(home, "state.db"))).toBe(before);
  });
});
