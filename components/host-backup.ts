// The backup on one agent host, over SSH: copy the host files as one archive, run agent-install
// with the secrets on stdin, then take the repository key export for the control vault. Re-runs
// whenever an installed file or the install input changes (the plan's content hash).
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import { matchesPattern } from "../config/patterns";
import {
  HostInstallInput,
  HostInstallPlan,
  hostInstallPlan,
  hostInstallStdin,
  remoteArchivePath,
  remoteUploadDir,
  unpackArchiveCommands,
  writeHostFilesArchive,
} from "./host-install-plan";

export interface HostBackupArgs {
  /**
   * SSH connection to the agent host; the private key is a secret. `hostKey` is the host's own
   * public key ("ssh-ed25519 AAAA..."), required: without it @pulumi/command skips host-key
   * checking (InsecureIgnoreHostKey, provider/pkg/provider/remote/connection.go in v1.2.1) and
   * would hand the push key and the passphrase to whoever answers.
   */
  host: { address: string; user: string; port: number; privateKey: pulumi.Input<string>; hostKey: string };
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
  /** Where the archive of the host files is written locally (default: this repository's .cache/). */
  archiveDir?: string;
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

/**
 * Checks and unpacks the uploaded archive into a fresh source directory, then installs: one SSH
 * session. The checksum is the SSH user's own check of its own upload; the rest runs as root.
 */
export function unpackAndInstallCommand(user: string, plan: HostInstallPlan, archiveSha256: string): string {
  const { verify, unpack } = unpackArchiveCommands(remoteArchivePath, archiveSha256);
  return ["set -e", verify, ...unpack.map((c) => asRoot(user, c)), installCommand(user, plan).replace(/^set -e\n/, "")].join("\n");
}

/**
 * Prints the repository key export and nothing else. Every step that can fail runs before the
 * export is printed, and printing is the last step: the command provider puts all output of a
 * failed command into its error (provider/pkg/provider/remote/commandOutputs.go, v1.2.1), so a
 * failure must never come after the secret was written.
 */
export function keyExportCommand(user: string): string {
  return [
    "set -eu",
    "umask 077",
    'out=$(mktemp)',
    "# shellcheck disable=SC2024 # the redirect is meant to run as the SSH user: out is its own file",
    `if ! ${asRoot(user, `${agentBackupPath} --config ${hostConfigPath} --key-export`)} >"$out"; then rm -f "$out"; echo "agent-backup --key-export failed" >&2; exit 1; fi`,
    `if ! head -n 1 "$out" | grep -Eq '^BORG_KEY [0-9a-f]+$'; then rm -f "$out"; echo "agent-backup --key-export printed no borg key export" >&2; exit 1; fi`,
    'key_export=$(cat "$out")',
    'rm -f "$out"',
    "printf '%s\\n' \"$key_export\"",
  ].join("\n");
}

export class HostBackup extends pulumi.ComponentResource {
  /** `borg key export` of the tenant's repository (secret), taken right after it was initialised. */
  readonly repoKeyExport: pulumi.Output<string>;
  /** The plan's content hash: changes whenever anything installed changes. */
  readonly contentHash: pulumi.Output<string>;

  constructor(name: string, args: HostBackupArgs, opts?: pulumi.ComponentResourceOptions) {
    const { address, user, port, privateKey, hostKey } = args.host;
    // Before anything is registered: no connection without the host's own key.
    if (typeof hostKey !== "string" || !matchesPattern("ssh_pubkey", hostKey)) {
      throw new Error(`host ${address}: refusing host key ${JSON.stringify(hostKey)} (expected the host's own "ssh-ed25519 AAAA...")`);
    }
    super("agent-backups:host:HostBackup", name, {}, opts);
    const connection: command.types.input.remote.ConnectionArgs = {
      host: address,
      user,
      port,
      privateKey: pulumi.secret(privateKey),
      hostKey,
      dialErrorLimit: 10,
      perDialTimeout: 15,
    };
    const remote = (step: string, a: Omit<command.remote.CommandArgs, "connection" | "addPreviousOutputInEnv">, o: pulumi.CustomResourceOptions = {}) =>
      // addPreviousOutputInEnv: a command's earlier output must not travel again (SSH setenv).
      new command.remote.Command(`${name}-${step}`, { connection, addPreviousOutputInEnv: false, ...a }, { parent: this, ...o });

    // The files do not depend on the tenant: one archive, copied in one SSH session.
    const archive = writeHostFilesArchive(args.scriptsDir, args.archiveDir);
    const plan = pulumi.output(args.repoUrl).apply((repoUrl) => hostInstallPlan({ ...args.install, repoUrl }, args.scriptsDir));
    this.contentHash = plan.contentHash;

    // The upload lands in a directory the SSH user owns; the install (as root) unpacks it.
    const owner = user === "root" ? "" : `-o ${user} `;
    const prepare = remote("upload-dir", { create: asRoot(user, `install -d -m 0700 ${owner}${remoteUploadDir}`), triggers: [this.contentHash] });
    const copy = new command.remote.CopyToRemote(
      `${name}-host-files`,
      { connection, source: new pulumi.asset.FileAsset(archive.localPath), remotePath: remoteArchivePath, triggers: [this.contentHash] },
      { parent: this, dependsOn: [prepare] },
    );

    const stdin = pulumi
      .all([args.pushPrivateKey, args.passphrase, args.knownHosts])
      .apply(([sshPrivateKey, passphrase, knownHosts]) => pulumi.secret(hostInstallStdin({ sshPrivateKey, passphrase, knownHosts }, args.install.extraRules)));
    // agent-install logs progress on stderr, shown during `pulumi up`; stdout stays out of the
    // logs, and nothing it printed is kept in plain text in the state.
    const install = remote(
      "install",
      { create: plan.apply((p) => unpackAndInstallCommand(user, p, archive.sha256)), stdin, logging: "stderr", triggers: [this.contentHash] },
      { dependsOn: [copy], additionalSecretOutputs: ["stdin", "stdout", "stderr"] },
    );

    // The key export is recovery material: never logged, secret in state, taken once per repository.
    const keyExport = remote(
      "key-export",
      { create: keyExportCommand(user), logging: "none", triggers: [args.repoUrl] },
      { dependsOn: [install], additionalSecretOutputs: ["stdout", "stderr"] },
    );
    this.repoKeyExport = pulumi.secret(keyExport.stdout);
    this.registerOutputs({ contentHash: this.contentHash, repoKeyExport: this.repoKeyExport });
  }
}
