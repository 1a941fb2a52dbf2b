// Everyday restores on real borg and sshd: one file, one folder or one profile back into a scratch
// folder or, when asked, into the live home while the agent runs; an archive's file list; what
// changed between two nights. And the refusals: the live home without --into-live, a store the
// agent holds open (never replaced: the restored copy goes beside it), an unknown path, bad paths.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { agentUser, cleanupTemp, fingerprint, makeAgentHome, runAsAgent, runScript, sql, tempDir } from "../lib/agent-home";
import { startStorageBox, type StorageBox } from "../lib/storage-box";

let box: StorageBox;
let work: string;
let home: string;
let config: string;
let first: string;
let second: string;
/** What the live home held at the first backup (the files the put-backs must bring back). */
let atFirst: Map<string, string>;

function drillFlags(): string[] {
  const t = box.tenants.acme!;
  return ["--repo", t.repoUrl, "--ssh-key", t.keys.drill, "--known-hosts", box.knownHosts, "--passphrase-file", t.passphraseFile];
}

function archives(): string[] {
  const r = runScript("agent-restore", [...drillFlags(), "--list"], box.clientEnv);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0]!);
}

function backup(): void {
  const b = runScript("agent-backup", ["--config", config], box.clientEnv);
  expect(b.status, b.stderr).toBe(0);
}

const mode = (p: string) => (fs.statSync(p).mode & 0o7777).toString(8);
const restore = (args: string[]) => runScript("agent-restore", [...drillFlags(), ...args], box.clientEnv);

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["acme"] });
  work = tempDir();
  home = makeAgentHome(path.join(work, "home"), { profiles: 1, sessions: 30 }).home;
  config = box.writeConfig("acme", { agentHome: home });
  expect(runScript("agent-backup", ["--config", config, "--init"], box.clientEnv).status).toBe(0);
  backup();
  atFirst = fingerprint(home);
  // A day: a memory edited, a skill file added, a workspace file removed, messages written.
  expect(runAsAgent("sh", ["-c", 'echo "- a new fact" >>"$1/memories/MEMORY.md" && mkdir -p "$1/workspace/new" && echo hi >"$1/workspace/new/notes.md" && rm "$1/cron/jobs.json"', "sh", home]).status).toBe(0);
  const w = runAsAgent("sqlite3", [path.join(home, "state.db"), "INSERT INTO messages (session_id, role, content, timestamp) SELECT session_id, role, content, timestamp FROM messages LIMIT 7"]);
  expect(w.status, w.stderr).toBe(0);
  await new Promise((r) => setTimeout(r, 1100)); // archive names have a one-second resolution
  backup();
  const names = archives();
  expect(names.length).toBe(2);
  [first, second] = [names[0]!, names[1]!];
}, 600_000);

afterAll(async () => {
  await box?.stop();
  cleanupTemp();
});

describe("agent-restore --list-files", () => {
  test("lists the archive's paths with bytes and class; --json gives one object per path", () => {
    const r = restore(["--archive", first, "--list-files"]);
    expect(r.status, r.stderr).toBe(0);
    const size = fs.statSync(path.join(work, "home", "SOUL.md")).size;
    expect(r.stdout).toMatch(new RegExp(`^f +${size}  precious  SOUL\\.md$`, "m"));
    expect(r.stdout).toMatch(/^d +0  container  profiles\/profile1$/m);
    const j = restore(["--archive", first, "--list-files", "--json"]);
    expect(j.status, j.stderr).toBe(0);
    const rows = j.stdout.trim().split("\n").map((l) => JSON.parse(l) as { path: string; type: string; bytes: number; restored: boolean });
    expect(rows.find((x) => x.path === "memories/MEMORY.md")).toMatchObject({ type: "f", restored: true });
    expect(rows.find((x) => x.path === ".agent-backup/manifest.json")?.restored).toBe(true);
    expect(rows.length).toBeGreaterThan(50);
  });
});

