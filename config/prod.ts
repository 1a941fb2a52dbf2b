// The prod stack's config: schema, defaults and validation. Everything is checked here, before any
// resource exists, and every problem is reported at once, one line each, naming key and field.
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { awsRegionPattern, ConfigError, configNamespace, fieldPath, formatIssues, onCalendarSchema, patterned, portSchema } from "./common";
import { extraRuleClasses } from "./patterns";

/** Host keys of `*.your-storagebox.de` on port 23 (docs.hetzner.com, storage box general, SSH host keys). */
export const storageBoxHostKeys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs"];

/** Providers that are the storage provider: a backup must not live with the host it protects. */
const storageProviderNames = /hetzner|hcloud/i;
const storageProviderDomains = /(^|\.)(your-storagebox\.de|your-server\.de|hetzner\.(cloud|com|de))$/i;

/** The repository's directory inside a sub-account's home; the repo URL is `.../<this>`. */
export const repoDirName = "borg";

const snapshotSchema = z.strictObject({
  /** UTC hour of the daily snapshot. */
  hour: z.number().int().min(0).max(23),
  minute: z.number().int().min(0).max(59),
  /** Automatic snapshots kept; the box type's slot limit (10 to 40) caps it. */
  keep: z.number().int().min(1).max(40),
});

export const storageSchema = z.strictObject({
  /** Name of the Storage Box in the Hetzner Console. */
  name: patterned("tenant", "Storage Box name").default("agent-backups"),
  location: z.string().regex(/^[a-z]{3}[0-9]$/, "a Hetzner location such as fsn1, nbg1, hel1"),
  boxType: z.string().regex(/^bx[0-9]{2}$/, "a Storage Box type such as bx11, bx21"),
  snapshots: snapshotSchema,
  /** Server-side borg command pinned inside every forced command. */
  remoteBorg: patterned("borg_command", "remote borg command").default("borg-1.4"),
  /** SSH port of the box's borg service. */
  port: portSchema.default(23),
  /**
   * Absolute repository path as the box's sshd sees it, for --restrict-to-repository; a sub-account
   * sees its own home as /home. Verified once against the real box by scripts/check-storage-box.
   */
  repoPathOnBox: patterned("abs_path", "repository path on the box")
    .refine((p) => p.endsWith(`/${repoDirName}`), `must end in /${repoDirName} (the repository directory in the sub-account's home)`)
    .default("/home/borg"),
  /** The box's SSH host keys pinned in known_hosts; defaults to Hetzner's published ed25519 key. */
  hostKeys: z.array(patterned("ssh_pubkey", "host key")).min(1).default(storageBoxHostKeys),
});

const hostSchema = z
  .strictObject({
    address: patterned("hostname", "host address"),
    user: patterned("unix_user", "SSH user"),
    port: portSchema.default(22),
    /** Where the agent host runs (aws, ...); the storage provider itself is refused. */
    provider: z.string().regex(/^[a-z0-9-]{2,32}$/, "a provider name such as aws"),
    /** The agent's home directory on the host (Hermes: /home/<user>/.hermes). */
    agentHome: patterned("abs_path", "agent home"),
    /**
     * The host's own SSH host key, pinned for Pulumi's connection. Required: without it the
     * command provider does not check who answers, and it sends the push key and the passphrase.
     */
    hostKey: z
      .string({ error: "required: the agent host's own SSH host key (ssh-ed25519 AAAA...), read on the host itself (README, Operator guide: reading a host's key)" })
      .pipe(patterned("ssh_pubkey", "host key of the agent host")),
    /** Prometheus textfile collector directory on the host. */
    metricsDir: patterned("abs_path", "metrics directory").optional(),
  })
  .superRefine((h, ctx) => {
    if (storageProviderNames.test(h.provider)) {
      ctx.addIssue({ code: "custom", path: ["provider"], message: `host runs at ${JSON.stringify(h.provider)}, the storage provider: backups must live at a different provider` });
    }
    if (storageProviderDomains.test(h.address)) {
      ctx.addIssue({ code: "custom", path: ["address"], message: `${h.address} is a Hetzner address, the storage provider: backups must live at a different provider` });
    }
  });

