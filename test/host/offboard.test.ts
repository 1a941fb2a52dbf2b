// agent-offboard on a loopback storage box with real borg: tenant acme has a retired generation
// (frozen: maintenance key only) and a current one; globex shares the box and must come through
// untouched. The Storage Box API is a fake on loopback with the real paths (its sub-account delete
// removes the login for real), the vault is a fake `aws` on PATH that keeps the secret per region
// and refuses, as the service does, to delete a primary that still has a replica.
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cleanupTemp, makeAgentHome, tempDir } from "../lib/agent-home";
import { fakeAws, freezeRepository, startFakeApi, writeRecovery, type FakeApi } from "../lib/rekey-offboard-fixtures";
import { scriptsDir, startStorageBox, type StorageBox } from "../lib/storage-box";

const boxId = 4242;
const token = randomBytes(32).toString("hex");
const regions = { primary: "eu-central-1", replica: "eu-west-1" };
const DAY = 86_400_000;

let box: StorageBox;
let api: FakeApi;
let work: string;
let home: string;
let recovery: Record<"current" | "retired" | "globex", string>;
let aws: ReturnType<typeof fakeAws>;
let globexAws: ReturnType<typeof fakeAws>;
const subIds: Record<string, number> = {};

interface Run {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Run agent-offboard asynchronously: the fake API answers from this very process. */
function offboard(args: string[], env: Record<string, string> = {}, awsBin = aws.bin): Promise<Run> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("BORG_") && k !== "HCLOUD_TOKEN"));
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(scriptsDir, "agent-offboard"), args, {
      env: { ...clean, PATH: `${awsBin}:${process.env.PATH}`, HCLOUD_TOKEN: token, HETZNER_ENDPOINT: api.url, AB_API_POLL: "0.1", AB_VAULT_POLL: "0.1", ...env },
      cwd: work,
    });
    const out: Buffer[] = [];
    let err = "";
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill("SIGTERM"), 600_000);
    child.on("error", reject);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

const acmeArgs = (extra: string[] = []) => [
  "--tenant", "acme",
  "--recovery", recovery.current,
  "--recovery", recovery.retired,
  "--box-id", String(boxId),
  "--vault-secret", "agent-backups/acme/recovery",
  "--region", regions.primary,
  "--replica-region", regions.replica,
  "--record-dir", path.join(work, "records"),
  ...extra,
];

const archives = (boxTenant: string) => box.borg(boxTenant, "maintenance", ["list", "--short"]);
const destructiveApiCalls = () => api.requests.filter((r) => r.method !== "GET");
const records = () => fs.readdirSync(path.join(work, "records"));
const secretsOf = () => [token, ...["current", "retired", "globex"].map((k) => JSON.parse(fs.readFileSync(recovery[k as keyof typeof recovery], "utf8")).passphrase as string)];

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["acme", "acme-g2", "globex"] });
  work = tempDir("ab-offboard-");
  fs.mkdirSync(path.join(work, "records"));
  home = makeAgentHome(path.join(work, "home"), { sessions: 3 }).home;
  const backup = (boxTenant: string, prefix: string, runs: number) => {
    const config = box.writeConfig(boxTenant, { agentHome: home, override: { ARCHIVE_PREFIX: prefix } });
    for (const args of [["--init"], ...Array.from({ length: runs }, () => [])]) {
      const r = spawnSync(path.join(scriptsDir, "agent-backup"), ["--config", config, ...args], { env: box.clientEnv, encoding: "utf8" });
      if (r.status !== 0) throw new Error(`agent-backup ${boxTenant}: ${r.stderr}`);
    }
  };
  backup("acme", "acme", 1);
  backup("acme-g2", "acme", 2);
  backup("globex", "globex", 1);
  recovery = {
    retired: path.join(work, "acme-g1.json"),
    current: path.join(work, "acme-g2.json"),
    globex: path.join(work, "globex.json"),
  };
  writeRecovery(box, "acme", "acme", recovery.retired);
  writeRecovery(box, "acme-g2", "acme", recovery.current);
  writeRecovery(box, "globex", "globex", recovery.globex);
  freezeRepository(box, "acme", "acme");

  const now = Date.now();
  const at = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, "+00:00");
  api = await startFakeApi({
    token,
    boxId,
    // A deleted sub-account cannot log in any more: its authorized_keys goes with it.
    subaccounts: ["acme", "acme-g2", "globex"].map((t, i) => {
      subIds[t] = 11 + i;
      return { id: 11 + i, username: box.tenants[t]!.user, onDelete: () => fs.rmSync(path.join(path.dirname(box.tenants[t]!.repoPath), ".ssh", "authorized_keys")) };
    }),
    snapshotPlan: { max_snapshots: 3, minute: 30, hour: 2, day_of_week: null, day_of_month: null },
    snapshots: [
      { id: 1, name: "auto-3", created: at(now - 3 * DAY), is_automatic: true },
      { id: 2, name: "auto-2", created: at(now - 2 * DAY), is_automatic: true },
      { id: 3, name: "auto-1", created: at(now - 1 * DAY), is_automatic: true },
      { id: 4, name: "before-upgrade", created: at(now - 5 * DAY), is_automatic: false },
    ],
  });
  aws = fakeAws(path.join(work, "aws"), "agent-backups/acme/recovery", regions);
  globexAws = fakeAws(path.join(work, "aws-globex"), "agent-backups/globex/recovery", regions);
}, 600_000);

