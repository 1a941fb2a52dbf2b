import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConfigError } from "../../config/common";
import { loadProdConfig, storageBoxHostKeys } from "../../config/prod";
import { ProdOutputs, prodStack } from "../../stacks/prod";
import { MockRun, fixtureScriptsDir, isSecretValue, mockHostPrivateKey as privateKey, mockKeyExport, plain, prodConfig, runMocked, valueOf } from "./prod-mocks";

const scriptsDir = fixtureScriptsDir();
afterAll(() => fs.rmSync(scriptsDir, { recursive: true, force: true }));

describe("prod stack with two tenants", () => {
  let run: MockRun<ProdOutputs>;
  beforeAll(async () => {
    run = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir }), {
      config: prodConfig(["acme", "globex"]),
      secretKeys: ["agent-backups:hostPrivateKeys"],
    });
    await valueOf(run.result.vaultSecretArns);
  });

  test("one box; per tenant a repo, a host backup and a vault entry, all children parented", () => {
    const components = run.resources.filter((r) => !r.custom).map((r) => `${r.type} ${r.name}`);
    expect(components.sort()).toEqual([
      "agent-backups:host:HostBackup host-acme", "agent-backups:host:HostBackup host-globex",
      "agent-backups:storage:StorageBox backup-storage",
      "agent-backups:storage:TenantRepo repo-acme", "agent-backups:storage:TenantRepo repo-globex",
      "agent-backups:vault:ControlVault vault-acme", "agent-backups:vault:ControlVault vault-globex",
    ]);
    for (const r of run.resources.filter((x) => x.custom)) expect(r.parentType, `${r.type} ${r.name}`).toMatch(/^agent-backups:/);
    expect(run.byType("hcloud:index/storageBox:StorageBox")).toHaveLength(1);
    expect(run.byType("hcloud:index/storageBoxSubaccount:StorageBoxSubaccount").map((s) => s.inputs.homeDirectory)).toEqual(["tenants/acme", "tenants/globex"]);
  });

  test("the host's private key from config reaches the connection as a secret", () => {
    const install = run.one("command:remote:Command", "host-acme-install");
    expect(isSecretValue(install.inputs.connection)).toBe(true);
    expect(plain(install.inputs.connection)).toMatchObject({ host: "acme.agents.example.com", user: "ubuntu", port: 22, privateKey });
  });

  test("the push key is what the host gets; the vault gets the key export, maintenance and drill keys", async () => {
    const stdin = plain<string>(run.one("command:remote:Command", "host-acme-install").inputs.stdin);
    const pushKey = run.one("tls:index/privateKey:PrivateKey", "repo-acme-push-key").state.privateKeyOpenssh as string;
    expect(stdin).toContain(`SSH_KEY_B64=${Buffer.from(pushKey).toString("base64")}\n`);
    const doc = JSON.parse(plain(run.one("aws:secretsmanager/secretVersion:SecretVersion", "vault-acme").inputs.secretString));
    expect(doc.repoKeyExport).toBe(mockKeyExport);
    expect(doc.maintenancePrivateKey).toBe(run.one("tls:index/privateKey:PrivateKey", "repo-acme-maintenance-key").state.privateKeyOpenssh);
    expect(doc.drillPrivateKey).toBe(run.one("tls:index/privateKey:PrivateKey", "repo-acme-drill-key").state.privateKeyOpenssh);
    expect(doc.retention).toEqual({ daily: 7, weekly: 4, monthly: 6 });
  });

  test("output `tenants` is plain and exactly the documented shape", async () => {
    const t = await valueOf(run.result.tenants);
    expect(t.secret).toBe(false);
    expect(Object.keys(t.value)).toEqual(["acme", "globex"]);
    const fp = (role: string) => run.one("tls:index/privateKey:PrivateKey", `repo-acme-${role}-key`).state.publicKeyFingerprintSha256;
    expect(t.value.acme).toEqual({
      repoUrl: "ssh://u4242-sub1@u4242-sub1.your-storagebox.de:23/./borg",
      subaccountUser: "u4242-sub1",
      storageHost: "u4242-sub1.your-storagebox.de",
      storagePort: 23,
      remoteBorg: "borg-1.4",
      knownHosts: `[u4242-sub1.your-storagebox.de]:23 ${storageBoxHostKeys[0]}\n`,
      keyFingerprints: { push: fp("push"), drill: fp("drill"), maintenance: fp("maintenance") },
    });
    expect(JSON.stringify(t.value)).not.toMatch(/PRIVATE KEY/);
  });

  test("output `drillAccess` is secret and holds the drill key and passphrase per tenant", async () => {
    const d = await valueOf(run.result.drillAccess);
    expect(d.secret).toBe(true);
    expect(Object.keys(d.value)).toEqual(["acme", "globex"]);
    expect(d.value.globex).toEqual({
      drillPrivateKey: run.one("tls:index/privateKey:PrivateKey", "repo-globex-drill-key").state.privateKeyOpenssh,
      passphrase: run.one("random:index/randomPassword:RandomPassword", "repo-globex-passphrase").state.result,
    });
  });

  test("output `vaultSecretArns` is plain, one ARN per tenant", async () => {
    const a = await valueOf(run.result.vaultSecretArns);
    expect(a.secret).toBe(false);
    expect(a.value).toEqual({
      acme: "arn:aws:secretsmanager:eu-central-1:123456789012:secret:agent-backups/acme/recovery-AbCdEf",
      globex: "arn:aws:secretsmanager:eu-central-1:123456789012:secret:agent-backups/globex/recovery-AbCdEf",
    });
  });
});

describe("bad config", () => {
  test("is refused before any resource exists", async () => {
    let registered = 0;
    await pulumi.runtime.setMocks({ newResource: (a) => { registered++; return { id: "x", state: a.inputs }; }, call: (a) => a.inputs }, "agent-backups", "prod", false);
    const config = prodConfig(["acme"]);
    config["agent-backups:tenants"] = config["agent-backups:tenants"]!.replace('"aws"', '"hetzner"');
    pulumi.runtime.setAllConfig(config, ["agent-backups:hostPrivateKeys"]);
    expect(() => prodStack(undefined, { scriptsDir })).toThrow(ConfigError);
    expect(() => prodStack(undefined, { scriptsDir })).toThrow(/agent-backups:tenants\[0\]\.host\.provider: host runs at "hetzner"/);
    await new Promise((r) => setTimeout(r, 50));
    expect(registered).toBe(0);
  });
});
