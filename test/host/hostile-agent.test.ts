// The agent as an attacker (DESIGN.md "Threat model"): a prompt-injected agent, its own non-root
// uid, owns its home and the home's parent, and changes them while agent-backup runs. Whatever it
// does, no byte its uid cannot read reaches an archive, agent-backup writes nothing outside its own
// folders, one odd file does not stop the backup of everything else, and names from the home reach
// the journal escaped. Each race is triggered by an inotify event of the backup itself (not a
// sleep), by an attacker process running as the agent's uid.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { agentUser, chownToAgent, cleanupTemp, makeAgentHome, runAsAgent, runScript, sql, tempDir, type AgentHome } from "../lib/agent-home";
import { startStorageBox, type StorageBox } from "../lib/storage-box";

let box: StorageBox;

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["acme"] });
  const init = runScript("agent-backup", ["--config", box.writeConfig("acme", { agentHome: "/nonexistent" }), "--init"], box.clientEnv);
  expect(init.status, init.stderr).toBe(0);
});
afterAll(async () => {
  await box?.stop();
  cleanupTemp();
});

/** A root-only folder (0700) holding files with a canary: what the agent must never get. */
function rootSecrets(): { dir: string; canary: string } {
  const dir = fs.mkdtempSync("/var/tmp/ab-root-only-");
  fs.chmodSync(dir, 0o700);
  const canary = `ROOTONLY${Math.random().toString(36).slice(2)}`;
  fs.mkdirSync(path.join(dir, "memories"));
  fs.writeFileSync(path.join(dir, "SOUL.md"), `root only ${canary}\n`);
  fs.writeFileSync(path.join(dir, "memories", "MEMORY.md"), `root only ${canary}\n`);
  fs.writeFileSync(path.join(dir, "secret.yaml"), `note: ${canary}\nplain: ${canary}\n`);
  sql(path.join(dir, "secret.db"), `CREATE TABLE t(v TEXT); INSERT INTO t VALUES ('${canary}');`, { write: true });
  for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o600);
  return { dir, canary };
}

/** A home inside a parent folder the agent owns (as on a host: /home/hermes/.hermes). */
function agentHomeInOwnParent(): { parent: string; agent: AgentHome } {
  const parent = path.join(tempDir(), "hermes");
  fs.mkdirSync(parent);
  const agent = makeAgentHome(path.join(parent, ".hermes"), { profiles: 1, sessions: 10 });
  chownToAgent(parent);
  return { parent, agent };
}

/** Every byte of every archive of the tenant, extracted whole with borg itself (a text dump). */
function everyArchivedByte(): string {
  const out = tempDir();
  let text = "";
  const names = box.borg("acme", "maintenance", ["list", "--short"]).stdout.split("\n").filter(Boolean);
  for (const name of names) {
    const dir = path.join(out, name);
    fs.mkdirSync(dir);
    const x = spawnSync("borg", ["extract", `::${name}`], { cwd: dir, env: box.borgEnv("acme", "maintenance"), encoding: "utf8" });
    expect(x.status, x.stderr).toBeLessThanOrEqual(1);
    const r = spawnSync("bash", ["-c", 'find "$1" -type f -print0 | xargs -0 -r cat', "bash", dir], { encoding: "latin1", maxBuffer: 1 << 30 });
    text += r.stdout;
  }
  return text;
}

/** An attacker running as the agent's uid: a bash script, with the home and the secrets folder. */
function attacker(script: string, env: Record<string, string>): { child: ChildProcess; ready: Promise<void>; done: Promise<void> } {
  const u = agentUser();
  const child = spawn("bash", ["-c", `set -euo pipefail\n${script}`], { uid: u.uid, gid: u.gid, env: { PATH: process.env.PATH!, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const ready = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`attacker not ready: ${out}`)), 20_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ready")) {
        clearTimeout(t);
        resolve();
      }
    });
  });
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const done = new Promise<void>((r) => child.once("exit", () => r()));
  return { child, ready, done };
}

