// A compromised host attacks its own repository over its append-only push key: it deletes archives,
// prunes everything, floods junk archives, stamps an archive in the future, slips in a backdated
// archive under a foreign name, changes the passphrase.
// For each attack (one tenant each, so they stay independent): agent-maintain with the maintenance
// key detects it, exits non-zero and writes nothing (repository files and state unchanged); then
// agent-recover-repo rolls the repository back, or re-imports the escrowed key, and every archive
// comes back and extracts byte-identical to what was backed up.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStorageBox, type StorageBox } from "../lib/storage-box";
import {
  type AdoptedTenant,
  adoptedTenants,
  archiveName,
  archiveNames,
  createArchive,
  extractDigest,
  repoSnapshot,
  runScript,
  writeSourceTree,
} from "../lib/maintain-fixtures";

const attacks = ["delete", "prune", "flood", "future", "odd", "passphrase"] as const;
type Attack = (typeof attacks)[number];

let box: StorageBox;
let tenants: Record<Attack, AdoptedTenant>;

beforeAll(async () => {
  box = await startStorageBox({ tenants: [...attacks] });
  tenants = adoptedTenants(box, attacks, Buffer.from("# SOUL\npersona\n"), { MAX_NEW_ARCHIVES_PER_DAY: "5" });
}, 900_000);

afterAll(async () => {
  await box?.stop();
});

/** The attacker: borg with the host's push key (append-only), optionally with extra environment. */
function push(tenant: Attack, args: string[], env: NodeJS.ProcessEnv = {}): void {
  const r = spawnSync("borg", args, { env: { ...box.borgEnv(tenant, "push"), ...env }, encoding: "utf8", timeout: 300_000 });
  if (r.status !== 0) throw new Error(`attack borg ${args.join(" ")} failed: ${r.stderr}`);
}

/** Run agent-maintain after an attack and assert it found `finding` and wrote nothing. */
function expectDetectedWithoutWrites(tenant: Attack, finding: RegExp): string {
  const t = tenants[tenant];
  const repoDir = box.tenants[tenant]!.repoPath;
  const repoBefore = repoSnapshot(repoDir);
  const stateBefore = fs.readFileSync(t.setup.stateFile);
  const stateMtime = fs.statSync(t.setup.stateFile).mtimeMs;

  const r = runScript("agent-maintain", ["--config", t.setup.config]);
  expect(r.status, r.stderr).toBe(1);
  expect(r.stderr).toMatch(finding);
  expect(r.stderr).toMatch(/nothing was written \(no prune, no compact, no state\)/);
  expect(r.stderr).not.toMatch(/retention:|compact:/);

  expect(repoSnapshot(repoDir)).toEqual(repoBefore);
  expect(fs.readFileSync(t.setup.stateFile).equals(stateBefore)).toBe(true);
  expect(fs.statSync(t.setup.stateFile).mtimeMs).toBe(stateMtime);
  expect(fs.existsSync(path.join(t.setup.stateDir, "prune-pending.json"))).toBe(false);
  const prom = fs.readFileSync(path.join(t.setup.metricsDir, `agent-maintain-${tenant}.prom`), "utf8");
  expect(prom).toMatch(new RegExp(`^agent_maintain_last_run_success\\{archive_prefix="${tenant}"\\} 0$`, "m"));
  return r.stderr;
}

/** Roll back to the trusted transaction and check every archive is back, byte for byte. */
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
  expect(r.stderr).toMatch(/step 1: hard-link copy/);
  expect(r.stderr).toMatch(/borg check --repository-only on the copy/);
  expect(r.stderr).toMatch(/must now drop its borg state/);
  const kept = fs.readdirSync(path.dirname(repoDir)).filter((n) => n.startsWith("repo.tampered-"));
  expect(kept).toHaveLength(1);

  expect(archiveNames(box, tenant).sort()).toEqual(Object.keys(t.sources).sort());
  for (const [name, digest] of Object.entries(t.sources)) expect(extractDigest(box, tenant, name)).toEqual(digest);

  // As the recovery says: the maintenance client drops its borg state, then the trusted state holds.
  fs.rmSync(path.join(t.setup.stateDir, "borg"), { recursive: true, force: true });
  const check = runScript("agent-maintain", ["--config", t.setup.config, "--tamper-check"]);
  expect(check.status, check.stderr).toBe(0);
  expect(check.stderr).toMatch(/tamper check passed: 4 archives/);
}

