// `npm run bench [-- --quick] [--runs N] [--trials N] [--only sqlite|nights] [--keep-work]
// [--readme-only]`: builds an agent home at the chosen scale, measures the SQLite copy methods and
// the side-by-side nights (see bench/README.md), writes bench/results/<scale>.json and regenerates
// bench/README.md from every results file.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { startStorageBox, type StorageBox } from "../test/lib/storage-box";
import { oneNight, runTenants, type NightRun } from "./lib/backup-flow";
import { generateHome, REPO_ROOT, type HomeInfo, type HomeScale } from "./lib/home";
import { machineInfo } from "./lib/machine";
import { progress, requireTools } from "./lib/measure";
import { BENCH_DIR, RESULTS_DIR, writeReadme } from "./lib/readme";
import { judgeGoals, ratios, RESULTS_KIND, summariseSteps, type BenchResults } from "./lib/results";
import { sqliteCopyBench, type SqliteCopyResult } from "./lib/sqlite-copy";

/** The scales: `default` is the one the issue's goals are held to; `quick` fits in 5 minutes. */
const SCALES: Record<string, HomeScale> = {
  default: { sessions: 20000, sessionFiles: 20000, stateDbMb: 1024, deadWeightMb: 5120, profiles: 2, seed: 7 },
  quick: { sessions: 300, sessionFiles: 300, stateDbMb: 16, deadWeightMb: 128, profiles: 1, seed: 7 },
};
const WRITER_RATE = 250; // commits per second, above the issue's floor of 200

interface Options {
  scale: string;
  runs: number;
  trials: number;
  only: "sqlite" | "nights" | null;
  keepWork: boolean;
  readmeOnly: boolean;
}