afterAll(async () => {
  await api?.stop();
  await box?.stop();
  cleanupTemp();
});

describe("agent-offboard refuses", () => {
  test.each([
    ["a confirming flag that names another tenant", ["--yes-delete-tenant", "globex"], /--yes-delete-tenant names globex, not acme: refusing; nothing was deleted/],
    ["a vault secret id with shell characters", ["--vault-secret", "x;rm -rf /"], /--vault-secret: refusing/],
    ["a region that is not one", ["--replica-region", "eu-west-1;id"], /--replica-region: refusing/],
    ["an export file that exists", ["--export", "/etc/hostname", "--yes-delete-tenant", "acme"], /--export: \/etc\/hostname exists/],
  ])("%s (exit 2, nothing deleted)", async (_what, extra, message) => {
    const r = await offboard(acmeArgs(extra));
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
    expect(destructiveApiCalls()).toEqual([]);
    expect(aws.calls().filter((c) => c[1] !== "describe-secret")).toEqual([]);
    expect(archives("acme-g2").status).toBe(0);
  });

  test("another tenant's recovery document", async () => {
    const r = await offboard(acmeArgs(["--recovery", recovery.globex]));
    expect(r.stderr).toMatch(/globex's recovery document, not acme's/);
    expect(r.status).toBe(2);
  });

  test("a destructive run without the Storage Box API token, before deleting anything", async () => {
    const r = await offboard(acmeArgs(["--yes-delete-tenant", "acme"]), { HCLOUD_TOKEN: "" });
    expect(r.stderr).toMatch(/set HCLOUD_TOKEN; nothing was deleted/);
    expect(r.status).toBe(2);
    expect(archives("acme-g2").status).toBe(0);
    expect(aws.calls().filter((c) => c[1] !== "describe-secret")).toEqual([]);
  });
});

