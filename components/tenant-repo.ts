// One repository of a tenant on a Storage Box: a sub-account with its own home, the role keys, the
// borg passphrase, and the sub-account's authorized_keys written through the main account. A tenant
// has one current repository and may keep retired ones (frozen: only the maintenance key left).
import * as command from "@pulumi/command";
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";
import { matchesPattern } from "../config/patterns";
import { KeyRoleName, keyRoleNames, renderAuthorizedKeys, retiredKeyRoleNames } from "./key-roles";
import { deadPassword } from "./password-reset";
import { renderKnownHosts } from "./storage-box";

export interface TenantRepoArgs {
  /** Tenant name (strict pattern); names the sub-account, its home and the key comments. */
  tenant: string;
  /** The repository's generation (1, 2, ...): a rekey makes a new one, never reuses one. */
  generation: number;
  /**
   * A retired repository: kept (sub-account, repository, passphrase), but its authorized_keys holds
   * only the roles kept when retired (maintenance), so nothing can add archives to it any more.
   */
  retired?: boolean;
  /** The Storage Box's numeric id. */
  boxId: pulumi.Input<number>;
  /** The main account's server and user: the authorized_keys file is written through them. */
  boxServer: pulumi.Input<string>;
  boxUser: pulumi.Input<string>;
  /** known_hosts for the main account's server. */
  boxKnownHosts: pulumi.Input<string>;
  /** The main account's private key (secret). */
  adminPrivateKey: pulumi.Input<string>;
  /** SSH port of the box's borg service (23). */
  port: number;
  /** The box's host keys, pinned in the tenant's known_hosts. */
  hostKeys: readonly string[];
  /** Server-side borg command in the forced commands ("borg-1.4"). */
  remoteBorg: string;
  /** Absolute repository path as the sub-account's sshd sees it (--restrict-to-repository). */
  repoPathOnBox: string;
  /** Repository directory inside the sub-account's home ("borg"). */
  repoDirName: string;
  /**
   * SFTP sessions of the main account that must end before this tenant's authorized_keys write
   * starts: the caller bounds how many run at once on one box (its connection limit).
   */
  authorizedKeysAfter?: pulumi.Resource[];
}

function checkRepoId(tenant: string, generation: number): void {
  if (!matchesPattern("tenant", tenant)) throw new Error(`refusing tenant name ${JSON.stringify(tenant)}`);
  if (!Number.isInteger(generation) || generation < 1 || generation > 9999) throw new Error(`refusing repository generation ${JSON.stringify(generation)}`);
}

/**
 * The sub-account's home, relative to the box's root: `tenants/<tenant>/g<generation>`. Every home
 * is a leaf: no sub-account's home is inside another's (tenants/<tenant> itself is nobody's home),
 * since a nested home would expose one repository to another's credentials.
 */
export function subaccountHome(tenant: string, generation: number): string {
  checkRepoId(tenant, generation);
  return `tenants/${tenant}/g${generation}`;
}

/**
 * The sub-account's name: `<tenant>-g<generation>`, the suffix always there. The API identifies a
 * sub-account by id or name (hcloud CLI 1.60 changelog), so two generations on a box need two names.
 */
export function subaccountName(tenant: string, generation: number): string {
  checkRepoId(tenant, generation);
  return `${tenant}-g${generation}`;
}

/**
 * The Pulumi name of one repository's component: `repo-<tenant>@<box>.g<generation>`. Tenant and
 * box names have no "@" or ".", so no two repositories share a name, and a repository keeps its
 * name (and so its resources) when other tenants, boxes or generations are added.
 */
export function tenantRepoName(tenant: string, box: string, generation: number): string {
  checkRepoId(tenant, generation);
  if (!matchesPattern("tenant", box)) throw new Error(`refusing box name ${JSON.stringify(box)}`);
  return `repo-${tenant}@${box}.g${generation}`;
}

/** The borg repository URL of a sub-account, in the Storage Box's home-relative form. */
export function repoUrl(user: string, host: string, port: number, repoDirName: string): string {
  const url = `ssh://${user}@${host}:${port}/./${repoDirName}`;
  const ok = matchesPattern("unix_user", user) && matchesPattern("hostname", host) && matchesPattern("rel_path", repoDirName);
  if (!ok) throw new Error(`refusing repository URL ${JSON.stringify(url)}`);
  return url;
}

/**
 * The bash run on the machine running Pulumi that writes `<home>/.ssh/authorized_keys` over SFTP
 * as the box's main account. Inputs come from the environment (validated before) and the main
 * account's private key on stdin, so no secret is on a command line or in the logs.
 */
