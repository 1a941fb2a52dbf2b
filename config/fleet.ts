// The fleet aggregator's config (tools/fleet.ts): which tenants to expect, on which box, how often
// each backs up, the thresholds that make a tenant warn or alarm, the drill rota, and where alarms
// go. Validated here, in one place; every problem is reported at once, one line each. Alarm URLs
// carry tokens: the file names the environment variables that hold them, never the URLs.
import * as fs from "node:fs";
import { z } from "zod";
import { matchesPattern } from "./patterns";

/** Tenant and box names follow the strict tenant pattern (they become paths, labels and URL parts). */
const strictName = (what: string) => z.string().max(32).refine((v) => matchesPattern("tenant", v), {
  error: (iss) => `refusing ${JSON.stringify(String(iss.input).slice(0, 40))}: not a valid ${what}`,
});
const tenantName = strictName("tenant name");
const boxName = strictName("box name");
const seconds = (min: number, max: number) => z.number().int().min(min).max(max);

/** Per-tenant limits, as a tenant may override them (no defaults here: unset means the fleet's). */
const thresholdFields = {
  /** A last drill older than this many days (or unhealthy) alarms: a drill proves restore. */
  drillMaxAgeDays: z.number().int().min(1).max(3650),
  /** More unclassified paths than this in the newest archive alarms (the rules miss new data). */
  unclassifiedMax: z.number().int().min(0).max(1_000_000),
  /** A ledger not rewritten for this long warns: the maintenance job stopped reporting. */
  ledgerMaxAgeSeconds: seconds(3600, 90 * 86400),
  /** A data-loss window (archive age at the drill) above this warns; unset: not checked. */
  dataLossWindowMaxSeconds: seconds(60, 365 * 86400),
};
const tenantThresholdsSchema = z.object(thresholdFields).partial().strict();

/** The fleet's defaults; explained in docs/FLEET.md. */
export const thresholdsSchema = z.object({
  drillMaxAgeDays: thresholdFields.drillMaxAgeDays.default(45),
  unclassifiedMax: thresholdFields.unclassifiedMax.default(0),
  ledgerMaxAgeSeconds: thresholdFields.ledgerMaxAgeSeconds.default(2 * 86400 + 6 * 3600),
  dataLossWindowMaxSeconds: thresholdFields.dataLossWindowMaxSeconds.optional(),
}).strict();
export type Thresholds = z.infer<typeof thresholdsSchema>;

const tenantSchema = z.object({
  name: tenantName,
  box: boxName,
  /** Expected seconds between two backups (the host timer's interval). */
  schedule: seconds(60, 31 * 86400),
  /** Slack on top of the schedule before the newest archive counts as stale. */
  grace: seconds(0, 31 * 86400),
  thresholds: tenantThresholdsSchema.optional(),
}).strict();

const envName = z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/, "an environment variable name such as FLEET_SLACK_URL");
const channel = z.object({ urlEnv: envName }).strict();

export const fleetConfigSchema = z.object({
  format: z.literal(1),
  /** Storage boxes and how many connections each accepts (bounds --scan's concurrency per box). */
  boxes: z.array(z.object({ name: boxName, connections: z.number().int().min(1).max(64) }).strict()).min(1).max(100),
  tenants: z.array(tenantSchema).min(1).max(10_000),
  thresholds: thresholdsSchema.default(thresholdsSchema.parse({})),
  drill: z.object({
    /** Every tenant should be drilled at least this often. */
    periodDays: z.number().int().min(1).max(3650),
    /** Tenants restored per drill run (one disposable box restores them in sequence). */
    budgetPerRun: z.number().int().min(1).max(1000),
    /** Days between two drill runs (the drill workflow's schedule: monthly). */
    runIntervalDays: z.number().int().min(1).max(365).default(30),
  }).strict(),
  alarms: z.object({
    slack: channel.optional(),
    ntfy: channel.optional(),
    /** A healthchecks-style base URL (with its ping key); each tenant pings BASE/<tenant>[/fail]. */
    healthchecks: channel.optional(),
    timeoutSeconds: z.number().int().min(1).max(60).default(10),
  }).strict().default({ timeoutSeconds: 10 }),
  /** A Pushgateway for fleet.prom (its URL may carry credentials: from the environment too). */
  pushgateway: channel.optional(),
}).strict().superRefine((c, ctx) => {
  const boxes = new Set(c.boxes.map((b) => b.name));
  if (boxes.size !== c.boxes.length) ctx.addIssue({ code: "custom", path: ["boxes"], message: "box names must be unique" });
  const seen = new Set<string>();
  c.tenants.forEach((t, i) => {
    if (seen.has(t.name)) ctx.addIssue({ code: "custom", path: ["tenants", i, "name"], message: `tenant ${t.name} is listed twice` });
    seen.add(t.name);
    if (!boxes.has(t.box)) ctx.addIssue({ code: "custom", path: ["tenants", i, "box"], message: `box ${t.box} is not in boxes` });
  });
});
export type FleetConfig = z.infer<typeof fleetConfigSchema>;
export type FleetTenant = FleetConfig["tenants"][number];

export class FleetConfigError extends Error {}

/** Parses and validates a fleet config document; throws FleetConfigError listing every problem. */
export function parseFleetConfig(doc: unknown, source = "fleet config"): FleetConfig {
  const r = fleetConfigSchema.safeParse(doc);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => `${source}: ${i.path.length ? i.path.join(".") : "(top)"}: ${i.message}`);
  throw new FleetConfigError(lines.join("\n"));
}

/** Reads the config file (at most 4 MiB of JSON). */
export function loadFleetConfig(file: string): FleetConfig {
  const st = fs.statSync(file);
  if (!st.isFile() || st.size > 4 * 2 ** 20) throw new FleetConfigError(`${file}: not a regular file of at most 4 MiB`);
  let doc: unknown;
  try {
    doc = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new FleetConfigError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return parseFleetConfig(doc, file);
}

/** A tenant's thresholds: its own, else the fleet's defaults. */
export function thresholdsFor(config: FleetConfig, tenant: FleetTenant): Thresholds {
  const own = Object.fromEntries(Object.entries(tenant.thresholds ?? {}).filter(([, v]) => v !== undefined));
  return { ...config.thresholds, ...own };
}
