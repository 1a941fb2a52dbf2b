// `npx tsx bench/maintain-detection.ts [--quick] [--runs N]`: what the trusted side's
// tamper detection costs before agent-maintain writes anything. Builds a repository of 1 GiB with
// 100 daily archives (quick: 64 MiB, 10 archives) on a loopback storage box through the host's
// append-only key, then measures, with the maintenance key: the archive listing, the object check
// agent-maintain runs by default (borg check --archives-only), the same with every object read and
// authenticated (--verify-data, OBJECT_CHECK=data), the whole `agent-maintain --tamper-check` in
// both settings, `agent-maintain --observe`, and one `borg extract --dry-run` (what the rotating
// data check pays per archive) for scale. Medians of --runs runs; writes
// bench/results/maintain-detection.json (one entry per scale, the other scale's entry kept).
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { archiveName, initRepo, writeMaintainConfig } from "../test/lib/maintain-fixtures";
import { scriptsDir, startStorageBox, type StorageBox } from "../test/lib/storage-box";
import { machineInfo } from "./lib/machine";
import { measure, median, mustMeasure, progress, requireTools, run, type Measured } from "./lib/measure";

interface Scale {
  /** Bytes of random (incompressible) data in the first archive. */
  baseBytes: number;
  /** Bytes of new random data in each later archive (a rewritten journal file). */
  dailyBytes: number;
  archives: number;
  /** Small text files in every archive; 1% of them change each day. */
  smallFiles: number;
}

// default: ~0.8 GiB at first, ~2 MiB new a day: a 1 GiB repository after 100 days.
const SCALES: Record<string, Scale> = {
  default: { baseBytes: 820 * 2 ** 20, dailyBytes: 2 * 2 ** 20, archives: 100, smallFiles: 10_000 },
  quick: { baseBytes: 48 * 2 ** 20, dailyBytes: 1.5 * 2 ** 20, archives: 10, smallFiles: 1_000 },
};
const BIG_FILE_BYTES = 8 * 2 ** 20;
const RESULTS_FILE = path.resolve(__dirname, "results", "maintain-detection.json");
const KIND = "agent-backups-maintain-detection/v1";
const tenant = "bench";

interface Options {
  scale: string;
  runs: number;
}

function usage(message: string): never {
  process.stderr.write(`maintain-detection: ${message}\nusage: npx tsx bench/maintain-detection.ts [--quick] [--runs N]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { scale: "default", runs: 3 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--quick") o.scale = "quick";
    else if (a === "--runs") {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1 || n > 20) usage("--runs needs a whole number from 1 to 20");
      o.runs = n;
    } else usage(`unknown argument ${JSON.stringify(a)}`);
  }
  return o;
}

/** One small text file's content for day `day` (compressible, like session notes). */
function smallText(i: number, day: number): string {
  return `# note ${i} (day ${day})\n${`line ${i}.${day} of an agent's working notes\n`.repeat(20 + (i % 60))}`;
}

function writeBaseTree(src: string, s: Scale): void {
  fs.rmSync(src, { recursive: true, force: true });
  fs.mkdirSync(path.join(src, "notes"), { recursive: true });
  fs.mkdirSync(path.join(src, "data"), { recursive: true });
  for (let written = 0, n = 0; written < s.baseBytes; n++) {
    const size = Math.min(BIG_FILE_BYTES, s.baseBytes - written);
    fs.writeFileSync(path.join(src, "data", `blob-${String(n).padStart(4, "0")}.bin`), randomBytes(size));
    written += size;
  }
  for (let i = 0; i < s.smallFiles; i++) {
    const dir = path.join(src, "notes", String(i % 100).padStart(2, "0"));
    if (i < 100) fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `note-${i}.md`), smallText(i, 0));
  }
}

/** A day happens: a rewritten journal of dailyBytes and 1% of the small files edited. */
function nextDay(src: string, s: Scale, day: number): void {
  fs.writeFileSync(path.join(src, "data", "journal.bin"), randomBytes(s.dailyBytes));
  const changed = Math.max(1, Math.floor(s.smallFiles / 100));
  for (let k = 0; k < changed; k++) {
    const i = (day * 7919 + k * 104_729) % s.smallFiles;
    fs.writeFileSync(path.join(src, "notes", String(i % 100).padStart(2, "0"), `note-${i}.md`), smallText(i, day));
  }
}

async function buildRepository(box: StorageBox, s: Scale): Promise<void> {
  initRepo(box, tenant);
  const src = path.join(box.dir, "client", "src");
  writeBaseTree(src, s);
  const now = Date.now();
  const env = box.borgEnv(tenant, "push");
  for (let d = 0; d < s.archives; d++) {
    if (d > 0) nextDay(src, s, d);
    const when = new Date(now - (s.archives - d) * 86_400_000 + 3 * 3_600_000);
    await mustMeasure(["borg", "create", "--timestamp", when.toISOString().slice(0, 19), `::${archiveName(tenant, when)}`, "."], { cwd: src, env });
    if ((d + 1) % 10 === 0 || d + 1 === s.archives) progress(`created ${d + 1}/${s.archives} archives`);
  }
  fs.rmSync(src, { recursive: true, force: true });
}

interface StepResult {
  command: string;
  wallSeconds: number[];
  cpuSeconds: number[];
  peakRssMb: number[];
}

