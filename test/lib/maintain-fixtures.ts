// Shared pieces of the maintenance, tamper and recovery tests: a maintenance config on the loopback
// storage box, archives with chosen timestamps, digests of source trees, extracted archives and
// repository directories, and an independent model of borg's prune rules.
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { scriptsDir, type StorageBox } from "./storage-box";

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function result(r: SpawnSyncReturns<string>): RunResult {
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Where the scripts under test are: scripts/, or the tree named by MAINTAIN_TEST_SCRIPTS_DIR (a
 * copy of an older version's scripts/, e.g. from `git archive`, to show a test fails on it).
 */
export const scriptsUnderTest = process.env.MAINTAIN_TEST_SCRIPTS_DIR ?? scriptsDir;

/** Run one of the project's host scripts (scripts/NAME) with a clean borg environment. */
export function runScript(name: string, args: string[], env: NodeJS.ProcessEnv = {}): RunResult {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BORG_")));
  return result(
    spawnSync(path.join(scriptsUnderTest, name), args, { env: { ...clean, ...env }, encoding: "utf8", timeout: 600_000 }),
  );
}

export interface MaintainSetup {
  config: string;
  stateDir: string;
  stateFile: string;
  escrow: string;
  metricsDir: string;
}

/**
 * A maintenance config for one tenant of the box (maintenance key, state outside the repository),
 * and the escrowed key export it compares against. Extra KEY=VALUE lines override the defaults.
 */
export function writeMaintainConfig(box: StorageBox, tenant: string, extra: Record<string, string> = {}): MaintainSetup {
  const t = box.tenants[tenant];
  if (!t) throw new Error(`no tenant ${tenant} on the box`);
  const base = fs.mkdtempSync(path.join(box.dir, "client", `maint-${tenant}-`));
  const setup: MaintainSetup = {
    config: path.join(base, "agent-maintain.conf"),
    stateDir: path.join(base, "state"),
    stateFile: path.join(base, "state", "state.json"),
    escrow: path.join(base, "key-export"),
    metricsDir: path.join(base, "metrics"),
  };
  const exported = box.borg(tenant, "maintenance", ["key", "export", t.repoUrl, setup.escrow]);
  if (exported.status !== 0) throw new Error(`borg key export failed: ${exported.stderr}`);
  const fields: Record<string, string> = {
    BORG_REPO: t.repoUrl,
    SSH_KEY: t.keys.maintenance,
    KNOWN_HOSTS: box.knownHosts,
    PASSPHRASE_FILE: t.passphraseFile,
    ARCHIVE_PREFIX: tenant,
    STATE_DIR: setup.stateDir,
    KEY_EXPORT_FILE: setup.escrow,
    METRICS_DIR: setup.metricsDir,
    LOCK_WAIT: "30",
    CHECK_BUDGET_SECONDS: "600",
    ...extra,
  };
  const text = Object.entries(fields).map(([k, v]) => `${k}=${v}`).join("\n");
  fs.writeFileSync(setup.config, `${text}\n`, { mode: 0o600 });
  return setup;
}

/** `borg init` of a tenant's repository through the host's append-only key, as onboarding does. */
export function initRepo(box: StorageBox, tenant: string): void {
  const r = box.borg(tenant, "push", ["init", "--encryption=repokey-blake2"]);
  if (r.status !== 0) throw new Error(`borg init failed: ${r.stderr}`);
}

/** Archive name as agent-backup writes it: <prefix>-<UTC yyyy-mm-ddTHH:MM:SS>. */
export function archiveName(prefix: string, when: Date): string {
  return `${prefix}-${when.toISOString().slice(0, 19)}`;
}

/** Create one archive of `src` with a chosen time, through the given key (default push). */
export function createArchive(box: StorageBox, tenant: string, src: string, name: string, when: Date, role: "push" | "maintenance" = "push"): void {
  const r = spawnSync("borg", ["create", "--timestamp", when.toISOString().slice(0, 19), `::${name}`, "."], {
    cwd: src,
    env: box.borgEnv(tenant, role),
    encoding: "utf8",
    timeout: 300_000,
  });
  if (r.status !== 0) throw new Error(`borg create ${name} failed: ${r.stderr}`);
}

/** A small source tree: one shared file and `uniqueBytes` of random data unique to this version. */
export function writeSourceTree(dir: string, shared: Buffer, uniqueBytes: number): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "memories"), { recursive: true });
  fs.writeFileSync(path.join(dir, "SOUL.md"), shared);
  fs.writeFileSync(path.join(dir, "memories", "MEMORY.md"), `note ${randomBytes(8).toString("hex")}\n`);
  fs.writeFileSync(path.join(dir, "state.db"), randomBytes(uniqueBytes));
}

