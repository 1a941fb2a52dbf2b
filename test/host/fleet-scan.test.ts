// `npm run fleet -- --scan` against two loopback storage boxes (real sshd, borg, agent-maintain,
// agent-ledger): every tenant's --observe run refreshes its ledger before the fleet is aggregated
// (a new archive shows as the newest), no box ever serves more repositories at once than its
// connection limit (counted from the box's own `borg serve` processes while the scan runs), the
// limit is used (two at once where two are allowed), and a config whose state lands elsewhere is
// refused, not run. The rows come from real ledgers: fresh, stale (no backup for three days),
// tampered (an archive deleted behind the trusted state's back), drilled healthy, drilled
// unhealthy, never drilled. Needs root, sshd and borg (test/lib/storage-box.ts), like host tests.
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { main } from "../../tools/fleet";
import { nextDrills } from "../../tools/fleet-aggregate";
import { archiveName, archiveNewTree, initRepo, runScript, writeMaintainConfig } from "../lib/maintain-fixtures";
import { startStorageBox, type StorageBox } from "../lib/storage-box";

const HOUR = 3_600_000;
const root = path.join(__dirname, "..", "..");
const plan: Record<string, string[]> = { "box-a": ["ant", "bee", "cat", "dog"], "box-b": ["eel", "fox", "gnu"] };
const limits: Record<string, number> = { "box-a": 2, "box-b": 1 };
const boxes: Record<string, StorageBox> = {};
let work: string;
let stateRoot: string;
let configs: string;
const newest: Record<string, string> = {};
const adoptedNewest: Record<string, string> = {};

beforeAll(async () => {
  const soul = randomBytes(2048);
  for (const [box, tenants] of Object.entries(plan)) {
    const b = await startStorageBox({ tenants });
    boxes[box] = b;
    work ??= fs.mkdtempSync(path.join(b.dir, "..", "fleet-scan-"));
    stateRoot = path.join(work, "state");
    configs = path.join(work, "configs");
    fs.mkdirSync(configs, { recursive: true });
    for (const t of tenants) {
      initRepo(b, t);
      // cat stopped backing up three days ago.
      const old = new Date(Date.now() - (t === "cat" ? 72 : 24) * HOUR);
      archiveNewTree(b, t, archiveName(t, old), old, soul, 16 * 1024);
      newest[t] = adoptedNewest[t] = archiveName(t, old);
      const setup = writeMaintainConfig(b, t, { STATE_DIR: path.join(stateRoot, t) });
      const adopted = runScript("agent-maintain", ["--config", setup.config, "--adopt"]);
      if (adopted.status !== 0) throw new Error(`adopt ${t}: ${adopted.stderr}`);
      if (t !== "cat") {
        // A backup after the last trusted run: only the scan's observation can put it in the ledger.
        const fresh = new Date(Date.now() - HOUR);
        newest[t] = archiveName(t, fresh);
        archiveNewTree(b, t, newest[t]!, fresh, soul, 16 * 1024);
      }
      if (t === "dog") {
        // An archive the trusted state knows vanishes (a stolen maintenance key, say).
        const del = b.borg(t, "maintenance", ["delete", `::${archiveName(t, old)}`]);
        if (del.status !== 0) throw new Error(`borg delete: ${del.stderr}`);
      }
      fs.copyFileSync(setup.config, path.join(configs, `${t}.conf`));
    }
  }
  // Drills as the drill workflow records them (agent-ledger record-drill of a drill report).
  const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();
  for (const [t, healthy] of [["ant", true], ["bee", false]] as const) {
    const report = {
      tenant: t, archive: newest[t], archiveAgeSeconds: 5400, bytes: 123456, backupSeconds: 12.5, restoreSeconds: 48,
      checks: [{ name: "sqlite:state.db", ok: true, detail: "integrity ok" }, { name: "agent:doctor", ok: healthy, detail: "" }],
      healthy, agent: { name: "hermes-agent", version: "0.9.1" }, startedAt: minutesAgo(10), finishedAt: minutesAgo(5),
    };
    const file = path.join(work, `report-${t}.json`);
    fs.writeFileSync(file, JSON.stringify(report));
    const r = spawnSync(path.join(root, "scripts", "agent-ledger"), ["record-drill", "--state-dir", path.join(stateRoot, t), "--report", file], { encoding: "utf8", timeout: 60_000 });
    if (r.status !== 0) throw new Error(`record-drill ${t}: ${r.stderr}`);
  }
}, 600_000);