describe("agent-restore --path into a scratch folder", () => {
  test("one memory file and one profile come back byte for byte, and nothing else", () => {
    const target = path.join(tempDir(), "scratch");
    const r = restore(["--archive", first, "--path", "memories/MEMORY.md", "--path", "profiles/profile1/", "--target", target, "--owner", agentUser().name]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Restored from .* into .*scratch:\n {2}memories\/MEMORY\.md\n {2}profiles\/profile1/);
    const got = fingerprint(target);
    for (const [p, h] of got) {
      expect(p.startsWith("memories") || p.startsWith("profiles"), p).toBe(true);
      // Stores are page copies, configs redacted, .agent-backup made by the backup.
      if (h !== "dir" && !p.endsWith(".db") && !/config\.yaml|honcho|mem0|hindsight|\.agent-backup\//.test(p)) expect(h, p).toBe(atFirst.get(p));
    }
    expect(got.get("memories/MEMORY.md")).toBe(atFirst.get("memories/MEMORY.md"));
    expect(got.has("memories/USER.md")).toBe(false);
    expect(got.has("profiles/profile1/memories/MEMORY.md")).toBe(true);
    expect(sql(path.join(target, "profiles/profile1/state.db"), "PRAGMA integrity_check")).toBe("ok");
    const u = agentUser();
    const st = fs.statSync(path.join(target, "memories/MEMORY.md"));
    expect([st.uid, mode(path.join(target, "memories/MEMORY.md")), mode(target)]).toEqual([u.uid, "600", "700"]);
    expect(fs.readdirSync(path.dirname(target)).filter((n) => n.startsWith(".agent-restore"))).toEqual([]);
  });

  test("an existing path of a scratch folder is replaced only with --force; what else is there stays", () => {
    const target = path.join(tempDir(), "scratch");
    fs.mkdirSync(path.join(target, "memories"), { recursive: true });
    fs.writeFileSync(path.join(target, "memories/MEMORY.md"), "mine\n");
    fs.writeFileSync(path.join(target, "keep.txt"), "keep\n");
    const refused = restore(["--archive", first, "--path", "memories/MEMORY.md", "--target", target]);
    expect(refused.status).toBe(2);
    expect(refused.stderr).toMatch(/already holds memories\/MEMORY\.md: refusing to replace it without --force/);
    expect(fs.readFileSync(path.join(target, "memories/MEMORY.md"), "utf8")).toBe("mine\n");
    const forced = restore(["--archive", first, "--path", "memories/MEMORY.md", "--path", "memories/USER.md", "--target", target, "--force"]);
    expect(forced.status, forced.stderr).toBe(0);
    expect(fingerprint(target).get("memories/MEMORY.md")).toBe(atFirst.get("memories/MEMORY.md"));
    expect(fingerprint(target).get("memories/USER.md")).toBe(atFirst.get("memories/USER.md"));
    expect(fs.readFileSync(path.join(target, "keep.txt"), "utf8")).toBe("keep\n");
    expect(fs.readdirSync(path.dirname(target)).filter((n) => n.startsWith(".agent-restore"))).toEqual([]);
  });

  test("an unknown path: a clear error naming near matches, nothing written", () => {
    const parent = tempDir();
    const r = restore(["--archive", first, "--path", "memories/MEMROY.md", "--target", path.join(parent, "t")]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--path memories\/MEMROY\.md: not in .*; near matches:(\n {2}\S+)*\n {2}memories\/MEMORY\.md/);
    expect(fs.readdirSync(parent)).toEqual([]);
    const none = restore(["--archive", first, "--path", "no-such-thing", "--target", path.join(parent, "t")]);
    expect(none.status).toBe(1);
    expect(none.stderr).toMatch(/not in .* \(agent-restore --list-files shows what it holds\)/);
  });

  test("a path the backup set never restores is refused by name", () => {
    const r = restore(["--archive", first, "--path", "gateway.pid", "--target", path.join(tempDir(), "t")]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--path gateway\.pid: not in/);
  });

  test("paths that are not plain relative paths are refused before anything is read", () => {
    for (const bad of ["../etc/passwd", "/etc/passwd", "memories/../../x", "memories/\u001b[2J", "a//b", ""]) {
      const r = restore(["--path", bad, "--target", path.join(tempDir(), "t")]);
      expect(r.status, bad).toBe(2);
      expect(r.stderr, bad).toMatch(/--path: refusing value/);
    }
    const nested = restore(["--path", "memories", "--path", "memories/MEMORY.md", "--target", path.join(tempDir(), "t")]);
    expect(nested.status).toBe(2);
    expect(nested.stderr).toMatch(/is inside --path memories/);
    expect(restore(["--into-live", "--target", home]).status).toBe(2);
  });
});

describe("agent-restore --path into the live home", () => {
  let holder: ChildProcess | undefined;

  afterAll(() => {
    if (holder?.pid && holder.exitCode === null) process.kill(holder.pid, "SIGTERM");
  });

  test("the live home (AGENT_HOME, or a folder holding an agent home) is refused without --into-live", () => {
    const before = fingerprint(home);
    const r = runScript("agent-restore", ["--config", config, "--archive", first, "--path", "memories/MEMORY.md", "--target", home], box.clientEnv);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/is the live agent home \(it is AGENT_HOME of .*\): refusing to put files into it without --into-live/);
    const f = restore(["--archive", first, "--path", "memories/MEMORY.md", "--target", home]);
    expect(f.status).toBe(2);
    expect(f.stderr).toMatch(/is the live agent home \(it holds an agent home \(state\.db\)\)/);
    expect(fingerprint(home)).toEqual(before);
  });

  test("a memory file goes in atomically, with the owner and mode of the agent's own copy", () => {
    const live = path.join(home, "memories/MEMORY.md");
    fs.chmodSync(live, 0o640);
    expect(fs.readFileSync(live, "utf8")).toMatch(/a new fact/);
    const r = runScript("agent-restore", ["--config", config, "--archive", first, "--path", "memories/MEMORY.md", "--target", home, "--into-live"], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/memories\/MEMORY\.md \(replaced/);
    expect(fingerprint(home).get("memories/MEMORY.md")).toBe(atFirst.get("memories/MEMORY.md"));
    const st = fs.statSync(live);
    expect([st.uid, mode(live)]).toEqual([agentUser().uid, "640"]);
    expect(fs.readdirSync(work).filter((n) => n.startsWith(".agent-restore"))).toEqual([]);
  });

  test("a store the agent holds open is never replaced: the restored copy goes beside it, with the swap commands", async () => {
    const db = path.join(home, "state.db");
    const u = agentUser();
    holder = spawn("python3", ["-c", "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1])\nc.execute('SELECT count(*) FROM messages').fetchall()\ntime.sleep(600)", db], {
      uid: u.uid,
      gid: u.gid,
      stdio: "ignore",
    });
    // Bounded: until the holder has the store open (200 x 50 ms).
    const holds = () => fs.readdirSync(`/proc/${holder!.pid}/fd`).some((fd) => { try { return fs.readlinkSync(`/proc/${holder!.pid}/fd/${fd}`) === db; } catch { return false; } });
    for (let i = 0; i < 200 && !holds(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(holds()).toBe(true);
    const inode = fs.statSync(db).ino;
    const rows = sql(db, "SELECT count(*) FROM messages");
    const r = runScript("agent-restore", ["--config", config, "--archive", first, "--path", "state.db", "--target", home, "--into-live"], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.statSync(db).ino).toBe(inode);
    expect(sql(db, "SELECT count(*) FROM messages")).toBe(rows);
    const beside = path.join(home, `state.db.restored-${first}`);
    expect(sql(beside, "PRAGMA integrity_check")).toBe("ok");
    expect(Number(sql(beside, "SELECT count(*) FROM messages"))).toBe(Number(rows) - 7);
    expect(fs.statSync(beside).uid).toBe(u.uid);
    expect(r.stdout).toContain(`state.db.restored-${first} (beside state.db, not replaced: a SQLite store is never swapped under the agent (pids ${holder.pid} hold it open))`);
    expect(r.stdout).toMatch(/hermes gateway stop/);
    expect(r.stdout).toContain(`mv -- state.db.restored-${first} state.db`);
    // A second put-back does not overwrite the first one's copy.
    const again = runScript("agent-restore", ["--config", config, "--archive", first, "--path", "state.db", "--target", home, "--into-live"], box.clientEnv);
    expect(again.status).toBe(2);
    expect(again.stderr).toMatch(/exists \(an earlier put-back\): move it away first/);
    process.kill(holder.pid!, "SIGTERM");
    fs.rmSync(beside);
  });

  test("a profile goes in whole, by one rename, unless the agent holds files in it", () => {
    const prof = path.join(home, "profiles/profile1");
    fs.appendFileSync(path.join(prof, "memories/MEMORY.md"), "- drift\n");
    fs.chmodSync(prof, 0o750);
    const r = runScript("agent-restore", ["--config", config, "--archive", first, "--path", "profiles/profile1", "--target", home, "--into-live"], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/profiles\/profile1 \(replaced/);
    expect(fingerprint(home).get("profiles/profile1/memories/MEMORY.md")).toBe(atFirst.get("profiles/profile1/memories/MEMORY.md"));
    expect([fs.statSync(prof).uid, mode(prof)]).toEqual([agentUser().uid, "750"]);
    expect(sql(path.join(prof, "state.db"), "PRAGMA integrity_check")).toBe("ok");
  });
});

describe("agent-restore --diff", () => {
  test("names what was added, removed and changed per class, and the stores' row deltas", () => {
    const r = restore(["--diff", first, second]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^From ${first} to ${second}:`));
    expect(r.stdout).toMatch(/^ {4}~ memories\/MEMORY\.md$/m);
    expect(r.stdout).toMatch(/^ {4}\+ workspace\/new\/notes\.md$/m);
    expect(r.stdout).toMatch(/^ {4}- cron\/jobs\.json$/m);
    expect(r.stdout).toMatch(/^ {2}state\.db: .*messages (\d+) -> (\d+) \(\+7\)/m);
    const j = restore(["--diff", first, "latest", "--json"]);
    expect(j.status, j.stderr).toBe(0);
    const d = JSON.parse(j.stdout);
    expect(d.to).toBe(second);
    expect(d.classes.precious.changed).toContain("memories/MEMORY.md");
    expect(d.classes.precious.changed).not.toContain("SOUL.md");
    expect(d.classes.precious.removed).toContain("cron/jobs.json");
    const messages = d.stores.find((s: { path: string }) => s.path === "state.db").tables.messages;
    expect(messages.delta).toBe(7);
    expect(d.unsafe).toEqual({ from: 0, to: 0 });
  });

  test("an archive that does not exist: clear error", () => {
    const r = restore(["--diff", first, "acme-1999-01-01T00:00:00"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no such archive/);
  });
});