/** relative path -> sha256 of every regular file under dir. */
export function treeDigest(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) out[r] = createHash("sha256").update(fs.readFileSync(path.join(dir, r))).digest("hex");
    }
  };
  walk("");
  return out;
}

/**
 * Extract one archive on a fresh client (no borg cache or security state, like a new restore
 * box) with the drill key and return its digest.
 */
export function extractDigest(box: StorageBox, tenant: string, archive: string): Record<string, string> {
  const target = fs.mkdtempSync(path.join(os.tmpdir(), "ab-extract-"));
  try {
    const env = { ...box.borgEnv(tenant, "drill"), BORG_BASE_DIR: path.join(target, ".borg") };
    const r = spawnSync("borg", ["extract", `::${archive}`], { cwd: target, env, encoding: "utf8", timeout: 300_000 });
    if (r.status !== 0) throw new Error(`borg extract ${archive} failed: ${r.stderr}`);
    fs.rmSync(path.join(target, ".borg"), { recursive: true, force: true });
    return treeDigest(target);
  } finally {
    fs.rmSync(target, { recursive: true, force: true });
  }
}

/** Archive names of the repository, listed on a fresh client with the given key. */
export function archiveNames(box: StorageBox, tenant: string, role: "push" | "maintenance" | "drill" = "drill"): string[] {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "ab-list-"));
  try {
    const r = spawnSync("borg", ["list", "--short"], {
      env: { ...box.borgEnv(tenant, role), BORG_BASE_DIR: base },
      encoding: "utf8",
      timeout: 300_000,
    });
    if (r.status !== 0) throw new Error(`borg list failed: ${r.stderr}`);
    return r.stdout.split("\n").filter(Boolean);
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

/**
 * Every file of a repository directory with its size and sha256, plus each file's mtime: equal
 * snapshots mean nothing in the repository was written. `ignore` leaves out top-level files by
 * name (borg check rewrites `nonce`, its encryption counter, and nothing else).
 */
export function repoSnapshot(repoDir: string, ignore: string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(repoDir, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (ignore.includes(r)) continue;
      const abs = path.join(repoDir, r);
      const st = fs.statSync(abs);
      if (e.isDirectory()) {
        out[`${r}/`] = "dir";
        walk(r);
      } else {
        out[r] = `${st.size} ${st.mtimeMs} ${createHash("sha256").update(fs.readFileSync(abs)).digest("hex")}`;
      }
    }
  };
  walk("");
  return out;
}

/** The repository's next free AES-CTR nonce (its `nonce` file: 16 hex digits). */
export function repoNonce(repoDir: string): bigint {
  const text = fs.readFileSync(path.join(repoDir, "nonce"), "utf8").trim();
  if (!/^[0-9a-f]{16}$/.test(text)) throw new Error(`unexpected nonce file content: ${JSON.stringify(text)}`);
  return BigInt(`0x${text}`);
}

/**
 * The chunk ids of one archive, per member path (`borg debug dump-archive` through the given key,
 * as a compromised host would read them), and the ids of its item-metadata chunks.
 */
