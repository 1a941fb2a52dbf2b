// agent-rekey end to end on a loopback storage box with real borg and a real sshd for the agent
// host: generation 1 is the compromised repository; the generation bump (Pulumi's part, done here
// by hand the way the stack does it) makes generation 2 with new keys and passphrase, reinstalls
// the host config and leaves generation 1 with its maintenance line only. agent-rekey must then
// prove the attacker's push key and passphrase open nothing new, take the first backup on the host
// over SSH and drill it; and it must refuse to call a rekey complete while the old key still works
// or the host still writes to the old repository.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cleanupTemp, makeAgentHome, tempDir } from "../lib/agent-home";
import { runScript, treeDigest } from "../lib/maintain-fixtures";
import { freezeRepository, startHostSsh, writeRecovery, type HostSsh } from "../lib/rekey-offboard-fixtures";
import { scriptsDir, startStorageBox, type StorageBox } from "../lib/storage-box";

const tenant = "acme";
const nextGen = "acme-g2"; // the box's name for generation 2 of the same tenant

let box: StorageBox;
let host: HostSsh;
let work: string;
let home: string;
let oldConfig: string;
let newConfig: string;
let oldRecovery: string;
let newRecovery: string;
let hostAgentBackup: string;

function precious(dir: string): Record<string, string> {
  const d = treeDigest(dir);
  return Object.fromEntries(Object.entries(d).filter(([p]) => p === "SOUL.md" || (p.startsWith("memories/") && !p.endsWith(".lock"))));
}

function rekeyArgs(over: Record<string, string> = {}, extra: string[] = []): string[] {
  const args: Record<string, string> = {
    "--tenant": tenant,
    "--old-recovery": oldRecovery,
    "--old-push-key": box.tenants[tenant]!.keys.push,
    "--new-recovery": newRecovery,
    "--host": "root@127.0.0.1",
    "--host-port": String(host.port),
    "--host-known-hosts": host.knownHosts,
    "--host-ssh-key": host.key,
    "--host-config": newConfig,
    "--host-agent-backup": hostAgentBackup,
    "--drill-target": path.join(work, "drill"),
    "--report": path.join(work, "drill-report.json"),
    ...over,
  };
  return [...Object.entries(args).flat(), ...extra];
}

/** borg with one tenant's key against any repository URL, with any passphrase file. */
function borgWith(keyOf: string, role: "push" | "drill" | "maintenance", repoOf: string, passphraseOf: string, args: string[]) {
  const env = { ...box.borgEnv(keyOf, role), BORG_REPO: box.tenants[repoOf]!.repoUrl, BORG_PASSCOMMAND: `cat ${box.tenants[passphraseOf]!.passphraseFile}` };
  return spawnSync("borg", args, { env, encoding: "utf8", timeout: 120_000 });
}

const newArchives = () => {
  const r = box.borg(nextGen, "drill", ["list", "--short"]);
  if (r.status !== 0) throw new Error(r.stderr);
  return r.stdout.split("\n").filter(Boolean);
};

