import { beforeAll, describe, expect, test } from "vitest";
import { ControlVault } from "../../components/control-vault";
import { MockRun, isSecretValue, plain, runMocked, valueOf } from "./prod-mocks";

const material = {
  tenant: "acme",
  repoUrl: "ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg",
  knownHosts: "[u1-sub1.your-storagebox.de]:23 ssh-ed25519 AAAA\n",
  remoteBorg: "borg-1.4",
  passphrase: "PASSPHRASE",
  maintenancePrivateKey: "MAINTENANCE KEY",
  drillPrivateKey: "DRILL KEY",
  repoKeyExport: "BORG_KEY abc",
  retention: { daily: 7, weekly: 4, monthly: 6 },
};

describe("ControlVault component", () => {
  let run: MockRun<ControlVault>;
  beforeAll(async () => {
    run = await runMocked(() => new ControlVault("vault-acme", { namePrefix: "agent-backups/", replicaRegion: "eu-west-1", material }));
    await valueOf(run.result.secretArn);
  });

  test("one secret per tenant, replicated to the second region, protected and retained", () => {
    const s = run.one("aws:secretsmanager/secret:Secret", "vault-acme");
    expect(s.inputs.name).toBe("agent-backups/acme/recovery");
    expect(s.inputs.replicas).toEqual([{ region: "eu-west-1" }]);
    expect(s.inputs.recoveryWindowInDays).toBe(30);
    expect(s.opts.protect).toBe(true);
    expect(s.opts.retainOnDelete).toBe(true);
    expect(s.parentType).toBe("agent-backups:vault:ControlVault");
  });

  test("the version holds every piece of recovery material, as a secret", () => {
    const v = run.one("aws:secretsmanager/secretVersion:SecretVersion", "vault-acme");
    expect(isSecretValue(v.inputs.secretString)).toBe(true);
    expect(JSON.parse(plain(v.inputs.secretString))).toEqual({
      tenant: "acme", repoUrl: material.repoUrl, knownHosts: material.knownHosts, remoteBorg: "borg-1.4",
      passphrase: "PASSPHRASE", maintenancePrivateKey: "MAINTENANCE KEY", drillPrivateKey: "DRILL KEY",
      repoKeyExport: "BORG_KEY abc", retention: { daily: 7, weekly: 4, monthly: 6 },
    });
    expect(v.inputs.secretId).toBe("vault-acme-id");
    expect(v.opts.additionalSecretOutputs).toContain("secretString");
  });

  test("the ARN is a plain output", async () => {
    const arn = await valueOf(run.result.secretArn);
    expect(arn.secret).toBe(false);
    expect(arn.value).toMatch(/^arn:aws:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:agent-backups\/acme\/recovery-/);
  });
});
