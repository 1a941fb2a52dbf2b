// Where a person looks, besides the page: Prometheus text exposition (a node_exporter textfile,
// optionally pushed to a Pushgateway) and the CI job summary as a markdown table. Every string
// from the state is treated as hostile: escaped for the format it lands in.
import type { Fleet, FleetRow, Status } from "./fleet-aggregate";

const STATUS_VALUE: Record<Status, number> = { ok: 0, warn: 1, alarm: 2 };
const P = "agent_backups_fleet";

const labelValue = (s: string): string => s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const labels = (r: FleetRow): string => `tenant="${labelValue(r.tenant)}",box="${labelValue(r.box)}"`;
const epochS = (iso: string): number => Math.round(Date.parse(iso) / 1000);

export function renderProm(fleet: Fleet): string {
  const families: { name: string; help: string; value: (r: FleetRow) => number | null | undefined }[] = [
    { name: "status", help: "Tenant status: 0 ok, 1 warn, 2 alarm.", value: (r) => STATUS_VALUE[r.status] },
    { name: "stale", help: "1 when the newest archive is older than schedule + grace (or there is none).", value: (r) => (r.stale ? 1 : 0) },
    { name: "newest_archive_age_seconds", help: "Age of the newest archive as the storage side saw it.", value: (r) => r.newestArchive?.ageSeconds },
    { name: "ledger_age_seconds", help: "Seconds since the maintenance job last wrote the tenant's ledger.", value: (r) => r.ledgerAgeSeconds },
    { name: "archives", help: "Archives in the repository.", value: (r) => r.archives },
    { name: "tamper_ok", help: "1 when the last tamper check found nothing, 0 when it found tampering.", value: (r) => (r.tamper ? (r.tamper.verdict === "ok" ? 1 : 0) : null) },
    { name: "tamper_checked_timestamp_seconds", help: "When the last tamper check ran.", value: (r) => (r.tamper ? epochS(r.tamper.checked) : null) },
    { name: "shrink_ok", help: "1 when the shrink guard passed, 0 when it found a drop (absent when unknown).", value: (r) => (r.shrink?.verdict === "ok" ? 1 : r.shrink?.verdict === "shrunk" ? 0 : null) },
    { name: "unclassified_paths", help: "Unclassified paths in the newest archive.", value: (r) => r.unclassified?.count },
    { name: "pinned_archives", help: "Archives pinned until a person releases them.", value: (r) => r.pins.length },
    { name: "repo_unique_csize_bytes", help: "Deduplicated compressed bytes of the repository.", value: (r) => r.repo?.uniqueCsize },
    { name: "repo_total_size_bytes", help: "Original bytes of all archives.", value: (r) => r.repo?.totalSize },
    { name: "repo_growth_7d_bytes", help: "Change of the deduplicated compressed size over 7 days.", value: (r) => r.repo?.growth7dBytes },
    { name: "repo_growth_30d_bytes", help: "Change of the deduplicated compressed size over 30 days.", value: (r) => r.repo?.growth30dBytes },
    { name: "last_drill_timestamp_seconds", help: "When the last drill ran.", value: (r) => (r.lastDrill ? epochS(r.lastDrill.time) : null) },
    { name: "last_drill_healthy", help: "1 when the last drill restored a healthy agent.", value: (r) => (r.lastDrill ? (r.lastDrill.healthy ? 1 : 0) : null) },
    { name: "last_healthy_drill_timestamp_seconds", help: "When a drill last restored a healthy agent.", value: (r) => (r.lastHealthyDrill ? epochS(r.lastHealthyDrill) : null) },
    { name: "data_loss_window_seconds", help: "Age of the drilled archive at the last drill.", value: (r) => r.lastDrill?.dataLossWindowSeconds },
    { name: "restore_seconds", help: "Restore time of the last drill.", value: (r) => r.lastDrill?.restoreSeconds },
    { name: "next_drill_timestamp_seconds", help: "Latest date the rota drills the tenant by.", value: (r) => (r.nextDrill ? epochS(r.nextDrill.by) : null) },
    { name: "input_problems", help: "Refused files or lines in the tenant's state.", value: (r) => r.inputProblems.length },
  ];
  const L: string[] = [];
  for (const f of families) {
    L.push(`# HELP ${P}_${f.name} ${f.help}`, `# TYPE ${P}_${f.name} gauge`);
    for (const r of fleet.tenants) {
      const v = f.value(r);
      if (typeof v === "number" && Number.isFinite(v)) L.push(`${P}_${f.name}{${labels(r)}} ${v}`);
    }
  }
  L.push(`# HELP ${P}_tenants Tenants by status.`, `# TYPE ${P}_tenants gauge`);
  for (const s of ["ok", "warn", "alarm"] as Status[]) L.push(`${P}_tenants{status="${s}"} ${fleet.counts[s]}`);
  L.push(`# HELP ${P}_problems Problems of the state root not tied to a tenant.`, `# TYPE ${P}_problems gauge`, `${P}_problems ${fleet.problems.length}`);
  L.push(`# HELP ${P}_generated_timestamp_seconds When the ledger was aggregated.`, `# TYPE ${P}_generated_timestamp_seconds gauge`, `${P}_generated_timestamp_seconds ${epochS(fleet.generated)}`);
  return `${L.join("\n")}\n`;
}