beforeAll(async () => {
  box = await startStorageBox({ tenants: [tenant, nextGen] });
  work = tempDir("ab-rekey-");
  fs.chmodSync(work, 0o755);
  home = makeAgentHome(path.join(work, "home"), { sessions: 4 }).home;
  host = await startHostSsh(path.join(work, "host"));

  // Generation 1, written by the host that is later compromised.
  oldConfig = box.writeConfig(tenant, { agentHome: home });
  for (const args of [["--init"], []]) {
    const r = runScript("agent-backup", ["--config", oldConfig, ...args], box.clientEnv);
    if (r.status !== 0) throw new Error(`agent-backup ${args.join(" ")}: ${r.stderr}`);
  }
  oldRecovery = path.join(work, "old-recovery.json");
  writeRecovery(box, tenant, tenant, oldRecovery);

  // The generation bump (pulumi up): a new repository initialised from the reinstalled host config
  // with the new push key and passphrase, and the new vault document. The freeze comes later.
  newConfig = box.writeConfig(nextGen, { agentHome: home, override: { ARCHIVE_PREFIX: tenant } });
  const init = runScript("agent-backup", ["--config", newConfig, "--init"], box.clientEnv);
  if (init.status !== 0) throw new Error(`agent-backup --init: ${init.stderr}`);
  newRecovery = path.join(work, "new-recovery.json");
  writeRecovery(box, nextGen, tenant, newRecovery);

  // The host's agent-backup, as root over SSH; its borg state stays in this test's box.
  hostAgentBackup = path.join(work, "host", "agent-backup");
  fs.writeFileSync(hostAgentBackup, `#!/bin/bash\nexport BORG_BASE_DIR=${box.clientEnv.BORG_BASE_DIR}\nexec ${scriptsDir}/agent-backup "$@"\n`, { mode: 0o755 });
}, 600_000);

afterAll(async () => {
  await host?.stop();
  await box?.stop();
  cleanupTemp();
});

describe("agent-rekey refuses bad input (exit 2)", () => {
  test.each([
    ["a tenant with shell characters", { "--tenant": "acme;id" }, /--tenant: refusing/],
    ["another tenant's recovery document", { "--tenant": "globex" }, /acme's recovery document, not globex's/],
    ["a new document that names the old repository", { "--new-recovery": "OLD" }, /names the old repository .* \(pulumi up\) first/],
    ["a host with shell characters", { "--host": "root@127.0.0.1;id" }, /--host host: refusing/],
    ["a relative drill target", { "--drill-target": "drill" }, /--drill-target: refusing/],
  ])("%s", (_what, over, message) => {
    const o = { ...over } as Record<string, string>;
    if (o["--new-recovery"] === "OLD") o["--new-recovery"] = oldRecovery;
    const r = runScript("agent-rekey", rekeyArgs(o));
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
  });

  test.each([
    ["a repository URL with shell characters", { repoUrl: "ssh://u1@box.example:23/./borg;touch /tmp/x" }, /repoUrl: refusing/],
    ["a known_hosts line that is not one", { knownHosts: "box.example ssh-ed25519 AAAA\ncommand=\"id\" ssh-ed25519 AAAA" }, /knownHosts holds a line that is not 'HOST TYPE KEY'/],
    ["a remote borg with arguments", { remoteBorg: "borg --foo" }, /remoteBorg: refusing/],
    ["a key export of no repository", { repoKeyExport: "not a key" }, /repoKeyExport is not a borg key export/],
  ])("a hostile recovery document: %s", (_what, change, message) => {
    const hostile = path.join(work, `hostile-${Object.keys(change)[0]}.json`);
    fs.writeFileSync(hostile, JSON.stringify({ ...JSON.parse(fs.readFileSync(newRecovery, "utf8")), ...change }), { mode: 0o600 });
    const r = runScript("agent-rekey", rekeyArgs({ "--new-recovery": hostile }));
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
  });

  test("a recovery document others can read", () => {
    const loose = path.join(work, "loose.json");
    fs.copyFileSync(newRecovery, loose);
    fs.chmodSync(loose, 0o644);
    const r = runScript("agent-rekey", rekeyArgs({ "--new-recovery": loose }));
    expect(r.stderr).toMatch(/mode 644; it holds secrets/);
    expect(r.status).toBe(2);
  });
});

