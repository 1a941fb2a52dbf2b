// The control vault: per tenant one AWS Secrets Manager secret, replicated to a second region,
// holding what a restore needs when the host and Pulumi state are gone.
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";

/** The recovery material of one tenant; every field but the descriptive ones is secret. */
export interface RecoveryMaterial {
  tenant: string;
  repoUrl: pulumi.Input<string>;
  knownHosts: pulumi.Input<string>;
  remoteBorg: string;
  passphrase: pulumi.Input<string>;
  maintenancePrivateKey: pulumi.Input<string>;
  drillPrivateKey: pulumi.Input<string>;
  /** `borg key export` of the repository, taken right after init. */
  repoKeyExport: pulumi.Input<string>;
  retention: { daily: number; weekly: number; monthly: number };
}

export interface ControlVaultArgs {
  /** Secret names are `<namePrefix><tenant>/recovery`. */
  namePrefix: string;
  /** The second region every secret is replicated to. */
  replicaRegion: string;
  material: RecoveryMaterial;
}

/** The JSON stored in the vault; keys sorted so an unchanged input never shows a diff. */
export function recoveryDocument(m: { [K in keyof RecoveryMaterial]: pulumi.Unwrap<RecoveryMaterial[K]> }): string {
  const doc = {
    drillPrivateKey: m.drillPrivateKey,
    knownHosts: m.knownHosts,
    maintenancePrivateKey: m.maintenancePrivateKey,
    passphrase: m.passphrase,
    remoteBorg: m.remoteBorg,
    repoKeyExport: m.repoKeyExport,
    repoUrl: m.repoUrl,
    retention: { daily: m.retention.daily, monthly: m.retention.monthly, weekly: m.retention.weekly },
    tenant: m.tenant,
  };
  return JSON.stringify(doc);
}

export class ControlVault extends pulumi.ComponentResource {
  readonly secretArn: pulumi.Output<string>;

  constructor(name: string, args: ControlVaultArgs, opts?: pulumi.ComponentResourceOptions) {
    super("agent-backups:vault:ControlVault", name, {}, opts);
    const m = args.material;
    const secret = new aws.secretsmanager.Secret(
      name,
      {
        name: `${args.namePrefix}${m.tenant}/recovery`,
        description: `agent-backups recovery material of tenant ${m.tenant}: borg passphrase, key export, maintenance and drill keys`,
        replicas: [{ region: args.replicaRegion }],
        recoveryWindowInDays: 30,
        tags: { "managed-by": "pulumi", project: "agent-backups", tenant: m.tenant },
      },
      // Without it no restore is possible once the host is gone.
      { parent: this, protect: true, retainOnDelete: true },
    );
    const document = pulumi
      .all([m.repoUrl, m.knownHosts, m.passphrase, m.maintenancePrivateKey, m.drillPrivateKey, m.repoKeyExport])
      .apply(([repoUrl, knownHosts, passphrase, maintenancePrivateKey, drillPrivateKey, repoKeyExport]) =>
        recoveryDocument({ ...m, repoUrl, knownHosts, passphrase, maintenancePrivateKey, drillPrivateKey, repoKeyExport }),
      );
    new aws.secretsmanager.SecretVersion(
      name,
      { secretId: secret.id, secretString: pulumi.secret(document) },
      { parent: this, retainOnDelete: true, additionalSecretOutputs: ["secretString"] },
    );
    this.secretArn = secret.arn;
    this.registerOutputs({ secretArn: this.secretArn });
  }
}
