// The backup on one agent host, over SSH: copy the install plan's files, run agent-install with the
// secrets on stdin, then take the repository key export for the control vault. Re-runs whenever an
// installed file or the install input changes (the plan's content hash).
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { HostInstallInput, HostInstallPlan, hostInstallFiles, hostInstallPlan, hostInstallStdin, remoteSourceDir } from "./host-install-plan";

export interface HostBackupArgs {
  /** SSH connection to the agent host; the private key is a secret. */
  host: { address: string; user: string; port: number; privateKey: pulumi.Input<string>; hostKey?: string | undefined };
  /** Everything agent-install needs except the repo URL, which the storage side decides. */
  install: Omit<HostInstallInput, "repoUrl">;
  /** The tenant's repository URL. */
  repoUrl: pulumi.Input<string>;
  /** Push key (secret), passphrase (secret) and the storage box's known_hosts. */
  pushPrivateKey: pulumi.Input<string>;
  passphrase: pulumi.Input<string>;
  knownHosts: pulumi.Input<string>;
  /** The local scripts/ tree to install (default: this repository's); tests point it elsewhere. */
  scriptsDir?: string;
}

/** Where agent-install writes the host config (docs/ARCHITECTURE.md). */
export const hostConfigPath = "/etc/agent-backup/agent-backup.conf";
/** The backup command on the host after agent-install. */
export const agentBackupPath = "/usr/local/sbin/agent-backup";

/** Root commands run through `sudo -n` unless we connect as root (never prompts: fails instead). */
function asRoot(user: string, cmd: string): string {
  return user === "root" ? cmd : `sudo -n ${cmd}`;
}

/** The remote install command: give the copies their modes, then the plan's command as root. */
export function installCommand(user: string, plan: HostInstallPlan): string {
  const byMode = new Map<string, string[]>();
  for (const f of plan.files) byMode.set(f.mode, [...(byMode.get(f.mode) ?? []), f.remotePath]);
  const chmods = [...byMode].map(([mode, paths]) => asRoot(user, `chmod ${mode} ${paths.join(" ")}`));
  return ["set -e", ...chmods, asRoot(user, plan.command)].join("\n");
}

export class HostBackup extends pulumi.ComponentResource {
  /** `borg key export` of the tenant's repository (secret), taken right after it was initialised. */
  readonly repoKeyExport: pulumi.Output<string>;
  /** The plan's content hash: changes whenever anything installed changes. */
  readonly contentHash: pulumi.Output<string>;

  constructor(name: string, args: HostBackupArgs, opts?: pulumi.ComponentResourceOptions) {
    super("agent-backups:host:HostBackup", name, {}, opts);
    const { address, user, port, privateKey, hostKey } = args.host;
    const connection: command.types.input.remote.ConnectionArgs = {
      host: address,
      user,
      port,
      privateKey: pulumi.secret(privateKey),
      ...(hostKey === undefined ? {} : { hostKey }),
      dialErrorLimit: 10,
      perDialTimeout: 15,
    };

    // The files do not depend on the tenant, so they can be copied before the repo URL is known.
    const files = hostInstallFiles(args.scriptsDir);
    const plan = pulumi.output(args.repoUrl).apply((repoUrl) => hostInstallPlan({ ...args.install, repoUrl }, args.scriptsDir));
    this.contentHash = plan.contentHash;

    // The copies land in a directory the SSH user owns; agent-install (as root) copies them on.
    const owner = user === "root" ? "" : `-o ${user} `;
    const prepare = new command.remote.Command(
      `${name}-source-dir`,
      { connection, create: asRoot(user, `install -d -m 0700 ${owner}${remoteSourceDir}`), triggers: [this.contentHash] },
      { parent: this },
    );
    const copies = files.map(
      (f) =>
        new command.remote.CopyToRemote(
          `${name}-copy-${f.remotePath.slice(remoteSourceDir.length + 1).replace(/[/.]/g, "-")}`,
          { connection, source: new pulumi.asset.FileAsset(f.localPath), remotePath: f.remotePath, triggers: [this.contentHash] },
          { parent: this, dependsOn: [prepare] },
        ),
    );

    const stdin = pulumi
      .all([args.pushPrivateKey, args.passphrase, args.knownHosts])
      .apply(([sshPrivateKey, passphrase, knownHosts]) => pulumi.secret(hostInstallStdin({ sshPrivateKey, passphrase, knownHosts })));
    // agent-install logs progress on stderr, shown during `pulumi up`; stdout stays out of the
    // logs, and nothing it printed is kept in plain text in the state.
    const install = new command.remote.Command(
      `${name}-install`,
      { connection, create: plan.apply((p) => installCommand(user, p)), stdin, logging: "stderr", triggers: [this.contentHash] },
      { parent: this, dependsOn: copies, additionalSecretOutputs: ["stdin", "stdout", "stderr"] },
    );

    // The key export is recovery material: never logged, secret in state, taken once per repository.
    const keyExport = new command.remote.Command(
      `${name}-key-export`,
      { connection, create: asRoot(user, `${agentBackupPath} --config ${hostConfigPath} --key-export`), logging: "none", triggers: [args.repoUrl] },
      { parent: this, dependsOn: [install], additionalSecretOutputs: ["stdout", "stderr"] },
    );
    this.repoKeyExport = pulumi.secret(keyExport.stdout);
    this.registerOutputs({ contentHash: this.contentHash, repoKeyExport: this.repoKeyExport });
  }
}
