// docs/RESTORE.md is run, not just read: its `bash runbook:*` blocks are extracted and executed as
// written against a loopback storage box holding real agent-backup archives: the restore on a
// healthy repository, the rollback after a host deleted its archives, and the key import after it
// changed the passphrase, each followed by the restore; and the everyday restores (a diff, a file
// list, a memory file and a profile put back into a running agent, its store left beside it) on a
// second tenant's host. The `bash operator` blocks (cloud, person) are checked for syntax, and every
// option given to one of our scripts must be in its --help.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { recoveryDocument } from "../../components/control-vault";
import { agentUser, cleanupTemp, makeAgentHome, runAsAgent, sql, tempDir } from "../lib/agent-home";
import { archiveNames, lastTransaction, runScript, treeDigest, writeMaintainConfig } from "../lib/maintain-fixtures";
import { blocks, codeOf } from "../lib/runbook-blocks";
import { repoRoot, scriptsDir, startStorageBox, type StorageBox } from "../lib/storage-box";

const tenant = "acme";
/** Names the everyday section's variables block declares (its values come from the test). */
const declaredIn = (tag: string) =>
  blocks()
    .filter((b) => b.tag === tag)
    .flatMap((b) => [...b.code.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]));


let box: StorageBox;
let work: string;
let home: string;
let vars: Record<string, string>;
let borgBase: string;

/** Run the blocks of the given tags, in that order, in one strict bash, with the runbook's variables. */
function runBlocks(tags: string[], overrides: Record<string, string> = {}) {
  const script = tags.map(codeOf).join("\n");
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BORG_")));
  const r = spawnSync("bash", ["-euo", "pipefail", "-c", script], {
    cwd: repoRoot,
    env: { ...clean, ...vars, ...overrides, BORG_BASE_DIR: borgBase },
    encoding: "utf8",
    timeout: 600_000,
  });
  if (r.error) throw r.error;
  return { status: r.status, out: `${r.stdout}\n${r.stderr}`, stdout: r.stdout };
}

/** The precious files the restored home must give back byte for byte. */
function precious(dir: string): Record<string, string> {
  const d = treeDigest(dir);
  // Lock files beside the memories are runtime: never archived, never restored.
  return Object.fromEntries(Object.entries(d).filter(([p]) => p === "SOUL.md" || (p.startsWith("memories/") && !p.endsWith(".lock"))));
}

beforeAll(async () => {
  box = await startStorageBox({ tenants: [tenant, "everyday"] });
  work = tempDir("ab-runbook-");
  borgBase = path.join(work, "borg");
  home = makeAgentHome(path.join(work, "home"), { sessions: 10 }).home;
  const t = box.tenants[tenant]!;

  const config = box.writeConfig(tenant, { agentHome: home });
  for (const args of [["--init"], [], []]) {
    const r = runScript("agent-backup", ["--config", config, ...args], box.clientEnv);
    if (r.status !== 0) throw new Error(`agent-backup ${args.join(" ")} failed: ${r.stderr}`);
  }

  // The maintenance job's trusted state, recorded by an earlier run.
  const maintStateDir = path.join(work, "maint-state");
  const maint = writeMaintainConfig(box, tenant, { STATE_DIR: maintStateDir });
  const adopt = runScript("agent-maintain", ["--config", maint.config, "--adopt"]);
  if (adopt.status !== 0) throw new Error(`adopt failed: ${adopt.stderr}`);

  // What the control vault holds for the tenant, in its own format (components/control-vault.ts).
  const recoveryDir = path.join(work, "recovery");
  fs.mkdirSync(recoveryDir, { mode: 0o700 });
  const read = (f: string) => fs.readFileSync(f, "utf8");
  fs.writeFileSync(
    path.join(recoveryDir, "recovery.json"),
    recoveryDocument({
      tenant,
      repoUrl: t.repoUrl,
      knownHosts: read(box.knownHosts),
      remoteBorg: "borg",
      passphrase: read(t.passphraseFile).trim(),
      maintenancePrivateKey: read(t.keys.maintenance),
      drillPrivateKey: read(t.keys.drill),
      // As a command output captured by Pulumi: without the trailing newline.
      repoKeyExport: read(maint.escrow).trimEnd(),
      retention: { daily: 7, weekly: 4, monthly: 6 },
    }),
    { mode: 0o600 },
  );

  vars = {
    TENANT: tenant,
    VAULT_SECRET: `agent-backups/${tenant}/recovery`,
    WORK: recoveryDir,
    HERMES_HOME: path.join(work, "restored-1"),
    ARCHIVE: "latest",
    MAINT_STATE_DIR: maintStateDir,
    MAINT_STATE_BUCKET: "example-maintenance-state",
    REPO_DIR: t.repoPath,
    TRUSTED_TX: String(lastTransaction(t.repoPath)),
    BOX_MAIN: "u123456@u123456.your-storagebox.de",
    REPO_PATH: `tenants/${tenant}/g1/borg`,
    PATH: `${scriptsDir}:${process.env.PATH}`,
  };
}, 900_000);

