// `npx tsx bench/prod-program.ts [--runs N] [--sizes 1,100,1000] [--boxes 10]`: evaluates the prod
// program under Pulumi mocks for 1, 100 and 1,000 tenants spread over up to 10 Storage Boxes (round
// robin, each tenant naming its box), each run in a fresh Node process, and records the wall time
// (median of the runs), peak memory and resources per tenant and per box in
// bench/results/prod-program.json. A benchmark, not a test: nothing here asserts a time.
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
  boxes: number;
  resources: number;
  customResources: number;
  /** From the first resource to every output resolved, in the child. */
  programMs: number;
  /** Peak resident set of the child process, KiB. */
  peakRssKb: number;
}

/** One evaluation in this (fresh) process: printed as JSON on stdout. */
async function child(tenants: number, boxCount: number): Promise<void> {
  const boxes = Array.from({ length: boxCount }, (_, i) => ({ name: `box-${String(i + 1).padStart(2, "0")}` }));
  const names = Array.from({ length: tenants }, (_, i) => ({ name: `tenant-${String(i + 1).padStart(4, "0")}`, box: boxes[i % boxCount]!.name }));
  const scriptsDir = fixtureScriptsDir();
  const archiveDir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-archive-"));
  try {
    const started = process.hrtime.bigint();
    const run = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir, archiveDir }), {
      config: prodConfig(names, boxes),
      secretKeys: ["agent-backups:hostPrivateKeys"],
    });
    await valueOf(run.result.tenants);
    await valueOf(run.result.boxes);
    await valueOf(run.result.drillAccess);
    await valueOf(run.result.vaultSecretArns);
    const programMs = Number(process.hrtime.bigint() - started) / 1e6;
    const result: ChildResult = {
      tenants,
      boxes: boxCount,
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

/** Heap of each child, MiB: enough for the largest size on the bench machine. */
const childHeapMiB = 12288;
/** Resources of a retired repository: component, maintenance key, passphrase, password, sub-account, password reset, authorized_keys write. */
const retiredRepoResources = 7;

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

function parent(argv: string[]): void {
  let runs = 5;
  let sizes = [1, 100, 1000];
  let maxBoxes = 10;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    if (a === "--runs" && v && /^[1-9][0-9]?$/.test(v)) { runs = Number(v); i++; }
    else if (a === "--sizes" && v && /^[1-9][0-9]{0,4}(,[1-9][0-9]{0,4})*$/.test(v)) { sizes = v.split(",").map(Number); i++; }
    else if (a === "--boxes" && v && /^[1-9][0-9]?$/.test(v)) { maxBoxes = Number(v); i++; }
    else { process.stderr.write(`usage: tsx bench/prod-program.ts [--runs 1-99] [--sizes 1,100,1000] [--boxes 1-99]\n`); process.exit(2); }
  }
  const tsx = path.join(root, "node_modules", ".bin", "tsx");
  const rows: { tenants: number; boxes: number; runs: number; processWallSecondsMedian: number; programSecondsMedian: number; peakRssMiBMax: number; resources: number; customResources: number }[] = [];
  for (const n of sizes) {
    const boxes = Math.min(n, maxBoxes);
    const samples: { wallMs: number; child: ChildResult }[] = [];
    for (let r = 1; r <= runs; r++) {
      process.stderr.write(`prod-program: ${n} tenant(s) on ${boxes} box(es), run ${r}/${runs} ... `);
      const t0 = process.hrtime.bigint();
      // A larger heap than Node's default: the mocks keep every resource's inputs for the count.
      const p = spawnSync(tsx, [__filename, "--child", String(n), String(boxes)], {
        cwd: root, encoding: "utf8", timeout: 1_200_000, maxBuffer: 64 * 1024 * 1024,
        env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ""} --max-old-space-size=${childHeapMiB}`.trim() },
      });
      const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
      if (p.status !== 0) throw new Error(`child for ${n} tenants failed (exit ${p.status}): ${p.stderr}`);
      const c = JSON.parse(p.stdout.trim().split("\n").pop() as string) as ChildResult;
      process.stderr.write(`${(wallMs / 1000).toFixed(2)} s, program ${(c.programMs / 1000).toFixed(2)} s, ${Math.round(c.peakRssKb / 1024)} MiB\n`);
      samples.push({ wallMs, child: c });
    }
    const c = samples[0]!.child;
    rows.push({
      tenants: n,
      boxes,
      runs,
      processWallSecondsMedian: +(median(samples.map((s) => s.wallMs)) / 1000).toFixed(3),
      programSecondsMedian: +(median(samples.map((s) => s.child.programMs)) / 1000).toFixed(3),
      peakRssMiBMax: +(Math.max(...samples.map((s) => s.child.peakRssKb)) / 1024).toFixed(1),
      resources: c.resources,
      customResources: c.customResources,
    });
  }
  // Resources per tenant: what one more tenant adds, from the two largest rows on the same boxes;
  // per box: what is left of the largest row once its tenants are taken out.
  const sameBoxes = rows.filter((r) => r.boxes === rows[rows.length - 1]!.boxes).sort((a, b) => a.tenants - b.tenants);
  const [small, large] = [sameBoxes[sameBoxes.length - 2], sameBoxes[sameBoxes.length - 1]];
  const base = small && large && large.tenants > small.tenants ? (large.resources - small.resources) / (large.tenants - small.tenants) : undefined;
  const perBox = base !== undefined && large ? (large.resources - base * large.tenants) / large.boxes : undefined;
  const results = {
    benchmark: "prod program under Pulumi mocks (stacks/prod.ts via runMocked, fresh Node process per run), tenants spread round robin over the boxes",
    command: ["npx tsx bench/prod-program.ts", ...argv].join(" "),
    measured: new Date().toISOString(),
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memGiB: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version, loadAverage1m: os.loadavg()[0] },
    notes: `processWall includes Node start, tsx transpile and module load; program is from the first resource to every output resolved. Each child runs with --max-old-space-size=${childHeapMiB}. Installed scripts are a fixture tree of the plan's files. Every tenant has one repository (generation 1, none retired); a retired repository adds ${retiredRepoResources} resources. Other work on the machine at the time shows in loadAverage1m.`,
    resourcesPerTenant: base,
    resourcesPerBox: perBox,
    rows,
  };
  fs.mkdirSync(path.dirname(resultsFile), { recursive: true });
  fs.writeFileSync(resultsFile, `${JSON.stringify(results, null, 2)}\n`);
  process.stderr.write(`wrote ${path.relative(root, resultsFile)}\n`);
}

if (process.argv[2] === "--child") {
  child(Number(process.argv[3]), Number(process.argv[4] ?? "1")).catch((e) => { process.stderr.write(`${(e as Error).stack}\n`); process.exit(1); });
} else {
  parent(process.argv.slice(2));
}
