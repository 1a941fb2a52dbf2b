// The prod stack: one Storage Box, and per tenant its repository, the backup on its agent host and
// its recovery material in the control vault. Outputs are the contract the drill stack reads.
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../config/common";
import { BoxTypeLimits, ProdConfig, boxLimitProblems, loadProdConfig, repoDirName } from "../config/prod";
import { ControlVault } from "../components/control-vault";
import { HostBackup } from "../components/host-backup";
import { KeyRoleName } from "../components/key-roles";
import { StorageBox } from "../components/storage-box";
import { TenantRepo } from "../components/tenant-repo";

/** What the drill stack needs to reach a tenant's repository (docs/ARCHITECTURE.md). */
export interface TenantOutput {
  repoUrl: string;
  subaccountUser: string;
  storageHost: string;
  storagePort: number;
  remoteBorg: string;
  knownHosts: string;
  keyFingerprints: Record<KeyRoleName, string>;
}

export interface ProdOutputs {
  tenants: pulumi.Output<Record<string, TenantOutput>>;
  /** Secret: per tenant the drill key and the passphrase. */
  drillAccess: pulumi.Output<Record<string, { drillPrivateKey: string; passphrase: string }>>;
  vaultSecretArns: pulumi.Output<Record<string, string>>;
}

function byTenant<T>(names: string[], values: pulumi.Output<T>[]): pulumi.Output<Record<string, T>> {
  return pulumi.all(values).apply((vs) => Object.fromEntries(names.map((n, i) => [n, vs[i] as T])));
}

export interface ProdStackOptions {
  /** The scripts/ tree installed on hosts (default: this repository's). */
  scriptsDir?: string;
  /** Where the archive of the host files is written (default: this repository's .cache/). */
  archiveDir?: string;
}

/**
 * SFTP sessions of the main account that write authorized_keys at once. An old Hetzner page gives
 * 10 connections per Storage Box account; this leaves room for the operator's own sessions.
 */
export const maxAuthorizedKeysWrites = 4;

/** The box type's limits, from the Storage Box API (through the provider). */
export async function boxTypeLimits(boxType: string): Promise<BoxTypeLimits> {
  const t = await hcloud.getStorageBoxType({ name: boxType });
  return { automaticSnapshotLimit: t.automaticSnapshotLimit, subaccountsLimit: t.subaccountsLimit };
}

/**
 * The prod program: the config is checked against the box type's limits first, so that a config
 * the box cannot hold fails before any resource exists.
 */
export async function prodStack(config: ProdConfig = loadProdConfig(), options: ProdStackOptions = {}): Promise<ProdOutputs> {
  const problems = boxLimitProblems(config, await boxTypeLimits(config.storage.boxType));
  if (problems.length > 0) throw new ConfigError(problems);
  return prodResources(config, options);
}

/** Every resource of the prod stack, for a config already checked. */
export function prodResources(config: ProdConfig, options: ProdStackOptions = {}): ProdOutputs {
  const { storage, vault } = config;
  const box = new StorageBox("backup-storage", {
    name: storage.name,
    location: storage.location,
    boxType: storage.boxType,
    snapshots: storage.snapshots,
    port: storage.port,
    hostKeys: storage.hostKeys,
  });

  const names = config.tenants.map((t) => t.name);
  const authorizedKeysWrites: pulumi.Resource[] = [];
  const perTenant = config.tenants.map((t, i) => {
    const repo = new TenantRepo(`repo-${t.name}`, {
      tenant: t.name,
      boxId: box.boxId,
      boxServer: box.server,
      boxUser: box.username,
      boxKnownHosts: box.knownHosts,
      adminPrivateKey: box.adminPrivateKey,
      port: storage.port,
      hostKeys: storage.hostKeys,
      remoteBorg: storage.remoteBorg,
      repoPathOnBox: storage.repoPathOnBox,
      repoDirName,
      // Lanes of maxAuthorizedKeysWrites: each write waits for the one that many tenants before.
      ...(i >= maxAuthorizedKeysWrites ? { authorizedKeysAfter: [authorizedKeysWrites[i - maxAuthorizedKeysWrites] as pulumi.Resource] } : {}),
    });
    authorizedKeysWrites.push(repo.authorizedKeysWrite);
    const host = new HostBackup(`host-${t.name}`, {
      host: { address: t.host.address, user: t.host.user, port: t.host.port, privateKey: config.hostPrivateKeys[t.name] as pulumi.Output<string>, hostKey: t.host.hostKey },
      install: {
        tenant: t.name,
        agentHome: t.host.agentHome,
        remoteBorg: storage.remoteBorg,
        schedule: t.schedule,
        ...(t.healthcheckUrl === undefined ? {} : { healthcheckUrl: t.healthcheckUrl }),
        ...(t.host.metricsDir === undefined ? {} : { metricsDir: t.host.metricsDir }),
        ...(t.extraRules === undefined ? {} : { extraRules: t.extraRules }),
      },
      repoUrl: repo.repoUrl,
      pushPrivateKey: repo.privateKeys.push,
      passphrase: repo.passphrase,
      knownHosts: repo.knownHosts,
      ...(options.scriptsDir === undefined ? {} : { scriptsDir: options.scriptsDir }),
      ...(options.archiveDir === undefined ? {} : { archiveDir: options.archiveDir }),
    }, { dependsOn: [repo] });
    const vaultEntry = new ControlVault(`vault-${t.name}`, {
      namePrefix: vault.namePrefix,
      replicaRegion: vault.replicaRegion,
      material: {
        tenant: t.name,
        repoUrl: repo.repoUrl,
        knownHosts: repo.knownHosts,
        remoteBorg: storage.remoteBorg,
        passphrase: repo.passphrase,
        maintenancePrivateKey: repo.privateKeys.maintenance,
        drillPrivateKey: repo.privateKeys.drill,
        repoKeyExport: host.repoKeyExport,
        retention: t.retention,
      },
    });
    const tenant = pulumi
      .all([repo.repoUrl, repo.subaccountUser, repo.storageHost, repo.knownHosts, repo.keyFingerprints])
      .apply(([repoUrl, subaccountUser, storageHost, knownHosts, keyFingerprints]): TenantOutput => ({
        repoUrl, subaccountUser, storageHost, storagePort: storage.port, remoteBorg: storage.remoteBorg, knownHosts, keyFingerprints,
      }));
    const drill = pulumi.all([repo.privateKeys.drill, repo.passphrase]).apply(([drillPrivateKey, passphrase]) => ({ drillPrivateKey, passphrase }));
    return { tenant, drill, arn: vaultEntry.secretArn };
  });

  return {
    tenants: byTenant(names, perTenant.map((p) => p.tenant)),
    drillAccess: pulumi.secret(byTenant(names, perTenant.map((p) => p.drill))),
    vaultSecretArns: byTenant(names, perTenant.map((p) => p.arn)),
  };
}
