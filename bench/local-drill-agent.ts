// `sudo npx tsx bench/local-drill-agent.ts [--runs N]`: what the real agent costs the local drill.
// `npm run drill:local` (1 tenant, standard scenario) with the real agent (the default) next to
// `--agent standin`, both with warm caches (the box root filesystem and the agent's wheelhouse are
// built by a warm-up run first when missing, and that run is not counted). Pairs alternate which
// agent goes first; medians of N runs each, and the real/stand-in ratio taken pair by pair.
// Writes bench/results/local-drill-agent.json.
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { wheelhousePath, agentPackage, agentVersion, readyMarker } from "../drill/lib/real-agent";
import { localDrillReportSchema, type LocalDrillReport } from "../drill/lib/report";
import { defaultRecipe, rootfsPath } from "../drill/lib/rootfs";
import { machineInfo } from "./lib/machine";
import { median, progress } from "./lib/measure";

const repoRoot = path.resolve(__dirname, "..");
const tsxCli = path.join(repoRoot, "node_modules", "tsx", "dist", "cli.mjs");
const resultsFile = path.join(repoRoot, "bench", "results", "local-drill-agent.json");
const agents = ["real", "standin"] as const;
type Agent = (typeof agents)[number];

interface Run {
  agent: Agent;
  runId: string;
  healthy: boolean;
  /** Wall time of the whole command, as this script measured it. */
  wallSeconds: number;
  /** The drill's own wallSeconds (from its report). */
  reportedWallSeconds: number;
  steps: LocalDrillReport["steps"];
  loadAverageAtStart: number[];
}

function runsArg(): number {
  const i = process.argv.indexOf("--runs");
  if (i < 0) return 3;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1 || v > 20) throw new Error("--runs takes a whole number 1..20");
  return v;
}

/** One drill, bounded to 30 minutes; its report parsed. */
function drill(agent: Agent): Promise<Run> {
  const load = (fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3)).map(Number);
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsxCli, "drill/local.ts", "--agent", agent], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGINT"), 30 * 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      const wallSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const parsed = localDrillReportSchema.safeParse(JSON.parse(stdout || "null"));
      if (!parsed.success) return reject(new Error(`drill --agent ${agent} gave no report (exit ${code}):\n${stderr.slice(-3000)}`));
      const r = parsed.data;
      if (!r.healthy) return reject(new Error(`drill --agent ${agent} (${r.runId}) was not healthy:\n${stderr.slice(-3000)}`));
      resolve({ agent, runId: r.runId, healthy: r.healthy, wallSeconds: Math.round(wallSeconds * 100) / 100, reportedWallSeconds: r.wallSeconds, steps: r.steps, loadAverageAtStart: load });
    });
  });
}

const round = (x: number) => Math.round(x * 100) / 100;

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("the local drill runs as root: sudo npx tsx bench/local-drill-agent.ts");
  const n = runsArg();
  const started = Date.now();
  const warm = fs.existsSync(path.join(rootfsPath(defaultRecipe()), "etc", "agent-backups-rootfs.json")) && fs.existsSync(path.join(wheelhousePath(), readyMarker));
  if (!warm) {
    progress("caches cold: one uncounted warm-up run builds the box root filesystem and the wheelhouse");
    await drill("real");
  }
  const runs: Run[] = [];
  for (let i = 0; i < n; i++) {
    const order: Agent[] = i % 2 === 0 ? ["real", "standin"] : ["standin", "real"];
    for (const agent of order) {
      progress(`pair ${i + 1}/${n}: --agent ${agent}`);
      const r = await drill(agent);
      progress(`  ${agent}: ${r.wallSeconds.toFixed(1)} s (${r.runId})`);
      runs.push(r);
    }
  }
  const wall = (a: Agent) => runs.filter((r) => r.agent === a).map((r) => r.wallSeconds);
  const perPair = Array.from({ length: n }, (_, i) => {
    const pair = runs.slice(2 * i, 2 * i + 2);
    const real = pair.find((r) => r.agent === "real")?.wallSeconds ?? NaN;
    const standin = pair.find((r) => r.agent === "standin")?.wallSeconds ?? NaN;
    return round(real / standin);
  });
  /** Median seconds per step title, for each agent (steps differ in name where the agents differ). */
  const stepMedians = (a: Agent) => {
    const byStep = new Map<string, number[]>();
    for (const r of runs.filter((x) => x.agent === a)) for (const s of r.steps) byStep.set(s.step, [...(byStep.get(s.step) ?? []), s.seconds]);
    return Object.fromEntries([...byStep].map(([k, v]) => [k, round(median(v))]));
  };
  const head = execFileSync("git", ["rev-parse", "HEAD"], { cwd: repoRoot, encoding: "utf8" }).trim();
  const uncommitted = execFileSync("git", ["status", "--porcelain", "--", "drill", "scripts", "components", "test/fixtures"], { cwd: repoRoot, encoding: "utf8" })
    .split("\n").filter(Boolean);
  const results = {
    kind: "agent-backups-local-drill-agent/v1",
    command: "npm run -s drill:local -- --agent real|standin (1 tenant, standard scenario, rootfs and wheelhouse caches warm)",
    source: { head, uncommitted },
    date: new Date().toISOString(),
    durationSeconds: Math.round((Date.now() - started) / 1000),
    machine: machineInfo(),
    agent: { name: agentPackage, version: agentVersion() },
    runsPerAgent: n,
    medianWallSeconds: { real: round(median(wall("real"))), standin: round(median(wall("standin"))) },
    minWallSeconds: { real: Math.min(...wall("real")), standin: Math.min(...wall("standin")) },
    maxWallSeconds: { real: Math.max(...wall("real")), standin: Math.max(...wall("standin")) },
    realOverStandin: { perPair, median: round(median(perPair)) },
    medianStepSeconds: { real: stepMedians("real"), standin: stepMedians("standin") },
    runs,
  };
  fs.writeFileSync(resultsFile, JSON.stringify(results, null, 2) + "\n");
  progress(`real ${results.medianWallSeconds.real} s, stand-in ${results.medianWallSeconds.standin} s (median of ${n}); ratio ${results.realOverStandin.median}; wrote ${path.relative(repoRoot, resultsFile)}`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/local-drill-agent: ${(err as Error).message}\n`);
  process.exit(1);
});
