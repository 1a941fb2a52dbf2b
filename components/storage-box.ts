// The backup storage: one Hetzner Storage Box with a daily snapshot plan, reachable over SSH from
// outside Hetzner, plus the main account's key that writes each sub-account's authorized_keys.
import * as hcloud from "@pulumi/hcloud";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import * as tls from "@pulumi/tls";
import { matchesPattern } from "../config/patterns";
import { deadPassword } from "./password-reset";

export interface StorageBoxArgs {
  /** Name of the box in the Hetzner Console. */
  name: string;
  /** Hetzner location (fsn1, nbg1, hel1, ...); changing it would replace the box. */
  location: string;
  /** Storage Box type (bx11, bx21, ...). */
  boxType: string;
  /** Daily snapshot time (UTC) and how many automatic snapshots to keep. */
  snapshots: { hour: number; minute: number; keep: number };
  /** SSH port of the box's borg service (23). */
  port: number;
  /** The box's SSH host keys ("ssh-ed25519 AAAA..."), pinned in every known_hosts we write. */
  hostKeys: readonly string[];
}

/** known_hosts lines pinning `hostKeys` for one host on a non-default port. */
export function renderKnownHosts(host: string, port: number, hostKeys: readonly string[]): string {
  if (!matchesPattern("hostname", host)) throw new Error(`refusing known_hosts for host ${JSON.stringify(host)}`);
  if (!matchesPattern("port", String(port)) || port > 65535) throw new Error(`refusing known_hosts port ${port}`);
  for (const k of hostKeys) if (!matchesPattern("ssh_pubkey", k)) throw new Error(`refusing host key ${JSON.stringify(k)}`);
  return hostKeys.map((k) => `[${host}]:${port} ${k}`).join("\n") + "\n";
}

export class StorageBox extends pulumi.ComponentResource {
  /** The box's numeric id, as sub-accounts need it. */
  readonly boxId: pulumi.Output<number>;
  /** FQDN of the box (uNNNN.your-storagebox.de). */
  readonly server: pulumi.Output<string>;
  /** The main account's user (uNNNN). */
  readonly username: pulumi.Output<string>;
  /** known_hosts for the main account's server. */
  readonly knownHosts: pulumi.Output<string>;
  /** Private key of the main account (secret): it writes the sub-accounts' authorized_keys. */
  readonly adminPrivateKey: pulumi.Output<string>;
  readonly port: number;
  readonly hostKeys: readonly string[];
  /** The command that made the main account's password dead right after creation. */
  readonly passwordReset: pulumi.Resource;

  constructor(name: string, args: StorageBoxArgs, opts?: pulumi.ComponentResourceOptions) {
    super("agent-backups:storage:StorageBox", name, {}, opts);
    this.port = args.port;
    this.hostKeys = args.hostKeys;

    // Keys of the box can only be given at creation; losing this one means no way to write keys.
    const adminKey = new tls.PrivateKey(`${name}-admin-key`, { algorithm: "ED25519" }, { parent: this, protect: true });
    // The API requires a password at creation; deadPassword below makes this value dead at once.
    const password = new random.RandomPassword(
      `${name}-password`,
      { length: 32, minUpper: 2, minLower: 2, minNumeric: 2, minSpecial: 2, overrideSpecial: "-_.+=" },
      { parent: this },
    );

    const box = new hcloud.StorageBox(
      name,
      {
        name: args.name,
        location: args.location,
        storageBoxType: args.boxType,
        password: password.result,
        sshKeys: [adminKey.publicKeyOpenssh.apply((k) => k.trim())],
        deleteProtection: true,
        // Hosts run outside Hetzner: SSH must be on and reachable from outside. The snapshot
        // directory is shown (zfsEnabled): it is read-only, and the runbook (docs/RESTORE.md,
        // section 11) copies a tenant's repository out of /home/.zfs/snapshot with the main account.
        // No sub-account credential can browse it: their keys are forced to borg serve on one
        // repository and their passwords are dead. Nothing else is used.
        accessSettings: { sshEnabled: true, reachableExternally: true, sambaEnabled: false, webdavEnabled: false, zfsEnabled: true },
        // Daily: hour and minute set, both day fields left unset.
        snapshotPlan: { hour: args.snapshots.hour, minute: args.snapshots.minute, maxSnapshots: args.snapshots.keep },
        labels: { "managed-by": "pulumi", project: "agent-backups" },
      },
      // A replaced or deleted box takes every backup with it; sshKeys cannot change without that.
      // A changed password input must never reset the box to a value that is in the state.
      { parent: this, protect: true, retainOnDelete: true, ignoreChanges: ["sshKeys", "password"], additionalSecretOutputs: ["password"] },
    );
    this.passwordReset = deadPassword(`${name}-password-reset`, { boxId: box.id, resource: box }, { parent: this });

    this.boxId = box.id.apply(Number);
    this.server = box.server;
    this.username = box.username;
    this.knownHosts = box.server.apply((s) => renderKnownHosts(s, args.port, args.hostKeys));
    this.adminPrivateKey = pulumi.secret(adminKey.privateKeyOpenssh);
    this.registerOutputs({ boxId: this.boxId, server: this.server, username: this.username, knownHosts: this.knownHosts });
  }
}
