// The drill stack's config: schema, defaults and validation. Everything is checked here, before any
// resource exists, and every problem is reported at once, one line each, naming the key.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { agentHealthCheck, drillCommand } from "../components/drill-command";
import { awsRegionPattern, ConfigError, configNamespace, formatIssues, patterned } from "./common";
import { matchesPattern } from "./patterns";

/**
 * At most this many tenants on one box: each restores in turn, and all of them must finish within
 * the box's time to live (24 hours at most).
 */
export const maxTenantsPerBox = 25;

/** Where each tenant's report is written where `pulumi up` runs: <reportDir>/<tenant>.json. */
export const defaultReportDir = "drill-reports";
export function reportFileOf(reportDir: string, tenant: string): string {
  return `${reportDir}/${tenant}.json`;
}

/** Problems with an IPv4 CIDR, or [] when it is a usable SSH source range. */
export function cidrProblems(cidr: string): string[] {
  const m = /^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\/([0-9]{1,2})$/.exec(cidr);
  if (!m) return [`refusing ${JSON.stringify(cidr)}: not an IPv4 CIDR such as 203.0.113.7/32`];
  const octets = m.slice(1, 5).map(Number);
  const prefix = Number(m[5]);
  if (octets.some((o) => o > 255)) return [`refusing ${JSON.stringify(cidr)}: an octet is above 255`];
  if (prefix > 32) return [`refusing ${JSON.stringify(cidr)}: prefix /${prefix} is above /32`];
  // The box holds a tenant's decrypted home: never open SSH to the whole internet.
  if (prefix === 0) return [`refusing ${JSON.stringify(cidr)}: SSH open to the whole internet; use your own address, e.g. <ip>/32`];
  const address = octets.reduce((acc, o) => acc * 256 + o, 0);
  const hostBits = 2 ** (32 - prefix);
  if (address % hostBits !== 0) {
    const network = address - (address % hostBits);
    const dotted = [24, 16, 8, 0].map((s) => Math.floor(network / 2 ** s) % 256).join(".");
    return [`refusing ${JSON.stringify(cidr)}: host bits are set; did you mean ${dotted}/${prefix}?`];
  }
  return [];
}

/** True when agent-drill would accept the health command (drillCommand owns that pattern). */
function isAcceptedAgentCheck(agentCheck: string): boolean {
  try {
    drillCommand({
      repoUrl: "ssh://probe@probe.invalid:23/./borg",
      sshKeyFile: "/probe",
      knownHostsFile: "/probe",
      passphraseFile: "/probe",
      tenant: "probe",
      target: "/probe",
      reportFile: "/probe",
      agentCheck,
    });
    return true;
  } catch {
    return false;
  }
}

const wholeNumber = (what: string, min: number, max: number, fallback: number) =>
  z.preprocess(
    // Pulumi hands every config value over as a string.
    (v) => (typeof v === "string" && /^[0-9]+$/.test(v) ? Number(v) : v),
    z.number({ error: `expected a whole number of ${what}` }).int(`expected a whole number of ${what}`)
      .min(min, `at least ${min} ${what}`).max(max, `at most ${max} ${what}`),
  ).default(fallback);

/** Pulumi hands a structured value (a YAML list in the stack file) over as its JSON text. */
const fromJsonList = (v: unknown) => {
  if (typeof v !== "string" || !v.trimStart().startsWith("[")) return v;
  try {
    return JSON.parse(v) as unknown;
  } catch {
    return v;
  }
};