const retentionSchema = z.strictObject({
  daily: z.number().int().min(0).max(366).default(7),
  weekly: z.number().int().min(0).max(520).default(4),
  monthly: z.number().int().min(0).max(240).default(6),
});

const rulesGlob = patterned("rules_glob", "backup-set glob").refine((g) => !g.split("/").some((c) => c === "." || c === ".."), {
  message: "a glob names no . or .. component",
});

const tenantSchema = z.strictObject({
  name: patterned("tenant", "tenant name"),
  host: hostSchema,
  /** systemd OnCalendar of the backup timer. */
  schedule: onCalendarSchema.default("hourly"),
  retention: retentionSchema.default({ daily: 7, weekly: 4, monthly: 6 }),
  healthcheckUrl: patterned("url", "healthcheck URL").optional(),
  /**
   * The tenant's own backup-set rules: globs (relative to the home and each profile) per class,
   * read on the host before scripts/backup-set.rules. How an operator classifies a path that
   * agent-backup reports as unclassified (docs/BACKUP-SET.md).
   */
  extraRules: z
    .strictObject(Object.fromEntries(extraRuleClasses.map((c) => [c, z.array(rulesGlob).max(200).optional()])) as Record<(typeof extraRuleClasses)[number], z.ZodOptional<z.ZodArray<typeof rulesGlob>>>)
    .optional(),
});

export const tenantsSchema = z
  .array(tenantSchema)
  .min(1, "at least one tenant")
  .superRefine((tenants, ctx) => {
    const seen = new Map<string, number>();
    tenants.forEach((t, i) => {
      const first = seen.get(t.name);
      if (first !== undefined) ctx.addIssue({ code: "custom", path: [i, "name"], message: `duplicate tenant name ${JSON.stringify(t.name)} (also tenants[${first}])` });
      else seen.set(t.name, i);
    });
  });

export const vaultSchema = z.strictObject({
  /** Second AWS region the recovery material is replicated to. */
  replicaRegion: z.string().regex(awsRegionPattern, "an AWS region such as eu-west-1"),
  /** Prefix of the Secrets Manager secret names; the tenant name follows. */
  namePrefix: z.string().regex(/^[A-Za-z0-9/_+=.@-]{1,64}$/, "letters, digits and /_+=.@-").default("agent-backups/"),
});

export type StorageConfig = z.infer<typeof storageSchema>;
export type TenantConfig = z.infer<typeof tenantSchema>;
export type VaultConfig = z.infer<typeof vaultSchema>;

/** The validated prod config; host private keys stay secret Outputs. */
export interface ProdConfig {
  storage: StorageConfig;
  tenants: TenantConfig[];
  vault: VaultConfig;
  /** Per tenant, the private key Pulumi connects to the agent host with (secret). */
  hostPrivateKeys: Record<string, pulumi.Output<string>>;
}

/** The raw values of the stack keys, as parsed from Pulumi.<stack>.yaml. */
export interface RawProdConfig {
  storage: unknown;
  tenants: unknown;
  vault: unknown;
  /** `agent-backups:hostPrivateKeys`, a secret object { tenant: OpenSSH private key }. */
  hostPrivateKeys: unknown;
  /** `aws:region`, the vault's primary region (the replica must differ). */
  awsRegion?: string | undefined;
}

const privateKeyPattern = /^-----BEGIN OPENSSH PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END OPENSSH PRIVATE KEY-----\n?$/;

/** Problems with the secret host keys; never quotes a value. */
function hostKeyProblems(raw: unknown, tenantNames: string[]): string[] {
  const key = "hostPrivateKeys";
  if (raw === undefined) return [`${fieldPath(key, [])}: required secret is missing (set it with: pulumi config set --secret --path '${key}.<tenant>' < key)`];
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return [`${fieldPath(key, [])}: expected an object { tenant: private key }`];
  const problems: string[] = [];
  const keys = raw as Record<string, unknown>;
  for (const t of tenantNames) {
    const v = keys[t];
    if (v === undefined) problems.push(`${fieldPath(key, [t])}: required secret is missing (the private key Pulumi connects to the host with)`);
    else if (typeof v !== "string" || !privateKeyPattern.test(v)) problems.push(`${fieldPath(key, [t])}: not an OpenSSH private key (value not shown)`);
  }
  for (const t of Object.keys(keys)) {
    if (!tenantNames.includes(t)) problems.push(`${fieldPath(key, [t])}: no tenant of that name`);
  }
  return problems;
}