export const writeAuthorizedKeysScript = `set -euo pipefail
umask 077
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/key"
printf '%s' "$AUTHORIZED_KEYS" >"$work/authorized_keys"
printf '%s' "$KNOWN_HOSTS" >"$work/known_hosts"
# Every level of the home, in case the box has not created it yet ("-": an existing one is fine).
mkdirs="" sofar=""
IFS=/ read -ra parts <<<"$HOME_DIR"
for part in "\${parts[@]}"; do sofar=\${sofar:+$sofar/}$part; mkdirs+="-mkdir $sofar"$'\\n'; done
sftp -b - -P "$BOX_PORT" -i "$work/key" -o IdentitiesOnly=yes -o BatchMode=yes \\
  -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$work/known_hosts" -o ConnectTimeout=30 \\
  "$BOX_USER@$BOX_HOST" <<SFTP
$mkdirs-mkdir $HOME_DIR/.ssh
chmod 700 $HOME_DIR/.ssh
put $work/authorized_keys $HOME_DIR/.ssh/authorized_keys
chmod 600 $HOME_DIR/.ssh/authorized_keys
SFTP
echo "authorized_keys written to $HOME_DIR/.ssh on $BOX_HOST"
`;

/**
 * How writeAuthorizedKeysScript is run. --norc: bash reads ~/.bashrc when its stdin is a socket
 * (as "run by rshd"), and the operator's rc file has no business in this command.
 */
export const authorizedKeysInterpreter = ["/bin/bash", "--norc", "--noprofile", "-c"];

/** The environment of writeAuthorizedKeysScript, every value checked against a strict pattern. */
export function writeAuthorizedKeysEnv(a: { boxUser: string; boxHost: string; port: number; homeDir: string; authorizedKeys: string; knownHosts: string }): Record<string, string> {
  const checks: [string, boolean][] = [
    ["box user", matchesPattern("unix_user", a.boxUser)],
    ["box host", matchesPattern("hostname", a.boxHost)],
    ["port", matchesPattern("port", String(a.port)) && a.port <= 65535],
    ["home directory", matchesPattern("rel_path", a.homeDir)],
  ];
  const bad = checks.filter(([, ok]) => !ok).map(([what]) => what);
  if (bad.length > 0) throw new Error(`refusing to write authorized_keys: invalid ${bad.join(", ")}`);
  return { BOX_USER: a.boxUser, BOX_HOST: a.boxHost, BOX_PORT: String(a.port), HOME_DIR: a.homeDir, AUTHORIZED_KEYS: a.authorizedKeys, KNOWN_HOSTS: a.knownHosts };
}

export class TenantRepo extends pulumi.ComponentResource {
  readonly repoUrl: pulumi.Output<string>;
  readonly subaccountUser: pulumi.Output<string>;
  /** The sub-account's server (uNNNN-subN.your-storagebox.de). */
  readonly storageHost: pulumi.Output<string>;
  /** known_hosts pinning the box's host keys for storageHost. */
  readonly knownHosts: pulumi.Output<string>;
  /** The repository's path from the box's main account (`tenants/<tenant>/g<N>/borg`). */
  readonly repoPathFromBox: string;
  readonly authorizedKeys: pulumi.Output<string>;
  /** The roles with a key in this repository: all for the current one, maintenance for a retired one. */
  readonly roles: readonly KeyRoleName[];
  readonly keyFingerprints: pulumi.Output<Partial<Record<KeyRoleName, string>>>;
  /** Private keys per role of `roles` (secret). */
  readonly privateKeys: Partial<Record<KeyRoleName, pulumi.Output<string>>>;
  /** The borg passphrase (secret). */
  readonly passphrase: pulumi.Output<string>;
  /** The main account's SFTP write of this tenant's authorized_keys. */
  readonly authorizedKeysWrite: command.local.Command;
  /** The command that made the sub-account's password dead right after creation. */
  readonly passwordReset: pulumi.Resource;