export function archiveObjects(box: StorageBox, tenant: string, archive: string, role: "push" | "maintenance" = "push"): {
  chunks: Record<string, string[]>;
  itemMetadata: string[];
} {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "ab-dump-")), "dump.json");
  try {
    const r = box.borg(tenant, role, ["debug", "dump-archive", `::${archive}`, file]);
    if (r.status !== 0) throw new Error(`borg debug dump-archive failed: ${r.stderr}`);
    // Bytes are dumped as "\x7f" followed by their hex.
    const hex = (v: string) => {
      if (!/^\x7f[0-9a-f]{64}$/.test(v)) throw new Error(`unexpected id in the dump: ${JSON.stringify(v)}`);
      return v.slice(1);
    };
    const dump = JSON.parse(fs.readFileSync(file, "utf8")) as {
      _meta: { items: string[] };
      _items: { path: string; chunks?: [string, number, number][] }[];
    };
    const chunks: Record<string, string[]> = {};
    for (const item of dump._items) if (item.chunks) chunks[item.path] = item.chunks.map((c) => hex(c[0]));
    return { chunks, itemMetadata: dump._meta.items.map(hex) };
  } finally {
    fs.rmSync(path.dirname(file), { recursive: true, force: true });
  }
}

/** `borg list --json` of the repository's archives (name, id, time), checkpoints too, on a fresh client. */
export function archiveList(box: StorageBox, tenant: string): { name: string; id: string; time: string }[] {
  const base = fs.mkdtempSync(path.join(os.tmpdir(), "ab-list-"));
  try {
    const r = spawnSync("borg", ["list", "--json", "--consider-checkpoints"], {
      env: { ...box.borgEnv(tenant, "drill"), BORG_BASE_DIR: base },
      encoding: "utf8",
      timeout: 300_000,
    });
    if (r.status !== 0) throw new Error(`borg list failed: ${r.stderr}`);
    return (JSON.parse(r.stdout) as { archives: { name: string; id: string; time: string }[] }).archives.map(({ name, id, time }) => ({ name, id, time }));
  } finally {
    fs.rmSync(base, { recursive: true, force: true });
  }
}

/** Bytes used by a directory tree (apparent sizes). */
export function dirBytes(dir: string): number {
  const r = spawnSync("du", ["-sb", dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`du failed: ${r.stderr}`);
  return Number(r.stdout.split(/\s/)[0]);
}

/** The newest committed transaction id, from agent-recover-repo --list. */
export function lastTransaction(repoDir: string): number {
  const r = runScript("agent-recover-repo", ["--repo-dir", repoDir, "--list"]);
  if (r.status !== 0) throw new Error(`agent-recover-repo --list failed: ${r.stderr}`);
  const ids = r.stdout
    .split("\n")
    .map((l) => /^(\d+)\s/.exec(l)?.[1])
    .filter((x): x is string => x !== undefined)
    .map(Number);
  const last = ids.at(-1);
  if (last === undefined) throw new Error(`no transactions listed:\n${r.stdout}`);
  return last;
}

export interface RetentionPolicy {
  withinHours: number;
  daily: number;
  weekly: number;
  monthly: number;
}

function isoWeek(d: Date): string {
  // ISO 8601 week-numbering year and week (strftime %G-%V), in UTC.
  const t = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const day = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(t.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((t.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${t.getUTCFullYear()}-${String(week).padStart(2, "0")}`;
}

/**
 * Which archives a time-based policy keeps, modelled on borg's documented prune rules (keep-within
 * first, then per rule the newest archive of each period not already kept, and the oldest archive
 * when a rule has periods to spare). Written from the rules, not from the script under test.
 */
export function expectedKept(archives: { name: string; time: Date }[], policy: RetentionPolicy, now: Date): Set<string> {
  const sorted = [...archives].sort((a, b) => b.time.getTime() - a.time.getTime());
  const kept = new Set<string>();
  for (const a of sorted) if (a.time.getTime() > now.getTime() - policy.withinHours * 3_600_000) kept.add(a.name);
  const rules: [number, (d: Date) => string][] = [
    [policy.daily, (d) => d.toISOString().slice(0, 10)],
    [policy.weekly, isoWeek],
    [policy.monthly, (d) => d.toISOString().slice(0, 7)],
  ];
  for (const [n, period] of rules) {
    if (n === 0) continue;
    let last: string | undefined;
    let count = 0;
    let oldest: string | undefined;
    for (const a of sorted) {
      oldest = a.name;
      const p = period(a.time);
      if (p === last) continue;
      last = p;
      if (kept.has(a.name)) continue;
      kept.add(a.name);
      if (++count === n) break;
    }
    if (oldest !== undefined && count < n && !kept.has(oldest)) kept.add(oldest);
  }
  return kept;
}
