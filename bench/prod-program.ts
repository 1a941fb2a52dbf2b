// `npx tsx bench/prod-program.ts [--runs N] [--sizes 1,100,500]`: evaluates the prod program under
// Pulumi mocks for 1, 100 and 500 tenants, each run in a fresh Node process, and records the wall
// time (median of the runs), peak memory and resources per tenant in bench/results/prod-program.json.
// A benchmark, not a test: nothing here asserts a time.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { loadProdConfig } from "../config/prod";
import { prodStack } from "../stacks/prod";
import { fixtureScriptsDir, prodConfig, runMocked, valueOf } from "../test/unit/prod-mocks";

const root = path.resolve(__dirname, "..");
const resultsFile = path.join(root, "bench", "results", "prod-program.json");

interface ChildResult {
  tenants: number;
  resources: number;
  customResources: number;
  /** From the first resource to every output resolved, in the child. */
  programMs: number;
  /** Peak resident set of the child process, KiB. */
  peakRssKb: number;
}

/** One evaluation in this (fresh) process: printed as JSON on stdout. */
async function child(tenants: number): Promise<void> {
  const names = Array.from({ length: tenants }, (_, i) => `tenant-${String(i + 1).padStart(3, "0")}`);
  const scriptsDir = fixtureScriptsDir();
  const archiveDir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-archive-"));
  try {
    const started = process.hrtime.bigint();
    const run = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir, archiveDir }), {
      config: prodConfig(names),
      secretKeys: ["agent-backups:hostPrivateKeys"],
    });
    await valueOf(run.result.tenants);
    await valueOf(run.result.drillAccess);
    await valueOf(run.result.vaultSecretArns);
    const programMs = Number(process.hrtime.bigint() - started) / 1e6;
    const result: ChildResult = {
      tenants,
      resources: run.resources.length,
      customResources: run.resources.filter((r) => r.custom).length,
      programMs,
      peakRssKb: process.resourceUsage().maxRSS,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } finally {
    fs.rmSync(scriptsDir, { recursive: true, force: true });
    fs.rmSync(archiveDir, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

function parent(argv: string[]): void {
  let runs = 5;
  let sizes = [1, 100, 500];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === "--runs" && v && /^[1-9][0-9]?$/.test(v)) { runs = Number(v); i++; }
    else if (a === "--sizes" && v && /^[0-9]+(,[0-9]+)*$/.test(v)) { sizes = v.split(",").map(Number); i++; }
    else { process.stderr.write(`usage: tsx bench/prod-program.ts [--runs 1-99] [--sizes 1,100,500]\n`); process.exit(2); }
  }
  const tsx = path.join(root, "node_modules", ".bin", "tsx");
  const rows = [];
  let one: ChildResult | undefined;
  for (const n of sizes) {
    const samples: { wallMs: number; child: ChildResult }[] = [];
    for (let r = 1; r <= runs; r++) {
      process.stderr.write(`prod-program: ${n} tenant(s), run ${r}/${runs} ... `);
      const t0 = process.hrtime.bigint();
      const p = spawnSync(tsx, [__filename, "--child", String(n)], { cwd: root, encoding: "utf8", timeout: 600_000, maxBuffer: 64 * 1024 * 1024 });
      const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
      if (p.status !== 0) throw new Error(`child for ${n} tenants failed (exit ${p.status}): ${p.stderr}`);
      const c = JSON.parse(p.stdout.trim().split("\n").pop() as string) as ChildResult;
      process.stderr.write(`${(wallMs / 1000).toFixed(2)} s, program ${(c.programMs / 1000).toFixed(2)} s, ${Math.round(c.peakRssKb / 1024)} MiB\n`);
      samples.push({ wallMs, child: c });
    }
    const c = samples[0]!.child;
    if (n === 1) one = c;
    rows.push({
      tenants: n,
      runs,
      processWallSecondsMedian: +(median(samples.map((s) => s.wallMs)) / 1000).toFixed(3),
      programSecondsMedian: +(median(samples.map((s) => s.child.programMs)) / 1000).toFixed(3),
      peakRssMiBMax: +(Math.max(...samples.map((s) => s.child.peakRssKb)) / 1024).toFixed(1),
      resources: c.resources,
      customResources: c.customResources,
    });
  }
  // Resources per tenant: what one more tenant adds (the box is shared); from the largest run.
  const last = rows[rows.length - 1]!;
  const base = one && last.tenants > 1 ? (last.resources - one.resources) / (last.tenants - 1) : undefined;
  const results = {
    benchmark: "prod program under Pulumi mocks (stacks/prod.ts via runMocked, fresh Node process per run)",
    command: ["npx tsx bench/prod-program.ts", ...argv].join(" "),
    measured: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version, loadAverage1m: os.loadavg()[0] },
    notes: "processWall includes Node start, tsx transpile and module load; program is from the first resource to every output resolved. Installed scripts are a fixture tree of the plan's files. Other work on the machine at the time shows in loadAverage1m.",
    resourcesPerTenant: base,
    rows,
  };
  fs.mkdirSync(path.dirname(resultsFile), { recursive: true });
  fs.writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
  process.stderr.write(`wrote ${path.relative(root, resultsFile)}\n`);
}

if (process.argv[2] === "--child") {
  child(Number(process.argv[3])).catch((e) => { process.stderr.write(`${(e as Error).stack}\n`); process.exit(1); });
} else {
  parent(process.argv.slice(2));
}
