// The fleet under mocks: tenants on several boxes, onboarding one tenant touches only its own
// resources, and a repository generation (a rekey, or a move to another box) replaces exactly the
// tenant's repository resources and keeps the old repository frozen with the maintenance key only.
// Two runs of the program are compared the way `pulumi up` would: by resource name and inputs.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { tenantRepoName } from "../../components/tenant-repo";
import { loadProdConfig } from "../../config/prod";
import { ProdOutputs, prodStack } from "../../stacks/prod";
import { MockBoxConfig, MockTenant, MockRun, fixtureScriptsDir, mockBoxFor, plain, prodConfig, runMocked, valueOf } from "./prod-mocks";

const scriptsDir = fixtureScriptsDir();
const archiveDir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-archive-"));
afterAll(() => {
  fs.rmSync(scriptsDir, { recursive: true, force: true });
  fs.rmSync(archiveDir, { recursive: true, force: true });
});

const boxes: MockBoxConfig[] = [{ name: "fsn-a" }, { name: "hel-b", location: "hel1" }];
const fleet: MockTenant[] = [
  { name: "acme", box: "fsn-a" },
  { name: "globex", box: "hel-b" },
  { name: "initech", box: "fsn-a" },
  { name: "umbrella", box: "hel-b" },
  { name: "hooli", box: "fsn-a" },
  { name: "wayne", box: "hel-b" },
];

async function evaluate(tenants: MockTenant[]): Promise<MockRun<ProdOutputs>> {
  const run = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir, archiveDir }), {
    config: prodConfig(tenants, boxes),
    secretKeys: ["agent-backups:hostPrivateKeys"],
  });
  await valueOf(run.result.tenants);
  await valueOf(run.result.vaultSecretArns);
  return run;
}

/** Every resource of a run by `type name`, with its inputs as the engine would diff them. */
function snapshot(run: MockRun<unknown>): Map<string, string> {
  return new Map(run.resources.map((r) => [`${r.type} ${r.name}`, JSON.stringify(r.inputs)]));
}

/** What `pulumi up` from `before` to `after` would do: resources added, removed, with changed inputs. */
function diff(before: Map<string, string>, after: Map<string, string>): { added: string[]; removed: string[]; changed: string[]; same: string[] } {
  const added = [...after.keys()].filter((k) => !before.has(k)).sort();
  const removed = [...before.keys()].filter((k) => !after.has(k)).sort();
  const common = [...after.keys()].filter((k) => before.has(k));
  return {
    added,
    removed,
    changed: common.filter((k) => before.get(k) !== after.get(k)).sort(),
    same: common.filter((k) => before.get(k) === after.get(k)).sort(),
  };
}

const belongsTo = (key: string, prefixes: string[]) => prefixes.some((p) => key.endsWith(` ${p}`) || key.includes(` ${p}-`));

