// `npx tsx bench/classify.ts [--runs N] [--sessions N]`: what default deny costs. The classification
// of a default-scale home (20,000 session files, two profiles) side by side in one run:
//   before  the previous backup set (commit BASE: backup-set.patterns applied by common.sh's
//           backup_set_walk, a find expression that keeps whatever it does not name)
//   after   scripts/lib/classify.awk over scripts/backup-set.rules (classify_tree), and the whole
//           `agent-backup --classify --home` an operator runs (as the home's owner, JSON report)
// Medians of N runs, alternating which goes first; writes bench/results/classify.json.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { chownToAgent } from "../test/lib/agent-home";
import { MAKE_AGENT_HOME, REPO_ROOT } from "./lib/home";

/** The last commit with the previous backup set. */
const BASE = "706b2bc";

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1 || v > 100000) throw new Error(`${name} takes a whole number`);
  return v;
}

function timed(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: exit ${r.status}: ${r.stderr.slice(-1000)}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function main(): void {
  const runs = arg("--runs", 5);
  const sessions = arg("--sessions", 20000);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "ab-bench-classify-"));
  fs.chmodSync(work, 0o711);
  try {
    const home = path.join(work, "home");
    process.stderr.write(`generating a home with ${sessions} session files in ${home}\n`);
    execFileSync("bash", [MAKE_AGENT_HOME, "--home", home, "--sessions", String(sessions), "--session-files", String(sessions), "--state-db-mb", "8",
      "--dead-weight-mb", "64", "--profiles", "2", "--seed", "7"], { stdio: ["ignore", "ignore", "inherit"] });
    chownToAgent(home);
    const paths = Number(execFileSync("bash", ["-c", 'find "$1" | wc -l', "bash", home], { encoding: "utf8" }).trim());

    // The previous scripts tree, as it was at BASE.
    const old = path.join(work, "old-scripts");
    fs.mkdirSync(path.join(old, "lib"), { recursive: true });
    for (const f of ["lib/common.sh", "lib/value-patterns", "backup-set.patterns", "sqlite-stores"]) {
      fs.writeFileSync(path.join(old, f), execFileSync("git", ["show", `${BASE}:scripts/${f}`], { cwd: REPO_ROOT }));
    }
    const variants: Record<string, [string, string[]]> = {
      before: ["bash", ["-c", 'source "$1/lib/common.sh"; backup_set_walk "$2" >/dev/null', "bash", old, home]],
      after: ["bash", ["-c", 'source "$1/lib/common.sh"; classify_tree "$2" >/dev/null', "bash", path.join(REPO_ROOT, "scripts"), home]],
      classifyCommand: [path.join(REPO_ROOT, "scripts", "agent-backup"), ["--classify", "--json", "--home", home]],
    };
    const times: Record<string, number[]> = { before: [], after: [], classifyCommand: [] };
    const names = Object.keys(variants);
    for (let r = 0; r < runs; r++) {
      const order = r % 2 === 0 ? names : [...names].reverse();
      for (const n of order) {
        const [cmd, args] = variants[n]!;
        times[n]!.push(timed(cmd, args));
      }
      process.stderr.write(`run ${r + 1}/${runs}: ${names.map((n) => `${n} ${times[n]!.at(-1)!.toFixed(2)} s`).join(", ")}\n`);
    }
    const [classifyCmd, classifyArgs] = variants.classifyCommand!;
    const report = JSON.parse(execFileSync(classifyCmd, classifyArgs, { encoding: "utf8", maxBuffer: 1 << 30 }));
    const result = {
      kind: "classify",
      date: new Date().toISOString(),
      commit: execFileSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: REPO_ROOT, encoding: "utf8" }).trim(),
      command: `npx tsx bench/classify.ts --runs ${runs} --sessions ${sessions}`,
      home: { sessionFiles: sessions, profiles: 2, paths },
      runs,
      seconds: Object.fromEntries(names.map((n) => [n, { median: median(times[n]!), all: times[n] }])),
      ratios: {
        afterVsBefore: median(times.after!.map((t, i) => t / times.before![i]!)),
        classifyCommandVsBefore: median(times.classifyCommand!.map((t, i) => t / times.before![i]!)),
      },
      unclassified: report.unclassifiedCount,
      totals: report.totals,
    };
    fs.writeFileSync(path.join(REPO_ROOT, "bench", "results", "classify.json"), JSON.stringify(result, null, 2) + "\n");
    process.stdout.write(`${JSON.stringify(result.seconds)}\n${JSON.stringify(result.ratios)}\n`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main();
