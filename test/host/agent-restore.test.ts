// The whole loop on real borg and sshd: back up a home while a writer writes, restore it into a
// fresh directory, and check it (agent-verify); plus the restore's own bad inputs and faults.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cleanupTemp, fingerprint, makeAgentHome, runScript, sql, startWriter, tempDir, tornSessions, type AgentHome } from "../lib/agent-home";
import { startStorageBox, type StorageBox } from "../lib/storage-box";

let box: StorageBox;
let work: string;
let agent: AgentHome;
let config: string;
let target: string;
let restoreOut: string;
let manifest: { archive: string; paths: string[]; stores: { path: string; tables: Record<string, number> }[] };

/** The connection as flags, with the drill key (a restore box has no host config). */
function drillFlags(): string[] {
  const t = box.tenants.acme!;
  return ["--repo", t.repoUrl, "--ssh-key", t.keys.drill, "--known-hosts", box.knownHosts, "--passphrase-file", t.passphraseFile];
}

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["acme"] });
  work = tempDir();
  agent = makeAgentHome(path.join(work, "home"), { profiles: 1, sessions: 30 });
  config = box.writeConfig("acme", { agentHome: agent.home });
  expect(runScript("agent-backup", ["--config", config, "--init"], box.clientEnv).status).toBe(0);
  const writer = await startWriter(agent.home, { rate: 100 });
  const b = runScript("agent-backup", ["--config", config], box.clientEnv);
  await writer.stop();
  expect(b.status, b.stderr).toBe(0);
  target = path.join(work, "restored");
  const r = runScript("agent-restore", ["--config", config, "--target", target], box.clientEnv);
  expect(r.status, r.stderr).toBe(0);
  restoreOut = r.stdout;
  manifest = JSON.parse(fs.readFileSync(path.join(target, ".agent-backup", "manifest.json"), "utf8"));
});

afterAll(async () => {
  await box?.stop();
  cleanupTemp();
});

