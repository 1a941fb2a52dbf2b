import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConfigError } from "../../config/common";
import { loadProdConfig, storageBoxHostKeys } from "../../config/prod";
import { ProdOutputs, maxAuthorizedKeysWrites, prodStack } from "../../stacks/prod";
import { tenantRepoName } from "../../components/tenant-repo";
import { mockBoxFor } from "./prod-mocks";
import { MockRun, fixtureScriptsDir, isSecretValue, mockAgentHostKey, mockBox, mockHostPrivateKey as privateKey, mockKeyExport, mockSubaccountUser, plain, prodConfig, runMocked, valueOf } from "./prod-mocks";

/** The repository component's name of a tenant's generation-1 repository on the default box. */
const repo = (tenant: string) => tenantRepoName(tenant, "agent-backups", 1);
const mockBoxId = (box: string) => mockBoxFor(box).id;

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
      "agent-backups:storage:StorageBox box-agent-backups",
      `agent-backups:storage:TenantRepo ${repo("acme")}`, `agent-backups:storage:TenantRepo ${repo("globex")}`,
      "agent-backups:vault:ControlVault vault-acme", "agent-backups:vault:ControlVault vault-globex",
    ]);
    for (const r of run.resources.filter((x) => x.custom)) expect(r.parentType, `${r.type} ${r.name}`).toMatch(/^agent-backups:/);
    expect(run.byType("hcloud:index/storageBox:StorageBox")).toHaveLength(1);
    expect(run.byType("hcloud:index/storageBoxSubaccount:StorageBoxSubaccount").map((s) => s.inputs.homeDirectory)).toEqual(["tenants/acme/g1", "tenants/globex/g1"]);
  });

  test("a tenant is 17 resources (14 of them custom); the box 5", () => {
    const of = (prefix: string[]) => run.resources.filter((r) => prefix.some((p) => r.name === p || r.name.startsWith(`${p}-`)));
    expect(of([repo("acme"), "host-acme", "vault-acme"]).length).toBe(17);
    expect(of([repo("acme"), "host-acme", "vault-acme"]).filter((r) => r.custom).length).toBe(14);
    expect(of(["box-agent-backups"]).length).toBe(5);
    expect(run.resources.length).toBe(5 + 2 * 17);
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
    expect(resets).toEqual(["box-agent-backups-password-reset", `${repo("acme")}-password-reset`, `${repo("globex")}-password-reset`]);
  });

  test("the push key is what the host gets; the vault gets the key export, maintenance and drill keys", async () => {
    const stdin = plain<string>(run.one("command:remote:Command", "host-acme-install").inputs.stdin);
    const pushKey = run.one("tls:index/privateKey:PrivateKey", `${repo("acme")}-push-key`).state.privateKeyOpenssh as string;
    expect(stdin).toContain(`SSH_KEY_B64=${Buffer.from(pushKey).toString("base64")}\n`);
    const doc = JSON.parse(plain(run.one("aws:secretsmanager/secretVersion:SecretVersion", "vault-acme").inputs.secretString));
    expect(doc.repoKeyExport).toBe(mockKeyExport);
    expect(doc.maintenancePrivateKey).toBe(run.one("tls:index/privateKey:PrivateKey", `${repo("acme")}-maintenance-key`).state.privateKeyOpenssh);
    expect(doc.drillPrivateKey).toBe(run.one("tls:index/privateKey:PrivateKey", `${repo("acme")}-drill-key`).state.privateKeyOpenssh);
    expect(doc.retention).toEqual({ daily: 7, weekly: 4, monthly: 6 });
  });

  test("output `tenants` is plain and exactly the documented shape", async () => {
    const t = await valueOf(run.result.tenants);
    expect(t.secret).toBe(false);
    expect(Object.keys(t.value)).toEqual(["acme", "globex"]);
    const fp = (role: string) => run.one("tls:index/privateKey:PrivateKey", `${repo("acme")}-${role}-key`).state.publicKeyFingerprintSha256;
    const user = mockSubaccountUser(mockBox.id, repo("acme"));
    expect(t.value.acme).toEqual({
      box: "agent-backups",
      generation: 1,
      boxHost: mockBox.server,
      repoUrl: `ssh://${user}@${user}.your-storagebox.de:23/./borg`,
      repoPath: "tenants/acme/g1/borg",
      subaccountUser: user,
      storageHost: `${user}.your-storagebox.de`,
      storagePort: 23,
      remoteBorg: "borg-1.4",
      knownHosts: `[${user}.your-storagebox.de]:23 ${storageBoxHostKeys[0]}\n`,
      keyFingerprints: { push: fp("push"), drill: fp("drill"), maintenance: fp("maintenance") },
      retired: [],
    });
    expect(JSON.stringify(t.value)).not.toMatch(/PRIVATE KEY/);
  });

  test("output `drillAccess` is secret and holds the drill key and passphrase per tenant", async () => {
    const d = await valueOf(run.result.drillAccess);
    expect(d.secret).toBe(true);
    expect(Object.keys(d.value)).toEqual(["acme", "globex"]);
    expect(d.value.globex).toEqual({
      drillPrivateKey: run.one("tls:index/privateKey:PrivateKey", `${repo("globex")}-drill-key`).state.privateKeyOpenssh,
      passphrase: run.one("random:index/randomPassword:RandomPassword", `${repo("globex")}-passphrase`).state.result,
    });
  });

  test("output `boxes` is plain: each box's main account server and its tenants", async () => {
    const b = await valueOf(run.result.boxes);
    expect(b.secret).toBe(false);
    expect(b.value).toEqual({ "agent-backups": { id: Number(mockBox.id), server: mockBox.server, username: mockBox.username, location: "fsn1", boxType: "bx21", tenants: ["acme", "globex"] } });
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

describe("many tenants on two boxes", () => {
  test(`per box, at most ${maxAuthorizedKeysWrites} authorized_keys writes (SFTP sessions of its main account) run at once`, async () => {
    const names = Array.from({ length: 14 }, (_, i) => `t${i}x`);
    // Alternating boxes, and one tenant with a retired repository: its write is in its box's lane too.
    const tenants = names.map((name, i) => ({ name, box: i % 2 === 0 ? "box-a" : "box-b", ...(name === "t4x" ? { generation: 2, retired: [{ box: "box-a", generation: 1 }] } : {}) }));
    const run = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir, archiveDir }), {
      config: prodConfig(tenants, [{ name: "box-a" }, { name: "box-b" }]),
      secretKeys: ["agent-backups:hostPrivateKeys"],
    });
    await valueOf(run.result.tenants);
    const lane = (box: string) =>
      tenants.filter((t) => t.box === box).flatMap((t) => [tenantRepoName(t.name, box, t.generation ?? 1), ...(t.retired ?? []).map((r) => tenantRepoName(t.name, r.box, r.generation))]);
    for (const box of ["box-a", "box-b"]) {
      const repos = lane(box);
      expect(repos.length).toBeGreaterThan(maxAuthorizedKeysWrites);
      const writes = repos.map((r) => run.one("command:local:Command", `${r}-authorized-keys`));
      // Each write waits for its sub-account and, from the fifth on its box, for the write that
      // many places before it on the same box: never more than maxAuthorizedKeysWrites at once.
      const waits = writes.map((w) => (w.opts.dependsOn as pulumi.Resource[]).slice(1).map((d) => (d as unknown as { __name: string }).__name));
      expect(waits, box).toEqual(repos.map((_, i) => (i < maxAuthorizedKeysWrites ? [] : [`${repos[i - maxAuthorizedKeysWrites]}-authorized-keys`])));
      // The write goes through this box's own main account.
      for (const w of writes) expect(w.inputs.environment.BOX_HOST, w.name).toBe(`u${mockBoxId(box)}.your-storagebox.de`);
    }
  });
});