afterAll(async () => {
  for (const b of Object.values(boxes)) await b.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

/**
 * Repositories each box is serving right now: its tenant users' `borg serve` processes, each
 * counted once (a shell running the forced command around borg is the same connection).
 */
function servingNow(): { counts: Record<string, number>; lines: string[] } {
  const ps = spawnSync("ps", ["-eo", "pid=,ppid=,user:64=,args="], { encoding: "utf8" }).stdout;
  const procs = ps.split("\n").map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 4)
    .map(([pid, ppid, user, ...args]) => ({ pid: pid!, ppid: ppid!, user: user!, args }));
  const serving = procs.filter((p) => p.args.includes("serve") && p.args.some((a) => /(^|\/)borg$/.test(a)));
  const pids = new Set(serving.map((p) => p.pid));
  const outermost = serving.filter((p) => !pids.has(p.ppid));
  const counts: Record<string, number> = {};
  for (const [box, b] of Object.entries(boxes)) {
    const users = new Set(Object.values(b.tenants).map((t) => t.user));
    counts[box] = outermost.filter((p) => users.has(p.user)).length;
  }
  return { counts, lines: outermost.map((p) => `${p.pid} ${p.ppid} ${p.user} ${p.args.join(" ")}`) };
}

describe("npm run fleet -- --scan", () => {
  it("observes every tenant within each box's connection limit, then aggregates the fresh ledgers", async () => {
    // fox's config keeps its state elsewhere: the fleet would not read what the scan wrote.
    const foxConf = path.join(configs, "fox.conf");
    fs.writeFileSync(foxConf, fs.readFileSync(foxConf, "utf8").replace(/^STATE_DIR=.*$/m, `STATE_DIR=${path.join(work, "elsewhere")}`));
    const cfg = path.join(work, "fleet.json");
    fs.writeFileSync(cfg, JSON.stringify({
      format: 1,
      boxes: Object.entries(limits).map(([name, connections]) => ({ name, connections })),
      tenants: Object.entries(plan).flatMap(([box, ts]) => ts.map((name) => ({ name, box, schedule: 86400, grace: 3600 }))),
      drill: { periodDays: 90, budgetPerRun: 2 },
    }));
    const out = path.join(work, "out");
    const peak: Record<string, number> = { "box-a": 0, "box-b": 0 };
    const seenAtPeak: Record<string, string[]> = {};
    const sampler = setInterval(() => {
      const now = servingNow();
      for (const [box, n] of Object.entries(now.counts)) {
        if (n > peak[box]!) seenAtPeak[box] = now.lines;
        peak[box] = Math.max(peak[box]!, n);
      }
    }, 50);
    const err: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((s) => { err.push(String(s)); return true; });
    let code: number;
    try {
      code = await main(["--scan", "--maintain-configs", configs, "--state-root", stateRoot, "--config", cfg, "--out", out, "--scan-jobs", "4", "--scan-timeout", "300"], {});
    } finally {
      clearInterval(sampler);
      spy.mockRestore();
    }
    const text = err.join("");
    expect(code, text).toBe(1); // fox was not run, dog's observation found tampering
    expect(text).toMatch(/fleet: scan: 5 of 7 observe run\(s\) done in [0-9.]+ s; most at once per box: \{"box-a":2,"box-b":1\}/);
    expect(text).toMatch(/fleet: scan dog: agent-maintain exited 1 \(log: .*dog\.log\)/);
    expect(text).toContain(`fleet: scan fox: its config's STATE_DIR is not ${path.join(stateRoot, "fox")}: not run`);
    // What the boxes themselves served: never above the limit, and the sampler saw the runs.
    expect(peak["box-a"], JSON.stringify(seenAtPeak)).toBeGreaterThanOrEqual(1);
    expect(peak["box-a"], JSON.stringify(seenAtPeak)).toBeLessThanOrEqual(2);
    expect(peak["box-b"], JSON.stringify(seenAtPeak)).toBe(1);

    const fleet = JSON.parse(fs.readFileSync(path.join(out, "fleet.json"), "utf8"));
    const by = Object.fromEntries(fleet.tenants.map((r: { tenant: string }) => [r.tenant, r])) as Record<string, any>;
    const alarms = (t: string) => by[t].reasons.filter((r: { level: string }) => r.level === "alarm").map((r: { code: string }) => r.code).sort();
    for (const t of ["ant", "bee", "cat", "dog", "eel", "gnu"]) {
      // A tampered run reports the newest archive of the last trusted state, not the untrusted list.
      expect(by[t].newestArchive?.name, t).toBe(t === "dog" ? adoptedNewest.dog : newest[t]);
      expect(by[t].mode, t).toBe("observe");
      expect(fs.readFileSync(path.join(out, "scan", `${t}.log`), "utf8"), t).not.toBe("");
    }
    // Not observed: fox's ledger is still the adoption's, without the newer archive.
    expect(by.fox.mode).toBe("adopt");
    expect(by.fox.newestArchive.name).toBe(adoptedNewest.fox);
    expect(newest.fox).not.toBe(adoptedNewest.fox);

    for (const t of ["ant", "eel", "gnu"]) expect(alarms(t), t).toEqual([]);
    expect(alarms("cat")).toEqual(["stale"]);
    expect(by.cat.stale).toBe(true);
    expect(alarms("dog")).toEqual(["maintenance-failed", "tampered"]);
    expect(by.dog.tamper.findings.join("\n")).toContain(`dog-`);
    expect(alarms("bee")).toEqual(["drill-unhealthy"]);
    expect(by.ant.lastDrill).toMatchObject({ healthy: true, dataLossWindowSeconds: 5400, restoreSeconds: 48 });
    expect(by.eel.reasons.map((r: { code: string }) => r.code)).toContain("never-drilled");
    // The rota: never healthily drilled first, by name; ant, drilled, last.
    expect(nextDrills(fleet.tenants, 10)).toEqual(["bee", "cat", "dog", "eel", "fox", "gnu", "ant"]);
  }, 600_000);
});
