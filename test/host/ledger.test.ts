// The recoverability ledger, built by agent-maintain on the trusted side against real repositories
// on a loopback storage box: a fresh tenant backed up by the real agent-backup, a stale one (its
// newest archive days old: the age comes from the archive times the trusted side recorded, not
// from the host), a tampered one (an archive deleted through the host's push key), and a wiped
// agent (a second real backup after state.db lost its messages and SOUL.md was emptied): the shrink
// guard alarms, pins the archive before the drop, and says so in the ledger and the metrics. None of
// them has been drilled: there is no drills.jsonl.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cleanupTemp, makeAgentHome, runScript as runHostScript, sql, tempDir } from "../lib/agent-home";
import { startStorageBox, type StorageBox } from "../lib/storage-box";
import {
  archiveHome,
  archiveList,
  archiveName,
  initRepo,
  ledgerMetric,
  readLedger,
  readLedgerHistory,
  repoSnapshot,
  runScript,
  writeMaintainConfig,
  type HomeFacts,
  type MaintainSetup,
} from "../lib/maintain-fixtures";

const DAY = 86_400_000;
const facts: HomeFacts = {
  soul: "# SOUL\nA careful assistant that remembers decisions and explains them to the team.\n",
  memories: { "MEMORY.md": "- deploys on Tuesdays\n".repeat(20) },
  rows: { sessions: 40, messages: 400 },
};

let box: StorageBox;
let work: string;
const iso = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(".000Z", "Z");

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["fresh", "stale", "tampered", "wiped"] });
  work = tempDir();
}, 120_000);

afterAll(async () => {
  await box?.stop();
  cleanupTemp();
});

/** A real agent home backed up by the real agent-backup (push key); returns the home's path. */
const backupConfigs = new Map<string, string>();
function realBackup(tenant: string, home: string, first: boolean): string {
  if (first) backupConfigs.set(tenant, box.writeConfig(tenant, { agentHome: home }));
  const config = backupConfigs.get(tenant)!;
  if (first) {
    const init = runHostScript("agent-backup", ["--config", config, "--init"], box.clientEnv);
    if (init.status !== 0) throw new Error(`agent-backup --init failed: ${init.stderr}`);
  }
  const r = runHostScript("agent-backup", ["--config", config], box.clientEnv, 600_000);
  if (r.status !== 0) throw new Error(`agent-backup failed: ${r.stderr}`);
  const names = archiveList(box, tenant).map((a) => a.name).sort();
  return names.at(-1)!;
}