describe("several boxes", () => {
  test("each box is its own Storage Box with its own main account and snapshot plan; each tenant's sub-account is on its box", async () => {
    const run = await evaluate(fleet);
    const hcloudBoxes = run.byType("hcloud:index/storageBox:StorageBox");
    expect(hcloudBoxes.map((b) => [b.name, b.inputs.name, b.inputs.location])).toEqual([["box-fsn-a", "fsn-a", "fsn1"], ["box-hel-b", "hel-b", "hel1"]]);
    const subs = run.byType("hcloud:index/storageBoxSubaccount:StorageBoxSubaccount");
    for (const t of fleet as { name: string; box: string }[]) {
      const sub = subs.find((s) => s.name === tenantRepoName(t.name, t.box, 1));
      expect(sub?.inputs.storageBoxId, t.name).toBe(Number(mockBoxFor(t.box).id));
    }
    const out = await valueOf(run.result.boxes);
    expect(out.value["fsn-a"]?.tenants).toEqual(["acme", "initech", "hooli"]);
    expect(out.value["hel-b"]?.tenants).toEqual(["globex", "umbrella", "wayne"]);
    const tenants = (await valueOf(run.result.tenants)).value;
    expect(tenants.globex?.boxHost).toBe(mockBoxFor("hel-b").server);
    expect(tenants.globex?.repoUrl).toMatch(new RegExp(`^ssh://u${mockBoxFor("hel-b").id}-sub[0-9]+@`));
  });

  test("onboarding a tenant on box B (listed anywhere in the config) adds only its own resources: every other resource keeps its name and inputs, box A and box B's own resources included", async () => {
    const before = snapshot(await evaluate(fleet));
    // Inserted in the middle of the list: assignment and names do not depend on list position.
    const after = snapshot(await evaluate([...fleet.slice(0, 2), { name: "stark", box: "hel-b" }, ...fleet.slice(2)]));
    const d = diff(before, after);
    expect(d.removed).toEqual([]);
    expect(d.changed).toEqual([]);
    expect(d.added.length).toBe(17);
    for (const k of d.added) expect(belongsTo(k, [tenantRepoName("stark", "hel-b", 1), "host-stark", "vault-stark"]), k).toBe(true);
    expect(d.same.length).toBe(before.size);
    for (const box of ["box-fsn-a", "box-hel-b"]) expect(d.same.filter((k) => belongsTo(k, [box])).length, box).toBe(5);
  });

  test("the limits are looked up once per box type in use", async () => {
    const run = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir, archiveDir }), {
      config: prodConfig(fleet, [{ name: "fsn-a", boxType: "bx21" }, { name: "hel-b", boxType: "bx11" }, { name: "nbg-c", boxType: "bx21" }]),
      secretKeys: ["agent-backups:hostPrivateKeys"],
    });
    await valueOf(run.result.tenants);
    expect(run.invokes.map((i) => [i.token, i.inputs.name])).toEqual([
      ["hcloud:index/getStorageBoxType:getStorageBoxType", "bx21"], ["hcloud:index/getStorageBoxType:getStorageBoxType", "bx11"],
    ]);
    expect(run.byType("hcloud:index/storageBox:StorageBox").map((b) => b.inputs.storageBoxType)).toEqual(["bx21", "bx11", "bx21"]);
  });

  test("adding a box changes nothing that exists", async () => {
    const before = snapshot(await evaluate(fleet));
    const run = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir, archiveDir }), {
      config: prodConfig(fleet, [...boxes, { name: "nbg-c", location: "nbg1" }]),
      secretKeys: ["agent-backups:hostPrivateKeys"],
    });
    await valueOf(run.result.tenants);
    const d = diff(before, snapshot(run));
    expect([d.removed, d.changed]).toEqual([[], []]);
    expect(d.added.every((k) => belongsTo(k, ["box-nbg-c"]))).toBe(true);
  });
});

