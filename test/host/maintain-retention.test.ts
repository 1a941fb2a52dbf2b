// Without tampering, a month of daily archives goes through agent-maintain with the maintenance
// key: retention keeps exactly what the time-based policy says, compact frees the pruned data, the
// check rotates through the archives, and the state and metrics record the run.
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStorageBox, type StorageBox } from "../lib/storage-box";
import {
  archiveName,
  archiveNames,
  createArchive,
  dirBytes,
  expectedKept,
  initRepo,
  runScript,
  writeMaintainConfig,
  writeSourceTree,
  type MaintainSetup,
} from "../lib/maintain-fixtures";

const tenant = "month";
const days = 30;
const uniqueBytes = 256 * 1024;
const policy = { withinHours: 48, daily: 7, weekly: 4, monthly: 6 };

let box: StorageBox;
let setup: MaintainSetup;
let created: { name: string; time: Date }[] = [];
let sizeBefore = 0;
let adopt: ReturnType<typeof runScript>;
let first: ReturnType<typeof runScript>;
let second: ReturnType<typeof runScript>;
let stateAfterFirst: { archives: { name: string; id: string }[]; verified: Record<string, number> };

beforeAll(async () => {
  box = await startStorageBox({ tenants: [tenant] });
  initRepo(box, tenant);
  const src = path.join(box.dir, "client", "src-month");
  const shared = Buffer.from("# SOUL\nthe same persona in every archive\n");
  const now = Date.now();
  // One archive a day for a month, each with its own random data (so pruning frees space).
  for (let d = days - 1; d >= 0; d--) {
    const time = new Date(now - d * 86_400_000 - 3_600_000);
    const name = archiveName(tenant, time);
    writeSourceTree(src, shared, uniqueBytes);
    createArchive(box, tenant, src, name, time);
    created.push({ name, time });
  }
  setup = writeMaintainConfig(box, tenant, { KEEP_WITHIN: "2d", MAX_NEW_ARCHIVES_PER_DAY: "24" });
  sizeBefore = dirBytes(box.tenants[tenant]!.repoPath);
  adopt = runScript("agent-maintain", ["--config", setup.config, "--adopt"]);
  first = runScript("agent-maintain", ["--config", setup.config]);
  stateAfterFirst = JSON.parse(fs.readFileSync(setup.stateFile, "utf8"));
  second = runScript("agent-maintain", ["--config", setup.config]);
}, 900_000);

afterAll(async () => {
  await box?.stop();
});

describe("agent-maintain on an untampered month of daily archives", () => {
  test("adopting records every archive as the trusted baseline", () => {
    expect(adopt.status, adopt.stderr).toBe(0);
    expect(adopt.stderr).toMatch(/tamper check passed: 30 archives/);
  });

  test("the first run exits 0 and keeps exactly what the retention policy keeps", () => {
    expect(first.status, first.stderr).toBe(0);
    const expected = expectedKept(created, policy, new Date());
    // A month of dailies under 7 daily + 4 weekly + 6 monthly keeps far fewer than 30.
    expect(expected.size).toBeLessThan(days);
    expect(new Set(archiveNames(box, tenant))).toEqual(expected);
  });

  test("compact frees the space of the pruned archives", () => {
    const sizeAfter = dirBytes(box.tenants[tenant]!.repoPath);
    const pruned = days - archiveNames(box, tenant).length;
    // Each pruned archive held uniqueBytes of random (incompressible) data of its own.
    expect(sizeBefore - sizeAfter).toBeGreaterThan(pruned * uniqueBytes * 0.9);
    console.log(`repo size before ${sizeBefore} B, after prune+compact ${sizeAfter} B, ${pruned} archives pruned`);
  });

  test("the state records the kept archives and the first quarter of the rotation", () => {
    const kept = archiveNames(box, tenant);
    expect(stateAfterFirst.archives.map((a) => a.name).sort()).toEqual([...kept].sort());
    expect(Object.keys(stateAfterFirst.verified)).toHaveLength(Math.ceil(kept.length / 4));
  });

  test("the second run prunes nothing more and verifies the next archives of the rotation", () => {
    expect(second.status, second.stderr).toBe(0);
    const state = JSON.parse(fs.readFileSync(setup.stateFile, "utf8"));
    const quarter = Math.ceil(state.archives.length / 4);
    const verifiedNow = Object.keys(state.verified);
    expect(verifiedNow).toHaveLength(2 * quarter);
    for (const id of Object.keys(stateAfterFirst.verified)) expect(verifiedNow).toContain(id);
    expect(second.stderr).toMatch(/retention will remove 0 of/);
  });

  test("metrics report the run", () => {
    const prom = fs.readFileSync(path.join(setup.metricsDir, `agent-maintain-${tenant}.prom`), "utf8");
    expect(prom).toMatch(new RegExp(`^agent_maintain_last_run_success\\{archive_prefix="${tenant}"\\} 1$`, "m"));
    expect(prom).toMatch(/^agent_maintain_tamper_findings\{archive_prefix="month"\} 0$/m);
    expect(prom).toMatch(/^agent_maintain_pruned_archives\{archive_prefix="month"\} 0$/m);
    expect(prom).toMatch(/^agent_maintain_check_ok\{archive_prefix="month"\} 1$/m);
  });

  test("a run without a recorded state refuses and writes nothing", () => {
    const other = writeMaintainConfig(box, tenant);
    const r = runScript("agent-maintain", ["--config", other.config]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/no trusted state/);
    expect(fs.existsSync(other.stateFile)).toBe(false);
  });
});
