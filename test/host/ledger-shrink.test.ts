// The shrink guard against real repositories on a loopback storage box, with archives whose
// manifests say what the home held: a wiped agent's archive pins the last archive before the
// drop; a maintenance run whose retention plan would delete it keeps it; only a person's
// --release-pin lets retention delete it, and the guard then takes the newest archive as its
// reference. Wipes spread over several archives between two runs are found against the archive
// the last run checked; a manifest cannot hide a drop by giving strings for numbers; a manifest
// that is not JSON or too large gives no verdict and pins nothing.
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStorageBox, type StorageBox } from "../lib/storage-box";
import {
  archiveHome,
  archiveList,
  archiveName,
  initRepo,
  ledgerMetric,
  readLedger,
  runScript,
  writeMaintainConfig,
  type HomeFacts,
  type MaintainSetup,
} from "../lib/maintain-fixtures";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const good: HomeFacts = {
  soul: "# SOUL\nA careful assistant that remembers decisions and explains them to the team.\n",
  memories: { "MEMORY.md": "- deploys on Tuesdays\n".repeat(100), "USER.md": "- prefers short answers\n" },
  rows: { sessions: 40, messages: 400, state_meta: 3 },
};
const wiped: HomeFacts = { soul: "", memories: {}, rows: { sessions: 0, messages: 0, state_meta: 3 } };

let box: StorageBox;
beforeAll(async () => {
  box = await startStorageBox({ tenants: ["pin", "spread", "typed", "hostile"] });
  for (const t of ["pin", "spread", "typed", "hostile"]) initRepo(box, t);
}, 120_000);

afterAll(async () => {
  await box?.stop();
});

const maintain = (setup: MaintainSetup, ...args: string[]) => runScript("agent-maintain", ["--config", setup.config, ...args]);
const names = (tenant: string) => archiveList(box, tenant).map((a) => a.name).sort();
const pinsFile = (setup: MaintainSetup) =>
  JSON.parse(fs.readFileSync(path.join(setup.stateDir, "pins.json"), "utf8")) as { archive: string; reason: string }[];

describe("pins and retention", () => {
  const t0 = Date.now();
  const [a, b, c] = [3, 2, 1].map((d) => archiveName("pin", new Date(t0 - d * DAY))) as [string, string, string];
  let setup: MaintainSetup;

  beforeAll(() => {
    archiveHome(box, "pin", a, new Date(t0 - 3 * DAY), good);
    archiveHome(box, "pin", b, new Date(t0 - 2 * DAY), good);
    archiveHome(box, "pin", c, new Date(t0 - DAY), wiped);
    // Retention keeps only the newest daily: without the pin, B would go with A.
    setup = writeMaintainConfig(box, "pin", { KEEP_WITHIN: "1H", KEEP_DAILY: "1", KEEP_WEEKLY: "0", KEEP_MONTHLY: "0" });
  }, 300_000);

  test("the run that first sees the wiped archive alarms and pins the archive before it", () => {
    const r = maintain(setup, "--adopt");
    expect(r.status, r.stderr).toBe(3);
    expect(r.stderr).toMatch(/SHRINK: pinned pin-/);
    expect(pinsFile(setup).map((p) => p.archive)).toEqual([b]);
    expect(readLedger(setup).shrink).toMatchObject({ verdict: "shrunk", archive: c, previous: b });
    const what = readLedger(setup).shrink.findings.map((f) => f.what).sort();
    // Precious files: 4 -> 2 is below SHRINK_MIN_ROWS (20), so no finding of its own.
    expect(what).toEqual(["bytes of SOUL.md (near empty)", "files of memories", "precious bytes", "rows of state.db messages", "rows of state.db sessions"]);
  });

  test("a maintenance run whose plan would delete the pinned archive keeps it, and prunes the rest", () => {
    const r = maintain(setup);
    expect(r.status, r.stderr).toBe(3);
    expect(r.stderr).toContain(`keep    ${b}  (pinned;`);
    expect(r.stderr).toContain(`delete  ${a}`);
    expect(names("pin")).toEqual([b, c]);
    expect(readLedger(setup)).toMatchObject({ mode: "maintain", ok: true, archives: 2 });
    expect(readLedger(setup).shrink).toMatchObject({ verdict: "shrunk", previous: b });
  });

  test("--release-pin refuses a name that is not pinned, or not an archive name", () => {
    const notPinned = maintain(setup, "--release-pin", c);
    expect(notPinned.status).toBe(1);
    expect(notPinned.stderr).toContain(`${c} is not pinned (pinned: ${b})`);
    const hostile = maintain(setup, "--release-pin", "../state.json");
    expect(hostile.status).toBe(2);
    expect(pinsFile(setup).map((p) => p.archive)).toEqual([b]);
  });

  test("a person releases the pin: logged, and the ledger shows no pin", () => {
    const r = maintain(setup, "--release-pin", b);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`pin released by root: ${b}`));
    const log = fs.readFileSync(path.join(setup.stateDir, "pins.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(log).toHaveLength(1);
    expect(log[0]).toMatchObject({ released: b, by: "root" });
    expect(pinsFile(setup)).toEqual([]);
    expect(readLedger(setup).pins).toEqual([]);
  });

  test("after the release, retention deletes it and the guard takes the newest archive as its reference", () => {
    const r = maintain(setup);
    expect(r.status, r.stderr).toBe(0);
    expect(names("pin")).toEqual([c]);
    expect(readLedger(setup).shrink).toMatchObject({ verdict: "ok", archive: c, previous: null, findings: [] });
    expect(readLedger(setup).shrink.reason).toMatch(/released the pin/);
    expect(ledgerMetric(setup, "pin", "shrink")).toBe(0);
    expect(ledgerMetric(setup, "pin", "pinned_archives")).toBe(0);
    const again = maintain(setup);
    expect(again.status, again.stderr).toBe(0);
    expect(readLedger(setup).shrink).toMatchObject({ verdict: "ok", reason: "no new archive since the last comparison" });
  });
});