/** Validates the raw config values; throws ConfigError listing every problem. Pure: used by tests. */
export function parseProdConfig(raw: RawProdConfig): Omit<ProdConfig, "hostPrivateKeys"> {
  const storage = storageSchema.safeParse(raw.storage ?? undefined);
  const tenants = tenantsSchema.safeParse(raw.tenants);
  const vault = vaultSchema.safeParse(raw.vault);
  const problems = [
    ...(storage.success ? [] : formatIssues("storage", storage.error.issues)),
    ...(tenants.success ? [] : formatIssues("tenants", tenants.error.issues)),
    ...(vault.success ? [] : formatIssues("vault", vault.error.issues)),
  ];
  if (vault.success && raw.awsRegion !== undefined && raw.awsRegion === vault.data.replicaRegion) {
    problems.push(`${fieldPath("vault", ["replicaRegion"])}: same as aws:region ${raw.awsRegion}; the replica must be in a second region`);
  }
  const names = Array.isArray(raw.tenants)
    ? raw.tenants.map((t: unknown) => (t && typeof t === "object" ? (t as { name?: unknown }).name : undefined)).filter((n): n is string => typeof n === "string")
    : [];
  problems.push(...hostKeyProblems(raw.hostPrivateKeys, [...new Set(names)]));
  if (problems.length > 0 || !storage.success || !tenants.success || !vault.success) throw new ConfigError(problems);
  return { storage: storage.data, tenants: tenants.data, vault: vault.data };
}

/** What a Storage Box type allows (hcloud.getStorageBoxType), as far as the config must fit in it. */
export interface BoxTypeLimits {
  /** Automatic snapshots the snapshot plan may keep. */
  automaticSnapshotLimit: number;
  /** Sub-accounts the box may have: one per tenant. */
  subaccountsLimit: number;
}

/**
 * Problems of a valid config against its box type's limits, one line each naming the key, or [].
 * Checked before any resource exists: the API would refuse the plan or a sub-account only halfway
 * through an update.
 */
export function boxLimitProblems(config: Pick<ProdConfig, "storage" | "tenants">, limits: BoxTypeLimits): string[] {
  const problems: string[] = [];
  const { boxType, snapshots } = config.storage;
  if (!Number.isInteger(limits.automaticSnapshotLimit) || !Number.isInteger(limits.subaccountsLimit)) {
    return [`${fieldPath("storage", ["boxType"])}: the API gave no limits for box type ${boxType}`];
  }
  if (snapshots.keep > limits.automaticSnapshotLimit) {
    problems.push(`${fieldPath("storage", ["snapshots", "keep"])}: ${snapshots.keep} automatic snapshots, but box type ${boxType} keeps at most ${limits.automaticSnapshotLimit}`);
  }
  if (config.tenants.length > limits.subaccountsLimit) {
    problems.push(`${fieldPath("tenants", [])}: ${config.tenants.length} tenants need as many sub-accounts, but box type ${boxType} allows at most ${limits.subaccountsLimit}`);
  }
  return problems;
}

function parseJsonKey(key: string): unknown {
  const text = pulumi.runtime.getConfig(`${configNamespace}:${key}`);
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch {
    // A plain string value (not an object) is still reported by the schema as the wrong type.
    return text;
  }
}

/**
 * Reads and validates the prod stack's config. Secrets: the host private keys are validated from
 * the raw config (never printed) and then read with requireSecretObject, so they stay secret.
 */
export function loadProdConfig(): ProdConfig {
  const parsed = parseProdConfig({
    storage: parseJsonKey("storage"),
    tenants: parseJsonKey("tenants"),
    vault: parseJsonKey("vault"),
    hostPrivateKeys: parseJsonKey("hostPrivateKeys"),
    awsRegion: pulumi.runtime.getConfig("aws:region"),
  });
  const secretKeys = new pulumi.Config(configNamespace).requireSecretObject<Record<string, string>>("hostPrivateKeys");
  const hostPrivateKeys = Object.fromEntries(parsed.tenants.map((t) => [t.name, secretKeys.apply((k) => k[t.name] as string)]));
  return { ...parsed, hostPrivateKeys };
}
