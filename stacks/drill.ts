// The drill stack: restore the archives of one or several tenants, one after another, on one
// disposable EC2 box and prove each healthy, one report per tenant. Reads the tenants' repositories
// and drill access from the prod stack; `pulumi destroy` removes the box and everything it needed.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { DrillConfig, loadDrillConfig, reportFileOf } from "../config/drill";
import { DrillBox, DrillRepoAccess, drillNetwork, newestDebian12Image } from "../components/drill-box";

/** One tenant of the prod stack's `tenants` output (plain). */
interface ProdTenant extends DrillRepoAccess {
  subaccountUser: string;
  storageHost: string;
  keyFingerprints: Record<string, string>;
}

/** One tenant of the prod stack's `drillAccess` output (secret). */
interface ProdDrillAccess {
  drillPrivateKey: string;
  passphrase: string;
}

/** Picks the tenant out of a prod output, or says which tenants the prod stack has. */
export function pickTenant<T>(all: Record<string, T> | undefined, tenant: string, output: string, prodStack: string): T {
  const entry = all?.[tenant];
  if (entry === undefined) {
    const known = Object.keys(all ?? {}).sort().join(", ") || "none";
    throw new Error(`tenant ${JSON.stringify(tenant)} is not in output ${output} of ${prodStack} (tenants there: ${known})`);
  }
  return entry;
}

export interface DrillStackOptions {
  /** When the drill starts (the box's expiry tag counts from it); now by default. */
  createdAt?: Date;
  /** The local scripts/ tree to copy; this repository's by default. */
  sourceDir?: string;
  /** Where the archive of the host files is written (default: this repository's .cache/). */
  archiveDir?: string;
}

/** The drill stack's resources and outputs for a validated config. */
export function drillResources(config: DrillConfig, options: DrillStackOptions = {}) {
  const prod = new pulumi.StackReference("prod", { name: config.prodStack });
  const allTenants = prod.requireOutput("tenants");
  // requireOutput keeps drillAccess secret; pulumi.secret says so again in case the prod stack did not.
  const allAccess = prod.requireOutput("drillAccess");

  const provider = new aws.Provider("drill-region", { region: config.region as aws.Region });
  const imageId = config.imageId ?? newestDebian12Image(config.architecture, { provider });
  const network = drillNetwork(config.region, config.subnetId, { provider });
  const box = new DrillBox("drill", {
    tenants: config.tenants.map((name) => {
      const tenant = allTenants.apply((all) => pickTenant(all as Record<string, ProdTenant> | undefined, name, "tenants", config.prodStack));
      const access = pulumi.secret(allAccess.apply((all) => pickTenant(all as Record<string, ProdDrillAccess> | undefined, name, "drillAccess", config.prodStack)));
      return {
        tenant: name,
        repo: tenant.apply((t) => ({ repoUrl: t.repoUrl, remoteBorg: t.remoteBorg, storagePort: t.storagePort, knownHosts: t.knownHosts })),
        drillPrivateKey: access.apply((a) => a.drillPrivateKey),
        passphrase: access.apply((a) => a.passphrase),
        reportFile: reportFileOf(config.reportDir, name),
      };
    }),
    archive: config.archive,
    imageId,
    instanceType: config.instanceType,
    sshCidr: config.sshCidr,
    ttlHours: config.ttlHours,
    createdAt: options.createdAt ?? new Date(),
    ...(options.sourceDir === undefined ? {} : { sourceDir: options.sourceDir }),
    ...(options.archiveDir === undefined ? {} : { archiveDir: options.archiveDir }),
    network,
    rootVolumeGiB: config.rootVolumeGiB,
    agentCheck: config.agentCheck,
  }, { providers: { aws: provider } });

  return {
    tenants: config.tenants,
    reports: box.reports,
    reportFiles: box.reportFiles,
    /** True only when every tenant's drill is healthy. */
    healthy: box.reports.apply((all) => config.tenants.every((t) => all[t]?.healthy === true)),
    agent: box.agent,
    instanceId: box.instanceId,
    publicIp: box.publicIp,
    imageId: pulumi.output(imageId),
    expiresAt: box.expiresAt,
    drillCommands: box.drillCommandLines,
    boxLoginKey: box.loginPrivateKey,
    boxHostKey: box.hostPublicKey,
  };
}

/** Entry point for index.ts: the stack outputs of `pulumi up -s drill` (or drill-*). */
export function drillStack() {
  return drillResources(loadDrillConfig());
}

export default drillStack;