describe("the reference", () => {
  test("a wipe spread over several archives between two runs is found against the archive the last run checked", () => {
    const t0 = Date.now();
    const [a, b, c] = [3, 2, 1].map((h) => archiveName("spread", new Date(t0 - h * HOUR))) as [string, string, string];
    archiveHome(box, "spread", a, new Date(t0 - 3 * HOUR), good);
    const setup = writeMaintainConfig(box, "spread");
    const adopted = maintain(setup, "--adopt");
    expect(adopted.status, adopted.stderr).toBe(0);
    expect(readLedger(setup).shrink).toMatchObject({ verdict: "ok", archive: a, previous: null });
    // 400 -> 250 -> 150 messages: neither step is a drop of more than half against the archive
    // before it, 400 -> 150 is.
    archiveHome(box, "spread", b, new Date(t0 - 2 * HOUR), { ...good, rows: { ...good.rows, messages: 250 } });
    archiveHome(box, "spread", c, new Date(t0 - HOUR), { ...good, rows: { ...good.rows, messages: 150 } });
    const r = maintain(setup, "--observe");
    expect(r.status, r.stderr).toBe(3);
    expect(readLedger(setup).shrink).toMatchObject({ verdict: "shrunk", archive: c, previous: a });
    expect(readLedger(setup).shrink.findings).toEqual([{ what: "rows of state.db messages", before: 400, after: 150 }]);
    expect(pinsFile(setup).map((p) => p.archive)).toEqual([a]);
  });
});

describe("manifests are the host's word", () => {
  test("strings for numbers cannot hide a drop", () => {
    const t0 = Date.now();
    archiveHome(box, "typed", archiveName("typed", new Date(t0 - 2 * HOUR)), new Date(t0 - 2 * HOUR), good);
    const sly = JSON.stringify({
      format: 2,
      classes: { precious: { files: "many", bytes: "lots" } },
      stores: [{ path: "state.db", tables: { sessions: "40", messages: { n: 400 }, state_meta: 3 } }],
      sha256: { "SOUL.md": "0".repeat(64) },
      sizes: { "SOUL.md": "a lot" },
      unclassifiedCount: "none",
    });
    const newest = archiveName("typed", new Date(t0 - HOUR));
    archiveHome(box, "typed", newest, new Date(t0 - HOUR), good, sly);
    const setup = writeMaintainConfig(box, "typed");
    const r = maintain(setup, "--adopt");
    expect(r.status, r.stderr).toBe(3);
    const what = readLedger(setup).shrink.findings.map((f) => f.what).sort();
    expect(what).toEqual(["files of memories", "precious bytes", "rows of state.db messages", "rows of state.db sessions"]);
    // A count that is no count is not reported as one.
    expect(readLedger(setup).unclassified).toBeNull();
  });

  test("a manifest that is not JSON, or larger than MANIFEST_MAX_BYTES, gives no verdict and pins nothing", () => {
    const t0 = Date.now();
    archiveHome(box, "hostile", archiveName("hostile", new Date(t0 - 3 * HOUR)), new Date(t0 - 3 * HOUR), good);
    archiveHome(box, "hostile", archiveName("hostile", new Date(t0 - 2 * HOUR)), new Date(t0 - 2 * HOUR), wiped, '{"format": 2, "stores": [');
    const setup = writeMaintainConfig(box, "hostile", { MANIFEST_MAX_BYTES: "8192" });
    const adopted = maintain(setup, "--adopt");
    expect(adopted.status, adopted.stderr).toBe(0);
    expect(readLedger(setup).shrink).toMatchObject({ verdict: "unknown", findings: [] });
    expect(readLedger(setup).shrink.reason).toMatch(/is not a manifest/);
    expect(ledgerMetric(setup, "hostile", "shrink")).toBeUndefined();

    const big = JSON.stringify({ format: 2, unclassified: Array.from({ length: 2000 }, (_, i) => `junk/${i}`) });
    archiveHome(box, "hostile", archiveName("hostile", new Date(t0 - HOUR)), new Date(t0 - HOUR), wiped, big);
    const r = maintain(setup, "--observe");
    expect(r.status, r.stderr).toBe(0);
    expect(readLedger(setup).shrink.reason).toMatch(/larger than MANIFEST_MAX_BYTES \(8192\)/);
    expect(fs.existsSync(path.join(setup.stateDir, "pins.json"))).toBe(false);
  });
});
