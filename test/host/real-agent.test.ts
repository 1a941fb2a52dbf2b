// The real agent as the test subject: hermes-agent (pinned) writes its own home against a fake model
// server on loopback; agent-backup archives it while the agent is in the middle of a turn;
// agent-restore puts it into a fresh folder; then the agent's own commands must find the restored
// home healthy (sessions, messages, store integrity, cron jobs, memories, a new turn), and no API
// key given to the agent may be in any archived byte.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import YAML from "yaml";
import { agentHealthCheck } from "../../components/drill-command";
import { parseDrillReport } from "../../components/drill-report";
import { rememberedWord, secondProfile, type SessionStats } from "../../drill/lib/real-agent";
import { agentUser, chownToAgent, cleanupTemp, runScript, tempDir } from "../lib/agent-home";
import { Hermes, makeRealAgentHome, requireHermes, startFakeServer, type FakeServer, type HermesResult, type RealAgentHome } from "../lib/hermes-agent";
import { repoRoot, startStorageBox, type StorageBox } from "../lib/storage-box";

const tenant = "hermes";
let box: StorageBox;
let server: FakeServer;
let work: string;
let agent: RealAgentHome;
let config: string;
let archive: string;
let extracted: string;
let target: string;
let restored: Hermes;
let backupRun: { status: number | null; stderr: string };
let turn: HermesResult;
let turnRunningAfterBackup: boolean;
let before: { stats: SessionStats; ids: string[]; profileStats: SessionStats; profileIds: string[]; cron: string };
let afterTurn: SessionStats;
let manifest: { paths: string[]; stores: { path: string; tables: Record<string, number> }[]; redactionMarker: string; unclassified?: unknown[] };

