// `npx tsx bench/fleet-ledger.ts [--tenants N] [--boxes N] [--days N] [--runs N]`: the fleet's
// recoverability ledger (npm run fleet) for 500 tenants on 5 simulated boxes with a year of
// history each (daily observe, weekly maintain, monthly drills; tools/fleet-simulate.ts). The state
// is generated once (untimed); each run is a fresh Node process that reads and validates every
// tenant's state, aggregates, and writes fleet.json, fleet.prom, summary.md and fleet.html. Records
// medians of the runs' times and the peak RSS in bench/results/fleet-ledger.json. A benchmark,
// not a test: nothing here asserts a time.
// `npx tsx bench/fleet-ledger.ts --scan [--scan-tenants N] [--runs N]` (root, sshd, borg): the
// `--scan` mode on two loopback storage boxes (real sshd, borg, agent-maintain --observe per
// tenant), each box's connection limit 1 against 3, alternating; merged into the same file.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseFleetConfig } from "../config/fleet";
import { build, writeOutputs } from "../tools/fleet";
import { peakPerBox, scan } from "../tools/fleet-scan";
import { simulateTenant, writeTenantState, type Scenario } from "../tools/fleet-simulate";
import * as mf from "../test/lib/maintain-fixtures";
import { startStorageBox } from "../test/lib/storage-box";
import { machineInfo } from "./lib/machine";
import { measure, median, progress } from "./lib/measure";

const root = path.resolve(__dirname, "..");
const resultsFile = path.join(root, "bench", "results", "fleet-ledger.json");
const NOW = "2026-11-30T06:00:00.000Z";

interface ChildResult {
  readAggregateMs: number;
  renderWriteMs: number;
  peakRssKb: number;
  counts: Record<string, number>;
  bytes: Record<string, number>;
}