describe("agent-rekey", () => {
  test("while the old push key still opens the old repository, the rekey is not complete", () => {
    const r = runScript("agent-rekey", rekeyArgs({}, ["--checks-only"]));
    expect(r.status, r.stderr).toBe(1);
    const summary = JSON.parse(r.stdout);
    const failed = summary.checks.filter((c: { ok: boolean }) => !c.ok).map((c: { name: string }) => c.name);
    expect(failed, r.stderr).toEqual(["old-push-key-refused-by-old-repository"]);
    // What passed is real: the old passphrase is refused by the new repository, the key is new.
    expect(summary.checks.find((c: { name: string }) => c.name === "new-key-material").ok).toBe(true);
    expect(summary.firstArchive).toBeNull();
  });

  test("while the host still writes to the old repository, no backup is taken", () => {
    freezeRepository(box, tenant, tenant);
    const r = runScript("agent-rekey", rekeyArgs({ "--host-config": oldConfig }));
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/check host-repository: FAILED/);
    expect(r.stderr).toMatch(/step 3 skipped/);
    expect(newArchives()).toEqual([]);
  });

  test("end to end: the old push key and passphrase open nothing new, the first backup lands in the new repository and restores", () => {
    const r = runScript("agent-rekey", rekeyArgs());
    expect(r.status, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(summary.ok).toBe(true);
    expect(summary.checks.every((c: { ok: boolean }) => c.ok)).toBe(true);
    expect(summary.checks.map((c: { name: string }) => c.name)).toEqual([
      "new-repository",
      "old-push-key-refused-by-old-repository",
      "old-push-key-refused-by-new-repository",
      "old-passphrase-refused-by-new-repository",
      "new-key-material",
      "new-passphrase",
      "old-repository-kept",
      "host-repository",
      "host-push-key",
      "first-backup",
      "drill",
    ]);
    expect(summary.firstArchive).toMatch(new RegExp(`^${tenant}-\\d{4}-\\d{2}-\\d{2}T`));
    expect(newArchives()).toEqual([summary.firstArchive]);

    // The attacker's material, tried independently of the script.
    for (const repoOf of [tenant, nextGen]) {
      const listed = borgWith(tenant, "push", repoOf, tenant, ["list"]);
      expect(listed.status).not.toBe(0);
      const created = borgWith(tenant, "push", repoOf, tenant, ["create", "::attacker", scriptsDir]);
      expect(created.status).not.toBe(0);
      // ssh itself says why (borg may lose that line when the connection closes).
      const t = box.tenants[repoOf]!;
      const probe = spawnSync("ssh", ["-p", String(box.port), "-i", box.tenants[tenant]!.keys.push, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", `UserKnownHostsFile=${box.knownHosts}`, "-T", `${t.user}@127.0.0.1`], { input: "", encoding: "utf8" });
      expect(probe.status).toBe(255);
      expect(probe.stderr).toMatch(/Permission denied/);
    }
    const oldPassNew = borgWith(nextGen, "drill", nextGen, tenant, ["list"]);
    expect(oldPassNew.status).not.toBe(0);
    expect(oldPassNew.stderr).toMatch(/passphrase .*incorrect/i);
    // The old key export is refused for the new repository (another repository id).
    const doc = JSON.parse(fs.readFileSync(oldRecovery, "utf8"));
    const oldExport = path.join(work, "old-key-export");
    fs.writeFileSync(oldExport, `${doc.repoKeyExport}\n`, { mode: 0o600 });
    const imported = spawnSync("borg", ["key", "import", box.tenants[nextGen]!.repoUrl, oldExport], {
      env: box.borgEnv(nextGen, "maintenance"),
      encoding: "utf8",
    });
    expect(imported.status).not.toBe(0);
    // The old repository is frozen, not gone: its maintenance key still lists its archive.
    expect(box.borg(tenant, "maintenance", ["list", "--short"]).stdout.trim().split("\n")).toHaveLength(1);

    // The drill restored the first backup of the new generation: the home comes back.
    const report = JSON.parse(fs.readFileSync(path.join(work, "drill-report.json"), "utf8"));
    expect(report.healthy).toBe(true);
    expect(precious(path.join(work, "drill"))).toEqual(precious(home));
    // No secret in anything it printed.
    for (const secret of [doc.passphrase, JSON.parse(fs.readFileSync(newRecovery, "utf8")).passphrase]) {
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
  });
});
