// The loopback storage box and the keys it serves: the push key is append-only, cannot open a
// shell and cannot reach another tenant's repository; the maintenance key has full access.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cleanupTemp, makeAgentHome, tempDir } from "../lib/agent-home";
import { startStorageBox, type StorageBox } from "../lib/storage-box";

let box: StorageBox;
let src: string;

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["acme", "globex"] });
  src = path.join(tempDir(), "home");
  makeAgentHome(src);
  for (const t of ["acme", "globex"]) {
    const r = box.borg(t, "push", ["init", "--encryption=repokey-blake2"]);
    expect(r.status, r.stderr).toBe(0);
  }
});

afterAll(async () => {
  await box?.stop();
  cleanupTemp();
});

function ssh(tenantUser: string, key: string, ...cmd: string[]) {
  return spawnSync(
    "ssh",
    ["-i", key, "-p", String(box.port), "-o", "IdentitiesOnly=yes", "-o", `UserKnownHostsFile=${box.knownHosts}`, "-o", "BatchMode=yes",
      `${tenantUser}@127.0.0.1`, ...cmd],
    { encoding: "utf8", timeout: 30_000, input: "" },
  );
}

function segments(repo: string): Map<string, number> {
  const out = new Map<string, number>();
  const data = path.join(repo, "data");
  for (const d of fs.readdirSync(data)) {
    for (const f of fs.readdirSync(path.join(data, d))) out.set(`${d}/${f}`, fs.statSync(path.join(data, d, f)).size);
  }
  return out;
}

describe("loopback storage box", () => {
  test("sshd runs on loopback with its own host key, and each tenant has its own user and repo", () => {
    expect(box.sshd.exitCode).toBeNull();
    expect(fs.readFileSync(box.knownHosts, "utf8")).toMatch(new RegExp(`^\\[127\\.0\\.0\\.1\\]:${box.port} ssh-ed25519 `));
    const acme = box.tenants.acme!;
    const globex = box.tenants.globex!;
    expect(acme.user).not.toBe(globex.user);
    expect(spawnSync("id", ["-u", acme.user]).status).toBe(0);
    expect(fs.existsSync(path.join(acme.repoPath, "config"))).toBe(true);
    const keys = fs.readFileSync(path.join(path.dirname(acme.repoPath), ".ssh", "authorized_keys"), "utf8");
    expect(keys).toContain(`command="borg serve --append-only --restrict-to-repository ${acme.repoPath}",restrict`);
  });

  test("the push key cannot open a shell, a pty or run any other command", () => {
    const acme = box.tenants.acme!;
    const r = ssh(acme.user, acme.keys.push, "id; cat /etc/passwd");
    expect(r.stdout).not.toMatch(/uid=|root:/);
    expect(r.status).not.toBe(0);
    const tty = ssh(acme.user, acme.keys.push, "-tt", "sh");
    expect(tty.stdout).not.toMatch(/\$ $|#\s*$/);
  });

  test("the push key cannot reach another tenant's repository", () => {
    const acme = box.tenants.acme!;
    const globex = box.tenants.globex!;
    // Acme's key on globex's account: not authorized there at all.
    const env1 = { ...box.borgEnv("acme", "push"), BORG_REPO: globex.repoUrl };
    const r1 = spawnSync("borg", ["list"], { env: env1, encoding: "utf8", timeout: 60_000 });
    expect(r1.status).not.toBe(0);
    expect(r1.stderr).toMatch(/Permission denied|Connection closed/);
    // Acme's key and account, globex's path: refused by --restrict-to-repository.
    const sneaky = `ssh://${acme.user}@127.0.0.1:${box.port}${globex.repoPath}`;
    const r2 = spawnSync("borg", ["list"], { env: { ...box.borgEnv("acme", "push"), BORG_REPO: sneaky }, encoding: "utf8", timeout: 60_000 });
    expect(r2.status).not.toBe(0);
    expect(r2.stderr).toMatch(/PathNotAllowed|not allowed/i);
  });

  test("the push key cannot delete data for good; the maintenance key can, and an admin can roll back", () => {
    const acme = box.tenants.acme!;
    expect(box.borg("acme", "push", ["create", "::a1", src]).status).toBe(0);
    const transactions = fs.readFileSync(path.join(acme.repoPath, "transactions"), "utf8");
    const lastGood = Number([...transactions.matchAll(/transaction (\d+)/g)].pop()?.[1]);
    const before = segments(acme.repoPath);

    // Through the append-only key, delete, prune and compact "succeed" ...
    expect(box.borg("acme", "push", ["delete", "::a1"]).status).toBe(0);
    expect(box.borg("acme", "push", ["compact"]).status).toBe(0);
    expect(box.borg("acme", "push", ["list", "--short"]).stdout).not.toContain("a1");
    // ... yet every segment that held the archive is still there, byte for byte.
    const after = segments(acme.repoPath);
    for (const [seg, size] of before) expect(after.get(seg), seg).toBe(size);

    // An admin rolls back to the last good transaction: the archive is back.
    const data = path.join(acme.repoPath, "data");
    for (const seg of after.keys()) {
      if (Number(path.basename(seg)) > lastGood) fs.rmSync(path.join(data, seg));
    }
    for (const f of fs.readdirSync(acme.repoPath)) {
      if (/^(hints|index|integrity)\./.test(f)) fs.rmSync(path.join(acme.repoPath, f));
    }
    fs.rmSync(path.join(box.clientEnv.BORG_BASE_DIR!, ".cache"), { recursive: true, force: true });
    fs.rmSync(path.join(box.clientEnv.BORG_BASE_DIR!, ".config", "borg", "security"), { recursive: true, force: true });
    const check = box.borg("acme", "maintenance", ["check"]);
    expect(check.status, check.stderr).toBe(0);
    expect(box.borg("acme", "maintenance", ["list", "--short"]).stdout).toContain("a1");

    // The maintenance key really deletes.
    expect(box.borg("acme", "maintenance", ["delete", "::a1"]).status).toBe(0);
    expect(box.borg("acme", "maintenance", ["compact"]).status).toBe(0);
    const compacted = segments(acme.repoPath);
    expect([...before.keys()].some((seg) => compacted.get(seg) !== before.get(seg))).toBe(true);
  });
});
