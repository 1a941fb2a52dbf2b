// The last two sections of docs/RESTORE.md are run, not just read: the `bash runbook:rekey` and
// `bash runbook:offboard` blocks are executed as written against a loopback storage box with real
// borg archives. The rekey runs after a generation bump made by hand the way `pulumi up` makes it,
// with an agent host on loopback whose sshd maps the host's well-known paths (the config, the push
// key, the backup service) to this test's files. The offboarding then deletes both generations
// through a fake Storage Box API and a fake `aws` on PATH. (docs/RESTORE.md's other sections and
// its `operator` blocks are test/host/runbook.test.ts's.)
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cleanupTemp, makeAgentHome, tempDir } from "../lib/agent-home";
import { runScript } from "../lib/maintain-fixtures";
import { fakeAws, freezeRepository, startFakeApi, startHostSsh, writeRecovery, type FakeApi, type HostSsh } from "../lib/rekey-offboard-fixtures";
import { blocks, codeOf, runbookFile } from "../lib/runbook-blocks";
import { repoRoot, scriptsDir, startStorageBox, type StorageBox } from "../lib/storage-box";

const tenant = "acme";
const nextGen = "acme-g2";
const boxId = 777;
const token = randomBytes(32).toString("hex");
const regions = { primary: "eu-central-1", replica: "eu-west-1" };
const vaultSecret = `agent-backups/${tenant}/recovery`;


let box: StorageBox;
let host: HostSsh;
let api: FakeApi;
let aws: ReturnType<typeof fakeAws>;
let work: string;
let home: string;
let vars: Record<string, string>;

/** Run the blocks of the given tags in one strict bash, asynchronously (the fake API answers from this process). */
function runBlocks(tags: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const script = tags.map(codeOf).join("\n");
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BORG_")));
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-euo", "pipefail", "-c", script], { cwd: repoRoot, env: { ...clean, ...vars, ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGTERM"), 900_000);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  box = await startStorageBox({ tenants: [tenant, nextGen] });
  work = tempDir("ab-runbook-rekey-");
  fs.chmodSync(work, 0o755);
  home = makeAgentHome(path.join(work, "home"), { sessions: 3 }).home;
  const rekeyWork = path.join(work, "rekey");
  const offboardWork = path.join(work, "offboard");
  fs.mkdirSync(rekeyWork, { mode: 0o700 });
  fs.mkdirSync(offboardWork, { mode: 0o700 });

  // Generation 1, written by the host before the compromise.
  const oldConfig = box.writeConfig(tenant, { agentHome: home });
  for (const args of [["--init"], []]) {
    const r = runScript("agent-backup", ["--config", oldConfig, ...args], box.clientEnv);
    if (r.status !== 0) throw new Error(`agent-backup: ${r.stderr}`);
  }
  // The operator block before the stack change: the old recovery document and push key.
  writeRecovery(box, tenant, tenant, path.join(rekeyWork, "old-recovery.json"));
  fs.copyFileSync(box.tenants[tenant]!.keys.push, path.join(rekeyWork, "old-push-key"));
  fs.chmodSync(path.join(rekeyWork, "old-push-key"), 0o600);

  // pulumi up: the new generation (repository initialised by the reinstalled host), the old one frozen.
  const newConfig = box.writeConfig(nextGen, { agentHome: home, override: { ARCHIVE_PREFIX: tenant } });
  const init = runScript("agent-backup", ["--config", newConfig, "--init"], box.clientEnv);
  if (init.status !== 0) throw new Error(`agent-backup --init: ${init.stderr}`);
  freezeRepository(box, tenant, tenant);
  writeRecovery(box, nextGen, tenant, path.join(rekeyWork, "new-recovery.json"));

  // The agent host: its sshd maps the host's well-known paths to this test's config and key.
  const hostDir = path.join(work, "host");
  fs.mkdirSync(hostDir, { mode: 0o700 });
  const hostConfig = path.join(hostDir, "agent-backup.conf");
  fs.writeFileSync(hostConfig, fs.readFileSync(newConfig, "utf8").replace(/^SSH_KEY=.*$/m, "SSH_KEY=/etc/agent-backup/ssh_key"), { mode: 0o600 });
  const wrapper = path.join(hostDir, "host-commands");
  fs.writeFileSync(
    wrapper,
    [
      "#!/bin/bash",
      "set -euo pipefail",
      'case ${SSH_ORIGINAL_COMMAND:-} in',
      `  "cat /etc/agent-backup/agent-backup.conf") exec cat ${hostConfig} ;;`,
      `  "ssh-keygen -y -f /etc/agent-backup/ssh_key") exec ssh-keygen -y -f ${box.tenants[nextGen]!.keys.push} ;;`,
      `  "systemctl start agent-backup.service") BORG_BASE_DIR=${box.clientEnv.BORG_BASE_DIR} exec ${scriptsDir}/agent-backup --config ${newConfig} ;;`,
      '  *) echo "host stand-in: unexpected command: $SSH_ORIGINAL_COMMAND" >&2; exit 3 ;;',
      "esac",
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  host = await startHostSsh(path.join(hostDir, "sshd"), { forceCommand: wrapper });
  fs.copyFileSync(host.key, path.join(rekeyWork, "host_key"));
  fs.chmodSync(path.join(rekeyWork, "host_key"), 0o600);
  fs.copyFileSync(host.knownHosts, path.join(rekeyWork, "host_known_hosts"));

  // Offboarding's stand-ins: the Storage Box API and the vault.
  api = await startFakeApi({
    token,
    boxId,
    subaccounts: [tenant, nextGen].map((t, i) => ({
      id: 50 + i,
      username: box.tenants[t]!.user,
      onDelete: () => fs.rmSync(path.join(path.dirname(box.tenants[t]!.repoPath), ".ssh", "authorized_keys")),
    })),
    snapshotPlan: { max_snapshots: 14, minute: 30, hour: 2, day_of_week: null, day_of_month: null },
    snapshots: [{ id: 1, name: "yesterday", created: new Date(Date.now() - 86_400_000).toISOString(), is_automatic: true }],
  });
  aws = fakeAws(path.join(work, "aws"), vaultSecret, regions);
  // The operator block of the offboarding: the recovery documents of both generations.
  fs.copyFileSync(path.join(rekeyWork, "new-recovery.json"), path.join(offboardWork, "recovery.json"));
  fs.copyFileSync(path.join(rekeyWork, "old-recovery.json"), path.join(offboardWork, "retired-g1.json"));

  vars = {
    TENANT: tenant,
    VAULT_SECRET: vaultSecret,
    REKEY_WORK: rekeyWork,
    BOX: "box1",
    OLD_GEN: "1",
    HOST: "root@127.0.0.1",
    HOST_PORT: String(host.port),
    OFFBOARD_WORK: offboardWork,
    BOX_ID: String(boxId),
    VAULT_REGION: regions.primary,
    VAULT_REPLICA_REGION: regions.replica,
    PATH: `${aws.bin}:${scriptsDir}:${process.env.PATH}`,
  };
}, 600_000);

