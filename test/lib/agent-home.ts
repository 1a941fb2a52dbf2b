// The sample agent home and the live writer (test/fixtures, bash) driven from tests, plus helpers
// to run the host scripts and to fingerprint a home. Temporary directories made here are removed
// by cleanupTemp() (call it in afterAll) and, as a last resort, when the process exits.
import { spawn, spawnSync, type SpawnSyncReturns } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { repoRoot, scriptsDir } from "./storage-box";

export const fixturesDir = path.join(repoRoot, "test", "fixtures");

const temps: string[] = [];
process.once("exit", () => {
  for (const d of temps) fs.rmSync(d, { recursive: true, force: true });
});

/**
 * A fresh temporary directory, removed by cleanupTemp(). Mode 0711: the test agent user can reach
 * a home inside it by name (as it reaches its own home on a host), and list nothing.
 */
export function tempDir(prefix = "ab-test-"): string {
  const d = fs.mkdtempSync(path.join("/tmp", prefix));
  fs.chmodSync(d, 0o711);
  temps.push(d);
  return d;
}

export interface AgentUser {
  name: string;
  uid: number;
  gid: number;
}
let testAgent: AgentUser | undefined;

/**
 * The agent's own (non-root) user for this test process, created on first use and removed when the
 * process exits: the backup reads a home as its owner, as on a host.
 */
export function agentUser(): AgentUser {
  if (testAgent) return testAgent;
  const name = `abagent${process.pid}`;
  // Test workers can end without running exit handlers: users of processes gone are removed here.
  for (const line of fs.readFileSync("/etc/passwd", "utf8").split("\n")) {
    const pid = /^abagent(\d+):/.exec(line)?.[1];
    if (pid && !fs.existsSync(`/proc/${pid}`)) spawnSync("userdel", [`abagent${pid}`]);
  }
  const add = spawnSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], { encoding: "utf8" });
  if (add.status !== 0 && !/already exists/.test(add.stderr)) throw new Error(`useradd ${name}: ${add.stderr}`);
  process.once("exit", () => spawnSync("userdel", [name]));
  const id = (flag: string) => Number(spawnSync("id", [flag, name], { encoding: "utf8" }).stdout.trim());
  testAgent = { name, uid: id("-u"), gid: id("-g") };
  return testAgent;
}

/** chown -R a path (no symlink followed) to the test agent user. */
export function chownToAgent(p: string): void {
  const u = agentUser();
  const r = spawnSync("chown", ["-R", "-h", `${u.uid}:${u.gid}`, "--", p], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`chown ${p}: ${r.stderr}`);
}

/** Run a command as the test agent user (its uid and gid), the way the agent itself would. */
export function runAsAgent(cmd: string, args: string[], opts: { cwd?: string } = {}): SpawnSyncReturns<string> {
  const u = agentUser();
  return spawnSync(cmd, args, { uid: u.uid, gid: u.gid, cwd: opts.cwd, encoding: "utf8", timeout: 120_000 });
}