describe("bad config", () => {
  async function registeredWith(config: Record<string, string>, limits?: (boxType: string) => Record<string, number>): Promise<{ error: unknown; registered: number }> {
    let registered = 0;
    await pulumi.runtime.setMocks({
      newResource: (a) => { registered++; return { id: "x", state: a.inputs }; },
      call: (a) => ({ ...a.inputs, ...(limits?.(String(a.inputs.name)) ?? { automaticSnapshotLimit: 20, subaccountsLimit: 100 }) }),
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

  test("a config a box's type cannot hold is refused before any resource exists, naming the box and the limit", async () => {
    const config = prodConfig([{ name: "acme", box: "fsn-a" }, { name: "globex", box: "hel-b" }, { name: "initech", box: "hel-b" }], [{ name: "fsn-a" }, { name: "hel-b", boxType: "bx11", keep: 30 }]);
    const { error, registered } = await registeredWith(config, (type) => (type === "bx11" ? { automaticSnapshotLimit: 10, subaccountsLimit: 1 } : { automaticSnapshotLimit: 20, subaccountsLimit: 100 }));
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems).toEqual([
      'agent-backups:storage.boxes[1].snapshots.keep: box "hel-b": 30 automatic snapshots, but box type bx11 keeps at most 10',
      'agent-backups:storage.boxes[1]: box "hel-b": 2 repositories need as many sub-accounts (2 current, 0 retired), but box type bx11 allows at most 1',
    ]);
    expect(registered).toBe(0);
  });
});