/** One aggregation in this (fresh) process, as `npm run fleet` does it: printed as JSON. */
function child(stateRoot: string, configFile: string, out: string): void {
  const config = parseFleetConfig(JSON.parse(fs.readFileSync(configFile, "utf8")));
  const t0 = process.hrtime.bigint();
  const built = build(config, stateRoot, new Date(NOW));
  const t1 = process.hrtime.bigint();
  writeOutputs(built, out);
  const t2 = process.hrtime.bigint();
  const bytes = Object.fromEntries(fs.readdirSync(out).map((f) => [f, fs.statSync(path.join(out, f)).size]));
  const r: ChildResult = { readAggregateMs: Number(t1 - t0) / 1e6, renderWriteMs: Number(t2 - t1) / 1e6, peakRssKb: process.resourceUsage().maxRSS, counts: built.fleet.counts, bytes };
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

/** The --scan section of an earlier run, kept when the aggregation is measured again. */
function previousScan(): unknown {
  try {
    return (JSON.parse(fs.readFileSync(resultsFile, "utf8")) as { scan?: unknown }).scan ?? "not measured yet: npx tsx bench/fleet-ledger.ts --scan";
  } catch {
    return "not measured yet: npx tsx bench/fleet-ledger.ts --scan";
  }
}

function usage(): never {
  process.stderr.write("usage: npx tsx bench/fleet-ledger.ts [--tenants 1-9999] [--boxes 1-99] [--days 1-999] [--runs 1-99]\n");
  process.exit(2);
}

async function parent(argv: string[]): Promise<void> {
  const o = { tenants: 500, boxes: 5, days: 365, runs: 5 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]?.replace(/^--/, "") as keyof typeof o;
    const v = argv[i + 1];
    if (!(k in o) || !v || !/^[1-9][0-9]{0,3}$/.test(v)) usage();
    o[k] = Number(v);
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "bench-fleet-"));
  try {
    const stateRoot = path.join(work, "state");
    const names = Array.from({ length: o.tenants }, (_, i) => `tenant-${String(i + 1).padStart(4, "0")}`);
    // A realistic morning: most tenants fresh, a few of each state an operator must tell apart.
    const scenarioOf = (i: number): Scenario => (["stale", "tampered", "shrunk", "never-drilled", "unhealthy-drill"] as Scenario[])[i % 50] ?? "fresh";
    const g0 = Date.now();
    let historyLines = 0;
    let drills = 0;
    names.forEach((t, i) => {
      const s = simulateTenant(t, scenarioOf(i), new Date(NOW), { historyDays: o.days, seed: i + 1 });
      historyLines += s.history.length;
      drills += s.drills.length;
      writeTenantState(stateRoot, s);
    });
    const stateBytes = Number(spawnSync("du", ["-sb", stateRoot], { encoding: "utf8" }).stdout.split("\t")[0]);
    progress(`fleet-ledger: ${o.tenants} tenants' state (${(stateBytes / 2 ** 20).toFixed(1)} MiB) generated in ${((Date.now() - g0) / 1000).toFixed(1)} s`);
    const configFile = path.join(work, "fleet.json");
    fs.writeFileSync(configFile, JSON.stringify({
      format: 1,
      boxes: Array.from({ length: o.boxes }, (_, b) => ({ name: `box-${b + 1}`, connections: 10 })),
      tenants: names.map((name, i) => ({ name, box: `box-${(i % o.boxes) + 1}`, schedule: 86400, grace: 21600 })),
      drill: { periodDays: 90, budgetPerRun: Math.ceil(o.tenants / 3) },
    }));
    const tsx = path.join(root, "node_modules", ".bin", "tsx");
    const samples: { wall: number; cpu: number; rssKb: number; child: ChildResult }[] = [];
    for (let r = 1; r <= o.runs; r++) {
      const out = path.join(work, `out-${r}`);
      const m = await measure([tsx, __filename, "--child", stateRoot, configFile, out], { cwd: root, timeoutSeconds: 600 });
      if (m.exitCode !== 0) throw new Error(`run ${r} failed (exit ${m.exitCode}): ${m.stderr.slice(-2000)}`);
      const c = JSON.parse(m.stdout.trim().split("\n").pop()!) as ChildResult;
      samples.push({ wall: m.wallSeconds, cpu: m.cpuSeconds, rssKb: m.peakRssKb, child: c });
      progress(`fleet-ledger: run ${r}/${o.runs}: read+aggregate ${(c.readAggregateMs / 1000).toFixed(2)} s, render+write ${(c.renderWriteMs / 1000).toFixed(2)} s, process ${m.wallSeconds.toFixed(2)} s, peak RSS ${(m.peakRssKb / 1024).toFixed(0)} MiB`);
    }
    const med = (f: (s: (typeof samples)[number]) => number, digits = 3) => +median(samples.map(f)).toFixed(digits);
    const first = samples[0]!.child;
    const m = machineInfo();
    const results = {
      benchmark: "fleet recoverability ledger (tools/fleet.ts build + writeOutputs), fresh Node process per run, under GNU time",
      command: ["npx tsx bench/fleet-ledger.ts", ...argv].join(" "),
      measured: new Date().toISOString(),
      scale: { tenants: o.tenants, boxes: o.boxes, historyDays: o.days, historyLines, drills, stateMiB: +(stateBytes / 2 ** 20).toFixed(1) },
      runs: o.runs,
      medians: {
        readValidateAggregateSeconds: med((s) => s.child.readAggregateMs / 1000),
        renderWriteSeconds: med((s) => s.child.renderWriteMs / 1000),
        processWallSeconds: med((s) => s.wall),
        processCpuSeconds: med((s) => s.cpu),
        peakRssMiB: med((s) => s.rssKb / 1024, 1),
      },
      peakRssMiBMax: +(Math.max(...samples.map((s) => s.rssKb)) / 1024).toFixed(1),
      perRunProcessWallSeconds: samples.map((s) => +s.wall.toFixed(2)).join(", "),
      outputKiB: Object.fromEntries(Object.entries(first.bytes).map(([f, b]) => [f, +(b / 1024).toFixed(1)])),
      statusCounts: first.counts,
      scan: previousScan(),
      machine: { cpuModel: m.cpuModel, cores: m.cores, memoryGb: m.memoryGb, node: process.version, loadAverageAtStart: m.loadAverageAtStart.join(" ") },
      notes: "processWall includes Node start and tsx transpile; readValidateAggregate is every tenant's ledger.json, ledger-history.jsonl and drills.jsonl read (bounded, no links) and zod-validated, then the rows and the drill rota; renderWrite is fleet.json, fleet.prom, summary.md and fleet.html (charts thinned to 200 points per tenant). Shared 2-core machine: see the load average.",
    };
    fs.mkdirSync(path.dirname(resultsFile), { recursive: true });
    fs.writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
    progress(`wrote ${path.relative(root, resultsFile)}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The --scan side by side: the same tenants observed with 1 and with 3 connections per box. */
async function scanBench(argv: string[]): Promise<void> {
  const o = { "scan-tenants": 12, runs: 3 };
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]?.replace(/^--/, "") as keyof typeof o;
    const v = argv[i + 1];
    if (!(k in o) || !v || !/^[1-9][0-9]{0,2}$/.test(v)) usage();
    o[k] = Number(v);
  }
  const boxNames = ["box-1", "box-2"];
  const tenants = Array.from({ length: o["scan-tenants"] }, (_, i) => ({ name: `scan-${String(i + 1).padStart(3, "0")}`, box: boxNames[i % 2]! }));
  const boxes = await Promise.all(boxNames.map((b) => startStorageBox({ tenants: tenants.filter((t) => t.box === b).map((t) => t.name) })));
  const work = fs.mkdtempSync(path.join(boxes[0]!.dir, "..", "bench-fleet-scan-"));
  try {
    const stateRoot = path.join(work, "state");
    const configsDir = path.join(work, "configs");
    fs.mkdirSync(configsDir, { recursive: true });
    const soul = Buffer.alloc(2048, 7);
    const s0 = Date.now();
    for (const t of tenants) {
      const box = boxes[boxNames.indexOf(t.box)]!;
      mf.initRepo(box, t.name);
      for (const hoursAgo of [48, 24, 1]) {
        const when = new Date(Date.now() - hoursAgo * 3600_000);
        mf.archiveNewTree(box, t.name, mf.archiveName(t.name, when), when, soul, 64 * 1024);
        if (hoursAgo === 24) {
          const setup = mf.writeMaintainConfig(box, t.name, { STATE_DIR: path.join(stateRoot, t.name) });
          const adopted = mf.runScript("agent-maintain", ["--config", setup.config, "--adopt"]);
          if (adopted.status !== 0) throw new Error(`adopt ${t.name}: ${adopted.stderr}`);
          fs.copyFileSync(setup.config, path.join(configsDir, `${t.name}.conf`));
        }
      }
    }
    progress(`fleet-ledger --scan: ${tenants.length} tenants on 2 loopback boxes ready in ${((Date.now() - s0) / 1000).toFixed(0)} s`);
    const loadAtStart = machineInfo().loadAverageAtStart.join(" ");
    const rows: Record<string, { wall: number[]; peak: number[]; failed: number }> = {};
    for (let r = 1; r <= o.runs; r++) {
      for (const connections of r % 2 ? [1, 3] : [3, 1]) {
        const config = parseFleetConfig({
          format: 1,
          boxes: boxNames.map((name) => ({ name, connections })),
          tenants: tenants.map((t) => ({ ...t, schedule: 86400, grace: 21600 })),
          drill: { periodDays: 90, budgetPerRun: 4 },
        });
        const t0 = Date.now();
        const results = await scan(config, { configsDir, stateRoot, logDir: path.join(work, "logs"), maintainScript: path.join(root, "scripts", "agent-maintain"), timeoutSeconds: 600, maxJobs: 8 });
        const wall = (Date.now() - t0) / 1000;
        const row = (rows[`${connections} connection(s) per box`] ??= { wall: [], peak: [], failed: 0 });
        row.wall.push(wall);
        row.peak.push(Math.max(...Object.values(peakPerBox(results))));
        row.failed += results.filter((x) => x.exitCode !== 0 && x.exitCode !== 3).length;
        progress(`fleet-ledger --scan: run ${r}, ${connections} connection(s) per box: ${wall.toFixed(1)} s`);
      }
    }
    const previous = fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, "utf8")) as Record<string, unknown> : {};
    previous.scan = {
      command: ["npx tsx bench/fleet-ledger.ts --scan", ...argv].join(" "),
      measured: new Date().toISOString(),
      tenants: tenants.length,
      boxes: 2,
      runs: o.runs,
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: machineInfo().loadAverageAtStart.join(" "),
      what: "agent-maintain --observe per tenant (adopted repositories of 3 small archives, one new since the adoption) over ssh to loopback storage boxes, scan-jobs 8; peak = most runs at once on one box",
      ...Object.fromEntries(Object.entries(rows).map(([k, v]) => [k, { medianWallSeconds: +median(v.wall).toFixed(2), perRun: v.wall.map((x) => +x.toFixed(1)).join(", "), peakPerBox: Math.max(...v.peak), failedRuns: v.failed }])),
    };
    fs.writeFileSync(resultsFile, `${JSON.stringify(previous, null, 2)}\n`);
    progress(`merged the scan into ${path.relative(root, resultsFile)}`);
  } finally {
    for (const b of boxes) await b.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--scan") {
  scanBench(process.argv.slice(3)).catch((e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  });
} else if (process.argv[2] === "--child") {
  child(process.argv[3]!, process.argv[4]!, process.argv[5]!);
} else {
  parent(process.argv.slice(2)).catch((e) => {
    process.stderr.write(`${(e as Error).stack}\n`);
    process.exit(1);
  });
}