describe("a compromised host attacks over the append-only key", () => {
  test("deleting archives is detected, and the rollback brings them back", () => {
    const victims = Object.keys(tenants.delete.sources).slice(0, 2);
    for (const v of victims) push("delete", ["delete", `::${v}`]);
    expect(archiveNames(box, "delete")).toHaveLength(2);
    const out = expectDetectedWithoutWrites("delete", /TAMPER: archive vanished without a trusted prune/);
    for (const v of victims) expect(out).toContain(`vanished without a trusted prune: ${v}`);
    recoverAndVerify("delete");
  });

  test("pruning everything (and a useless compact) is detected, and the rollback brings it all back", () => {
    push("prune", ["prune", "--keep-within", "1H"]);
    push("prune", ["compact"]);
    expect(archiveNames(box, "prune")).toHaveLength(0);
    const out = expectDetectedWithoutWrites("prune", /TAMPER: archive vanished/);
    expect(out.match(/vanished without a trusted prune/g)).toHaveLength(4);
    recoverAndVerify("prune");
  });

  test("a flood of junk archives is detected, and the rollback removes the junk", () => {
    const src = path.join(box.dir, "client", "attack-junk");
    writeSourceTree(src, Buffer.from("junk"), 1024);
    for (let i = 0; i < 8; i++) {
      const time = new Date(Date.now() - i * 60_000);
      createArchive(box, "flood", src, archiveName("flood", time), time);
    }
    expectDetectedWithoutWrites("flood", /TAMPER: flood of new archives: 8 since the last trusted run/);
    recoverAndVerify("flood");
  });

  test("an archive from the future is detected, and the rollback removes it", () => {
    const src = path.join(box.dir, "client", "attack-future");
    writeSourceTree(src, Buffer.from("future"), 1024);
    const time = new Date(Date.now() + 3 * 86_400_000);
    createArchive(box, "future", src, archiveName("future", time), time);
    expectDetectedWithoutWrites("future", /TAMPER: archive from the future: future-/);
    recoverAndVerify("future");
  });

  test("a backdated archive under a foreign name is detected, and the rollback removes it", () => {
    const src = path.join(box.dir, "client", "attack-odd");
    writeSourceTree(src, Buffer.from("odd"), 1024);
    // Dated into the past so that time-based retention would keep it in place of a real daily.
    createArchive(box, "odd", src, "notes", new Date(Date.now() - 10 * 86_400_000));
    const out = expectDetectedWithoutWrites("odd", /TAMPER: unexpected archive name: notes/);
    expect(out).toMatch(/TAMPER: backdated archive: notes appeared after the last trusted run/);
    recoverAndVerify("odd");
  });

  test("a changed passphrase is detected, and the escrowed key export restores access", () => {
    const t = box.tenants.passphrase!;
    push("passphrase", ["key", "change-passphrase"], { BORG_NEW_PASSPHRASE: "attacker-owned" });
    // The trusted passphrase no longer opens the repository.
    expect(() => archiveNames(box, "passphrase")).toThrow(/passphrase/i);
    expectDetectedWithoutWrites("passphrase", /TAMPER: repository key changed: it differs from the escrowed export/);

    const rec = runScript("agent-recover-repo", [
      "--import-key",
      tenants.passphrase.setup.escrow,
      "--repo",
      t.repoUrl,
      "--ssh-key",
      t.keys.maintenance,
      "--known-hosts",
      box.knownHosts,
      "--passphrase-file",
      t.passphraseFile,
    ]);
    expect(rec.status, rec.stderr).toBe(0);
    expect(archiveNames(box, "passphrase").sort()).toEqual(Object.keys(tenants.passphrase.sources).sort());
    for (const [name, digest] of Object.entries(tenants.passphrase.sources)) {
      expect(extractDigest(box, "passphrase", name)).toEqual(digest);
    }
    const check = runScript("agent-maintain", ["--config", tenants.passphrase.setup.config, "--tamper-check"]);
    expect(check.status, check.stderr).toBe(0);
  });
});
