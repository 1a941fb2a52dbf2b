// agent-recover-repo on local repositories (the admin side has direct file access): the transaction
// list, refusals of bad input, a failed rollback that leaves the original untouched, a locked
// repository, and the key import checks. The end-to-end recoveries over SSH are in
// maintain-tamper.test.ts.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { repoSnapshot, runScript } from "../lib/maintain-fixtures";

let dir: string;
let passphraseFile: string;

function borg(args: string[], cwd?: string, env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync("borg", args, {
    cwd,
    env: { ...process.env, BORG_BASE_DIR: path.join(dir, "base"), BORG_PASSCOMMAND: `cat ${passphraseFile}`, ...env },
    encoding: "utf8",
  });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`borg ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** A local repository with `count` archives; appendOnly makes borg keep its transactions log. */
function makeRepo(name: string, count: number, appendOnly = false): string {
  const repo = path.join(dir, name);
  borg(["init", "--encryption=repokey-blake2", ...(appendOnly ? ["--append-only"] : []), repo]);
  const src = path.join(dir, `src-${name}`);
  fs.mkdirSync(src, { recursive: true });
  for (let i = 1; i <= count; i++) {
    fs.writeFileSync(path.join(src, "data"), `archive ${i} of ${name}\n`.repeat(1000));
    borg(["create", `${repo}::a${i}`, "."], src);
  }
  return repo;
}

function transactions(repo: string): number[] {
  const r = runScript("agent-recover-repo", ["--repo-dir", repo, "--list"]);
  expect(r.status, r.stderr).toBe(0);
  return [...r.stdout.matchAll(/^(\d+)\s/gm)].map((m) => Number(m[1]));
}

beforeAll(() => {
  const r = spawnSync("borg", ["--version"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error("borg is required: apt-get install borgbackup");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-recover-"));
  passphraseFile = path.join(dir, "passphrase");
  fs.writeFileSync(passphraseFile, "trusted-passphrase\n", { mode: 0o600 });
});

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("agent-recover-repo --list", () => {
  test("lists one committed transaction per write, and says which came from an append-only client", () => {
    const repo = makeRepo("listed", 3, true);
    const r = runScript("agent-recover-repo", ["--repo-dir", repo, "--list"]);
    expect(r.status, r.stderr).toBe(0);
    const ids = transactions(repo);
    // init + 3 creates, each one commit
    expect(ids.length).toBe(4);
    expect([...ids].sort((a, b) => a - b)).toEqual(ids);
    expect(r.stdout.match(/append-only client/g)?.length).toBe(4);
  });
});

describe("agent-recover-repo refuses bad input", () => {
  let repo: string;
  beforeAll(() => {
    repo = makeRepo("refusals", 2);
  });
  const cases: [string, () => string[]][] = [
    ["no action", () => ["--repo-dir", repo]],
    ["two actions", () => ["--repo-dir", repo, "--list", "--to-transaction", "1"]],
    ["a directory that is no repository", () => ["--repo-dir", dir, "--list"]],
    ["a path with shell characters", () => ["--repo-dir", `${repo};rm -rf /`, "--list"]],
    ["a transaction that is not a number", () => ["--repo-dir", repo, "--to-transaction", "1;id"]],
    ["a transaction that was never committed", () => ["--repo-dir", repo, "--to-transaction", "999999"]],
    ["the newest transaction (nothing to roll back)", () => ["--repo-dir", repo, "--to-transaction", String(transactions(repo).at(-1))]],
    ["a key file that is no borg key export", () => ["--repo-dir", repo, "--import-key", passphraseFile]],
    ["an unknown option", () => ["--repo-dir", repo, "--list", "--force"]],
  ];
  test.each(cases)("%s: exit 2, repository untouched", (_what, args) => {
    const before = repoSnapshot(repo);
    const r = runScript("agent-recover-repo", args());
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/agent-recover-repo: error: /);
    expect(repoSnapshot(repo)).toEqual(before);
  });
});

describe("agent-recover-repo --to-transaction fails safe", () => {
  test("a damaged segment makes the check of the copy fail: original untouched, copy removed", () => {
    const repo = makeRepo("damaged", 3, true);
    const ids = transactions(repo);
    const target = ids[ids.length - 2]!;
    // Damage a segment that the rollback keeps: the copy shares it, so borg check must catch it.
    const segDir = path.join(repo, "data", "0");
    const kept = fs.readdirSync(segDir).filter((n) => Number(n) <= target);
    const seg = path.join(segDir, kept.sort((a, b) => fs.statSync(path.join(segDir, b)).size - fs.statSync(path.join(segDir, a)).size)[0]!);
    const bytes = fs.readFileSync(seg);
    expect(bytes.length).toBeGreaterThan(100);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0xff;
    fs.writeFileSync(seg, bytes);
    const before = repoSnapshot(repo);
    const r = runScript("agent-recover-repo", ["--repo-dir", repo, "--to-transaction", String(target)]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/borg check of the rolled-back copy failed; the original .* is untouched/);
    expect(repoSnapshot(repo)).toEqual(before);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith("damaged."))).toEqual([]);
  });

  test("a locked repository is refused", () => {
    const repo = makeRepo("locked", 2, true);
    fs.mkdirSync(path.join(repo, "lock.exclusive"));
    const r = runScript("agent-recover-repo", ["--repo-dir", repo, "--to-transaction", String(transactions(repo)[0])]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/is locked by a borg client/);
    expect(fs.readdirSync(dir).filter((n) => n.startsWith("locked."))).toEqual([]);
  });

  test("a rollback brings deleted archives back and keeps the tampered original next to it", () => {
    const repo = makeRepo("rolled", 3, true);
    const trusted = transactions(repo).at(-1)!;
    borg(["delete", `${repo}::a1`]);
    borg(["delete", `${repo}::a2`]);
    const r = runScript("agent-recover-repo", ["--repo-dir", repo, "--to-transaction", String(trusted), "--passphrase-file", passphraseFile]);
    expect(r.status, r.stderr).toBe(0);
    // The archives listed from the copy before the swap are on stdout.
    expect(r.stdout).toMatch(/^a1 /m);
    const listed = borg(["list", "--short", repo], undefined, { BORG_BASE_DIR: path.join(dir, "fresh-client") });
    expect(listed.split("\n").filter(Boolean)).toEqual(["a1", "a2", "a3"]);
    const kept = fs.readdirSync(dir).filter((n) => n.startsWith("rolled.tampered-"));
    expect(kept).toHaveLength(1);
    const tampered = borg(["list", "--short", path.join(dir, kept[0]!)], undefined, {
      BORG_BASE_DIR: path.join(dir, "fresh-client-2"),
    });
    expect(tampered.split("\n").filter(Boolean)).toEqual(["a3"]);
  });
});

describe("agent-recover-repo --import-key", () => {
  test("restores the escrowed key after a passphrase change, and refuses another repository's export", () => {
    const repo = makeRepo("keyed", 1);
    const escrow = path.join(dir, "keyed.export");
    borg(["key", "export", repo, escrow]);
    borg(["key", "change-passphrase", repo], undefined, { BORG_NEW_PASSPHRASE: "attacker" });
    expect(() => borg(["list", repo])).toThrow(/passphrase/i);

    const other = makeRepo("other", 1);
    const wrong = runScript("agent-recover-repo", ["--import-key", escrow, "--repo-dir", other]);
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toMatch(/wrong tenant's export/);

    const r = runScript("agent-recover-repo", ["--import-key", escrow, "--repo-dir", repo, "--passphrase-file", passphraseFile]);
    expect(r.status, r.stderr).toBe(0);
    expect(borg(["list", "--short", repo]).trim()).toBe("a1");
  });
});
