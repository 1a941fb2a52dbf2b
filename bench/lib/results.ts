// The results file (bench/results/<scale>.json): its shape, the summary (medians of the runs and
// ratios taken run by run, side by side), and the goals of issue 7 judged from those numbers.
import type { HomeInfo, HomeScale } from "./home";
import type { MachineInfo } from "./machine";
import { median } from "./measure";
import type { NightRun, StepName } from "./backup-flow";
import type { SqliteCopyResult } from "./sqlite-copy";

export const RESULTS_KIND = "agent-backups-bench/v1";

export interface StepSummary {
  runs: number;
  command: string;
  medianWallSeconds: number;
  medianCpuSeconds: number;
  medianPeakRssMb: number;
  /** Median bytes: borg original/compressed/deduplicated, or the output size. */
  bytes?: Record<string, number>;
}

export interface Ratio {
  name: string;
  description: string;
  perRun: number[];
  median: number;
}

export interface Goal {
  goal: string;
  target: string;
  measured: string;
  /** true met, false missed, null not measured (the reason is in `measured`). */
  met: boolean | null;
  /** How far from the target: e.g. "0.84x of the allowed 1.3x" or "missed by 12%". */
  margin: string;
}

export interface BenchResults {
  kind: typeof RESULTS_KIND;
  /** The commit the run started from, and which files under test differed from it. */
  source: { head: string; uncommitted: string[] };
  scale: string;
  date: string;
  durationSeconds: number;
  invocation: string;
  machine: MachineInfo;
  homeScale: HomeScale;
  home: HomeInfo | null;
  sqliteCopy: SqliteCopyResult | null;
  nights: NightRun[];
  steps: Partial<Record<StepName, StepSummary>>;
  ratios: Ratio[];
  goals: Goal[];
  errors: string[];
}

export function summariseSteps(nights: NightRun[]): Partial<Record<StepName, StepSummary>> {
  const out: Partial<Record<StepName, StepSummary>> = {};
  const names = new Set(nights.flatMap((n) => Object.keys(n.steps) as StepName[]));
  for (const name of names) {
    const steps = nights.map((n) => n.steps[name]).filter((s) => s !== undefined);
    const first = steps[0]!;
    const bytes: Record<string, number> = {};
    for (const key of Object.keys(first.bytes ?? {})) {
      bytes[key] = median(steps.map((s) => (s.bytes as Record<string, number> | undefined)?.[key] ?? NaN));
    }
    out[name] = {
      runs: steps.length,
      command: first.command,
      medianWallSeconds: median(steps.map((s) => s.wallSeconds)),
      medianCpuSeconds: median(steps.map((s) => s.cpuSeconds)),
      medianPeakRssMb: median(steps.map((s) => s.peakRssKb / 1024)),
      ...(first.bytes ? { bytes } : {}),
    };
  }
  return out;
}

function ratio(name: string, description: string, nights: NightRun[], f: (n: NightRun) => number): Ratio {
  const perRun = nights.map(f);
  return { name, description, perRun, median: median(perRun) };
}

const wall = (n: NightRun, s: StepName): number => n.steps[s].wallSeconds;
const borgBytes = (n: NightRun, s: StepName, k: "original" | "deduplicated"): number => {
  const b = n.steps[s].bytes;
  return b && k in b ? (b as Record<string, number>)[k]! : NaN;
};

export function ratios(nights: NightRun[], home: HomeInfo | null): Ratio[] {
  if (nights.length === 0) return [];
  const homeBytes = home?.apparentBytes ?? NaN;
  return [
    ratio("preciousOfHome", "precious files as the rules select them / the home's apparent bytes", nights, (n) => n.preciousBytes / homeBytes),
    ratio("backupSetOfHome", "agent-backup archive's original bytes / the home's apparent bytes", nights, (n) => borgBytes(n, "agentFull", "original") / homeBytes),
    ratio("storedOfHome", "agent-backup full, deduplicated+compressed bytes stored / the home's apparent bytes", nights, (n) => borgBytes(n, "agentFull", "deduplicated") / homeBytes),
    ratio("fullVsFloor", "agent-backup full wall / plain borg create of the quiesced precious copy", nights, (n) => wall(n, "agentFull") / wall(n, "floorBorg")),
    ratio("fullVsReadOnce", "agent-backup full wall / reading the precious bytes once", nights, (n) => wall(n, "agentFull") / wall(n, "readPrecious")),
    ratio("fullVsNaiveTar", "agent-backup full wall / tar czf of the whole home", nights, (n) => wall(n, "agentFull") / wall(n, "naiveTar")),
    ratio("fullVsNaiveBorg", "agent-backup full wall / borg create of the whole home without rules", nights, (n) => wall(n, "agentFull") / wall(n, "naiveBorg")),
    ratio("incrementalVsFull", "agent-backup nightly incremental wall / agent-backup full wall", nights, (n) => wall(n, "agentIncremental") / wall(n, "agentFull")),
    ratio("incrementalNewBytesOfFull", "incremental's new (deduplicated) bytes / the full's", nights, (n) => borgBytes(n, "agentIncremental", "deduplicated") / borgBytes(n, "agentFull", "deduplicated")),
    ratio("restoreVerifyVsExtract", "agent-restore + agent-verify wall / plain borg extract of the same archive", nights, (n) => wall(n, "agentRestoreVerify") / wall(n, "plainExtract")),
  ];
}