afterAll(async () => {
  await api?.stop();
  await host?.stop();
  await box?.stop();
  cleanupTemp();
});

describe("docs/RESTORE.md: rekey and offboarding", () => {
  test("the two sections are the last of the page and hold their runnable blocks", () => {
    const text = fs.readFileSync(runbookFile, "utf8");
    const headings = [...text.matchAll(/^## (.*)$/gm)].map((m) => m[1]);
    expect(headings.slice(-2)).toEqual(["After a host compromise: rekey", "Offboarding a tenant"]);
    const rekeyAt = text.indexOf("## After a host compromise: rekey");
    const mine = blocks().filter((b) => b.tag.startsWith("runbook:rekey") || b.tag.startsWith("runbook:offboard"));
    expect(new Set(mine.map((b) => b.tag))).toEqual(new Set(["runbook:rekey-vars", "runbook:rekey", "runbook:offboard"]));
    const rekeyLine = text.slice(0, rekeyAt).split("\n").length;
    expect(mine.every((b) => b.line > rekeyLine)).toBe(true);
    for (const b of blocks().filter((b) => b.line > rekeyLine)) {
      const syntax = spawnSync("bash", ["-n", "-c", b.code], { encoding: "utf8" });
      expect(syntax.status, `RESTORE.md line ${b.line}: ${syntax.stderr}`).toBe(0);
    }
  });

  test("names exactly the variables this test gives its commands", () => {
    const declared = blocks()
      .filter((b) => b.tag === "runbook:rekey-vars")
      .flatMap((b) => [...b.code.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]));
    expect(declared.sort()).toEqual(Object.keys(vars).sort());
  });

  test("the rekey block proves the old material dead, takes the first backup on the host and drills it", async () => {
    const r = await runBlocks(["runbook:rekey"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^first archive of the new generation: ${tenant}-\\d{4}-`, "m"));
    for (const check of ["old-push-key-refused-by-old-repository", "old-push-key-refused-by-new-repository", "old-passphrase-refused-by-new-repository", "new-key-material", "host-repository", "first-backup", "drill"]) {
      expect(r.stdout).toMatch(new RegExp(`^${check}: ok$`, "m"));
    }
    expect(r.stdout).not.toMatch(/FAILED/);
    // The push key of the old generation is gone from the scratch dir, the drill's copy too.
    expect(fs.existsSync(path.join(vars.REKEY_WORK!, "old-push-key"))).toBe(false);
    expect(fs.existsSync(path.join(vars.REKEY_WORK!, "drill"))).toBe(false);
    const listed = box.borg(nextGen, "drill", ["list", "--short"]);
    expect(listed.stdout.trim().split("\n")).toHaveLength(1);
  });

  test("the offboarding blocks: a dry run, then the deletion of both generations, the vault secret and the record", async () => {
    const r = await runBlocks(["runbook:offboard"], { HCLOUD_TOKEN: token, HETZNER_ENDPOINT: api.url, AB_API_POLL: "0.1", AB_VAULT_POLL: "0.1" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/dry run: nothing was deleted/);
    expect(r.stdout).toMatch(/^Erasure record: tenant acme, complete$/m);
    expect(r.stdout).toMatch(/^ {4}yesterday taken .*: ages out \d{4}-/m);
    for (const t of [tenant, nextGen]) expect(fs.existsSync(box.tenants[t]!.repoPath)).toBe(false);
    expect(api.requests.filter((q) => q.method === "DELETE").map((q) => q.path)).toEqual([
      `/v1/storage_boxes/${boxId}/subaccounts/50`,
      `/v1/storage_boxes/${boxId}/subaccounts/51`,
    ]);
    expect(aws.exists(regions.primary) || aws.exists(regions.replica)).toBe(false);
    const tar = spawnSync("tar", ["-tf", path.join(vars.OFFBOARD_WORK!, `${tenant}-handover.tar`)], { encoding: "utf8" });
    expect(tar.status).toBe(0);
    expect(tar.stdout).toMatch(/^SOUL\.md$/m);
    expect(fs.existsSync(path.join(vars.OFFBOARD_WORK!, "recovery.json"))).toBe(false);
  });
});
