import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConfigError } from "../../config/common";
import { loadProdConfig, storageBoxHostKeys } from "../../config/prod";
import { ProdOutputs, maxAuthorizedKeysWrites, prodStack } from "../../stacks/prod";
import { MockRun, fixtureScriptsDir, isSecretValue, mockAgentHostKey, mockHostPrivateKey as privateKey, mockKeyExport, plain, prodConfig, runMocked, valueOf } from "./prod-mocks";

const scriptsDir = fixtureScriptsDir();
const archiveDir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-archive-"));
afterAll(() => {
  fs.rmSync(scriptsDir, { recursive: true, force: true });
  fs.rmSync(archiveDir, { recursive: true, force: true });
});

describe("prod stack with two tenants", () => {
  let run: MockRun<ProdOutputs>;
  beforeAll(async () => {
    run = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir, archiveDir }), {
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

  test("the host's private key from config reaches the connection as a secret, with the host's own key pinned", () => {
    const install = run.one("command:remote:Command", "host-acme-install");
    expect(isSecretValue(install.inputs.connection)).toBe(true);
    expect(plain(install.inputs.connection)).toMatchObject({ host: "acme.agents.example.com", user: "ubuntu", port: 22, privateKey, hostKey: mockAgentHostKey });
    for (const r of [...run.byType("command:remote:Command"), ...run.byType("command:remote:CopyToRemote")]) {
      expect(plain<Record<string, unknown>>(r.inputs.connection).hostKey, r.name).toBe(mockAgentHostKey);
    }
  });

  test("the box type's limits were looked up for the configured type before anything was created", () => {
    expect(run.invokes.map((i) => [i.token, i.inputs.name])).toEqual([["hcloud:index/getStorageBoxType:getStorageBoxType", "bx21"]]);
  });

  test("every password of the box is made dead: one reset for the box, one per sub-account", () => {
    const resets = run.byType("command:local:Command").filter((c) => c.name.endsWith("-password-reset")).map((c) => c.name).sort();
    expect(resets).toEqual(["backup-storage-password-reset", "repo-acme-password-reset", "repo-globex-password-reset"]);
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

describe("many tenants on one box", () => {
  test(`at most ${maxAuthorizedKeysWrites} authorized_keys writes (SFTP sessions of the main account) run at once`, async () => {
    const names = Array.from({ length: 10 }, (_, i) => `t${i}x`);
    const run = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir, archiveDir }), {
      config: prodConfig(names),
      secretKeys: ["agent-backups:hostPrivateKeys"],
    });
    await valueOf(run.result.tenants);
    const writes = names.map((n) => run.one("command:local:Command", `repo-${n}-authorized-keys`));
    // Each write waits for the sub-account and, from the fifth on, the write that many tenants earlier:
    // so no more than maxAuthorizedKeysWrites can be running at any moment.
    writes.forEach((w, i) => {
      const deps = w.opts.dependsOn as pulumi.Resource[];
      expect(deps, w.name).toHaveLength(i < maxAuthorizedKeysWrites ? 1 : 2);
    });
    const lanes = writes.map((w) => (w.opts.dependsOn as pulumi.Resource[]).slice(1).map((d) => (d as unknown as { __name: string }).__name));
    expect(lanes.slice(maxAuthorizedKeysWrites)).toEqual(names.slice(0, names.length - maxAuthorizedKeysWrites).map((n) => [`repo-${n}-authorized-keys`]));
  });
});

describe("bad config", () => {
  async function registeredWith(config: Record<string, string>, limits?: Record<string, number>): Promise<{ error: unknown; registered: number }> {
    let registered = 0;
    await pulumi.runtime.setMocks({
      newResource: (a) => { registered++; return { id: "x", state: a.inputs }; },
      call: (a) => ({ ...a.inputs, ...(limits ?? { automaticSnapshotLimit: 20, subaccountsLimit: 100 }) }),
    }, "agent-backups", "prod", false);
    pulumi.runtime.setAllConfig(config, ["agent-backups:hostPrivateKeys"]);
    let error: unknown;
    try {
      await prodStack(undefined, { scriptsDir, archiveDir });
    } catch (e) {
      error = e;
    }
    await new Promise((r) => setTimeout(r, 50));
    return { error, registered };
  }

  test("is refused before any resource exists", async () => {
    const config = prodConfig(["acme"]);
    config["agent-backups:tenants"] = config["agent-backups:tenants"]!.replace('"aws"', '"hetzner"');
    const { error, registered } = await registeredWith(config);
    expect(error).toBeInstanceOf(ConfigError);
    expect(String((error as Error).message)).toMatch(/agent-backups:tenants\[0\]\.host\.provider: host runs at "hetzner"/);
    expect(registered).toBe(0);
  });

  test("a config the box type cannot hold is refused before any resource exists, naming the limit", async () => {
    const { error, registered } = await registeredWith(prodConfig(["acme", "globex"]), { automaticSnapshotLimit: 10, subaccountsLimit: 1 });
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      "agent-backups:storage.snapshots.keep: 14 automatic snapshots, but box type bx21 keeps at most 10",
      "agent-backups:tenants: 2 tenants need as many sub-accounts, but box type bx21 allows at most 1",
    ]);
    expect(registered).toBe(0);
  });
});