describe("agent-restore", () => {
  test("the precious set comes back byte for byte, in the home's own layout", () => {
    const restored = fingerprint(target);
    const live = fingerprint(agent.home);
    const stores = new Set(manifest.stores.map((s) => s.path));
    let compared = 0;
    for (const [p, h] of restored) {
      // Stores are page copies; config files come back redacted.
      if (h === "dir" || stores.has(p) || p.includes(".agent-backup/") || /(^|\/)(config\.yaml[^/]*|honcho\.json|mem0\.json|hindsight\/config\.json)$/.test(p)) continue;
      expect(h, p).toBe(live.get(p));
      compared++;
    }
    expect(compared).toBeGreaterThan(80);
    expect(new Set(manifest.paths)).toEqual(new Set([...restored.keys()]));
  });

  test("stores come back with the rows of one consistent point, and no stale sidecars", () => {
    const state = manifest.stores.find((s) => s.path === "state.db")!;
    const db = path.join(target, "state.db");
    expect(sql(db, "PRAGMA integrity_check")).toBe("ok");
    expect(tornSessions(db)).toBe(0);
    expect(Number(sql(db, "SELECT count(*) FROM messages"))).toBe(state.tables.messages);
    // A store nobody wrote to comes back with exactly the live rows.
    const dump = (f: string) => spawnSync("sqlite3", ["-readonly", f, ".dump cards"], { encoding: "utf8" }).stdout;
    expect(dump(path.join(target, "profiles/profile1/kanban.db"))).toBe(dump(path.join(agent.home, "profiles/profile1/kanban.db")));
    const sidecars = [...fingerprint(target).keys()].filter((p) => /-(wal|shm|journal)$/.test(p));
    expect(sidecars).toEqual([]);
    expect(fs.readdirSync(target).filter((f) => /-(wal|shm)$/.test(f))).toEqual([]);
  });

  test("no canary appears in any restored file", () => {
    const files = [...fingerprint(target).entries()].filter(([, v]) => v !== "dir").map(([p]) => p);
    const text = files.map((p) => fs.readFileSync(path.join(target, p)).toString("latin1")).join("\n");
    expect(agent.canaries.filter((c) => text.includes(c))).toEqual([]);
  });

  test("dirs are 0700 and sensitive files 0600", () => {
    const mode = (p: string) => (fs.statSync(path.join(target, p)).mode & 0o777).toString(8);
    expect(mode(".")).toBe("700");
    expect(mode("profiles/profile1/memories")).toBe("700");
    for (const f of ["state.db", "profiles/profile1/kanban.db", "config.yaml", "pairing/telegram-approved.json", ".agent-backup/allowlists.env"]) {
      expect(mode(f), f).toBe("600");
    }
  });

  test("ends by printing what a person must still do, naming the platforms found", () => {
    expect(restoreOut).toMatch(/vault/);
    expect(restoreOut).toMatch(/hermes auth add/);
    expect(restoreOut).toMatch(/hermes mcp login github/);
    for (const p of ["telegram", "discord", "slack", "whatsapp", "matrix"]) expect(restoreOut).toMatch(new RegExp(`- ${p}:`));
    expect(restoreOut).toMatch(/Approved pairings were restored/);
  });

  test("the closing summary is read from the checked tree before the swap, never from the home the agent may change", () => {
    const dir = path.join(work, "summary");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "OLD-HOME"), "old");
    // yq reads the summary's config.yaml: a wrapper notes where it ran and what the target held then.
    const bin = tempDir();
    const log = path.join(bin, "log");
    const realYq = spawnSync("sh", ["-c", "command -v yq"], { encoding: "utf8" }).stdout.trim();
    expect(realYq).not.toBe("");
    fs.writeFileSync(path.join(bin, "yq"), `#!/bin/sh\necho "$(pwd -P) $([ -e '${dir}/OLD-HOME' ] && echo old-home || echo new-home)" >>'${log}'\nexec '${realYq}' "$@"\n`, { mode: 0o755 });
    const r = runScript("agent-restore", ["--config", config, "--target", dir, "--force"], { ...box.clientEnv, PATH: `${bin}:${process.env.PATH}` });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/hermes mcp login github/);
    const calls = fs.readFileSync(log, "utf8").trim().split("\n");
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls) expect(c).toMatch(new RegExp(`^${work}/\\.agent-restore\\.\\S+ old-home$`));
    expect(fs.existsSync(path.join(dir, "OLD-HOME"))).toBe(false);
  });

  test("agent-verify --json reports every check healthy on the restored home", () => {
    const r = runScript("agent-verify", ["--home", target, "--json", "--agent-check", "/bin/true"]);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { healthy: boolean; checks: { name: string; ok: boolean; detail: string }[] };
    expect(report.healthy).toBe(true);
    const names = report.checks.map((c) => c.name);
    for (const n of ["manifest", "store:state.db", "store:profiles/profile1/state.db", "checksums", "paths", "agent-check"]) expect(names).toContain(n);
    expect(report.checks.every((c) => c.ok && typeof c.detail === "string")).toBe(true);
  });

  test("agent-verify names what drifted, in both directions, and a failing agent check", () => {
    const copy = path.join(work, "drifted");
    expect(runScript("agent-restore", [...drillFlags(), "--target", copy], box.clientEnv).status).toBe(0);
    fs.appendFileSync(path.join(copy, "memories/MEMORY.md"), "- tampered\n");
    fs.rmSync(path.join(copy, "cron/jobs.json"));
    fs.writeFileSync(path.join(copy, "workspace/new-file.txt"), "extra");
    fs.writeFileSync(path.join(copy, "gateway.pid"), "1"); // runtime: not drift
    const db = path.join(copy, "projects.db");
    const fd = fs.openSync(db, "r+");
    fs.writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 4096);
    fs.closeSync(fd);
    sql(path.join(copy, "kanban.db"), "DELETE FROM cards WHERE id = 1", { write: true });
    const r = runScript("agent-verify", ["--home", copy, "--agent-check", "/bin/false"]);
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/FAIL checksums: .*memories\/MEMORY\.md/);
    expect(r.stdout).toMatch(/FAIL paths: missing 1: cron\/jobs\.json; extra 1: workspace\/new-file\.txt/);
    expect(r.stdout).toMatch(/FAIL store:projects\.db: integrity_check/);
    expect(r.stdout).toMatch(/FAIL store:kanban\.db: cards: 40 rows, manifest 41/);
    expect(r.stdout).toMatch(/FAIL agent-check: \/bin\/false: exit 1/);
    expect(r.stdout).toMatch(/^ok {3}store:state\.db/m);
  });

  test("agent-verify on a home without a manifest is unhealthy, not an error", () => {
    const r = runScript("agent-verify", ["--home", agent.home, "--json"]);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ healthy: false, checks: [{ name: "manifest", ok: false }] });
  });

  test("--list, and a restore by name with the connection as flags", () => {
    const list = runScript("agent-restore", [...drillFlags(), "--list"], box.clientEnv);
    expect(list.status, list.stderr).toBe(0);
    expect(list.stdout).toContain(manifest.archive);
    const dir = path.join(work, "by-name");
    const r = runScript("agent-restore", [...drillFlags(), "--archive", manifest.archive, "--target", dir], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readFileSync(path.join(dir, "SOUL.md"))).toEqual(fs.readFileSync(path.join(agent.home, "SOUL.md")));
  });

  test("refuses a non-empty target without --force, and replaces it with --force", () => {
    const dir = path.join(work, "occupied");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "keep.txt"), "mine");
    const r = runScript("agent-restore", ["--config", config, "--target", dir], box.clientEnv);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/not empty: refusing .* without --force/);
    expect(fs.readdirSync(dir)).toEqual(["keep.txt"]);
    const f = runScript("agent-restore", ["--config", config, "--target", dir, "--force"], box.clientEnv);
    expect(f.status, f.stderr).toBe(0);
    expect(fs.existsSync(path.join(dir, "keep.txt"))).toBe(false);
    expect(fs.existsSync(path.join(dir, "SOUL.md"))).toBe(true);
    expect(fs.readdirSync(work).filter((n) => n.startsWith(".agent-restore"))).toEqual([]);
  });

  test("an archive that does not exist: clear error, target untouched", () => {
    const dir = path.join(work, "missing-archive");
    const r = runScript("agent-restore", ["--config", config, "--archive", "acme-1999-01-01T00:00:00", "--target", dir], box.clientEnv);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no such archive.*acme-1999-01-01T00:00:00 does not exist/);
    expect(fs.existsSync(dir)).toBe(false);
  });

  test("a target on another filesystem (a mount point): clear error, target untouched", () => {
    const dir = path.join(work, "mounted");
    fs.mkdirSync(dir);
    const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", dir], { encoding: "utf8" });
    expect(m.status, `mount tmpfs: ${m.stderr}`).toBe(0);
    try {
      fs.writeFileSync(path.join(dir, "old.txt"), "old");
      const r = runScript("agent-restore", ["--config", config, "--target", dir, "--force"], box.clientEnv);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/is a mount point .*restore into a directory below it/);
      expect(fs.readdirSync(dir)).toEqual(["old.txt"]);
    } finally {
      spawnSync("umount", [dir]);
    }
    expect(fs.readdirSync(work).filter((n) => n.startsWith(".agent-restore"))).toEqual([]);
  });

  test("an interrupted restore leaves the old target as it was", async () => {
    const dir = path.join(work, "interrupted");
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, "old.txt"), "old home");
    const child = spawn(path.join(__dirname, "..", "..", "scripts", "agent-restore"), ["--config", config, "--target", dir, "--force"], {
      env: box.clientEnv,
      stdio: "ignore",
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    // Interrupt as soon as the extraction beside the target has begun (bounded: 600 x 10 ms).
    for (let i = 0; i < 600 && child.exitCode === null; i++) {
      if (fs.readdirSync(work).some((n) => n.startsWith(".agent-restore."))) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(child.exitCode).toBeNull();
    child.kill("SIGTERM");
    expect(await exited).not.toBe(0);
    expect(fs.readdirSync(dir)).toEqual(["old.txt"]);
    expect(fs.readdirSync(work).filter((n) => n.startsWith(".agent-restore"))).toEqual([]);
  });

  test("bad usage is refused with exit 2", () => {
    expect(runScript("agent-restore", ["--help"]).status).toBe(2);
    expect(runScript("agent-verify", ["--help"]).status).toBe(2);
    expect(runScript("agent-verify", ["--home", "relative"]).stderr).toMatch(/refusing/);
    expect(runScript("agent-verify", ["--home", "/tmp", "--agent-check", "hermes doctor; rm -rf /"]).status).toBe(2);
    const noTarget = runScript("agent-restore", ["--config", config], box.clientEnv);
    expect(noTarget.status).toBe(2);
    expect(noTarget.stderr).toMatch(/missing --target/);
    const bad = runScript("agent-restore", ["--config", config, "--target", "relative/dir"], box.clientEnv);
    expect(bad.status).toBe(2);
    const inj = runScript("agent-restore", [...drillFlags().slice(0, 1), "ssh://x@127.0.0.1:22/a;rm", ...drillFlags().slice(2), "--list"]);
    expect(inj.status).toBe(2);
    expect(inj.stderr).toMatch(/refusing/);
  });
});
