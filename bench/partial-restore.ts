// `npx tsx bench/partial-restore.ts [--quick] [--runs N]`: what an everyday restore costs next to a
// whole one. The agent home of the default bench (its scale as recorded in bench/results/default.json,
// or quick.json with --quick) is backed up once by agent-backup to a loopback storage box; then, in
// each run (order rotated), agent-restore brings back: one memory file, one profile, both in one
// command, and the whole home, each into a fresh folder. Every one pays the same listing and
// screening of the archive's members; the partial ones extract and check only what was asked for.
// Medians of N runs side by side, and each partial restore's ratio to the whole one taken run by run.
// Writes bench/results/partial-restore.json (bench/work/ with --quick: development numbers).
import * as fs from "node:fs";
import * as path from "node:path";
import { startStorageBox, type StorageBox } from "../test/lib/storage-box";
import { generateHome, REPO_ROOT, type HomeInfo, type HomeScale } from "./lib/home";
import { machineInfo } from "./lib/machine";
import { measure, median, progress, requireTools, run } from "./lib/measure";
import { BENCH_DIR, RESULTS_DIR } from "./lib/readme";

const AGENT_RESTORE = path.join(REPO_ROOT, "scripts", "agent-restore");
const AGENT_BACKUP = path.join(REPO_ROOT, "scripts", "agent-backup");
const TENANT = "partial";
const STEPS = {
  memoryFile: { label: "one memory file (memories/MEMORY.md)", paths: ["memories/MEMORY.md"] },
  profile: { label: "one profile (profiles/profile1)", paths: ["profiles/profile1"] },
  memoryAndProfile: { label: "both, in one command", paths: ["memories/MEMORY.md", "profiles/profile1"] },
  fullRestore: { label: "the whole home (agent-restore, verified)", paths: [] as string[] },
} as const;
type StepName = keyof typeof STEPS;

interface RunStep {
  wallSeconds: number;
  cpuSeconds: number;
  peakRssMb: number;
  restoredBytes: number;
  restoredFiles: number;
}

function args(): { quick: boolean; runs: number } {
  const a = process.argv.slice(2);
  const i = a.indexOf("--runs");
  const runs = i >= 0 ? Number(a[i + 1]) : 3;
  if (!Number.isInteger(runs) || runs < 1 || runs > 20) throw new Error("--runs takes a whole number 1..20");
  for (const x of a) if (!["--quick", "--runs", String(runs)].includes(x)) throw new Error(`unknown argument ${x}`);
  return { quick: a.includes("--quick"), runs };
}

/** The scale the main bench recorded (one source: its results file), so the homes are the same. */
function recordedScale(quick: boolean): HomeScale {
  const file = path.join(RESULTS_DIR, quick ? "quick.json" : "default.json");
  const s = (JSON.parse(fs.readFileSync(file, "utf8")) as { homeScale?: HomeScale }).homeScale;
  if (!s || s.profiles < 1) throw new Error(`${file}: no homeScale with a profile`);
  return s;
}