/** One entry per stack key `agent-backups:<key>` of Pulumi.drill.yaml. */
export const drillConfigObject = z.strictObject({
  /** The prod stack whose outputs name the tenants' repositories and drill access: org/project/stack. */
  prodStack: z.string({ error: "required: the prod stack to read, as org/project/stack" })
    .regex(/^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/,
      "expected org/project/stack, e.g. acme/agent-backups/prod"),
  /** The tenants to restore, one after another on one box, one report each. */
  tenants: z.preprocess(fromJsonList, z.array(patterned("tenant", "tenant"), { error: "expected a list of tenant names, e.g. [acme, globex]" })
    .min(1, "at least one tenant")
    .max(maxTenantsPerBox, `at most ${maxTenantsPerBox} tenants on one box (run several drills)`)
    .refine((list) => new Set(list).size === list.length, "a tenant is listed twice")).optional(),
  /** One tenant to restore: the same as tenants: [name] (the single-tenant form of earlier stacks). */
  tenant: patterned("tenant", "tenant").optional(),
  /** Archive to restore: a name from `borg list` (one tenant only), or latest. */
  archive: z.union([z.literal("latest"), patterned("archive_name", "archive")]).default("latest"),
  /** AWS region of the drill box. */
  region: z.string({ error: "required: the AWS region of the drill box" })
    .regex(awsRegionPattern, "an AWS region such as eu-central-1"),
  instanceType: z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, "an EC2 instance type such as t3.small").default("t3.small"),
  /** CPU architecture of the image; must match instanceType (arm64 for Graviton types such as t4g). */
  architecture: z.enum(["x86_64", "arm64"]).default("x86_64"),
  /** A fixed image; by default the newest official Debian 12 image is looked up. */
  imageId: z.string().regex(/^ami-([0-9a-f]{8}|[0-9a-f]{17})$/, "an AMI id such as ami-0123456789abcdef0").optional(),
  /**
   * A subnet for the box (with a route to the internet); the box and its security group go into
   * its VPC. Unset: the region's default VPC, and a clear error when the region has none.
   */
  subnetId: z.string().regex(/^subnet-([0-9a-f]{8}|[0-9a-f]{17})$/, "a subnet id such as subnet-0123456789abcdef0").optional(),
  /** The only source allowed to reach the box over SSH (where `pulumi up` runs). */
  sshCidr: z.string({ error: "required: the CIDR allowed to reach the box over SSH, e.g. <your ip>/32" })
    .superRefine((v, ctx) => {
      for (const message of cidrProblems(v)) ctx.addIssue({ code: "custom", message });
    }),
  /** Hours until the box powers itself off and is terminated. */
  ttlHours: wholeNumber("hours", 1, 24, 4),
  /** Size of the encrypted root volume; the restored homes land there. */
  rootVolumeGiB: wholeNumber("GiB", 8, 1024, 16),
  /**
   * The health command agent-verify runs on each restored home. Default: the agent's own checks
   * (scripts/agent-check-hermes), the same command the local drill runs.
   */
  agentCheck: z.string().refine(isAcceptedAgentCheck, {
    error: (iss) => `refusing ${JSON.stringify(iss.input)}: words of [A-Za-z0-9._/:=-] separated by single spaces, no quotes or shell syntax`,
  }).default(agentHealthCheck),
  /** Where `pulumi up` writes the reports on the machine running it, <reportDir>/<tenant>.json (CI uploads them). */
  reportDir: z.string().refine((v) => matchesPattern("rel_path", v) || matchesPattern("abs_path", v), {
    error: (iss) => `refusing ${JSON.stringify(iss.input)}: not a valid rel_path or abs_path (letters, digits, ._- and /)`,
  }).default(defaultReportDir),
});

/** The validated config: `tenant` folded into `tenants`. */
export const drillConfigSchema = drillConfigObject
  .superRefine((c, ctx) => {
    if (c.tenant !== undefined && c.tenants !== undefined) {
      ctx.addIssue({ code: "custom", path: ["tenants"], message: "set tenants or tenant, not both (tenant: x is tenants: [x])" });
    } else if (c.tenant === undefined && c.tenants === undefined) {
      ctx.addIssue({ code: "custom", path: ["tenants"], message: "required: the tenants to restore, e.g. [acme, globex] (or tenant: acme)" });
    }
    const count = Array.isArray(c.tenants) ? c.tenants.length : 1;
    if (typeof c.archive === "string" && c.archive !== "latest" && count !== 1) {
      ctx.addIssue({ code: "custom", path: ["archive"], message: "a named archive belongs to one tenant: list exactly one tenant, or use latest" });
    }
  }, {
    // Also when other keys are bad, so that every problem is named at once (values may be unparsed).
    when: (payload) => typeof payload.value === "object" && payload.value !== null,
  })
  .transform(({ tenant, tenants, ...rest }) => ({ ...rest, tenants: tenants ?? (tenant === undefined ? [] : [tenant]) }));

export type DrillConfig = z.infer<typeof drillConfigSchema>;
export const drillConfigKeys = Object.keys(drillConfigObject.shape) as (keyof typeof drillConfigObject.shape)[];

/**
 * Validates the raw stack values (`agent-backups:<key>` without the namespace); throws ConfigError
 * listing every problem, unknown keys included. Pure: used by tests.
 */
export function parseDrillConfig(raw: Record<string, unknown>): DrillConfig {
  const result = drillConfigSchema.safeParse(raw);
  if (!result.success) {
    // Drill keys are top-level: the first path element is the stack key, the rest the field.
    throw new ConfigError(result.error.issues.flatMap((iss) => {
      const [key, ...rest] = iss.path;
      if (key === undefined && iss.code === "unrecognized_keys") {
        return iss.keys.map((k) => `${configNamespace}:${k}: unknown key (a typo? known: ${drillConfigKeys.join(", ")})`);
      }
      return formatIssues(String(key), [{ ...iss, path: rest }]);
    }));
  }
  return result.data;
}

/** Reads every `agent-backups:*` key of the drill stack and validates it. */
export function loadDrillConfig(): DrillConfig {
  const prefix = `${configNamespace}:`;
  const raw: Record<string, unknown> = {};
  for (const [fullKey, value] of Object.entries(pulumi.runtime.allConfig())) {
    if (fullKey.startsWith(prefix)) raw[fullKey.slice(prefix.length)] = value;
  }
  return parseDrillConfig(raw);
}
