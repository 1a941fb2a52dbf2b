// The prod stack: the fleet's Storage Boxes, and per tenant its current repository (and retired ones,
// frozen) on the box it names, the backup on its agent host and its recovery material in the control
// vault. Outputs are the contract the drill stack and the trusted-side scripts read.
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../config/common";
import { BoxTypeLimits, ProdConfig, RepoId, boxLimitProblems, loadProdConfig, repoDirName } from "../config/prod";
import { ControlVault } from "../components/control-vault";
import { HostBackup } from "../components/host-backup";
import { KeyRoleName } from "../components/key-roles";
import { StorageBox } from "../components/storage-box";
import { TenantRepo, tenantRepoName } from "../components/tenant-repo";

/** A repository of a tenant as the trusted side finds it on its box (plain, no secret). */
export interface RepoLocation {
  box: string;
  generation: number;
  /** The box's main account server (uNNNN.your-storagebox.de): the operator's SFTP and snapshot access. */
  boxHost: string;
  subaccountUser: string;
  /** The sub-account's server, the host in repoUrl. */
  storageHost: string;
  repoUrl: string;
  /** The repository's path from the box's main account (also under /home/.zfs/snapshot/<snap>/). */
  repoPath: string;
  keyFingerprints: Partial<Record<KeyRoleName, string>>;
}

/** What the drill stack needs to reach a tenant's repository (docs/ARCHITECTURE.md), plus where its repositories are. */
export interface TenantOutput extends RepoLocation {
  storagePort: number;
  remoteBorg: string;
  knownHosts: string;
  keyFingerprints: Record<KeyRoleName, string>;
  /** Retired repositories, frozen: only the maintenance key reaches them. */
  retired: RepoLocation[];
}

/** One box of the fleet (plain). */
export interface BoxOutput {
  /** The box's id in the Storage Box API (agent-offboard --box-id, the API's /storage_boxes/<id>). */
  id: number;
  server: string;
  username: string;
  location: string;
  boxType: string;
  /** Tenants whose current repository is on this box, in config order. */
  tenants: string[];
}

export interface ProdOutputs {
  tenants: pulumi.Output<Record<string, TenantOutput>>;
  boxes: pulumi.Output<Record<string, BoxOutput>>;
  /** Secret: per tenant the drill key and the passphrase of the current repository. */
  drillAccess: pulumi.Output<Record<string, { drillPrivateKey: string; passphrase: string }>>;
  vaultSecretArns: pulumi.Output<Record<string, string>>;
}

function byName<T>(names: string[], values: pulumi.Output<T>[]): pulumi.Output<Record<string, T>> {
  return pulumi.all(values).apply((vs) => Object.fromEntries(names.map((n, i) => [n, vs[i] as T])));
}

export interface ProdStackOptions {
  /** The scripts/ tree installed on hosts (default: this repository's). */
  scriptsDir?: string;
  /** Where the archive of the host files is written (default: this repository's .cache/). */
  archiveDir?: string;
}

/**
 * SFTP sessions of one box's main account that write authorized_keys at once. An old Hetzner page
 * gives 10 connections per Storage Box account; this leaves room for the operator's own sessions.
 */
export const maxAuthorizedKeysWrites = 4;

/** The box types' limits, from the Storage Box API (through the provider), one lookup per type. */
export async function boxTypeLimits(boxTypes: readonly string[]): Promise<Record<string, BoxTypeLimits>> {
  const types = [...new Set(boxTypes)];
  const found = await Promise.all(types.map((name) => hcloud.getStorageBoxType({ name })));
  return Object.fromEntries(types.map((name, i) => [name, { automaticSnapshotLimit: found[i]!.automaticSnapshotLimit, subaccountsLimit: found[i]!.subaccountsLimit }]));
}

/**
 * The prod program: the config is checked against every box type's limits first, so that a config
 * a box cannot hold fails before any resource exists.
 */
export async function prodStack(config: ProdConfig = loadProdConfig(), options: ProdStackOptions = {}): Promise<ProdOutputs> {
  const problems = boxLimitProblems(config, await boxTypeLimits(config.storage.boxes.map((b) => b.boxType)));
  if (problems.length > 0) throw new ConfigError(problems);
  return prodResources(config, options);
}