describe("agent-backup against a hostile agent", () => {
  test("the home swapped for a symlink to a root-only folder: nothing of it is archived", () => {
    const { parent, agent } = agentHomeInOwnParent();
    const secret = rootSecrets();
    // The agent, with no race needed: its home is now a link to root's folder.
    const swap = runAsAgent("bash", ["-c", 'mv "$1/.hermes" "$1/.hermes.real" && ln -s "$2" "$1/.hermes"', "bash", parent, secret.dir]);
    expect(swap.status, swap.stderr).toBe(0);
    // As installed (AGENT_USER fixed in the config) and with the default (the home's owner).
    for (const override of [{ AGENT_USER: agentUser().name }, {}] as Record<string, string>[]) {
      const config = box.writeConfig("acme", { agentHome: agent.home, override });
      const r = runScript("agent-backup", ["--config", config], box.clientEnv);
      expect(r.status, r.stderr).not.toBe(0);
    }
    expect(everyArchivedByte()).not.toContain(secret.canary);
    fs.rmSync(secret.dir, { recursive: true, force: true });
  });

  test("config.yaml and state.db swapped for links to root-only files while the backup reads the stores", async () => {
    const { agent } = agentHomeInOwnParent();
    const secret = rootSecrets();
    const config = box.writeConfig("acme", { agentHome: agent.home });
    // When the backup opens its first store, the agent swaps the files it has not read yet.
    const a = attacker(
      `coproc watch { inotifywait -m -e open --format '%f' "$HOME_DIR" 2>&1; }
       while read -r f <&"\${watch[0]}"; do
         case $f in
           "Watches established.") echo ready ;;
           *.db)
             mv "$HOME_DIR/config.yaml" "$HOME_DIR/config.yaml.orig"; ln -s "$SECRET/secret.yaml" "$HOME_DIR/config.yaml"
             mv "$HOME_DIR/state.db" "$HOME_DIR/state.db.orig"; ln -s "$SECRET/secret.db" "$HOME_DIR/state.db"
             rm -rf "$HOME_DIR/memories"; ln -s "$SECRET/memories" "$HOME_DIR/memories"
             exit 0 ;;
         esac
       done`,
      { HOME_DIR: agent.home, SECRET: secret.dir },
    );
    await a.ready;
    const r = spawnSync("bash", ["-c", '"$1" --config "$2"', "bash", path.join(__dirname, "..", "..", "scripts", "agent-backup"), config], {
      env: box.clientEnv,
      encoding: "utf8",
    });
    a.child.kill("SIGTERM");
    await a.done;
    expect(fs.lstatSync(path.join(agent.home, "config.yaml")).isSymbolicLink(), "the attack ran").toBe(true);
    // The backup of everything else still commits; nothing of root's files is in any archive.
    expect(r.status, r.stderr).toBe(0);
    expect(everyArchivedByte()).not.toContain(secret.canary);
    fs.rmSync(secret.dir, { recursive: true, force: true });
  });

  test("agent-backup writes nothing outside its own folders, whatever links the home holds", () => {
    const { agent } = agentHomeInOwnParent();
    const outside = fs.mkdtempSync("/var/tmp/ab-outside-");
    fs.chmodSync(outside, 0o755);
    // Profiles, stores and config files that point outside the home.
    const plant = runAsAgent("bash", ["-c", [
      'ln -s "$2" "$1/profiles/evil"',
      'mkdir -p "$1/profiles/p2" && ln -s "$2" "$1/profiles/p2/.agent-backup"',
      'ln -s "$2/x.db" "$1/workspace/link.db"',
      'ln -s "$2" "$1/memories/out"',
    ].join(" && "), "bash", agent.home, outside]);
    expect(plant.status, plant.stderr).toBe(0);
    const r = runScript("agent-backup", ["--config", box.writeConfig("acme", { agentHome: agent.home })], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readdirSync(outside)).toEqual([]);
    for (const d of ["/", "/etc", "/var/tmp", "/tmp"]) expect(fs.existsSync(path.join(d, ".agent-backup")), d).toBe(false);
    fs.rmSync(outside, { recursive: true, force: true });
  });

  test("odd SQLite stores: a name with spaces and non-ASCII letters, a vec0 table, a locked store; the rest is archived", async () => {
    const { agent } = agentHomeInOwnParent();
    const odd = path.join(agent.home, "workspace", "notes (old) été.db");
    sql(odd, "CREATE TABLE t(v); INSERT INTO t VALUES (1), (2);", { write: true });
    const vec = path.join(agent.home, "workspace", "vectors.db");
    // A virtual table whose module (sqlite-vec's vec0) this host does not have.
    sql(vec, "CREATE TABLE docs(v); INSERT INTO docs VALUES ('a'); CREATE VIRTUAL TABLE emb USING fts5(x); PRAGMA writable_schema=ON; UPDATE sqlite_schema SET sql = replace(sql, 'fts5', 'vec0') WHERE name = 'emb';", { write: true });
    const locked = path.join(agent.home, "workspace", "locked.db");
    sql(locked, "CREATE TABLE t(v); INSERT INTO t VALUES (1);", { write: true });
    chownToAgent(agent.home);
    // A live browser-like writer holding an exclusive lock on one store for the whole run.
    const u = agentUser();
    const holder = spawn("sqlite3", [locked], { uid: u.uid, gid: u.gid, stdio: ["pipe", "pipe", "pipe"] });
    holder.stdin!.write("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; INSERT INTO t VALUES (2); SELECT 'held';\n");
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("lock holder not ready")), 10_000);
      holder.stdout!.on("data", (d: Buffer) => d.toString().includes("held") && (clearTimeout(t), resolve()));
    });
    const metricsDir = path.join(tempDir(), "metrics");
    const config = box.writeConfig("acme", { agentHome: agent.home, metricsDir, override: { STORE_TIMEOUT: "3" } });
    const r = runScript("agent-backup", ["--config", config], box.clientEnv);
    holder.kill("SIGTERM");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/store-not-copied: "workspace\/locked.db"/);
    const latest = box.borg("acme", "maintenance", ["list", "--short", "--last", "1"]).stdout.trim();
    const dir = tempDir();
    const x = spawnSync("borg", ["extract", `::${latest}`], { cwd: dir, env: box.borgEnv("acme", "maintenance"), encoding: "utf8" });
    expect(x.status, x.stderr).toBe(0);
    expect(sql(path.join(dir, "workspace", "notes (old) été.db"), "SELECT count(*) FROM t")).toBe("2");
    expect(sql(path.join(dir, "workspace", "vectors.db"), "SELECT count(*) FROM docs")).toBe("1");
    expect(fs.existsSync(path.join(dir, "workspace", "locked.db"))).toBe(false);
    expect(fs.existsSync(path.join(dir, "state.db"))).toBe(true);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, ".agent-backup", "manifest.json"), "utf8"));
    expect(manifest.problems.map((p: { kind: string; path: string }) => `${p.kind} ${p.path}`)).toContain("store-not-copied workspace/locked.db");
    const prom = fs.readFileSync(path.join(metricsDir, "agent-backup-acme.prom"), "utf8");
    expect(prom).toMatch(/^agent_backup_problems\{archive_prefix="acme"\} 1$/m);
  });

  test("names reach the journal escaped: no forged log line, no terminal escape sequence", () => {
    const { agent } = agentHomeInOwnParent();
    const forged = "x\nagent-backup: archive FORGED committed";
    const osc52 = "p\u001b]52;c;SGVsbG8=\u0007";
    const plant = runAsAgent("bash", ["-c", 'mkdir -p "$1/$2" "$1/profiles/$3" && echo k > "$1/profiles/$3/.env" && echo n > "$1/profiles/$3/new-file"',
      "bash", agent.home, forged, osc52]);
    expect(plant.status, plant.stderr).toBe(0);
    const r = runScript("agent-backup", ["--config", box.writeConfig("acme", { agentHome: agent.home })], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr.split("\n").some((l) => l.startsWith("agent-backup: archive FORGED"))).toBe(false);
    expect(r.stderr).not.toContain("\u001b");
    expect(r.stderr).not.toContain("\u0007");
    // Both are still reported, escaped.
    expect(r.stderr).toMatch(/unclassified, left out: .*agent-backup: archive FORGED committed/);
    expect(r.stderr).toMatch(/unclassified, left out: .*52;c;SGVsbG8=/);
  });
});