  constructor(name: string, args: TenantRepoArgs, opts?: pulumi.ComponentResourceOptions) {
    super("agent-backups:storage:TenantRepo", name, {}, opts);
    const homeDir = subaccountHome(args.tenant, args.generation);
    this.repoPathFromBox = `${homeDir}/${args.repoDirName}`;
    // Retiring drops the push and drill keys from the state too: nothing holds them any more.
    const roles = args.retired === true ? retiredKeyRoleNames : keyRoleNames;
    this.roles = roles;

    const keys = Object.fromEntries(
      roles.map((role) => [role, new tls.PrivateKey(`${name}-${role}-key`, { algorithm: "ED25519" }, { parent: this })]),
    ) as Partial<Record<KeyRoleName, tls.PrivateKey>>;
    const key = (role: KeyRoleName): tls.PrivateKey => keys[role] as tls.PrivateKey;
    // Losing the passphrase loses the repository: never let a diff replace it.
    const passphrase = new random.RandomPassword(`${name}-passphrase`, { length: 48, special: false }, { parent: this, protect: true });
    // The API requires a password at creation; deadPassword below makes this value dead at once.
    const password = new random.RandomPassword(
      `${name}-password`,
      { length: 32, minUpper: 2, minLower: 2, minNumeric: 2, minSpecial: 2, overrideSpecial: "-_.+=" },
      { parent: this },
    );

    const sub = new hcloud.StorageBoxSubaccount(
      name,
      {
        storageBoxId: args.boxId,
        name: subaccountName(args.tenant, args.generation),
        description: `agent-backups tenant ${args.tenant}, repository generation ${args.generation}`,
        homeDirectory: homeDir,
        password: password.result,
        // Retiring changes no input here: the sub-account and its repository stay exactly as they are.
        accessSettings: { sshEnabled: true, reachableExternally: true, readonly: false, sambaEnabled: false, webdavEnabled: false },
        labels: { "managed-by": "pulumi", tenant: args.tenant, generation: String(args.generation) },
      },
      // A changed password input must never reset the sub-account to a value that is in the state.
      { parent: this, protect: true, retainOnDelete: true, ignoreChanges: ["password"], additionalSecretOutputs: ["password"] },
    );
    this.passwordReset = deadPassword(`${name}-password-reset`, { boxId: args.boxId, subaccountId: sub.id, resource: sub }, { parent: this });

    const publicKeys = pulumi
      .all(roles.map((role) => key(role).publicKeyOpenssh))
      .apply((pks) => Object.fromEntries(roles.map((role, i) => [role, pks[i] as string])) as Partial<Record<KeyRoleName, string>>);
    this.authorizedKeys = publicKeys.apply((pks) => renderAuthorizedKeys(args.tenant, pks, args.remoteBorg, args.repoPathOnBox, roles));

    const env = pulumi
      .all([args.boxUser, args.boxServer, this.authorizedKeys, args.boxKnownHosts])
      .apply(([boxUser, boxHost, authorizedKeys, knownHosts]) => writeAuthorizedKeysEnv({ boxUser, boxHost, port: args.port, homeDir, authorizedKeys, knownHosts }));
    this.authorizedKeysWrite = new command.local.Command(
      `${name}-authorized-keys`,
      {
        interpreter: authorizedKeysInterpreter,
        create: writeAuthorizedKeysScript,
        environment: env,
        stdin: pulumi.secret(args.adminPrivateKey),
        logging: "stdoutAndStderr",
        addPreviousOutputInEnv: false,
      },
      { parent: this, dependsOn: [sub, ...(args.authorizedKeysAfter ?? [])], additionalSecretOutputs: ["stdin"] },
    );

    this.subaccountUser = sub.username;
    this.storageHost = sub.server;
    this.repoUrl = pulumi.all([sub.username, sub.server]).apply(([u, h]) => repoUrl(u, h, args.port, args.repoDirName));
    this.knownHosts = sub.server.apply((h) => renderKnownHosts(h, args.port, args.hostKeys));
    this.keyFingerprints = pulumi
      .all(roles.map((role) => key(role).publicKeyFingerprintSha256))
      .apply((fps) => Object.fromEntries(roles.map((role, i) => [role, fps[i] as string])) as Partial<Record<KeyRoleName, string>>);
    this.privateKeys = Object.fromEntries(roles.map((role) => [role, pulumi.secret(key(role).privateKeyOpenssh)])) as Partial<Record<KeyRoleName, pulumi.Output<string>>>;
    this.passphrase = pulumi.secret(passphrase.result);
    this.registerOutputs({
      repoUrl: this.repoUrl,
      subaccountUser: this.subaccountUser,
      storageHost: this.storageHost,
      keyFingerprints: this.keyFingerprints,
    });
  }

  /** The private key of `role` (secret); a retired repository has none but the maintenance key. */
  privateKey(role: KeyRoleName): pulumi.Output<string> {
    const k = this.privateKeys[role];
    if (k === undefined) throw new Error(`repository has no ${role} key (its roles: ${this.roles.join(", ")})`);
    return k;
  }
}
