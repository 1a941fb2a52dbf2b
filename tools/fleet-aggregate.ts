// The recoverability ledger of the fleet: one row per configured tenant, joining the storage side's
// view (newest archive, tamper, shrink, size) with the last drill (proof of restore), judged against
// the tenant's thresholds. Pure: the inputs and "now" in, the rows out.
import { thresholdsFor, type FleetConfig, type FleetTenant } from "../config/fleet";
import type { DrillLine, HistoryLine, Ledger, TenantInput } from "./fleet-inputs";

export type Status = "ok" | "warn" | "alarm";
export interface Reason {
  level: "warn" | "alarm";
  /** Stable identifier (for filters and metrics). */
  code: string;
  text: string;
}

export interface FleetRow {
  tenant: string;
  box: string;
  status: Status;
  reasons: Reason[];
  /** Newest archive older than schedule + grace, or none at all (shown red). */
  stale: boolean;
  staleAfterSeconds: number;
  ledgerUpdated: string | null;
  ledgerAgeSeconds: number | null;
  mode: Ledger["mode"] | null;
  archives: number | null;
  newestArchive: { name: string; time: string; firstSeen: string; ageSeconds: number } | null;
  /** findings: the first 20; findingsCount: all of them. */
  tamper: { verdict: "ok" | "tampered"; checked: string; findings: string[]; findingsCount: number } | null;
  lastDrill: { time: string; archive: string | null; healthy: boolean; dataLossWindowSeconds: number | null; restoreSeconds: number | null; ageSeconds: number } | null;
  lastHealthyDrill: string | null;
  repo: { uniqueCsize: number; totalSize: number; growth7dBytes: number | null; growth30dBytes: number | null } | null;
  unclassified: { archive: string; count: number } | null;
  shrink: NonNullable<Ledger["shrink"]> | null;
  pins: Ledger["pins"];
  nextDrill: { run: number; by: string; overdue: boolean } | null;
  inputProblems: string[];
}

export interface TenantSeries {
  /** [epoch seconds, unique compressed bytes] from the history, oldest first. */
  repo: [number, number][];
  /** [epoch seconds, data-loss window s | null, restore s | null, healthy 0/1] per drill. */
  drills: [number, number | null, number | null, number][];
}

export interface Fleet {
  format: 1;
  generated: string;
  counts: Record<Status, number>;
  drillPlan: { periodDays: number; budgetPerRun: number; runIntervalDays: number; runsToDrillAll: number; daysToDrillAll: number; withinPeriod: boolean };
  /** Problems not tied to a configured tenant (stray folders of the state root). */
  problems: string[];
  tenants: FleetRow[];
}

const DAY = 86400;
const epoch = (iso: string): number => Date.parse(iso) / 1000;
const days = (s: number): string => (s >= 2 * DAY ? `${(s / DAY).toFixed(1)} d` : s >= 3600 ? `${(s / 3600).toFixed(1)} h` : `${Math.round(s / 60)} min`);

/** The unique-compressed size at or before `at` (history plus the ledger's current value). */
function sizeAt(points: [number, number][], at: number): number | null {
  let v: number | null = null;
  for (const [t, s] of points) {
    if (t > at) break;
    v = s;
  }
  return v;
}

export function seriesOf(input: TenantInput): TenantSeries {
  const repo: [number, number][] = [];
  for (const h of input.history) if (h.uniqueCsize !== null) repo.push([epoch(h.time), h.uniqueCsize]);
  const l = input.ledger;
  if (l?.repo && (repo.length === 0 || repo[repo.length - 1]![0] < epoch(l.updated))) repo.push([epoch(l.updated), l.repo.uniqueCsize]);
  const drills = input.drills.map((d): [number, number | null, number | null, number] => [epoch(d.time), d.dataLossWindowSeconds, d.restoreSeconds, d.healthy ? 1 : 0]);
  return { repo, drills };
}

function lastHealthy(drills: DrillLine[]): DrillLine | null {
  for (let i = drills.length - 1; i >= 0; i--) if (drills[i]!.healthy) return drills[i]!;
  return null;
}

