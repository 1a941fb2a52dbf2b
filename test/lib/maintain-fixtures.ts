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

/** A new source tree (writeSourceTree) archived under `name` at `when`; returns the tree's digest. */
export function archiveNewTree(box: StorageBox, tenant: string, name: string, when: Date, soul: Buffer, uniqueBytes: number): Record<string, string> {
  const src = path.join(box.dir, "client", `src-${tenant}`);
  writeSourceTree(src, soul, uniqueBytes);
  const digest = treeDigest(src);
  createArchive(box, tenant, src, name, when);
  return digest;
}

export interface AdoptedTenant {
  setup: MaintainSetup;
  /** archive name -> digest of the tree it was made from */
  sources: Record<string, Record<string, string>>;
  /** the newest transaction while the repository was still trusted */
  trustedTx: number;
}

/**
 * The trusted starting point of the attack tests: for each tenant a repository with four daily
 * archives (4 to 1 days old, 64 KiB of their own data, the same SOUL.md) and a maintenance config
 * (`config` overrides its defaults) whose --adopt recorded them as the trusted baseline.
 */
export function adoptedTenants<T extends string>(box: StorageBox, tenants: readonly T[], soul: Buffer, config: Record<string, string> = {}): Record<T, AdoptedTenant> {
  const out = {} as Record<T, AdoptedTenant>;
  for (const tenant of tenants) {
    initRepo(box, tenant);
    const sources: Record<string, Record<string, string>> = {};
    for (let d = 4; d >= 1; d--) {
      const time = new Date(Date.now() - d * 86_400_000);
      const name = archiveName(tenant, time);
      sources[name] = archiveNewTree(box, tenant, name, time, soul, 64 * 1024);
    }
    const setup = writeMaintainConfig(box, tenant, config);
    const adopted = runScript("agent-maintain", ["--config", setup.config, "--adopt"]);
    if (adopted.status !== 0) throw new Error(`adopt failed: ${adopted.stderr}`);
    out[tenant] = { setup, sources, trustedTx: lastTransaction(box.tenants[tenant]!.repoPath) };
  }
  return out;
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

/** What the manifest of a hand-made archive says about its home (see writeManifestTree). */
export interface HomeFacts {
  soul: string;
  /** file name under memories/ -> content */
  memories: Record<string, string>;
  /** state.db table -> rows, as scripts/agent-side/collect counts them */
  rows: Record<string, number>;
  unclassified?: number;
}

/**
 * A tree shaped like an agent-backup archive of a home with `facts`: SOUL.md, memories/, a
 * state.db of a size that grows with its rows, and .agent-backup/manifest.json as
 * scripts/agent-side/collect writes it (format 2 with sizes). `manifest` replaces the manifest's
 * text, as a compromised host could.
 */
export function writeManifestTree(dir: string, archive: string, facts: HomeFacts, manifest?: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "memories"), { recursive: true });
  fs.mkdirSync(path.join(dir, ".agent-backup"));
  const files: Record<string, Buffer> = { "SOUL.md": Buffer.from(facts.soul) };
  for (const [name, text] of Object.entries(facts.memories)) files[`memories/${name}`] = Buffer.from(text);
  const rows = Object.values(facts.rows).reduce((a, b) => a + b, 0);
  files["state.db"] = randomBytes(4096 + rows * 64);
  for (const [rel, data] of Object.entries(files)) fs.writeFileSync(path.join(dir, rel), data);
  const checked = Object.keys(files).filter((rel) => rel !== "state.db");
  const body = {
    format: 2,
    archive,
    agentHome: "/home/hermes/.hermes",
    agentUser: "hermes",
    created: new Date().toISOString().slice(0, 19) + "Z",
    classes: { precious: { files: Object.keys(files).length, bytes: Object.values(files).reduce((a, b) => a + b.length, 0) } },
    excluded: {},
    unclassifiedCount: facts.unclassified ?? 0,
    unclassified: [],
    sha256: Object.fromEntries(checked.map((rel) => [rel, createHash("sha256").update(files[rel]!).digest("hex")])),
    sizes: Object.fromEntries(checked.map((rel) => [rel, files[rel]!.length])),
    stores: [{ path: "state.db", integrity: "ok", tables: facts.rows }],
    problems: [],
    redactionMarker: "[REDACTED]",
    paths: [...Object.keys(files), "memories", ".agent-backup", ".agent-backup/manifest.json"].sort(),
  };
  fs.writeFileSync(path.join(dir, ".agent-backup", "manifest.json"), manifest ?? JSON.stringify(body));
}

/** An archive of writeManifestTree(facts) under `name`, made at `when` through the push key. */
export function archiveHome(box: StorageBox, tenant: string, name: string, when: Date, facts: HomeFacts, manifest?: string): void {
  const src = path.join(box.dir, "client", `home-${tenant}`);
  writeManifestTree(src, name, facts, manifest);
  createArchive(box, tenant, src, name, when);
}

/** The recoverability ledger agent-maintain writes (STATE_DIR/ledger.json); see docs/FLEET-LEDGER.md. */
export interface Ledger {
  format: number;
  tenant: string;
  updated: string;
  mode: string;
  ok: boolean;
  archives: number;
  newestArchive: { name: string; time: string; firstSeen: string } | null;
  repo: { uniqueCsize: number; totalSize: number } | null;
  tamper: { verdict: string; checked: string; objectsChecked: boolean; findings: string[] } | null;
  unclassified: { archive: string; count: number } | null;
  shrink: { verdict: string; archive: string | null; previous: string | null; findings: { what: string; before: number; after: number }[]; reason?: string };
  pins: { archive: string; id: string; reason: string; since: string }[];
}

export const readLedger = (setup: MaintainSetup): Ledger => JSON.parse(fs.readFileSync(path.join(setup.stateDir, "ledger.json"), "utf8")) as Ledger;

/** ledger-history.jsonl, one object per run. */
export const readLedgerHistory = (setup: MaintainSetup): Record<string, unknown>[] =>
  fs.readFileSync(path.join(setup.stateDir, "ledger-history.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);

/** The value of one metric of agent-maintain-ledger-<tenant>.prom, or undefined when absent. */
export function ledgerMetric(setup: MaintainSetup, tenant: string, name: string): number | undefined {
  const text = fs.readFileSync(path.join(setup.metricsDir, `agent-maintain-ledger-${tenant}.prom`), "utf8");
  const line = text.split("\n").find((l) => l.startsWith(`agent_maintain_${name}{`));
  return line === undefined ? undefined : Number(line.split(" ").pop());
}