const bounded = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no end after ${ms / 1000}s`)), ms))]);

beforeAll(async () => {
  const install = requireHermes();
  box = await startStorageBox({ tenants: [tenant] });
  work = tempDir();
  server = await startFakeServer(work);
  const live = path.join(work, "live");
  fs.mkdirSync(live, { mode: 0o711 });
  agent = makeRealAgentHome(live, server);
  before = {
    stats: agent.hermes.stats(),
    ids: agent.hermes.sessionIds(),
    profileStats: agent.hermes.stats(secondProfile),
    profileIds: agent.hermes.sessionIds(secondProfile),
    cron: agent.hermes.ok(["cron", "list"]),
  };

  config = box.writeConfig(tenant, { agentHome: agent.home, metricsDir: path.join(work, "metrics") });
  const init = runScript("agent-backup", ["--config", config, "--init"], box.clientEnv);
  expect(init.status, init.stderr).toBe(0);

  // A slow turn runs through the whole backup: the agent holds state.db open and writes to it.
  const requestsBefore = server.requests().length;
  const running = agent.hermes.start(["-z", "SLOW 40 a turn that runs through the backup"], 180_000);
  let streaming = false;
  for (let i = 0; i < 600 && !streaming; i++) {
    streaming = server.requests().slice(requestsBefore).some((r) => r.path === "/v1/chat/completions" && r.stream === true);
    if (!streaming) await new Promise((r) => setTimeout(r, 100));
  }
  expect(streaming, "the slow turn reached the model within 60 s").toBe(true);
  const r = runScript("agent-backup", ["--config", config], box.clientEnv);
  backupRun = { status: r.status, stderr: r.stderr };
  // Did the turn outlive the backup? (Running, not a zombie waiting to be reaped.)
  const state = fs.existsSync(`/proc/${running.pid}/stat`) ? fs.readFileSync(`/proc/${running.pid}/stat`, "utf8").replace(/^.*\) /, "")[0] : "gone";
  turnRunningAfterBackup = state !== "gone" && state !== "Z";
  turn = await bounded(running.done, 180_000, "the slow turn");
  afterTurn = agent.hermes.stats();
  expect(backupRun.status, backupRun.stderr).toBe(0);

  archive = box.borg(tenant, "maintenance", ["list", "--short", "--last", "1"]).stdout.trim();
  extracted = path.join(work, "extracted");
  fs.mkdirSync(extracted);
  const x = spawnSync("borg", ["extract", `::${archive}`], { cwd: extracted, env: box.borgEnv(tenant, "drill"), encoding: "utf8" });
  expect(x.status, x.stderr).toBe(0);
  manifest = JSON.parse(fs.readFileSync(path.join(extracted, ".agent-backup", "manifest.json"), "utf8"));

  // A fresh folder of the agent's user, a fresh HOME: as on a new machine.
  const parent = path.join(work, "restored");
  fs.mkdirSync(parent, { mode: 0o711 });
  chownToAgent(parent);
  target = path.join(parent, "hermes");
  const rs = runScript("agent-restore", ["--config", config, "--target", target, "--owner", agentUser().name], box.clientEnv);
  expect(rs.status, rs.stderr).toBe(0);
  const freshHome = path.join(work, "fresh-home");
  fs.mkdirSync(freshHome, { mode: 0o700 });
  chownToAgent(freshHome);
  restored = new Hermes(install, agentUser(), freshHome, target);
}, 900_000);

afterAll(async () => {
  await server?.stop();
  await box?.stop();
  cleanupTemp();
  // The worker may be ended without running exit handlers: remove the agent's user here.
  spawnSync("userdel", [agentUser().name]);
});

const storeRows = (store: string, table: string) => manifest.stores.find((s) => s.path === store)?.tables[table];

/** Every file below root, relative. */
function filesBelow(root: string): string[] {
  return (fs.readdirSync(root, { recursive: true }) as string[]).filter((p) => fs.lstatSync(path.join(root, p)).isFile());
}

describe("the real agent's home", () => {
  test("was written by the agent itself: sessions, messages, memories, a cron job, a second profile, API keys", () => {
    expect(before.stats.sessions).toBeGreaterThanOrEqual(3);
    expect(before.stats.messages).toBeGreaterThanOrEqual(8);
    expect(before.profileStats.sessions).toBe(2);
    expect(before.ids).toHaveLength(before.stats.sessions);
    expect(fs.readFileSync(path.join(agent.home, "memories", "MEMORY.md"), "utf8")).toContain(rememberedWord);
    expect(fs.readFileSync(path.join(agent.home, "memories", "USER.md"), "utf8")).toContain("short answers");
    expect(before.cron).toContain("daily-digest");
    const requests = server.requests();
    expect(requests.filter((r) => r.toolCall === "memory").length).toBeGreaterThanOrEqual(3);
    expect(requests.filter((r) => r.path === "/v1/chat/completions").every((r) => r.authorized)).toBe(true);
    // The canaries are really in the live home, in both profiles: the scan below can find them.
    for (const prefix of ["", `profiles/${secondProfile}/`]) {
      expect(fs.readFileSync(path.join(agent.home, prefix, "config.yaml"), "utf8")).toContain(agent.canaries.configKey);
      expect(fs.readFileSync(path.join(agent.home, prefix, ".env"), "utf8")).toContain(agent.canaries.envKey);
    }
    // Owned by the agent's own (non-root) user, as on a host.
    expect(fs.statSync(agent.home).uid).toBe(agentUser().uid);
  });

  test("holds no path that the backup set leaves unclassified", () => {
    const r = runScript("agent-backup", ["--classify", "--json", "--home", agent.home]);
    expect(r.status, r.stderr).toBe(0);
    const c = JSON.parse(r.stdout) as { unclassifiedCount: number; unclassified: { path: string }[] };
    expect(c.unclassified.map((u) => u.path)).toEqual([]);
    expect(c.unclassifiedCount).toBe(0);
    expect(manifest.unclassified ?? []).toEqual([]);
  });
});

describe("agent-backup while the real agent runs a turn", () => {
  test("commits an archive while the turn goes on, and the turn completes", () => {
    expect(backupRun.status, backupRun.stderr).toBe(0);
    expect(turnRunningAfterBackup, "the turn was still running when the backup ended").toBe(true);
    expect(turn.status, turn.stderr).toBe(0);
    expect(turn.stdout).toContain("ok: SLOW 40 a turn that runs through");
    expect(afterTurn.sessions).toBe(before.stats.sessions + 1);
  });

  test("archives consistent stores: between the counts before and after the turn", () => {
    const sessions = storeRows("state.db", "sessions")!;
    const messages = storeRows("state.db", "messages")!;
    expect(sessions).toBeGreaterThanOrEqual(before.stats.sessions);
    expect(sessions).toBeLessThanOrEqual(afterTurn.sessions);
    expect(messages).toBeGreaterThanOrEqual(before.stats.messages);
    expect(messages).toBeLessThanOrEqual(afterTurn.messages);
    expect(storeRows(`profiles/${secondProfile}/state.db`, "messages")).toBe(before.profileStats.messages);
    expect(manifest.paths).toEqual(expect.arrayContaining(["state.db", "memories/MEMORY.md", "cron/jobs.json", "cron/executions.db", `profiles/${secondProfile}/state.db`]));
  });

  test("puts no API key given to the agent into any archived byte, SQLite stores included", () => {
    const files = filesBelow(extracted);
    expect(files.length).toBeGreaterThan(10);
    const leaks: string[] = [];
    for (const f of files) {
      const bytes = fs.readFileSync(path.join(extracted, f)).toString("latin1");
      for (const c of agent.canaryList) if (bytes.includes(c) || f.includes(c)) leaks.push(`${f}: ${c.slice(0, 14)}...`);
    }
    // Inside every store, as SQLite reads it (text in overflow pages, FTS tables).
    const stores = files.filter((f) => fs.readFileSync(path.join(extracted, f)).subarray(0, 15).toString("latin1") === "SQLite format 3");
    expect(stores).toEqual(expect.arrayContaining(["state.db", `profiles/${secondProfile}/state.db`, "cron/executions.db"]));
    for (const s of stores) {
      const dump = spawnSync("sqlite3", ["-readonly", path.join(extracted, s), ".dump"], { encoding: "utf8", maxBuffer: 256 * 1024 * 1024 });
      expect(dump.status, dump.stderr).toBe(0);
      for (const c of agent.canaryList) if (dump.stdout.includes(c)) leaks.push(`${s} (dump): ${c.slice(0, 14)}...`);
    }
    const names = box.borg(tenant, "maintenance", ["list", "--format", "{path}{NL}", `::${archive}`]).stdout;
    for (const c of agent.canaryList) if (names.includes(c)) leaks.push(`a path name: ${c.slice(0, 14)}...`);
    expect(leaks).toEqual([]);
  });

  test("keeps config.yaml with the API key redacted and the model settings intact, in both profiles", () => {
    for (const prefix of ["", `profiles/${secondProfile}/`]) {
      const doc = YAML.parse(fs.readFileSync(path.join(extracted, prefix, "config.yaml"), "utf8"));
      expect(doc.model.api_key).toBe(manifest.redactionMarker);
      expect(doc.model.base_url).toBe(server.baseUrl);
      expect(doc.model.provider).toBe("custom");
      expect(fs.existsSync(path.join(extracted, prefix, ".env"))).toBe(false);
    }
  });
});

describe("the restored home, checked by the real agent", () => {
  test("scripts/agent-check-hermes (the drills' agent check) passes, run by agent-verify as root (before any other command runs on the home)", () => {
    const check = `${path.join(repoRoot, "scripts", "agent-check-hermes")} --hermes ${restored.install.bin}`;
    const r = runScript("agent-verify", ["--home", target, "--agent-check", check]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^ok +agent-check: /m);
    const direct = spawnSync(path.join(repoRoot, "scripts", "agent-check-hermes"), ["--hermes", restored.install.bin], {
      env: { ...process.env, HERMES_HOME: target }, encoding: "utf8", timeout: 300_000,
    });
    expect(direct.status, direct.stdout + direct.stderr).toBe(0);
    for (const name of ["default:sessions-stats", "default:cron-list", `profile:${secondProfile}:sessions-stats`, `profile:${secondProfile}:sessions-repair`]) {
      expect(direct.stdout).toMatch(new RegExp(`^ok +${name}: `, "m"));
    }
    // Nothing in the restored home belongs to root after the agent ran on it.
    const rootOwned = spawnSync("find", [target, "-uid", "0"], { encoding: "utf8" });
    expect(rootOwned.stdout.trim()).toBe("");
  });

  test("hermes sessions stats: the archived sessions and messages, in both profiles", () => {
    expect(restored.stats()).toEqual({ sessions: storeRows("state.db", "sessions"), messages: storeRows("state.db", "messages") });
    expect(restored.stats(secondProfile)).toEqual(before.profileStats);
  });

  test("hermes sessions list: every session from before the backup", () => {
    expect(restored.sessionIds()).toEqual(expect.arrayContaining(before.ids));
    expect(restored.sessionIds(secondProfile).sort()).toEqual([...before.profileIds].sort());
  });

  test("hermes sessions repair --check-only: state.db opens cleanly", () => {
    for (const p of [[], ["-p", secondProfile]]) {
      const out = restored.ok([...p, "sessions", "repair", "--check-only"]);
      expect(out).toMatch(/opens cleanly/);
    }
  });

  test("hermes cron list: the cron job", () => {
    const out = restored.ok(["cron", "list"]);
    expect(out).toContain("daily-digest");
    expect(out).toContain("0 9 * * *");
  });

  test("one more turn works on the restored home, once the API key is provisioned again, and recalls its memory", () => {
    const stats = restored.stats();
    restored.ok(["config", "set", "model.api_key", "sk-reprovisioned-after-restore"]);
    const r = restored.run(["-z", `RECALL: ${rememberedWord}`], 240_000);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain(`recalled ${rememberedWord}: yes`);
    expect(restored.stats().sessions).toBe(stats.sessions + 1);
  });

  test("holds none of the API keys", () => {
    const leaks = filesBelow(target).filter((f) => {
      const bytes = fs.readFileSync(path.join(target, f)).toString("latin1");
      return agent.canaryList.some((c) => bytes.includes(c));
    });
    expect(leaks).toEqual([]);
  });

  const checkHome = (home: string, args: string[] = []) =>
    spawnSync(path.join(repoRoot, "scripts", "agent-check-hermes"), ["--hermes", restored.install.bin, ...args], {
      env: { ...process.env, HERMES_HOME: home }, encoding: "utf8", timeout: 300_000,
    });
  /** A copy of the home exactly as archived (the extracted archive), owned by `owner`. */
  const archivedCopy = (name: string, owner: "agent" | "root") => {
    const copy = path.join(work, name);
    expect(spawnSync("cp", ["-a", extracted, copy]).status).toBe(0);
    if (owner === "agent") chownToAgent(copy);
    else expect(spawnSync("chown", ["-R", "0:0", copy]).status).toBe(0);
    return copy;
  };

  test("agent-check-hermes passes the home as archived, and fails it once a message is gone, naming the counts", () => {
    const copy = archivedCopy("tampered", "agent");
    const good = checkHome(copy);
    expect(good.status, good.stdout + good.stderr).toBe(0);
    const messages = storeRows("state.db", "messages")!;
    const del = spawnSync("sqlite3", [path.join(copy, "state.db"), "DELETE FROM messages WHERE id = (SELECT max(id) FROM messages)"], { encoding: "utf8" });
    expect(del.status, del.stderr).toBe(0);
    const bad = checkHome(copy);
    expect(bad.status, bad.stdout + bad.stderr).toBe(1);
    expect(bad.stdout).toContain(`FAIL default:sessions-stats: ${messages - 1} messages, the archive's manifest counted ${messages}`);
    expect(bad.stdout).toMatch(new RegExp(`^ok +profile:${secondProfile}:sessions-stats: `, "m"));
  });

  test("agent-check-hermes refuses to run the agent as root on a root-owned home, unless told to", () => {
    const copy = archivedCopy("root-owned", "root");
    const refused = checkHome(copy);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/owned by root.*--allow-root/);
    expect(refused.stdout).toBe("");
    const allowed = checkHome(copy, ["--allow-root"]);
    expect(allowed.status, allowed.stdout + allowed.stderr).toBe(0);
    expect(allowed.stdout).toMatch(/^ok +agent: hermes-agent [0-9.]+ .*as uid 0/m);
  });
});