/** The archive's manifest, read on the test's side with the drill key. */
function manifestOf(tenant: string, archive: string): { unclassifiedCount: number; sizes: Record<string, number> } {
  const r = spawnSync("borg", ["extract", "--stdout", `::${archive}`, ".agent-backup/manifest.json"], {
    env: { ...box.borgEnv(tenant, "drill"), BORG_BASE_DIR: path.join(work, `borg-${tenant}`) },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`borg extract failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

const maintain = (setup: MaintainSetup, ...args: string[]) => runScript("agent-maintain", ["--config", setup.config, ...args]);

describe("a fresh tenant backed up by agent-backup", () => {
  let setup: MaintainSetup;
  let home: string;
  let first: string;
  let second: string;
  let started: number;

  beforeAll(() => {
    home = makeAgentHome(path.join(work, "fresh-home"), { sessions: 20 }).home;
    first = realBackup("fresh", home, true);
    setup = writeMaintainConfig(box, "fresh");
    const adopted = maintain(setup, "--adopt");
    if (adopted.status !== 0) throw new Error(`adopt failed: ${adopted.stderr}`);
    second = realBackup("fresh", home, false);
    started = Date.now();
  }, 900_000);

  test("the manifest gives the byte size of SOUL.md and each memory file", () => {
    const sizes = manifestOf("fresh", second).sizes;
    for (const rel of ["SOUL.md", "memories/MEMORY.md", "memories/USER.md"]) {
      expect(sizes[rel], rel).toBe(fs.statSync(path.join(home, rel)).size);
    }
  });

  test("a maintenance run writes its row: newest archive, size, tamper and shrink verdicts, unclassified paths", () => {
    const r = maintain(setup);
    expect(r.status, r.stderr).toBe(0);
    const ledger = readLedger(setup);
    expect(ledger).toMatchObject({ format: 1, tenant: "fresh", mode: "maintain", ok: true, archives: 2, pins: [] });
    expect(Date.parse(ledger.updated)).toBeGreaterThanOrEqual(started - 1000);
    expect(ledger.newestArchive?.name).toBe(second);
    // The archive's own time (a baseline adopt had not seen it; the run that did clamps it).
    const listed = archiveList(box, "fresh").find((a) => a.name === second)!;
    expect(ledger.newestArchive?.time).toBe(iso(Date.parse(`${listed.time.slice(0, 19)}Z`)));
    expect(Date.parse(ledger.newestArchive!.firstSeen)).toBeGreaterThanOrEqual(Date.parse(ledger.newestArchive!.time));
    expect(ledger.repo!.uniqueCsize).toBeGreaterThan(0);
    expect(ledger.repo!.totalSize).toBeGreaterThanOrEqual(ledger.repo!.uniqueCsize);
    expect(ledger.tamper).toMatchObject({ verdict: "ok", objectsChecked: true, findings: [] });
    expect(ledger.shrink).toMatchObject({ verdict: "ok", archive: second, previous: first, findings: [] });
    expect(ledger.unclassified).toEqual({ archive: second, count: manifestOf("fresh", second).unclassifiedCount });
    expect(ledgerMetric(setup, "fresh", "shrink")).toBe(0);
    expect(ledgerMetric(setup, "fresh", "tampered")).toBe(0);
    expect(ledgerMetric(setup, "fresh", "newest_archive_timestamp_seconds")).toBe(Date.parse(ledger.newestArchive!.time) / 1000);
    expect(ledgerMetric(setup, "fresh", "repo_total_size_bytes")).toBe(ledger.repo!.totalSize);
  });

  test("the history has one line per run, and there is no drill yet", () => {
    const history = readLedgerHistory(setup);
    expect(history.map((h) => h.mode)).toEqual(["adopt", "maintain"]);
    expect(history[1]).toMatchObject({ archives: 2, tamper: "ok", shrink: "ok", ok: true });
    expect(history[1]!.uniqueCsize).toBe(readLedger(setup).repo!.uniqueCsize);
    expect(fs.existsSync(path.join(setup.stateDir, "drills.jsonl"))).toBe(false);
  });

  test("a --tamper-check writes the ledger and its history but no state, and nothing to the repository", () => {
    const state = fs.readFileSync(setup.stateFile);
    const shrinkState = fs.readFileSync(path.join(setup.stateDir, "shrink.json"));
    // borg check moves the encryption nonce counter forward, nothing else (see agent-maintain --help).
    const repo = repoSnapshot(box.tenants.fresh!.repoPath, ["nonce"]);
    const r = maintain(setup, "--tamper-check");
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/shrink guard: reading the manifest of fresh-/);
    expect(repoSnapshot(box.tenants.fresh!.repoPath, ["nonce"])).toEqual(repo);
    expect(fs.readFileSync(setup.stateFile).equals(state)).toBe(true);
    expect(fs.readFileSync(path.join(setup.stateDir, "shrink.json")).equals(shrinkState)).toBe(true);
    expect(readLedger(setup).mode).toBe("tamper-check");
    // Measured by the maintenance run, carried over by the check.
    expect(readLedger(setup).repo).not.toBeNull();
    expect(readLedgerHistory(setup).map((h) => h.mode)).toEqual(["adopt", "maintain", "tamper-check"]);
  });
});

describe("a stale tenant", () => {
  let staleSetup: MaintainSetup | undefined;
  test("the newest archive's time is the one the trusted side recorded, days ago, under the configured tenant name", () => {
    initRepo(box, "stale");
    const newest = Date.now() - 9 * DAY;
    archiveHome(box, "stale", archiveName("stale", new Date(newest - DAY)), new Date(newest - DAY), facts);
    archiveHome(box, "stale", archiveName("stale", new Date(newest)), new Date(newest), facts);
    const setup = writeMaintainConfig(box, "stale", { TENANT: "stale-agent" });
    staleSetup = setup;
    const before = Date.now();
    expect(maintain(setup, "--adopt").status).toBe(0);
    const r = maintain(setup, "--observe");
    expect(r.status, r.stderr).toBe(0);
    const ledger = readLedger(setup);
    expect(ledger).toMatchObject({ tenant: "stale-agent", mode: "observe", ok: true, archives: 2, repo: null });
    expect(ledger.newestArchive).toMatchObject({ name: archiveName("stale", new Date(newest)), time: iso(newest) });
    expect(Date.parse(ledger.newestArchive!.firstSeen)).toBeGreaterThanOrEqual(before - 1000);
    expect(ledger.tamper).toMatchObject({ verdict: "ok", objectsChecked: false });
    expect(ledgerMetric(setup, "stale", "newest_archive_timestamp_seconds")).toBe(Math.floor(newest / 1000));
    expect(readLedgerHistory(setup).map((h) => h.newestArchiveTime)).toEqual([iso(newest), iso(newest)]);
  });

  test("a run that cannot reach the box says so, and keeps the last trusted facts", () => {
    const setup = staleSetup!;
    const before = readLedger(setup);
    // The same trusted state, a repository URL nothing answers at (port 1 on loopback).
    const unreachable = writeMaintainConfig(box, "stale", {
      TENANT: "stale-agent",
      STATE_DIR: setup.stateDir,
      METRICS_DIR: setup.metricsDir,
      BORG_REPO: "ssh://nobody@127.0.0.1:1/./borg",
    });
    // A long history: the file keeps the last 1000 runs.
    const history = path.join(setup.stateDir, "ledger-history.jsonl");
    fs.writeFileSync(history, Array.from({ length: 1000 }, (_, i) => `{"time":"2026-01-01T00:00:00Z","run":${i}}\n`).join(""));
    const r = maintain(unreachable);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot talk to the storage box/);
    const lines = readLedgerHistory(setup);
    expect(lines).toHaveLength(1000);
    expect(lines[0]).toMatchObject({ run: 1 });
    const ledger = readLedger(setup);
    expect(ledger).toMatchObject({ mode: "maintain", ok: false, archives: 2, newestArchive: before.newestArchive, tamper: before.tamper });
    expect(readLedgerHistory(setup).at(-1)).toMatchObject({ mode: "maintain", ok: false, newestArchiveTime: before.newestArchive!.time });
  });

});

describe("a tampered tenant", () => {
  test("the ledger says tampered with the findings, and keeps the trusted view of the archives", () => {
    initRepo(box, "tampered");
    const times = [3, 2, 1].map((d) => Date.now() - d * DAY);
    for (const t of times) archiveHome(box, "tampered", archiveName("tampered", new Date(t)), new Date(t), facts);
    const setup = writeMaintainConfig(box, "tampered");
    expect(maintain(setup, "--adopt").status).toBe(0);
    // The attack: the host's push key deletes the oldest archive.
    const del = box.borg("tampered", "push", ["delete", `::${archiveName("tampered", new Date(times[0]!))}`]);
    expect(del.status, del.stderr).toBe(0);

    const r = maintain(setup);
    expect(r.status).toBe(1);
    const ledger = readLedger(setup);
    expect(ledger).toMatchObject({ mode: "maintain", ok: false, archives: 3 });
    expect(ledger.tamper?.verdict).toBe("tampered");
    expect(ledger.tamper?.findings.join("\n")).toMatch(/archive vanished without a trusted prune: tampered-/);
    expect(ledger.newestArchive?.name).toBe(archiveName("tampered", new Date(times[2]!)));
    expect(ledgerMetric(setup, "tampered", "tampered")).toBe(1);
    expect(readLedgerHistory(setup).at(-1)).toMatchObject({ mode: "maintain", ok: false, tamper: "tampered" });
  });
});

describe("an agent wiped between two real backups", () => {
  let setup: MaintainSetup;
  let before: string;
  let after: string;
  let observe: ReturnType<typeof runScript>;

  beforeAll(() => {
    const home = makeAgentHome(path.join(work, "wiped-home"), { sessions: 40 }).home;
    before = realBackup("wiped", home, true);
    setup = writeMaintainConfig(box, "wiped");
    const adopted = maintain(setup, "--adopt");
    if (adopted.status !== 0) throw new Error(`adopt failed: ${adopted.stderr}`);
    // What upstream reports of a zeroed state.db look like to the backup: the rows are gone.
    sql(path.join(home, "state.db"), "DELETE FROM messages; DELETE FROM sessions WHERE rowid > 2;", { write: true });
    fs.writeFileSync(path.join(home, "SOUL.md"), "");
    after = realBackup("wiped", home, false);
    observe = maintain(setup, "--observe");
  }, 900_000);

  test("the shrink guard alarms: exit 3, findings for the rows and SOUL.md, verdict shrunk", () => {
    expect(observe.status, observe.stderr).toBe(3);
    expect(observe.stderr).toMatch(/SHRINK: rows of state\.db messages: \d+ -> 0/);
    const ledger = readLedger(setup);
    expect(ledger.shrink).toMatchObject({ verdict: "shrunk", archive: after, previous: before });
    const what = ledger.shrink.findings.map((f) => f.what);
    expect(what).toEqual(expect.arrayContaining(["rows of state.db messages", "rows of state.db sessions", "bytes of SOUL.md (near empty)"]));
    const soul = ledger.shrink.findings.find((f) => f.what === "bytes of SOUL.md (near empty)")!;
    expect(soul.after).toBe(0);
    expect(soul.before).toBeGreaterThan(64);
    expect(ledgerMetric(setup, "wiped", "shrink")).toBe(1);
    expect(ledgerMetric(setup, "wiped", "shrink_findings")).toBe(ledger.shrink.findings.length);
  });

  test("the archive before the drop is pinned, in the trusted state and in the ledger", () => {
    const pins = JSON.parse(fs.readFileSync(path.join(setup.stateDir, "pins.json"), "utf8")) as { archive: string; id: string }[];
    expect(pins.map((p) => p.archive)).toEqual([before]);
    expect(pins[0]!.id).toBe(archiveList(box, "wiped").find((a) => a.name === before)!.id);
    expect(readLedger(setup).pins.map((p) => p.archive)).toEqual([before]);
    expect(readLedger(setup).pins[0]!.reason).toMatch(/^shrink guard: .* in wiped-/);
    expect(ledgerMetric(setup, "wiped", "pinned_archives")).toBe(1);
  });

  test("the alarm repeats on the next run, a --tamper-check too, until a person acts", () => {
    const state = fs.readFileSync(setup.stateFile);
    const r = maintain(setup, "--tamper-check");
    expect(r.status, r.stderr).toBe(3);
    expect(readLedger(setup).shrink).toMatchObject({ verdict: "shrunk", previous: before });
    expect(fs.readFileSync(setup.stateFile).equals(state)).toBe(true);
  });
});