function usage(message: string): never {
  process.stderr.write(`bench: ${message}\nusage: npm run bench -- [--quick] [--runs N] [--trials N] [--only sqlite|nights] [--keep-work] [--readme-only]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { scale: "default", runs: 3, trials: 20, only: null, keepWork: false, readmeOnly: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const num = (): number => {
      const v = argv[++i];
      if (v === undefined || !/^[1-9][0-9]{0,2}$/.test(v)) usage(`${a} needs a number from 1 to 999`);
      return Number(v);
    };
    if (a === "--quick") o.scale = "quick";
    else if (a === "--runs") o.runs = num();
    else if (a === "--trials") o.trials = num();
    else if (a === "--only") {
      const v = argv[++i];
      if (v !== "sqlite" && v !== "nights") usage("--only takes sqlite or nights");
      o.only = v;
    } else if (a === "--keep-work") o.keepWork = true;
    else if (a === "--readme-only") o.readmeOnly = true;
    else usage(`unknown argument ${a}`);
  }
  return o;
}

function invocation(o: Options): string {
  const args = [
    ...(o.scale === "quick" ? ["--quick"] : []),
    ...(o.runs !== 3 ? ["--runs", String(o.runs)] : []),
    ...(o.trials !== 20 ? ["--trials", String(o.trials)] : []),
    ...(o.only ? ["--only", o.only] : []),
  ];
  return ["npm run bench", ...(args.length ? ["--", ...args] : [])].join(" ");
}

/** Which code was measured: HEAD, and the files under test that differ from it. */
function sourceState(): { head: string; uncommitted: string[] } {
  const git = (args: string[]): string => spawnSync("git", args, { cwd: REPO_ROOT, encoding: "utf8" }).stdout?.trim() ?? "";
  const status = git(["status", "--porcelain", "--", "scripts", "test/fixtures", "test/lib", "bench"]);
  return { head: git(["rev-parse", "HEAD"]) || "unknown", uncommitted: status.split("\n").filter(Boolean) };
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  if (o.readmeOnly) {
    writeReadme();
    progress("bench/README.md regenerated from bench/results/*.json");
    return 0;
  }
  requireTools(["borg", "sqlite3", "python3", "tar", "gzip", "xargs", "du", "ssh", "ssh-keygen", "/usr/sbin/sshd"]);
  const scale = SCALES[o.scale]!;
  const started = Date.now();
  const machine = machineInfo();
  const source = sourceState();
  const work = path.join(BENCH_DIR, "work", `${o.scale}-${new Date().toISOString().replace(/[-:.]/g, "").slice(0, 15)}`);
  fs.mkdirSync(work, { recursive: true });
  const errors: string[] = [];
  let home: HomeInfo | null = null;
  let sqliteCopy: SqliteCopyResult | null = null;
  const nights: NightRun[] = [];
  let box: StorageBox | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    progress(`${sig}: cleaning up`);
    void (box?.stop() ?? Promise.resolve()).finally(() => {
      if (!o.keepWork) fs.rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    progress(`scale ${o.scale}: generating the agent home in ${work}`);
    home = await generateHome(path.join(work, "home"), scale);
    progress(`home: ${(home.apparentBytes / 2 ** 30).toFixed(2)} GiB apparent, ${home.files} files, built in ${home.generateSeconds.toFixed(1)} s`);

    if (o.only !== "nights") {
      try {
        progress(`sqlite copy: ${o.trials} trials per method under a writer at ${WRITER_RATE} commits/s`);
        sqliteCopy = await sqliteCopyBench({
          workDir: path.join(work, "sqlite"),
          sourceDb: path.join(home.dir, "state.db"),
          sourceDescription: `the home's state.db (make-agent-home, --state-db-mb ${scale.stateDbMb}, FTS5 + trigram)`,
          trials: o.trials,
          writerRate: WRITER_RATE,
          // The SQLite copy lives on the agent side of agent-backup.
          agentBackupScript: path.join(REPO_ROOT, "scripts", "agent-side", "collect"),
        });
      } catch (e) {
        errors.push(`sqlite copy: ${(e as Error).message}`);
      }
    }

    if (o.only !== "sqlite") {
      try {
        const tenants = Array.from({ length: o.runs }, (_, i) => Object.values(runTenants(i + 1))).flat();
        box = await startStorageBox({ tenants });
        for (let r = 1; r <= o.runs; r++) nights.push(await oneNight(box, home.dir, work, r));
      } catch (e) {
        errors.push(`nights: ${(e as Error).message}`);
      } finally {
        await box?.stop();
        box = undefined;
      }
    }
  } catch (e) {
    errors.push(`home: ${(e as Error).message}`);
  } finally {
    if (!o.keepWork) fs.rmSync(work, { recursive: true, force: true });
  }

  const rs = ratios(nights, home);
  const results: BenchResults = {
    kind: RESULTS_KIND,
    source,
    scale: o.scale,
    date: new Date(started).toISOString(),
    durationSeconds: (Date.now() - started) / 1000,
    invocation: invocation(o),
    machine,
    homeScale: scale,
    home,
    sqliteCopy,
    nights,
    steps: summariseSteps(nights),
    ratios: rs,
    goals: judgeGoals(rs, sqliteCopy, o.scale),
    errors,
  };
  // A partial run (--only) is for development: its numbers stay out of the recorded results.
  const outDir = o.only ? path.join(BENCH_DIR, "work") : RESULTS_DIR;
  fs.mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `${o.scale}${o.only ? `-only-${o.only}` : ""}.json`);
  // NaN (an unknown CPU time of a killed command) is written as null.
  fs.writeFileSync(out, JSON.stringify(results, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n");
  if (!o.only) writeReadme();
  for (const g of results.goals) progress(`${g.met === true ? "MET   " : g.met === false ? "MISSED" : "n/a   "} ${g.goal}: ${g.measured}`);
  for (const e of errors) progress(`error: ${e.split("\n")[0]}`);
  progress(`wrote ${path.relative(process.cwd(), out)}${o.only ? "" : " and bench/README.md"} in ${((Date.now() - started) / 60000).toFixed(1)} min`);
  return errors.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