const pct = (x: number): string => `${(100 * x).toFixed(2)}%`;
const times = (x: number): string => `${x.toFixed(2)}x`;

function ratioGoal(rs: Ratio[], name: string, goal: string, limit: number, strict: boolean, asPct: boolean): Goal {
  const r = rs.find((x) => x.name === name);
  const fmt = asPct ? pct : times;
  const target = `${strict ? "<" : "<="} ${fmt(limit)}`;
  if (!r || !Number.isFinite(r.median)) return { goal, target, measured: "not measured", met: null, margin: "-" };
  const met = strict ? r.median < limit : r.median <= limit;
  const margin = met
    ? `met: ${fmt(r.median)} is ${(r.median / limit).toFixed(2)} of the limit`
    : `missed by ${pct(r.median / limit - 1)} (${fmt(r.median)} vs ${fmt(limit)})`;
  return { goal, target, measured: `${fmt(r.median)} (median of ${r.perRun.length} runs: ${r.perRun.map(fmt).join(", ")})`, met, margin };
}

export function judgeGoals(rs: Ratio[], sq: SqliteCopyResult | null, scale: string): Goal[] {
  const goals: Goal[] = [];
  const setGoal = ratioGoal(rs, "backupSetOfHome", "The backup set is under 5% of the home's bytes (held at the default scale)", 0.05, true, true);
  if (scale !== "default" && setGoal.met !== null) setGoal.margin += ` (at the ${scale} scale; the goal is held at the default scale)`;
  const precious = rs.find((x) => x.name === "preciousOfHome");
  if (precious && Number.isFinite(precious.median)) setGoal.measured += `; the precious files alone are ${pct(precious.median)} of the home`;
  goals.push(setGoal);
  goals.push(ratioGoal(rs, "fullVsFloor", "Full backup within 1.3x of plain borg create of the quiesced precious set", 1.3, false, false));
  goals.push(ratioGoal(rs, "incrementalVsFull", "Nightly incremental under 10% of the full backup's wall time", 0.1, true, true));
  goals.push(ratioGoal(rs, "restoreVerifyVsExtract", "Restore plus verify within 1.3x of plain borg extract of the same archive", 1.3, false, false));

  const sqliteGoal = "The chosen SQLite method: 0 inconsistent copies in 20 trials under the writer, and at most 2x the time of the fastest consistent method";
  if (!sq || !sq.chosenMethod) {
    goals.push({ goal: sqliteGoal, target: "0 of 20; <= 2.00x", measured: sq ? `chosen method unknown: ${sq.chosenMethodSource}` : "not measured", met: null, margin: "-" });
    return goals;
  }
  const consistent = sq.methods.filter((m) => m.completed === m.trials && m.inconsistent === 0 && m.trials >= sq.trialsPerMethod && Number.isFinite(m.medianSeconds));
  const fastest = consistent.reduce<(typeof consistent)[number] | undefined>((a, m) => (!a || m.medianSeconds < a.medianSeconds ? m : a), undefined);
  const chosen = sq.methods.find((m) => m.method === sq.chosenMethod)!;
  const bad = chosen.inconsistent + chosen.failed + chosen.timedOut;
  const vsFastest = fastest ? chosen.medianSeconds / fastest.medianSeconds : NaN;
  const met = bad === 0 && chosen.trials >= 20 && Number.isFinite(vsFastest) && vsFastest <= 2;
  goals.push({
    goal: sqliteGoal,
    target: "0 of 20; <= 2.00x",
    measured: `${sq.chosenMethod}: ${chosen.inconsistent} inconsistent, ${chosen.failed} failed, ${chosen.timedOut} timed out of ${chosen.trials}; ${times(vsFastest)} of the fastest consistent method (${fastest?.method ?? "none"})`,
    met,
    margin: met ? `met: ${(vsFastest / 2).toFixed(2)} of the 2x limit` : bad > 0 ? `missed: ${bad} bad copies` : chosen.trials < 20 ? `missed: only ${chosen.trials} trials` : `missed by ${pct(vsFastest / 2 - 1)}`,
  });
  return goals;
}