export function cleanupTemp(): void {
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

export interface HomeOptions {
  sessions?: number;
  stateDbMb?: number;
  deadWeightMb?: number;
  profiles?: number;
  seed?: number;
  /** Who owns the home: the test agent user (default), or root. */
  owner?: "agent" | "root";
}

export interface AgentHome {
  home: string;
  /** Every planted secret value. */
  canaries: string[];
}

/** Build a sample agent home with test/fixtures/make-agent-home. */
export function makeAgentHome(home: string, opts: HomeOptions = {}): AgentHome {
  const canariesFile = `${home}.canaries`;
  const args = ["--home", home, "--canaries-out", canariesFile];
  if (opts.sessions !== undefined) args.push("--sessions", String(opts.sessions));
  if (opts.stateDbMb !== undefined) args.push("--state-db-mb", String(opts.stateDbMb));
  if (opts.deadWeightMb !== undefined) args.push("--dead-weight-mb", String(opts.deadWeightMb));
  if (opts.profiles !== undefined) args.push("--profiles", String(opts.profiles));
  if (opts.seed !== undefined) args.push("--seed", String(opts.seed));
  const r = spawnSync(path.join(fixturesDir, "make-agent-home"), args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`make-agent-home failed (${r.status}): ${r.stderr}`);
  if (opts.owner !== "root") chownToAgent(home);
  const canaries = fs.readFileSync(canariesFile, "utf8").split("\n").filter(Boolean);
  fs.rmSync(canariesFile);
  return { home, canaries };
}

export interface Writer {
  pid: number;
  /** Stop the writer (SIGTERM by PID) and wait until it has exited. */
  stop(): Promise<void>;
}

/** Start test/fixtures/agent-writer on a home; resolves once it has committed its first rows. */
export async function startWriter(home: string, opts: { rate?: number; duration?: number } = {}): Promise<Writer> {
  const db = path.join(home, "state.db");
  const before = countRows(db, "messages");
  // The writer is the agent: it runs as the home's owner, so its -wal/-shm files are the agent's.
  const owner = fs.statSync(home);
  const child = spawn(
    path.join(fixturesDir, "agent-writer"),
    ["--home", home, "--rate", String(opts.rate ?? 50), "--duration", String(opts.duration ?? 300)],
    { stdio: ["ignore", "ignore", "pipe"], uid: owner.uid, gid: owner.gid },
  );
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  // Bounded: up to 200 polls of 50 ms for the first committed row.
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) throw new Error(`agent-writer exited early: ${stderr}`);
    if (countRows(db, "messages") > before) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  if (countRows(db, "messages") <= before) throw new Error("agent-writer committed nothing in 10 s");
  return {
    pid: child.pid ?? -1,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null && child.signalCode === null) throw new Error("agent-writer did not stop");
    },
  };
}

/** sqlite3 one-shot query (read-only unless opts.write), returning trimmed stdout. */
export function sql(db: string, query: string, opts: { write?: boolean } = {}): string {
  const args = [...(opts.write ? [] : ["-readonly"]), "-bail", "-cmd", ".timeout 10000", db, query];
  const r = spawnSync("sqlite3", args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`sqlite3 ${db}: ${r.stderr}`);
  return r.stdout.trim();
}

export function countRows(db: string, table: string): number {
  return Number(sql(db, `SELECT count(*) FROM ${table}`));
}

/** Sessions whose message_count disagrees with their messages: 0 in any consistent copy. */
export function tornSessions(db: string): number {
  return Number(
    sql(db, "SELECT count(*) FROM sessions s WHERE message_count != (SELECT count(*) FROM messages m WHERE m.session_id = s.id)"),
  );
}

/** Run a host script from scripts/ with arguments; never throws. */
export function runScript(
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
  timeoutMs = 300_000,
): SpawnSyncReturns<string> {
  return spawnSync(path.join(scriptsDir, name), args, { env, encoding: "utf8", timeout: timeoutMs });
}

/**
 * Path -> sha256 (files), "dir" or "link:<target>" for every entry below root, except SQLite's
 * own -wal/-shm sidecars (a reader may create them; they are not the home's data).
 */
export function fingerprint(root: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      const abs = path.join(root, r);
      const st = fs.lstatSync(abs);
      if (st.isSymbolicLink()) out.set(r, `link:${fs.readlinkSync(abs)}`);
      else if (st.isDirectory()) {
        out.set(r, "dir");
        walk(r);
      } else if (!/-(wal|shm)$/.test(name)) {
        out.set(r, createHash("sha256").update(fs.readFileSync(abs)).digest("hex"));
      }
    }
  };
  walk("");
  return out;
}

/** Every regular file below root, as paths relative to root. */
export function listFiles(root: string): string[] {
  return [...fingerprint(root).entries()].filter(([, v]) => v !== "dir" && !v.startsWith("link:")).map(([k]) => k);
}