const round = (x: number, digits = 2) => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : null);

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const s = SCALES[o.scale]!;
  requireTools(["borg", "jq", "ssh", "/usr/sbin/sshd", "du"]);
  const machine = machineInfo();
  const started = Date.now();
  progress(`scale ${o.scale}: ${s.archives} archives, ${Math.round(s.baseBytes / 2 ** 20)} MiB base + ${s.dailyBytes / 2 ** 20} MiB a day, ${s.smallFiles} small files; ${o.runs} run(s) per step`);
  const box = await startStorageBox({ tenants: [tenant] });
  try {
    await buildRepository(box, s);
    const t = box.tenants[tenant]!;
    const repoBytes = Number(run(["du", "-sb", t.repoPath]).split(/\s/)[0]);
    const setupSeconds = (Date.now() - started) / 1000;
    progress(`repository ready: ${(repoBytes / 2 ** 30).toFixed(2)} GiB in ${setupSeconds.toFixed(0)} s`);

    // The trusted side: a maintenance config with OBJECT_CHECK either way, one state each.
    const archivesSetup = writeMaintainConfig(box, tenant, { OBJECT_CHECK: "archives", LOCK_WAIT: "600" });
    const dataSetup = writeMaintainConfig(box, tenant, { OBJECT_CHECK: "data", LOCK_WAIT: "600" });
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BORG_")));
    const maintain = (config: string, mode: string) => [path.join(scriptsDir, "agent-maintain"), "--config", config, mode];
    for (const setup of [archivesSetup, dataSetup]) await mustMeasure(maintain(setup.config, "--adopt"), { env: clean });
    const info = JSON.parse((await mustMeasure(["borg", "info", "--json"], { env: box.borgEnv(tenant, "maintenance") })).stdout);
    const newest = JSON.parse((await mustMeasure(["borg", "list", "--json", "--last", "1"], { env: box.borgEnv(tenant, "maintenance") })).stdout).archives[0].name as string;

    const maint = box.borgEnv(tenant, "maintenance");
    const steps: [string, string[], NodeJS.ProcessEnv][] = [
      ["listArchives", ["borg", "list", "--json"], maint],
      ["objectCheck", ["borg", "check", "--archives-only"], maint],
      ["objectCheckVerifyData", ["borg", "check", "--archives-only", "--verify-data"], maint],
      ["tamperCheck", maintain(archivesSetup.config, "--tamper-check"), clean],
      ["tamperCheckVerifyData", maintain(dataSetup.config, "--tamper-check"), clean],
      ["observe", maintain(archivesSetup.config, "--observe"), clean],
      ["extractDryRunOneArchive", ["borg", "extract", "--dry-run", `::${newest}`], maint],
    ];
    const results: Record<string, StepResult> = {};
    for (let r = 1; r <= o.runs; r++) {
      for (const [name, argv, env] of steps) {
        const m: Measured = await measure(argv, { env });
        if (m.exitCode !== 0) throw new Error(`${name} failed (exit ${m.exitCode}): ${m.stderr.trim().split("\n").slice(-10).join("\n")}`);
        const command = m.command.replace(box.dir, "$BOX").replace(`${path.dirname(scriptsDir)}/`, "");
        const res = (results[name] ??= { command, wallSeconds: [], cpuSeconds: [], peakRssMb: [] });
        res.wallSeconds.push(round(m.wallSeconds)!);
        res.cpuSeconds.push(round(m.cpuSeconds)!);
        res.peakRssMb.push(round(m.peakRssKb / 1024, 0)!);
        progress(`run ${r}/${o.runs} ${name}: ${m.wallSeconds.toFixed(1)} s wall, ${m.cpuSeconds.toFixed(1)} s CPU`);
      }
    }

    const medianOf = (k: keyof Omit<StepResult, "command">) =>
      Object.fromEntries(Object.entries(results).map(([n, r]) => [n, round(median(r[k]))]));
    const entry = {
      medianWallSeconds: medianOf("wallSeconds"),
      medianCpuSeconds: medianOf("cpuSeconds"),
      medianPeakRssMb: medianOf("peakRssMb"),
      repository: {
        bytesOnDisk: repoBytes,
        archives: s.archives,
        uniqueChunks: info.cache.stats.total_unique_chunks,
        filesPerArchive: s.smallFiles + Math.ceil(s.baseBytes / BIG_FILE_BYTES) + 1,
      },
      runs: o.runs,
      date: new Date().toISOString(),
      head: spawnSync("git", ["rev-parse", "--short=12", "HEAD"], { encoding: "utf8" }).stdout.trim(),
      command: `npx tsx bench/maintain-detection.ts${o.scale === "quick" ? " --quick" : ""} --runs ${o.runs}`,
      setupSeconds: round(setupSeconds, 0),
      machine: {
        cpu: machine.cpuModel,
        cores: machine.cores,
        memoryGb: machine.memoryGb,
        kernel: machine.kernel,
        loadAverageAtStart: machine.loadAverageAtStart,
        borg: machine.versions.borg,
      },
      commands: Object.fromEntries(Object.entries(results).map(([n, r]) => [n, r.command])),
      wallSecondsPerRun: Object.fromEntries(Object.entries(results).map(([n, r]) => [n, r.wallSeconds])),
    };
    const previous = fs.existsSync(RESULTS_FILE) ? JSON.parse(fs.readFileSync(RESULTS_FILE, "utf8")) : {};
    const out = {
      kind: KIND,
      what: "cost of agent-maintain's tamper detection before any write (per tenant, per run), medians; CPU is the client's (the box's borg serve is not counted)",
      scales: { ...(previous.kind === KIND ? previous.scales : {}), [o.scale]: entry },
    };
    fs.mkdirSync(path.dirname(RESULTS_FILE), { recursive: true });
    fs.writeFileSync(RESULTS_FILE, `${JSON.stringify(out, null, 2)}\n`);
    progress(`wrote ${RESULTS_FILE}`);
    for (const [n, v] of Object.entries(entry.medianWallSeconds)) process.stdout.write(`${n.padEnd(26)} ${v} s\n`);
  } finally {
    await box.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`maintain-detection: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