/** One tenant's row, except the drill rota (nextDrill), which depends on the whole fleet. */
export function tenantRow(config: FleetConfig, t: FleetTenant, input: TenantInput, now: Date): FleetRow {
  const nowS = now.getTime() / 1000;
  const th = thresholdsFor(config, t);
  const reasons: Reason[] = [];
  const alarm = (code: string, text: string) => reasons.push({ level: "alarm", code, text });
  const warn = (code: string, text: string) => reasons.push({ level: "warn", code, text });
  const l = input.ledger;
  const staleAfter = t.schedule + t.grace;
  const row: FleetRow = {
    tenant: t.name, box: t.box, status: "ok", reasons, stale: false, staleAfterSeconds: staleAfter,
    ledgerUpdated: l?.updated ?? null, ledgerAgeSeconds: l ? Math.max(0, nowS - epoch(l.updated)) : null,
    mode: l?.mode ?? null, archives: l?.archives ?? null, newestArchive: null, tamper: l?.tamper ?? null,
    lastDrill: null, lastHealthyDrill: lastHealthy(input.drills)?.time ?? null, repo: null,
    unclassified: l?.unclassified ?? null, shrink: l?.shrink ?? null, pins: l?.pins ?? [], nextDrill: null,
    inputProblems: input.problems,
  };

  if (!l) {
    alarm(input.present ? "ledger-refused" : "no-ledger", input.ledgerProblem ?? "no ledger");
    row.stale = true;
  } else {
    if (l.ok === false) alarm("maintenance-failed", `the last ${l.mode} run (${l.updated}) failed: see its CI log; facts it could not measure are from the run before`);
    if (row.ledgerAgeSeconds! > th.ledgerMaxAgeSeconds) warn("ledger-old", `ledger last written ${days(row.ledgerAgeSeconds!)} ago (limit ${days(th.ledgerMaxAgeSeconds)}): the storage side's view is old`);
    const n = l.newestArchive;
    if (!n) {
      alarm("no-archive", "the repository holds no archive");
      row.stale = true;
    } else {
      // The archive's time is the host's claim; firstSeen is when a trusted run first saw it. A
      // host clock set ahead cannot make a backup look newer than the storage side saw it.
      const ageSeconds = Math.max(0, nowS - Math.min(epoch(n.time), epoch(n.firstSeen)));
      row.newestArchive = { ...n, ageSeconds };
      if (ageSeconds > staleAfter) {
        row.stale = true;
        alarm("stale", `newest archive is ${days(ageSeconds)} old (expected every ${days(t.schedule)} + ${days(t.grace)} grace)`);
      }
    }
    if (!l.tamper) warn("never-tamper-checked", "the repository was never tamper-checked");
    else if (l.tamper.verdict === "tampered") alarm("tampered", `tamper check ${l.tamper.checked}: ${l.tamper.findingsCount} finding(s)${l.tamper.findings[0] ? `, first: ${l.tamper.findings[0]}` : ""}`);
    if (l.shrink?.verdict === "shrunk") alarm("shrunk", `archive ${l.shrink.archive ?? "?"} shrank against ${l.shrink.previous ?? "?"}: ${l.shrink.findings.map((f) => `${f.what} ${f.before ?? "?"} -> ${f.after ?? "?"}`).slice(0, 3).join(", ")}`);
    else if (!l.shrink || l.shrink.verdict === "unknown") warn("shrink-unknown", "the shrink guard could not compare the newest archive with the previous one");
    if (l.unclassified && l.unclassified.count > th.unclassifiedMax) alarm("unclassified", `${l.unclassified.count} unclassified path(s) in ${l.unclassified.archive} (limit ${th.unclassifiedMax})`);
    if (l.pins.length > 0) warn("pinned", `${l.pins.length} archive(s) pinned until a person releases them (first: ${l.pins[0]!.archive}, ${l.pins[0]!.reason})`);
    if (l.repo) {
      const points = seriesOf(input).repo;
      const latest = l.repo.uniqueCsize;
      const at7 = sizeAt(points, nowS - 7 * DAY);
      const at30 = sizeAt(points, nowS - 30 * DAY);
      row.repo = { ...l.repo, growth7dBytes: at7 === null ? null : latest - at7, growth30dBytes: at30 === null ? null : latest - at30 };
    }
  }

  const d = input.drills[input.drills.length - 1];
  if (!d) warn("never-drilled", "never drilled: no restore of this tenant has been proven");
  else {
    const ageSeconds = Math.max(0, nowS - epoch(d.time));
    row.lastDrill = { time: d.time, archive: d.archive, healthy: d.healthy, dataLossWindowSeconds: d.dataLossWindowSeconds, restoreSeconds: d.restoreSeconds, ageSeconds };
    if (!d.healthy) alarm("drill-unhealthy", `the last drill (${d.time}) did not restore a healthy agent`);
    if (ageSeconds > th.drillMaxAgeDays * DAY) alarm("drill-old", `last drill ${days(ageSeconds)} ago (limit ${th.drillMaxAgeDays} d)`);
    if (th.dataLossWindowMaxSeconds !== undefined && d.dataLossWindowSeconds !== null && d.dataLossWindowSeconds > th.dataLossWindowMaxSeconds) {
      warn("data-loss-window", `data-loss window at the last drill ${days(d.dataLossWindowSeconds)} (limit ${days(th.dataLossWindowMaxSeconds)})`);
    }
  }
  if (input.problems.length > 0) warn("input-problems", `${input.problems.length} problem(s) reading the state: ${input.problems[0]}`);
  row.status = reasons.some((r) => r.level === "alarm") ? "alarm" : reasons.length > 0 ? "warn" : "ok";
  return row;
}