describe("repository generations", () => {
  const old = tenantRepoName("initech", "fsn-a", 1);

  /** The diff of one tenant's change, and the frozen repository's authorized_keys after it. */
  async function change(next: MockTenant): Promise<{ d: ReturnType<typeof diff>; after: MockRun<ProdOutputs>; before: MockRun<ProdOutputs> }> {
    const before = await evaluate(fleet);
    const after = await evaluate(fleet.map((t) => (typeof t !== "string" && t.name === "initech" ? next : t)));
    return { d: diff(snapshot(before), snapshot(after)), before, after };
  }

  function expectFrozen(after: MockRun<ProdOutputs>, before: MockRun<ProdOutputs>): void {
    const maintenance = after.one("tls:index/privateKey:PrivateKey", `${old}-maintenance-key`).state.publicKeyOpenssh.trim();
    expect(maintenance).toBe(before.one("tls:index/privateKey:PrivateKey", `${old}-maintenance-key`).state.publicKeyOpenssh.trim());
    const write = after.one("command:local:Command", `${old}-authorized-keys`);
    expect(write.inputs.environment.AUTHORIZED_KEYS).toBe(`command="borg-1.4 serve --restrict-to-repository /home/borg",restrict ${maintenance} maintenance@initech\n`);
    expect(write.inputs.environment.HOME_DIR).toBe("tenants/initech/g1");
    expect(write.inputs.environment.BOX_HOST).toBe(mockBoxFor("fsn-a").server);
  }

  /** The resources of the tenant that a new generation must change (host install, vault version). */
  const followers = [
    "command:remote:Command host-initech-upload-dir", "command:remote:CopyToRemote host-initech-host-files",
    "command:remote:Command host-initech-install", "command:remote:Command host-initech-key-export",
    "aws:secretsmanager/secretVersion:SecretVersion vault-initech",
  ];

  test("a generation bump: a new repository (sub-account, keys, passphrase), the old one frozen with the maintenance key only, the host and the vault on the new one; nothing else changes", async () => {
    const { d, before, after } = await change({ name: "initech", box: "fsn-a", generation: 2, retired: [{ box: "fsn-a", generation: 1 }] });
    const fresh = tenantRepoName("initech", "fsn-a", 2);
    expect(d.added.length).toBe(9);
    for (const k of d.added) expect(belongsTo(k, [fresh]), k).toBe(true);
    expect(d.added).toEqual(expect.arrayContaining([
      `hcloud:index/storageBoxSubaccount:StorageBoxSubaccount ${fresh}`, `random:index/randomPassword:RandomPassword ${fresh}-passphrase`,
      `tls:index/privateKey:PrivateKey ${fresh}-push-key`, `tls:index/privateKey:PrivateKey ${fresh}-drill-key`, `tls:index/privateKey:PrivateKey ${fresh}-maintenance-key`,
    ]));
    // The old push and drill keys leave the state: nothing holds them any more.
    expect(d.removed).toEqual([`tls:index/privateKey:PrivateKey ${old}-drill-key`, `tls:index/privateKey:PrivateKey ${old}-push-key`]);
    expect(d.changed).toEqual([`command:local:Command ${old}-authorized-keys`, ...followers].sort());
    // The old sub-account, passphrase, maintenance key and password are kept as they were.
    for (const k of [`hcloud:index/storageBoxSubaccount:StorageBoxSubaccount ${old}`, `random:index/randomPassword:RandomPassword ${old}-passphrase`, `tls:index/privateKey:PrivateKey ${old}-maintenance-key`, `command:local:Command ${old}-password-reset`]) {
      expect(d.same, k).toContain(k);
    }
    expectFrozen(after, before);

    // The host and the vault now hold the new repository's push key, passphrase and URL.
    const pushKey = after.one("tls:index/privateKey:PrivateKey", `${fresh}-push-key`).state.privateKeyOpenssh as string;
    const passphrase = after.one("random:index/randomPassword:RandomPassword", `${fresh}-passphrase`).state.result as string;
    const oldPassphrase = before.one("random:index/randomPassword:RandomPassword", `${old}-passphrase`).state.result as string;
    expect(passphrase).not.toBe(oldPassphrase);
    const stdin = plain<string>(after.one("command:remote:Command", "host-initech-install").inputs.stdin);
    expect(stdin).toContain(Buffer.from(pushKey).toString("base64"));
    expect(stdin).not.toContain(Buffer.from(before.one("tls:index/privateKey:PrivateKey", `${old}-push-key`).state.privateKeyOpenssh as string).toString("base64"));
    const doc = JSON.parse(plain(after.one("aws:secretsmanager/secretVersion:SecretVersion", "vault-initech").inputs.secretString));
    const tenants = (await valueOf(after.result.tenants)).value;
    expect(doc.passphrase).toBe(passphrase);
    expect(doc.repoUrl).toBe(tenants.initech?.repoUrl);
    expect(doc.maintenancePrivateKey).toBe(after.one("tls:index/privateKey:PrivateKey", `${fresh}-maintenance-key`).state.privateKeyOpenssh);

    // The outputs say where both repositories are (no secret in them).
    const out = await valueOf(after.result.tenants);
    expect(out.secret).toBe(false);
    expect(JSON.stringify(out.value)).not.toMatch(/PRIVATE KEY|passphrase/i);
    for (const s of [passphrase, oldPassphrase]) expect(JSON.stringify(out.value)).not.toContain(s);
    const oldTenants = (await valueOf(before.result.tenants)).value;
    expect(tenants.initech).toMatchObject({ box: "fsn-a", generation: 2, repoPath: "tenants/initech/g2/borg" });
    expect(tenants.initech?.retired).toEqual([{ ...oldTenants.initech, keyFingerprints: { maintenance: oldTenants.initech?.keyFingerprints.maintenance } }].map(({ box, generation, boxHost, subaccountUser, storageHost, repoUrl, repoPath, keyFingerprints }) => ({ box, generation, boxHost, subaccountUser, storageHost, repoUrl, repoPath, keyFingerprints })));
    expect(tenants.initech?.retired[0]?.repoPath).toBe("tenants/initech/g1/borg");
  });

  test("a move to another box: a new repository there, the old one kept frozen on the old box; the other tenants on both boxes unchanged", async () => {
    const { d, before, after } = await change({ name: "initech", box: "hel-b", retired: [{ box: "fsn-a", generation: 1 }] });
    const fresh = tenantRepoName("initech", "hel-b", 1);
    expect(d.added.length).toBe(9);
    for (const k of d.added) expect(belongsTo(k, [fresh]), k).toBe(true);
    expect(after.one("hcloud:index/storageBoxSubaccount:StorageBoxSubaccount", fresh).inputs).toMatchObject({ storageBoxId: Number(mockBoxFor("hel-b").id), homeDirectory: "tenants/initech/g1" });
    expect(after.one("command:local:Command", `${fresh}-authorized-keys`).inputs.environment.BOX_HOST).toBe(mockBoxFor("hel-b").server);
    expect(d.removed).toEqual([`tls:index/privateKey:PrivateKey ${old}-drill-key`, `tls:index/privateKey:PrivateKey ${old}-push-key`]);
    expect(d.changed).toEqual([`command:local:Command ${old}-authorized-keys`, ...followers].sort());
    expectFrozen(after, before);
    const t = (await valueOf(after.result.tenants)).value.initech;
    expect([t?.box, t?.boxHost, t?.retired.map((r) => [r.box, r.generation, r.boxHost])]).toEqual(["hel-b", mockBoxFor("hel-b").server, [["fsn-a", 1, mockBoxFor("fsn-a").server]]]);
    const b = (await valueOf(after.result.boxes)).value;
    expect(b["fsn-a"]?.tenants).toEqual(["acme", "hooli"]);
    expect(b["hel-b"]?.tenants).toEqual(["globex", "initech", "umbrella", "wayne"]);
  });

  test("deleting the retired entry is what removes the old repository from the stack (protected: pulumi up refuses until the operator unprotects it)", async () => {
    const bumped: MockTenant = { name: "initech", box: "fsn-a", generation: 2, retired: [{ box: "fsn-a", generation: 1 }] };
    const withRetired = await evaluate(fleet.map((t) => (typeof t !== "string" && t.name === "initech" ? bumped : t)));
    const withoutRetired = await evaluate(fleet.map((t) => (typeof t !== "string" && t.name === "initech" ? { ...bumped, retired: [] } : t)));
    const d = diff(snapshot(withRetired), snapshot(withoutRetired));
    expect([d.added, d.changed]).toEqual([[], []]);
    expect(d.removed.every((k) => belongsTo(k, [old]))).toBe(true);
    const protectedOnes = d.removed.filter((k) => withRetired.resources.find((r) => `${r.type} ${r.name}` === k)?.opts.protect === true);
    expect(protectedOnes.sort()).toEqual([`hcloud:index/storageBoxSubaccount:StorageBoxSubaccount ${old}`, `random:index/randomPassword:RandomPassword ${old}-passphrase`]);
  });
});
