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

/** One Storage Box of the fleet. Its name is its identity in the stack: never rename a box. */
const boxSchema = z.strictObject({
  /** Name of the Storage Box in the Hetzner Console; tenants name their box by it. */
  name: patterned("tenant", "Storage Box name"),
  location: z.string().regex(/^[a-z]{3}[0-9]$/, "a Hetzner location such as fsn1, nbg1, hel1"),
  boxType: z.string().regex(/^bx[0-9]{2}$/, "a Storage Box type such as bx11, bx21"),
  snapshots: snapshotSchema,
});

export const storageSchema = z.strictObject({
  /**
   * The fleet's Storage Boxes. Each tenant names its box (tenants[].box): adding a box or a tenant
   * never moves anyone, and a box's snapshot rollback only ever touches the tenants on that box.
   */
  boxes: z
    .array(boxSchema)
    .min(1, "at least one Storage Box")
    .max(100)
    .superRefine((boxes, ctx) => {
      const seen = new Map<string, number>();
      boxes.forEach((b, i) => {
        const first = seen.get(b.name);
        if (first !== undefined) ctx.addIssue({ code: "custom", path: [i, "name"], message: `duplicate box name ${JSON.stringify(b.name)} (also boxes[${first}])` });
        else seen.set(b.name, i);
      });
    }),
  /** Server-side borg command pinned inside every forced command. */
  remoteBorg: patterned("borg_command", "remote borg command").default("borg-1.4"),
  /** SSH port of the boxes' borg service. */
  port: portSchema.default(23),
  /**
   * Absolute repository path as the box's sshd sees it, for --restrict-to-repository; a sub-account
   * sees its own home as /home. Verified once against the real box by scripts/check-storage-box.
   */
  repoPathOnBox: patterned("abs_path", "repository path on the box")
    .refine((p) => p.endsWith(`/${repoDirName}`), `must end in /${repoDirName} (the repository directory in the sub-account's home)`)
    .default("/home/borg"),
  /** The boxes' SSH host keys pinned in known_hosts; defaults to Hetzner's published ed25519 key. */
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

/** A repository generation: 1 for a tenant's first repository, one more for each rekey. */
const generationSchema = z.number().int().min(1).max(9999);

/** A repository of a tenant: the box it lives on and its generation. */
const repoIdSchema = z.strictObject({
  box: patterned("tenant", "box name"),
  generation: generationSchema,
});

const tenantSchema = z.strictObject({
  name: patterned("tenant", "tenant name"),
  /** The Storage Box of the tenant's current repository (storage.boxes[].name). Explicit, never derived. */
  box: z
    .string({ error: "required: the name of the tenant's Storage Box (one of agent-backups:storage.boxes[].name)" })
    .pipe(patterned("tenant", "box name")),
  /**
   * The current repository's generation. Raising it (a rekey after a compromise) makes a new
   * repository: new sub-account, keys, passphrase and borg key material. List the old one in retired.
   */
  generation: generationSchema.default(1),
  /**
   * Earlier repositories kept frozen: sub-account and repository stay, only the maintenance key
   * can reach them (so retention ages them out). Removing an entry is the operator's decision.
   */
  retired: z.array(repoIdSchema).max(20).default([]),
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
      // Each (box, generation) names one repository of the tenant: never two at once.
      const repos = new Map<string, string>([[repoIdKey(t), "the current repository"]]);
      t.retired.forEach((r, j) => {
        const other = repos.get(repoIdKey(r));
        if (other !== undefined) ctx.addIssue({ code: "custom", path: [i, "retired", j], message: `box ${JSON.stringify(r.box)} generation ${r.generation} is already ${other}` });
        else repos.set(repoIdKey(r), `retired[${j}]`);
        // Going back would make a retired (perhaps compromised) repository current again.
        if (r.box === t.box && r.generation > t.generation) {
          ctx.addIssue({ code: "custom", path: [i, "generation"], message: `generation ${t.generation} on box ${JSON.stringify(t.box)} is below retired generation ${r.generation} there: a generation never goes back (use ${r.generation + 1} or more)` });
        }
      });
    });
  });