/**
 * The drill rota: tenants whose last healthy drill is oldest come first, never-drilled ones before
 * all (by name among equals). Tenants whose repository holds no archive cannot be drilled.
 */
export function drillOrder(rows: Pick<FleetRow, "tenant" | "lastHealthyDrill" | "archives">[]): string[] {
  return rows
    .filter((r) => r.archives !== 0)
    .map((r) => ({ name: r.tenant, at: r.lastHealthyDrill === null ? -Infinity : Date.parse(r.lastHealthyDrill) }))
    .sort((a, b) => a.at - b.at || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((r) => r.name);
}

/** The names the next drill run restores: the head of the rota, up to the budget. */
export function nextDrills(rows: Pick<FleetRow, "tenant" | "lastHealthyDrill" | "archives">[], budget: number): string[] {
  return drillOrder(rows).slice(0, budget);
}

export function aggregate(config: FleetConfig, inputs: Map<string, TenantInput>, now: Date, problems: string[] = []): Fleet {
  const rows = config.tenants.map((t) => {
    const input = inputs.get(t.name) ?? { tenant: t.name, present: false, ledger: null, ledgerProblem: "not read", history: [], drills: [], problems: [] };
    return tenantRow(config, t, input, now);
  });
  const { budgetPerRun, runIntervalDays, periodDays } = config.drill;
  const order = drillOrder(rows);
  const byName = new Map(rows.map((r) => [r.tenant, r]));
  order.forEach((name, position) => {
    const r = byName.get(name)!;
    const run = Math.floor(position / budgetPerRun);
    const dueAt = r.lastHealthyDrill === null ? -Infinity : Date.parse(r.lastHealthyDrill) + periodDays * DAY * 1000;
    r.nextDrill = { run, by: new Date(now.getTime() + (run + 1) * runIntervalDays * DAY * 1000).toISOString(), overdue: dueAt < now.getTime() };
  });
  const runsToDrillAll = Math.ceil(order.length / budgetPerRun);
  const counts: Record<Status, number> = { ok: 0, warn: 0, alarm: 0 };
  for (const r of rows) counts[r.status]++;
  const kept = problems.slice(0, 50);
  if (problems.length > kept.length) kept.push(`${problems.length - kept.length} more problem(s) not shown`);
  return {
    format: 1,
    generated: now.toISOString(),
    counts,
    drillPlan: { periodDays, budgetPerRun, runIntervalDays, runsToDrillAll, daysToDrillAll: runsToDrillAll * runIntervalDays, withinPeriod: runsToDrillAll * runIntervalDays <= periodDays },
    problems: kept,
    tenants: rows,
  };
}