/** Every resource of the prod stack, for a config already checked. */
export function prodResources(config: ProdConfig, options: ProdStackOptions = {}): ProdOutputs {
  const { storage, vault } = config;
  const boxes = new Map(
    storage.boxes.map((b) => [
      b.name,
      new StorageBox(`box-${b.name}`, { name: b.name, location: b.location, boxType: b.boxType, snapshots: b.snapshots, port: storage.port, hostKeys: storage.hostKeys }),
    ]),
  );
  // Per box, its authorized_keys writes in order: each waits for the one maxAuthorizedKeysWrites
  // places before it on the same box, so no more SFTP sessions of one main account run at once.
  const writesByBox = new Map<string, pulumi.Resource[]>();

  const repository = (tenant: string, id: RepoId, retired: boolean): TenantRepo => {
    const box = boxes.get(id.box);
    if (box === undefined) throw new Error(`tenant ${tenant}: no box named ${JSON.stringify(id.box)}`);
    const writes = writesByBox.get(id.box) ?? [];
    writesByBox.set(id.box, writes);
    const before = writes.length >= maxAuthorizedKeysWrites ? writes[writes.length - maxAuthorizedKeysWrites] : undefined;
    const repo = new TenantRepo(tenantRepoName(tenant, id.box, id.generation), {
      tenant,
      generation: id.generation,
      retired,
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
      ...(before === undefined ? {} : { authorizedKeysAfter: [before] }),
    });
    writes.push(repo.authorizedKeysWrite);
    return repo;
  };
  const location = (id: RepoId, repo: TenantRepo): pulumi.Output<RepoLocation> => {
    const box = boxes.get(id.box) as StorageBox;
    return pulumi
      .all([box.server, repo.subaccountUser, repo.storageHost, repo.repoUrl, repo.keyFingerprints])
      .apply(([boxHost, subaccountUser, storageHost, repoUrl, keyFingerprints]) => ({
        box: id.box, generation: id.generation, boxHost, subaccountUser, storageHost, repoUrl, repoPath: repo.repoPathFromBox, keyFingerprints,
      }));
  };

  const names = config.tenants.map((t) => t.name);
  const perTenant = config.tenants.map((t) => {
    const current = { box: t.box, generation: t.generation };
    const repo = repository(t.name, current, false);
    const retired = t.retired.map((r) => location(r, repository(t.name, r, true)));
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
      pushPrivateKey: repo.privateKey("push"),
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
        maintenancePrivateKey: repo.privateKey("maintenance"),
        drillPrivateKey: repo.privateKey("drill"),
        repoKeyExport: host.repoKeyExport,
        retention: t.retention,
      },
    });
    const tenant = pulumi
      .all([location(current, repo), repo.knownHosts, pulumi.all(retired)])
      .apply(([loc, knownHosts, retiredLocations]): TenantOutput => ({
        ...loc,
        keyFingerprints: loc.keyFingerprints as Record<KeyRoleName, string>,
        storagePort: storage.port,
        remoteBorg: storage.remoteBorg,
        knownHosts,
        retired: retiredLocations,
      }));
    const drill = pulumi.all([repo.privateKey("drill"), repo.passphrase]).apply(([drillPrivateKey, passphrase]) => ({ drillPrivateKey, passphrase }));
    return { tenant, drill, arn: vaultEntry.secretArn };
  });

  const boxNames = storage.boxes.map((b) => b.name);
  const boxOutputs = storage.boxes.map((b) => {
    const box = boxes.get(b.name) as StorageBox;
    const tenants = config.tenants.filter((t) => t.box === b.name).map((t) => t.name);
    return pulumi.all([box.boxId, box.server, box.username]).apply(([id, server, username]): BoxOutput => ({ id, server, username, location: b.location, boxType: b.boxType, tenants }));
  });

  return {
    tenants: byName(names, perTenant.map((p) => p.tenant)),
    boxes: byName(boxNames, boxOutputs),
    drillAccess: pulumi.secret(byName(names, perTenant.map((p) => p.drill))),
    vaultSecretArns: byName(names, perTenant.map((p) => p.arn)),
  };
}
