// A compromised host deletes or overwrites objects through its append-only push key while the
// archive list stays byte-identical (borg debug delete-obj / put-obj). Before the maintenance key
// writes anything, agent-maintain must find it, refuse, and leave the repository as it was (every
// file byte-identical; only borg check's encryption nonce counter moves forward), so that
// agent-recover-repo still rolls it back and every archive extracts byte-identical again.
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStorageBox, type StorageBox } from "../lib/storage-box";
import {
  type AdoptedTenant,
  adoptedTenants,
  archiveList,
  archiveObjects,
  extractDigest,
  lastTransaction,
  repoNonce,
  repoSnapshot,
  runScript,
} from "../lib/maintain-fixtures";

const attacks = ["deleteobj", "overwrite", "metadata"] as const;
type Attack = (typeof attacks)[number];

let box: StorageBox;
let tenants: Record<Attack, AdoptedTenant>;

beforeAll(async () => {
  box = await startStorageBox({ tenants: [...attacks] });
  tenants = adoptedTenants(box, attacks, Buffer.from("# SOUL\nthe persona every archive shares\n"));
}, 900_000);

afterAll(async () => {
  await box?.stop();
});

/** The attacker: borg debug with the host's push key (append-only). */
function push(tenant: Attack, args: string[]): string {
  const r = box.borg(tenant, "push", ["debug", ...args]);
  if (r.status !== 0) throw new Error(`attack borg debug ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** Run agent-maintain after an attack; assert it refused and wrote nothing; return its stderr. */
function expectRefusedWithoutWrites(tenant: Attack, finding: RegExp): string {
  const t = tenants[tenant];
  const repoDir = box.tenants[tenant]!.repoPath;
  const listBefore = archiveList(box, tenant);
  const repoBefore = repoSnapshot(repoDir, ["nonce"]);
  const nonceBefore = repoNonce(repoDir);
  const stateBefore = fs.readFileSync(t.setup.stateFile);
  const stateMtime = fs.statSync(t.setup.stateFile).mtimeMs;

  const r = runScript("agent-maintain", ["--config", t.setup.config]);
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr).toMatch(finding);
  expect(r.stderr).toMatch(/nothing was written \(no prune, no compact, no state\)/);
  expect(r.stderr).toMatch(/roll back to a transaction written before then/);
  expect(r.stderr).not.toMatch(/retention:|compact:/);

  // Every repository file as it was; the nonce counter only ever moves forward.
  expect(repoSnapshot(repoDir, ["nonce"])).toEqual(repoBefore);
  expect(repoNonce(repoDir) >= nonceBefore).toBe(true);
  expect(archiveList(box, tenant)).toEqual(listBefore);
  expect(lastTransaction(repoDir)).toBe(lastTransactionAfterAttack[tenant]);
  expect(fs.readFileSync(t.setup.stateFile).equals(stateBefore)).toBe(true);
  expect(fs.statSync(t.setup.stateFile).mtimeMs).toBe(stateMtime);
  expect(fs.existsSync(path.join(t.setup.stateDir, "prune-pending.json"))).toBe(false);
  const prom = fs.readFileSync(path.join(t.setup.metricsDir, `agent-maintain-${tenant}.prom`), "utf8");
  expect(prom).toMatch(new RegExp(`^agent_maintain_last_run_success\\{archive_prefix="${tenant}"\\} 0$`, "m"));
  expect(prom).toMatch(new RegExp(`^agent_maintain_tamper_findings\\{archive_prefix="${tenant}"\\} [1-9][0-9]*$`, "m"));
  return r.stderr;
}
const lastTransactionAfterAttack = {} as Record<Attack, number>;

/** Roll back to the trusted transaction; every archive is back and extracts byte-identical. */
function recoverAndVerify(tenant: Attack): void {
  const t = tenants[tenant];
  const repoDir = box.tenants[tenant]!.repoPath;
  const r = runScript("agent-recover-repo", [
    "--repo-dir",
    repoDir,
    "--to-transaction",
    String(t.trustedTx),
    "--passphrase-file",
    box.tenants[tenant]!.passphraseFile,
  ]);
  expect(r.status, r.stderr).toBe(0);
  expect(archiveList(box, tenant).map((a) => a.name).sort()).toEqual(Object.keys(t.sources).sort());
  for (const [name, digest] of Object.entries(t.sources)) expect(extractDigest(box, tenant, name)).toEqual(digest);
  fs.rmSync(path.join(t.setup.stateDir, "borg"), { recursive: true, force: true });
  const check = runScript("agent-maintain", ["--config", t.setup.config, "--tamper-check"]);
  expect(check.status, check.stderr).toBe(0);
  expect(check.stderr).toMatch(/tamper check passed: 4 archives, key matches, every referenced object present/);
}

describe("a compromised host removes data under an unchanged archive list", () => {
  test("deleting chunks of every archive (borg debug delete-obj) is refused before any write, and the rollback brings every archive back", () => {
    const names = Object.keys(tenants.deleteobj.sources).sort();
    const listBefore = archiveList(box, "deleteobj");
    const newest = archiveObjects(box, "deleteobj", names.at(-1)!);
    // SOUL.md is one chunk shared by every archive; state.db is the newest archive's own data.
    const victims = [newest.chunks["SOUL.md"]![0]!, newest.chunks["state.db"]![0]!];
    expect(push("deleteobj", ["delete-obj", box.tenants.deleteobj!.repoUrl, ...victims])).toMatch(/deleted/);
    expect(archiveList(box, "deleteobj")).toEqual(listBefore);
    lastTransactionAfterAttack.deleteobj = lastTransaction(box.tenants.deleteobj!.repoPath);

    const out = expectRefusedWithoutWrites("deleteobj", /TAMPER: objects: .*New missing file chunk detected/);
    for (const name of names) expect(out).toContain(`TAMPER: objects: ${name}: SOUL.md: New missing file chunk detected`);
    expect(out).toContain(victims[1]!);
    // Refusing again on the next run: nothing was recorded that would hide it.
    expect(runScript("agent-maintain", ["--config", tenants.deleteobj.setup.config]).status).toBe(1);
    recoverAndVerify("deleteobj");
  });

  test("overwriting a data chunk with other content (borg debug put-obj) is refused, and the rollback restores it", () => {
    const names = Object.keys(tenants.overwrite.sources).sort();
    const victim = archiveObjects(box, "overwrite", names[0]!).chunks["state.db"]![0]!;
    const junk = path.join(box.dir, "client", "junk");
    fs.writeFileSync(junk, Buffer.alloc(4096, 0x41));
    push("overwrite", ["put-obj", box.tenants.overwrite!.repoUrl, victim, junk]);
    lastTransactionAfterAttack.overwrite = lastTransaction(box.tenants.overwrite!.repoPath);

    const out = expectRefusedWithoutWrites("overwrite", new RegExp(`TAMPER: objects: chunk ${victim}, integrity error`));
    expect(out).toMatch(/borg check --archives-only --verify-data/);
    recoverAndVerify("overwrite");
  });

  test("overwriting an archive's item metadata is refused by the cheaper OBJECT_CHECK=archives too, and the rollback restores it", () => {
    // The default object check reads every object (OBJECT_CHECK=data); the cheaper one reads all
    // archive metadata, which is enough here.
    fs.appendFileSync(tenants.metadata.setup.config, "OBJECT_CHECK=archives\n");
    const names = Object.keys(tenants.metadata.sources).sort();
    const victim = archiveObjects(box, "metadata", names[1]!).itemMetadata[0]!;
    const junk = path.join(box.dir, "client", "junk-metadata");
    fs.writeFileSync(junk, Buffer.alloc(512, 0x42));
    push("metadata", ["put-obj", box.tenants.metadata!.repoUrl, victim, junk]);
    lastTransactionAfterAttack.metadata = lastTransaction(box.tenants.metadata!.repoPath);

    expectRefusedWithoutWrites("metadata", new RegExp(`TAMPER: objects: .*${victim}`));
    recoverAndVerify("metadata");
  });
});