describe("agent-drill with the real agent, as on a restore box (hermes on PATH, the home restored for the agent's user)", () => {
  const t = () => box.tenants[tenant]!;
  const drillArgs = (target: string, report: string, archive = "latest") => [
    "--repo", t().repoUrl, "--ssh-key", t().keys.drill, "--known-hosts", box.knownHosts, "--passphrase-file", t().passphraseFile,
    "--tenant", tenant, "--archive", archive, "--target", target,
    // The drills' agent check, from this checkout instead of the install plan's folder.
    "--agent-check", path.join(repoRoot, "scripts", path.basename(agentHealthCheck)), "--report", report,
  ];

  test("is healthy by the agent's own checks, and its report names the installed agent and its version", () => {
    const folder = path.join(tempDir(), "drill");
    fs.mkdirSync(folder, { mode: 0o755 });
    chownToAgent(folder);
    const report = path.join(tempDir(), "report.json");
    const env = { ...box.clientEnv, PATH: `${path.dirname(restored.install.bin)}:${box.clientEnv.PATH ?? process.env.PATH}` };
    const r = runScript("agent-drill", drillArgs(path.join(folder, "hermes"), report), env, 900_000);
    expect(r.status, r.stderr).toBe(0);
    const doc = parseDrillReport(fs.readFileSync(report, "utf8"));
    expect(doc.healthy).toBe(true);
    expect(doc.agent).toEqual({ name: "hermes-agent", version: restored.install.version });
    expect(doc.checks.find((c) => c.name === "verify:agent-check")).toMatchObject({ ok: true });
  });

  test("names no agent (none) on a box without one", () => {
    const report = path.join(tempDir(), "report.json");
    const env = { ...box.clientEnv, PATH: "/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" };
    // A missing archive ends the drill early; the report is still written, with its agent.
    const r = runScript("agent-drill", drillArgs(path.join(tempDir(), "none"), report, `${tenant}-2000-01-01T00:00:00`), env);
    expect(r.status).toBe(1);
    expect(parseDrillReport(fs.readFileSync(report, "utf8")).agent).toEqual({ name: "none", version: "none" });
  });
});