async function main(): Promise<number> {
  const o = args();
  requireTools(["borg", "sqlite3", "python3", "jq", "ssh", "ssh-keygen", "/usr/sbin/sshd"]);
  const scale = recordedScale(o.quick);
  const started = Date.now();
  const machine = machineInfo();
  const head = run(["git", "-C", REPO_ROOT, "rev-parse", "HEAD"]).trim();
  const work = path.join(BENCH_DIR, "work", `partial-restore-${new Date().toISOString().replace(/[-:.]/g, "").slice(0, 15)}`);
  fs.mkdirSync(work, { recursive: true, mode: 0o711 });
  let box: StorageBox | undefined;
  const cleanup = () => {
    void (box?.stop() ?? Promise.resolve()).finally(() => fs.rmSync(work, { recursive: true, force: true }));
  };
  process.once("SIGINT", () => (cleanup(), process.exit(130)));
  process.once("SIGTERM", () => (cleanup(), process.exit(130)));
  try {
    progress(`generating the ${o.quick ? "quick" : "default"}-scale home in ${work}`);
    const home: HomeInfo = await generateHome(path.join(work, "home"), scale);
    box = await startStorageBox({ tenants: [TENANT] });
    const config = box.writeConfig(TENANT, { agentHome: home.dir });
    const env = box.clientEnv;
    for (const a of [["--init"], []]) {
      const b = await measure([AGENT_BACKUP, "--config", config, ...a], { env });
      if (b.exitCode !== 0) throw new Error(`agent-backup ${a.join(" ")} failed: ${b.stderr.slice(-1500)}`);
      progress(`agent-backup ${a.join(" ")}: ${b.wallSeconds.toFixed(1)} s`);
    }
    const archive = run([AGENT_RESTORE, "--config", config, "--list"], { env }).trim().split("\n").at(-1)!.split("\t")[0]!;
    // Warm-up (untimed): the client's borg cache of the repository.
    run([AGENT_RESTORE, "--config", config, "--archive", archive, "--list-files"], { env });

    const names = Object.keys(STEPS) as StepName[];
    const perRun: Record<StepName, RunStep[]> = { memoryFile: [], profile: [], memoryAndProfile: [], fullRestore: [] };
    const commands: Partial<Record<StepName, string>> = {};
    for (let r = 0; r < o.runs; r++) {
      const order = names.map((_, i) => names[(i + r) % names.length]!);
      for (const name of order) {
        const target = path.join(work, `${name}-${r}`);
        const argv = [AGENT_RESTORE, "--config", config, "--archive", archive, "--target", target, ...STEPS[name].paths.flatMap((p) => ["--path", p])];
        const m = await measure(argv, { env, timeoutSeconds: 3600 });
        if (m.exitCode !== 0) throw new Error(`${name} failed: ${m.stderr.slice(-1500)}`);
        commands[name] ??= argv.join(" ").replaceAll(work, "$WORK").replaceAll(REPO_ROOT, ".");
        const restoredBytes = Number(run(["du", "-s", "--bytes", target]).split("\t")[0]);
        const restoredFiles = Number(run(["sh", "-c", 'find "$1" -type f | wc -l', "sh", target]).trim());
        perRun[name].push({ wallSeconds: m.wallSeconds, cpuSeconds: m.cpuSeconds, peakRssMb: m.peakRssKb / 1024, restoredBytes, restoredFiles });
        progress(`run ${r + 1} ${name}: ${m.wallSeconds.toFixed(2)} s wall, ${m.cpuSeconds.toFixed(2)} s CPU, ${(restoredBytes / 2 ** 20).toFixed(1)} MiB in ${restoredFiles} files`);
        fs.rmSync(target, { recursive: true, force: true });
      }
    }
    const med = (name: StepName, k: keyof RunStep) => median(perRun[name].map((x) => x[k]));
    const ratio = (name: StepName) => median(perRun[name].map((x, i) => x.wallSeconds / perRun.fullRestore[i]!.wallSeconds));
    const results = {
      kind: "agent-backups-bench/partial-restore/v1",
      summary: Object.fromEntries(names.map((n) => [n, {
        what: STEPS[n].label,
        medianWallSeconds: +med(n, "wallSeconds").toFixed(2),
        medianCpuSeconds: +med(n, "cpuSeconds").toFixed(2),
        restoredMiB: +(med(n, "restoredBytes") / 2 ** 20).toFixed(1),
        restoredFiles: med(n, "restoredFiles"),
        ...(n === "fullRestore" ? {} : { wallVsFullRestore: +ratio(n).toFixed(3) }),
      }])),
      runs: o.runs,
      archive: { name: archive, preciousFiles: Number(run(["sh", "-c", '"$1" --config "$2" --archive "$3" --list-files --json | jq -s "map(select(.restored and .type == \\"f\\")) | length"', "sh", AGENT_RESTORE, config, archive], { env }).trim()) },
      scale: o.quick ? "quick" : "default",
      homeScale: scale,
      home: { apparentMiB: +(home.apparentBytes / 2 ** 20).toFixed(0), diskMiB: +(home.diskBytes / 2 ** 20).toFixed(0), files: home.files },
      date: new Date(started).toISOString(),
      durationSeconds: +((Date.now() - started) / 1000).toFixed(0),
      invocation: `npx tsx bench/partial-restore.ts${o.quick ? " --quick" : ""}${o.runs !== 3 ? ` --runs ${o.runs}` : ""}`,
      commit: head,
      machine,
      commands,
      perRun,
    };
    const out = o.quick ? path.join(BENCH_DIR, "work", "partial-restore-quick.json") : path.join(RESULTS_DIR, "partial-restore.json");
    fs.writeFileSync(out, JSON.stringify(results, null, 2) + "\n");
    for (const n of names) progress(`${STEPS[n].label}: median ${results.summary[n]!.medianWallSeconds} s`);
    progress(`wrote ${path.relative(process.cwd(), out)} in ${((Date.now() - started) / 60000).toFixed(1)} min`);
    return 0;
  } finally {
    await box?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