describe("agent-offboard", () => {
  test("without the confirming flag: a dry run that reads, prints the plan and deletes nothing", async () => {
    const r = await offboard(acmeArgs(["--export", path.join(work, "dry.tar")]));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/repository .*acmeg2.*: 2 archives, latest acme-/);
    expect(r.stderr).toMatch(/repository .*acme\/repo.*: 1 archives/);
    expect(r.stderr).toMatch(new RegExp(`sub-account ${box.tenants["acme-g2"]!.user} \\(id ${subIds["acme-g2"]}\\)`));
    expect(r.stderr).toMatch(/vault secret agent-backups\/acme\/recovery: present in eu-central-1, replica present in eu-west-1/);
    expect(r.stderr).toMatch(/dry run: nothing was deleted. To delete all of the above: add --yes-delete-tenant acme/);
    expect(destructiveApiCalls()).toEqual([]);
    expect(aws.calls().every((c) => c[1] === "describe-secret")).toBe(true);
    expect(aws.exists(regions.primary) && aws.exists(regions.replica)).toBe(true);
    expect(archives("acme-g2").stdout.trim().split("\n")).toHaveLength(2);
    expect(archives("acme").stdout.trim().split("\n")).toHaveLength(1);
    expect(fs.existsSync(path.join(work, "dry.tar"))).toBe(false);
    expect(records()).toEqual([]);
  });

  test("with --yes-delete-tenant acme: hands over the latest archive, deletes both repositories, the sub-accounts and the vault secret, and writes the record", async () => {
    const exportFile = path.join(work, "acme-handover.tar");
    const r = await offboard(acmeArgs(["--export", exportFile, "--yes-delete-tenant", "acme"]));
    expect(r.status, r.stderr).toBe(0);

    // The hand-over: a tar of the latest archive, with the home's precious files.
    const listing = spawnSync("tar", ["-tf", exportFile], { encoding: "utf8" });
    expect(listing.status).toBe(0);
    expect(listing.stdout).toMatch(/^SOUL\.md$/m);
    expect(listing.stdout).toMatch(/^memories\//m);

    // Both repositories are gone, on the box's disk too; globex is untouched.
    for (const t of ["acme", "acme-g2"]) {
      expect(fs.existsSync(box.tenants[t]!.repoPath)).toBe(false);
    }
    expect(archives("globex").status).toBe(0);
    expect(archives("globex").stdout.trim().split("\n")).toHaveLength(1);

    // The sub-accounts: deleted through the API, with the token; globex's not.
    expect(destructiveApiCalls()).toEqual([
      { method: "DELETE", path: `/v1/storage_boxes/${boxId}/subaccounts/${subIds.acme}`, authorized: true },
      { method: "DELETE", path: `/v1/storage_boxes/${boxId}/subaccounts/${subIds["acme-g2"]}`, authorized: true },
    ]);
    // ... and their logins are dead: the maintenance key no longer gets in.
    const probe = spawnSync("ssh", ["-p", String(box.port), "-i", box.tenants["acme-g2"]!.keys.maintenance, "-o", "IdentitiesOnly=yes",
      "-o", "BatchMode=yes", "-o", `UserKnownHostsFile=${box.knownHosts}`, "-T", `${box.tenants["acme-g2"]!.user}@127.0.0.1`], { input: "", encoding: "utf8" });
    expect(probe.status).toBe(255);
    expect(probe.stderr).toMatch(/Permission denied/);

    // The vault: replica removed, then the primary force-deleted, then both regions checked.
    const id = "agent-backups/acme/recovery";
    const calls = aws.calls().filter((c) => c[1] !== "describe-secret");
    expect(calls).toEqual([
      ["secretsmanager", "remove-regions-from-replication", "--secret-id", id, "--remove-replica-regions", regions.replica, "--region", regions.primary, "--output", "json"],
      ["secretsmanager", "delete-secret", "--secret-id", id, "--force-delete-without-recovery", "--region", regions.primary, "--output", "json"],
    ]);
    expect(aws.calls().slice(-2).map((c) => c.slice(1, 2).concat(c[c.indexOf("--region") + 1]!))).toEqual([
      ["describe-secret", regions.primary],
      ["describe-secret", regions.replica],
    ]);
    expect(aws.exists(regions.primary) || aws.exists(regions.replica)).toBe(false);

    // The erasure record.
    const base = records().find((f) => f.endsWith(".json"))!;
    expect(base).toMatch(/^erasure-acme-\d{8}T\d{6}Z\.json$/);
    const record = JSON.parse(fs.readFileSync(path.join(work, "records", base), "utf8"));
    expect(JSON.parse(r.stdout.toString())).toEqual(record);
    expect(record.outcome).toBe("complete");
    expect(record.export).toMatchObject({ to: exportFile, archive: expect.stringMatching(/^acme-/) });
    expect(record.export.sha256).toBe(spawnSync("sha256sum", [exportFile], { encoding: "utf8" }).stdout.split(" ")[0]);
    expect(record.deleted.map((e: { what: string }) => e.what)).toEqual([
      "exported", "repository deleted", "repository deleted", "sub-account deleted", "sub-account deleted",
      "vault replica deleted", "vault secret deleted", "vault checked", "vault checked",
    ]);
    // Snapshots: the three automatic ones age out with the next three daily runs, oldest first; the
    // manual one never does, so there is no date by which all are gone.
    expect(record.storageBoxes).toEqual([boxId]);
    expect(record.storageSnapshots.map((b: { box: number }) => b.box)).toEqual([boxId]);
    const holding = record.storageSnapshots[0].holding as { name: string; agesOutAt: string | null }[];
    expect(holding.map((s) => s.name)).toEqual(["before-upgrade", "auto-3", "auto-2", "auto-1"]);
    const ages = holding.slice(1).map((s) => Date.parse(s.agesOutAt!));
    expect(ages[1]! - ages[0]!).toBe(DAY);
    expect(ages[2]! - ages[1]!).toBe(DAY);
    expect(ages[0]! - Date.now()).toBeGreaterThan(0);
    expect(ages[0]! - Date.now()).toBeLessThanOrEqual(DAY);
    expect(new Date(ages[0]!).toISOString()).toMatch(/T02:30:00/);
    expect(holding[0]!.agesOutAt).toBeNull();
    expect(record.storageSnapshots[0].allGoneBy).toBeNull();
    const text = fs.readFileSync(path.join(work, "records", base.replace(/\.json$/, ".txt")), "utf8");
    expect(text).toMatch(/before-upgrade taken .*: manual snapshot: kept until deleted by hand/);
    expect(text).toMatch(/auto-1 taken .*: ages out \d{4}-/);
    expect(text).toMatch(/remove the tenant from agent-backups:tenants in Pulumi.prod.yaml/);
    expect(r.stderr).toMatch(/now the stack: remove acme from agent-backups:tenants in Pulumi.prod.yaml/);

    // Nothing secret in anything it printed or wrote.
    const everything = r.stdout.toString() + r.stderr + fs.readFileSync(path.join(work, "records", base), "utf8") + text;
    for (const secret of secretsOf()) expect(everything).not.toContain(secret);
  });

  test("run again after the deletion: it finds everything gone, says so in a new record and deletes nothing more", async () => {
    const deletesBefore = destructiveApiCalls().length;
    const awsBefore = aws.calls().filter((c) => c[1] !== "describe-secret").length;
    const before = new Set(records());
    const r = await offboard(acmeArgs(["--yes-delete-tenant", "acme"]));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/no sub-account .* \(already deleted\?\)/);
    expect(r.stderr).toMatch(/its sub-account is gone, so is the login to it/);
    expect(r.stderr).toMatch(/vault secret agent-backups\/acme\/recovery: absent in eu-central-1, replica absent in eu-west-1/);
    expect(destructiveApiCalls()).toHaveLength(deletesBefore);
    expect(aws.calls().filter((c) => c[1] !== "describe-secret")).toHaveLength(awsBefore);
    const base = records().find((f) => !before.has(f) && f.endsWith(".json"));
    expect(base).toBeDefined();
    const record = JSON.parse(fs.readFileSync(path.join(work, "records", base!), "utf8"));
    expect(record.outcome).toBe("complete");
    expect(record.deleted.map((e: { what: string }) => e.what)).toEqual(["repository not reachable", "repository not reachable", "vault checked", "vault checked"]);
  });

  test("the hand-over can go to stdout: the tar stream is all stdout holds", async () => {
    const r = await offboard(
      ["--tenant", "globex", "--recovery", recovery.globex, "--box-id", String(boxId), "--vault-secret", "agent-backups/globex/recovery",
        "--region", regions.primary, "--replica-region", regions.replica, "--record-dir", path.join(work, "records"),
        "--export", "-", "--yes-delete-tenant", "globex"],
      {},
      globexAws.bin,
    );
    expect(r.status, r.stderr).toBe(0);
    const tarFile = path.join(work, "globex.tar");
    fs.writeFileSync(tarFile, r.stdout);
    const listing = spawnSync("tar", ["-tf", tarFile], { encoding: "utf8" });
    expect(listing.status, listing.stderr).toBe(0);
    expect(listing.stdout).toMatch(/^SOUL\.md$/m);
    expect(fs.existsSync(box.tenants.globex!.repoPath)).toBe(false);
    expect(records().filter((f) => f.startsWith("erasure-globex-"))).toHaveLength(2);
  });
});
