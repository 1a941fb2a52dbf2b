// The local drill's JSON document: one drill report per tenant (components/drill-report.ts, the
// same fields as the cloud drill's, with the local drill's own checks added to each tenant's
// list), plus the run's own checks (snapshot, teardown) and timings.
import { z } from "zod";
import { drillCheckSchema, drillReportSchema, type DrillAgent, type DrillCheck, type DrillReport } from "../../components/drill-report";

export const scenarios = ["standard", "compromised-host"] as const;
export type Scenario = (typeof scenarios)[number];

export const localDrillReportSchema = z
  .object({
    runId: z.string().regex(/^[0-9a-f]{6}$/),
    scenario: z.enum(scenarios),
    tenants: z.array(drillReportSchema),
    /** Checks of the run as a whole (not of one tenant): e.g. teardown. */
    checks: z.array(drillCheckSchema),
    healthy: z.boolean(),
    /** Set when the drill stopped early; what went wrong. */
    error: z.string().optional(),
    /** Seconds per step, in the order they ran. */
    steps: z.array(z.object({ step: z.string(), seconds: z.number().nonnegative() }).strict()),
    wallSeconds: z.number().nonnegative(),
    startedAt: z.iso.datetime({ offset: true }),
    finishedAt: z.iso.datetime({ offset: true }),
  })
  .strict()
  .refine(
    (r) => r.healthy === (r.error === undefined && r.tenants.length > 0 && r.tenants.every((t) => t.healthy) && r.checks.every((c) => c.ok)),
    { message: "healthy must hold exactly when there is no error, every tenant is healthy and every run check is ok", path: ["healthy"] },
  );

export type LocalDrillReport = z.infer<typeof localDrillReportSchema>;

/** A tenant's agent-drill report with the local drill's checks before and after its own (and the agent it ran). */
export function withChecks(report: DrillReport, before: DrillCheck[], after: DrillCheck[], agent?: DrillAgent): DrillReport {
  const checks = [...before, ...report.checks, ...after];
  return drillReportSchema.parse({ ...report, checks, healthy: checks.every((c) => c.ok), ...(agent ? { agent } : {}) });
}

/** The closing summary for people (stderr); the JSON goes to stdout. */
export function summaryLines(r: LocalDrillReport): string[] {
  const lines = [`drill ${r.runId} (${r.scenario}): ${r.healthy ? "HEALTHY" : "NOT HEALTHY"} in ${r.wallSeconds.toFixed(1)}s`];
  for (const t of r.tenants) {
    lines.push(`  ${t.tenant}: ${t.agent ? `agent ${t.agent.name} ${t.agent.version}, ` : ""}archive ${t.archive} (${t.archiveAgeSeconds}s old, ${t.bytes} bytes), backup ${t.backupSeconds.toFixed(1)}s, restore ${t.restoreSeconds.toFixed(1)}s: ${t.healthy ? "healthy" : "NOT healthy"}`);
    for (const c of t.checks) lines.push(`    ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  }
  for (const c of r.checks) lines.push(`  ${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  if (r.error) lines.push(`  error: ${r.error}`);
  return lines;
}