/** Markdown table cell: no HTML, no table breaks, no line breaks, no link or emphasis syntax. */
export function mdCell(s: string): string {
  return s
    .replace(/[\u0000-\u001f\u007f]/g, " ")
    .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
    .replace(/([\\`*_[\]|!#~])/g, "\\$1");
}

export const human = {
  age(s: number | null | undefined): string {
    if (s === null || s === undefined) return "-";
    if (s >= 2 * 86400) return `${(s / 86400).toFixed(1)} d`;
    if (s >= 3600) return `${(s / 3600).toFixed(1)} h`;
    return `${Math.round(s / 60)} min`;
  },
  bytes(b: number | null | undefined): string {
    if (b === null || b === undefined) return "-";
    const sign = b < 0 ? "-" : "";
    let v = Math.abs(b);
    for (const unit of ["B", "KiB", "MiB", "GiB", "TiB"]) {
      if (v < 1024 || unit === "TiB") return `${sign}${unit === "B" ? v : v.toFixed(1)} ${unit}`;
      v /= 1024;
    }
    return `${b} B`;
  },
};

const ORDER: Record<Status, number> = { alarm: 0, warn: 1, ok: 2 };
export const worstFirst = (rows: FleetRow[]): FleetRow[] => [...rows].sort((a, b) => ORDER[a.status] - ORDER[b.status] || (a.tenant < b.tenant ? -1 : 1));

export function renderSummary(fleet: Fleet): string {
  const c = fleet.counts;
  const L = [
    `## Fleet recoverability ledger (${mdCell(fleet.generated)})`,
    "",
    `${fleet.tenants.length} tenant(s): **${c.alarm} alarm**, ${c.warn} warn, ${c.ok} ok. Drill rota: ${fleet.drillPlan.budgetPerRun} per run every ${fleet.drillPlan.runIntervalDays} d, every tenant within ${fleet.drillPlan.daysToDrillAll} d${fleet.drillPlan.withinPeriod ? "" : ` (**above the ${fleet.drillPlan.periodDays} d period**: raise the budget)`}.`,
    "",
    "| status | tenant | box | newest archive age | tamper | last drill | data-loss window | restore | repo size | growth 7 d | unclassified | shrink | pins | next drill by | why |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
  ];
  for (const r of worstFirst(fleet.tenants)) {
    const d = r.lastDrill;
    const cells = [
      r.status === "alarm" ? "**ALARM**" : r.status,
      r.tenant, r.box,
      r.newestArchive ? human.age(r.newestArchive.ageSeconds) + (r.stale ? " (stale)" : "") : "none",
      r.tamper?.verdict ?? "never",
      d ? `${d.time.slice(0, 10)} ${d.healthy ? "healthy" : "UNHEALTHY"}` : "never",
      human.age(d?.dataLossWindowSeconds), human.age(d?.restoreSeconds),
      human.bytes(r.repo?.uniqueCsize), human.bytes(r.repo?.growth7dBytes),
      r.unclassified ? String(r.unclassified.count) : "-",
      r.shrink?.verdict ?? "-",
      String(r.pins.length),
      r.nextDrill ? `${r.nextDrill.by.slice(0, 10)}${r.nextDrill.overdue ? " (overdue)" : ""}` : "-",
      r.reasons.map((x) => x.text).join("; ") || "-",
    ];
    L.push(`| ${cells.map((x, i) => (i === 0 && x.startsWith("**") ? x : mdCell(x))).join(" | ")} |`);
  }
  if (fleet.problems.length > 0) {
    L.push("", "State root problems:", "");
    for (const p of fleet.problems) L.push(`- ${mdCell(p)}`);
  }
  return `${L.join("\n")}\n`;
}