afterAll(async () => {
  await box?.stop();
  cleanupTemp();
});

describe("docs/RESTORE.md", () => {
  test("names exactly the variables this test gives its commands", () => {
    const declared = blocks()
      .filter((b) => b.tag === "runbook-vars")
      .flatMap((b) => [...b.code.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]));
    expect(declared.sort()).toEqual(Object.keys(vars).sort());
  });

  test("has runnable blocks for the restore, the rollback and the key import", () => {
    const tags = new Set(blocks().map((b) => b.tag));
    for (const tag of ["runbook-vars", "runbook:material", "runbook:restore", "runbook:rollback", "runbook:key", "operator"]) {
      expect(tags, tag).toContain(tag);
    }
    expect([...tags].every((t) => t === "operator" || t === "runbook-vars" || t.startsWith("runbook:"))).toBe(true);
  });

  test("every block is valid bash, and every option it gives our scripts exists", () => {
    for (const b of blocks()) {
      const syntax = spawnSync("bash", ["-n", "-c", b.code], { encoding: "utf8" });
      expect(syntax.status, `RESTORE.md line ${b.line}: ${syntax.stderr}`).toBe(0);
      const joined = b.code.replace(/\\\n/g, " ");
      for (const line of joined.split("\n")) {
        const cmd = /^\s*(agent-[a-z-]+)\s/.exec(line)?.[1];
        if (!cmd) continue;
        const script = path.join(scriptsDir, cmd);
        expect(fs.existsSync(script), `RESTORE.md line ${b.line}: no script ${cmd}`).toBe(true);
        const help = spawnSync(script, ["--help"], { encoding: "utf8" });
        const helpText = help.stdout + help.stderr;
        for (const opt of line.match(/(?<=\s)--[a-z][a-z-]*/g) ?? []) {
          expect(helpText, `RESTORE.md line ${b.line}: ${cmd} has no option ${opt}`).toContain(opt);
        }
      }
    }
  });

  test("the restore path restores the latest archive and verifies it", () => {
    const r = runBlocks(["runbook:material", "runbook:restore"]);
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/tamper check passed/);
    expect(r.stdout).toMatch(new RegExp(`^${tenant}-\\d{4}-\\d{2}-\\d{2}T`, "m"));
    expect(precious(vars.HERMES_HOME!)).toEqual(precious(home));
    expect(fs.statSync(path.join(vars.WORK!, "passphrase")).mode & 0o077).toBe(0);
  });

  test("after a host deleted every archive: the rollback blocks bring them back, then the restore works", () => {
    const before = archiveNames(box, tenant);
    expect(before.length).toBe(2);
    for (const a of before) expect(box.borg(tenant, "push", ["delete", `::${a}`]).status).toBe(0);
    expect(archiveNames(box, tenant)).toEqual([]);
    // The restore path refuses to go on: its tamper check fails first.
    const refused = runBlocks(["runbook:material", "runbook:restore"], { HERMES_HOME: path.join(work, "refused") });
    expect(refused.status).not.toBe(0);
    expect(refused.out).toMatch(/TAMPER: archive vanished without a trusted prune/);
    expect(fs.existsSync(path.join(work, "refused"))).toBe(false);

    const r = runBlocks(["runbook:material", "runbook:rollback", "runbook:restore"], { HERMES_HOME: path.join(work, "restored-2") });
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/last trusted maintenance state: .*, 2 archives/);
    expect(r.out).toMatch(/rolled back to transaction/);
    expect(archiveNames(box, tenant).sort()).toEqual(before.sort());
    expect(precious(path.join(work, "restored-2"))).toEqual(precious(home));
  });

  test("after a host changed the passphrase: the key block restores access, then the restore works", () => {
    // A fresh attacker client: the box's own client state predates the rollback, and borg
    // rightly refuses a repository that went back in time until that state is dropped.
    const env = { ...box.borgEnv(tenant, "push"), BORG_BASE_DIR: path.join(work, "attacker"), BORG_NEW_PASSPHRASE: "attacker-owned" };
    const changed = spawnSync("borg", ["key", "change-passphrase"], { env, encoding: "utf8" });
    expect(changed.status, changed.stderr).toBe(0);
    const refused = runBlocks(["runbook:material", "runbook:restore"], { HERMES_HOME: path.join(work, "refused-key") });
    expect(refused.status).not.toBe(0);
    expect(refused.out).toMatch(/TAMPER: repository key changed/);

    const r = runBlocks(["runbook:material", "runbook:key", "runbook:restore"], { HERMES_HOME: path.join(work, "restored-3") });
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/key restored for repository/);
    expect(precious(path.join(work, "restored-3"))).toEqual(precious(home));
  });

  test("the everyday blocks: a diff, a file list, a memory file and a profile back into the running agent, its store beside it", async () => {
    const everydayHome = makeAgentHome(path.join(work, "everyday-home"), { sessions: 10, profiles: 1 }).home;
    const config = box.writeConfig("everyday", { agentHome: everydayHome });
    const backup = (args: string[] = []) => {
      const r = runScript("agent-backup", ["--config", config, ...args], box.clientEnv);
      if (r.status !== 0) throw new Error(`agent-backup failed: ${r.stderr}`);
    };
    backup(["--init"]);
    backup();
    const before = archiveNames(box, "everyday")[0]!;
    const read = (p: string) => fs.readFileSync(path.join(everydayHome, p), "utf8");
    const memoryBefore = read("memories/MEMORY.md");
    const profileBefore = read("profiles/profile1/memories/MEMORY.md");
    const rowsBefore = Number(sql(path.join(everydayHome, "state.db"), "SELECT count(*) FROM messages"));
    // A day: the memories drift, the agent writes messages; the next night's backup.
    expect(runAsAgent("sh", ["-c", 'echo "- a wrong fact" >>"$1/memories/MEMORY.md"; echo "- drift" >>"$1/profiles/profile1/memories/MEMORY.md"', "sh", everydayHome]).status).toBe(0);
    const w = runAsAgent("sqlite3", [path.join(everydayHome, "state.db"), "INSERT INTO messages (session_id, role, content, timestamp) SELECT session_id, role, content, timestamp FROM messages LIMIT 7"]);
    expect(w.status, w.stderr).toBe(0);
    await new Promise((r) => setTimeout(r, 1100)); // archive names have a one-second resolution
    backup();
    const latest = archiveNames(box, "everyday").filter((a) => a !== before)[0]!;

    // The running agent: a process of the agent's user with state.db open.
    const u = agentUser();
    const db = path.join(everydayHome, "state.db");
    const agent = spawn("python3", ["-c", "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1])\nc.execute('SELECT 1 FROM sqlite_schema').fetchall()\ntime.sleep(300)", db], { uid: u.uid, gid: u.gid, stdio: "ignore" });
    const exited = new Promise<void>((r) => agent.once("exit", () => r()));
    try {
      const holds = () => fs.readdirSync(`/proc/${agent.pid}/fd`).some((fd) => { try { return fs.readlinkSync(`/proc/${agent.pid}/fd/${fd}`) === db; } catch { return false; } });
      for (let i = 0; i < 200 && agent.exitCode === null && !holds(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(holds()).toBe(true);
      const inode = fs.statSync(db).ino;
      const everyday = { CONFIG: config, BEFORE: before, PROFILE: "profile1", SCRATCH: path.join(work, "everyday-scratch") };
      expect(declaredIn("runbook:everyday-vars").sort()).toEqual(Object.keys(everyday).sort());
      const r = runBlocks(["runbook:everyday"], everyday);
      expect(r.status, r.out).toBe(0);
      expect(r.stdout).toContain(`From ${before} to ${latest}:`);
      expect(r.stdout).toMatch(/^ {4}~ memories\/MEMORY\.md$/m);
      expect(r.stdout).toMatch(new RegExp(`^ {2}state\\.db: .*messages ${rowsBefore} -> ${rowsBefore + 7} \\(\\+7\\)`, "m"));
      expect(r.stdout).toMatch(/^f +\d+ {2}precious {2}memories\/MEMORY\.md$/m);
      expect(r.stdout).toMatch(/^-- a wrong fact$/m); // diff -u: the live file has the line the restored one lacks
      // Back in the live home, as the agent's: the memory file and the profile of that night.
      expect(read("memories/MEMORY.md")).toBe(memoryBefore);
      expect(read("profiles/profile1/memories/MEMORY.md")).toBe(profileBefore);
      expect(fs.statSync(path.join(everydayHome, "memories/MEMORY.md")).uid).toBe(u.uid);
      // The store the agent holds was not replaced; the restored copy is beside it.
      expect(fs.statSync(db).ino).toBe(inode);
      expect(Number(sql(db, "SELECT count(*) FROM messages"))).toBe(rowsBefore + 7);
      expect(r.stdout).toContain(`mv -- state.db.restored-${before} state.db`);

      // The swap the page shows, once the agent is stopped: the restored store is the live one.
      process.kill(agent.pid!, "SIGTERM");
      await exited;
      const swap = blocks().find((b) => b.tag === "operator" && b.code.includes("state.db.restored-"))!;
      const noAgent = swap.code.split("\n").filter((l) => !l.startsWith("hermes ")).join("\n");
      const s = spawnSync("bash", ["-euo", "pipefail", "-c", noAgent], { env: { ...process.env, ...everyday, AGENT_HOME: everydayHome }, encoding: "utf8" });
      expect(s.status, s.stderr).toBe(0);
      expect(sql(db, "PRAGMA integrity_check")).toBe("ok");
      expect(Number(sql(db, "SELECT count(*) FROM messages"))).toBe(rowsBefore);
      expect(fs.existsSync(`${db}.before-restore`)).toBe(true);
    } finally {
      if (agent.exitCode === null && agent.signalCode === null) process.kill(agent.pid!, "SIGTERM");
    }
  }, 600_000);
});