/** A repository's identity as text, for comparisons. */
function repoIdKey(r: { box: string; generation: number }): string {
  return `${r.box}/${r.generation}`;
}

export const vaultSchema = z.strictObject({
  /** Second AWS region the recovery material is replicated to. */
  replicaRegion: z.string().regex(awsRegionPattern, "an AWS region such as eu-west-1"),
  /** Prefix of the Secrets Manager secret names; the tenant name follows. */
  namePrefix: z.string().regex(/^[A-Za-z0-9/_+=.@-]{1,64}$/, "letters, digits and /_+=.@-").default("agent-backups/"),
});

export type StorageConfig = z.infer<typeof storageSchema>;
export type BoxConfig = z.infer<typeof boxSchema>;
export type RepoId = z.infer<typeof repoIdSchema>;
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

/** Every box a tenant names (current or retired) must be one of storage.boxes. */
function boxReferenceProblems(storage: StorageConfig, tenants: TenantConfig[]): string[] {
  const known = storage.boxes.map((b) => b.name);
  const problem = (path: PropertyKey[], box: string) =>
    `${fieldPath("tenants", path)}: no box named ${JSON.stringify(box)} in agent-backups:storage.boxes (boxes: ${known.join(", ")})`;
  return tenants.flatMap((t, i) => [
    ...(known.includes(t.box) ? [] : [problem([i, "box"], t.box)]),
    ...t.retired.flatMap((r, j) => (known.includes(r.box) ? [] : [problem([i, "retired", j, "box"], r.box)])),
  ]);
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
  if (storage.success && tenants.success) problems.push(...boxReferenceProblems(storage.data, tenants.data));
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

/** The repositories (sub-accounts) on each box: every tenant's current one and its retired ones. */
export function repositoriesByBox(tenants: readonly TenantConfig[]): Map<string, { tenant: string; box: string; generation: number; retired: boolean }[]> {
  const byBox = new Map<string, { tenant: string; box: string; generation: number; retired: boolean }[]>();
  const add = (tenant: string, r: RepoId, retired: boolean) => byBox.set(r.box, [...(byBox.get(r.box) ?? []), { tenant, box: r.box, generation: r.generation, retired }]);
  for (const t of tenants) {
    add(t.name, { box: t.box, generation: t.generation }, false);
    for (const r of t.retired) add(t.name, r, true);
  }
  return byBox;
}

/**
 * Problems of a valid config against each box's type limits, one line each naming the box, or [].
 * Checked before any resource exists: the API would refuse the plan or a sub-account only halfway
 * through an update. `limits` holds the limits of every box type the config uses.
 */
export function boxLimitProblems(config: Pick<ProdConfig, "storage" | "tenants">, limits: Readonly<Record<string, BoxTypeLimits>>): string[] {
  const problems: string[] = [];
  const repos = repositoriesByBox(config.tenants);
  config.storage.boxes.forEach((box, i) => {
    const where = (path: PropertyKey[]) => `${fieldPath("storage", ["boxes", i, ...path])}: box ${JSON.stringify(box.name)}`;
    const l = limits[box.boxType];
    if (!l || !Number.isInteger(l.automaticSnapshotLimit) || !Number.isInteger(l.subaccountsLimit)) {
      problems.push(`${where(["boxType"])}: the API gave no limits for box type ${box.boxType}`);
      return;
    }
    if (box.snapshots.keep > l.automaticSnapshotLimit) {
      problems.push(`${where(["snapshots", "keep"])}: ${box.snapshots.keep} automatic snapshots, but box type ${box.boxType} keeps at most ${l.automaticSnapshotLimit}`);
    }
    const on = repos.get(box.name) ?? [];
    if (on.length > l.subaccountsLimit) {
      const retired = on.filter((r) => r.retired).length;
      problems.push(
        `${where([])}: ${on.length} ${on.length === 1 ? "repository needs" : "repositories need"} as many sub-accounts (${on.length - retired} current, ${retired} retired), but box type ${box.boxType} allows at most ${l.subaccountsLimit}`,
      );
    }
  });
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
