// The drill report: what a restore drill proved, as one JSON document. scripts/agent-drill writes
// it on the restore box; the local drill and the cloud drill stack read it through this schema, so
// both report the same fields.
import { z } from "zod";
import { valuePatterns } from "../config/patterns";

/** One thing the drill checked, with its outcome and a short human-readable detail. */
export const drillCheckSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9:._-]*$/),
    ok: z.boolean(),
    detail: z.string(),
  })
  .strict();

const seconds = z.number().finite().nonnegative();

/** The agent whose own checks decided that the restored home is healthy, and its version. */
export const drillAgentSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/),
    version: z.string().regex(/^[0-9A-Za-z][0-9A-Za-z.+-]{0,39}$/),
  })
  .strict();

export const drillReportSchema = z
  .object({
    tenant: z.string().regex(valuePatterns.tenant),
    /** The restored archive's name, `<tenant>-<UTC timestamp>`. */
    archive: z.string().regex(valuePatterns.archive_name),
    /** Seconds between the archive's end and the start of the drill: how much would be lost. */
    archiveAgeSeconds: seconds,
    /** Original (uncompressed) size of the archive's files, as borg counts them. */
    bytes: z.number().int().nonnegative(),
    /** How long the backup that made this archive took (borg's archive duration). */
    backupSeconds: seconds,
    /** How long the restore took: agent-restore, start to finish. */
    restoreSeconds: seconds,
    checks: z.array(drillCheckSchema).min(1),
    /** True only when every check is ok. */
    healthy: z.boolean(),
    /**
     * The agent whose own checks decided: agent-drill names the installed agent (`none` on a box
     * without one); the local drill names the agent it started (the real one or its stand-in).
     */
    agent: drillAgentSchema,
    startedAt: z.iso.datetime({ offset: true }),
    finishedAt: z.iso.datetime({ offset: true }),
  })
  .strict()
  .refine((r) => r.healthy === r.checks.every((c) => c.ok), {
    message: "healthy must be true exactly when every check is ok",
    path: ["healthy"],
  })
  .refine((r) => Date.parse(r.finishedAt) >= Date.parse(r.startedAt), {
    message: "finishedAt is before startedAt",
    path: ["finishedAt"],
  });

export type DrillCheck = z.infer<typeof drillCheckSchema>;
export type DrillAgent = z.infer<typeof drillAgentSchema>;
export type DrillReport = z.infer<typeof drillReportSchema>;

/** The report's field names, for docs and tests that list them. */
export const drillReportFields = Object.keys(drillReportSchema.shape) as (keyof DrillReport)[];

/** Parse a report (e.g. agent-drill's stdout); throws with every problem listed. */
export function parseDrillReport(json: string): DrillReport {
  let data: unknown;
  try {
    data = JSON.parse(json);
  } catch (err) {
    throw new Error(`drill report is not JSON: ${(err as Error).message}`);
  }
  const result = drillReportSchema.safeParse(data);
  if (!result.success) throw new Error(`drill report is invalid: ${z.prettifyError(result.error)}`);
  return result.data;
}
