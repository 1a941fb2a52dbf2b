// A compromised host (DESIGN.md "Threat model") holds the append-only push key: it can make any
// archive with `borg import-tar`. Every byte of an archive is attacker input wherever it is read:
// agent-restore, agent-verify and agent-drill (root) create, write, chmod or chown nothing outside
// the target, restore no link, device, FIFO, setuid bit, owner, runtime or secret file, stay within
// the time and space they may use, and a drill of such an archive is never healthy. A restore that
// is killed leaves the old home or the new one in place, and its leftovers go with the next run.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { agentUser, chownToAgent, cleanupTemp, makeAgentHome, runScript, sql, tempDir } from "../lib/agent-home";
import { scriptsDir, startStorageBox, type StorageBox } from "../lib/storage-box";

let box: StorageBox;
let outside: string;
let outsideListing: string;
const CANARY = `ARCHIVECANARY${Date.now()}`;

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["acme"] });
  const init = runScript("agent-backup", ["--config", box.writeConfig("acme", { agentHome: "/nonexistent" }), "--init"], box.clientEnv);
  expect(init.status, init.stderr).toBe(0);
  // What must never change: a folder outside every target, with a root-only file in it.
  outside = fs.mkdtempSync("/var/tmp/ab-outside-");
  fs.writeFileSync(path.join(outside, "target.txt"), "ORIGINAL\n", { mode: 0o600 });
  outsideListing = listing(outside);
});

afterAll(async () => {
  await box?.stop();
  fs.rmSync(outside, { recursive: true, force: true });
  cleanupTemp();
});

function listing(dir: string): string {
  return spawnSync("bash", ["-c", 'cd "$1" && find . -printf "%y %m %u %s %p\\n" | sort && find . -type f -exec sha256sum {} +', "bash", dir], { encoding: "utf8" }).stdout;
}

interface Member {
  name: string;
  type?: "file" | "dir" | "symlink" | "hardlink" | "chr" | "fifo";
  data?: string;
  size?: number;
  link?: string;
  mode?: number;
  uid?: number;
}

/** A tar made member by member (Python's tarfile), imported with the append-only push key. */
function importCrafted(archive: string, members: Member[]): void {
  const spec = path.join(tempDir(), "spec.json");
  const tar = path.join(path.dirname(spec), "crafted.tar");
  fs.writeFileSync(spec, JSON.stringify(members));
  const py = `
import io, json, sys, tarfile
members = json.load(open(sys.argv[1]))
types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
         "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}
with tarfile.open(sys.argv[2], "w", format=tarfile.PAX_FORMAT) as t:
    for m in members:
        ti = tarfile.TarInfo(m["name"])
        ti.type = types[m.get("type", "file")]
        ti.mode = m.get("mode", 0o644)
        ti.uid = m.get("uid", 0)
        ti.linkname = m.get("link", "")
        if ti.type == tarfile.CHRTYPE: ti.devmajor, ti.devminor = 1, 3
        data = m.get("data", "").encode()
        if ti.type == tarfile.REGTYPE and m.get("size"):
            data = b"\\0" * m["size"]
        ti.size = len(data) if ti.type == tarfile.REGTYPE else 0
        t.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
`;
  const made = spawnSync("python3", ["-c", py, spec, tar], { encoding: "utf8" });
  expect(made.status, made.stderr).toBe(0);
  const imp = box.borg("acme", "push", ["import-tar", `::${archive}`, tar]);
  expect(imp.status, imp.stderr).toBe(0);
}

const memory = "- the staging database is orbit-7\n";
/** A manifest that agrees with the safe part of the crafted archives below. */
function manifest(archive: string, paths: string[]): string {
  return JSON.stringify({
    format: 2, archive, stores: [], unclassified: [],
    sha256: { "memories/MEMORY.md": createHash("sha256").update(memory).digest("hex") },
    paths: [".agent-backup", ".agent-backup/manifest.json", ...paths],
  });
}

const safePart = (archive: string, extra: string[] = []): Member[] => [
  { name: ".agent-backup", type: "dir", mode: 0o700 },
  { name: ".agent-backup/manifest.json", data: manifest(archive, ["memories", "memories/MEMORY.md", "suid", "owned", ...extra]) },
  { name: "memories", type: "dir", mode: 0o777 },
  { name: "memories/MEMORY.md", data: memory, mode: 0o666 },
  { name: "suid", data: "#!/bin/sh\nid\n", mode: 0o6755 },
  { name: "owned", data: "x", uid: 4242 },
];

const hostile = (archive: string): Member[] => [
  ...safePart(archive),
  { name: "a/../../escape1", data: "escaped" },
  { name: "lnk", type: "symlink", link: outside },
  { name: "lnk/inside", data: "through the link" },
  { name: "hard", type: "hardlink", link: path.join(outside, "target.txt").slice(1) },
  { name: "dev", type: "chr" },
  { name: "fifo", type: "fifo" },
  { name: ".env", data: `OPENAI_API_KEY=${CANARY}` },
  { name: "gateway.pid", data: "1" },
];

function restore(archive: string, target: string, extra: string[] = []) {
  const cfg = { repo: box.tenants.acme!.repoUrl, key: box.tenants.acme!.keys.drill, pass: box.tenants.acme!.passphraseFile };
  return runScript("agent-restore", ["--repo", cfg.repo, "--ssh-key", cfg.key, "--known-hosts", box.knownHosts, "--passphrase-file", cfg.pass,
    "--archive", archive, "--target", target, "--owner", agentUser().name, ...extra], box.clientEnv);
}

describe("agent-restore, agent-verify and agent-drill on a crafted archive", () => {
  test("an archive with links, devices, FIFOs and `..` paths is refused whole: nothing is extracted", () => {
    importCrafted("acme-2026-01-01T00:00:01", hostile("acme-2026-01-01T00:00:01"));
    const parent = tempDir();
    const target = path.join(parent, "home");
    const r = restore("acme-2026-01-01T00:00:01", target);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/members agent-backup never writes/);
    expect(r.stderr).toMatch(/unsafe member, never extracted: "lnk" \(symlink\)/);
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readdirSync(parent)).toEqual([]);
    expect(listing(outside)).toBe(outsideListing);
  });

  test("--skip-unsafe restores only plain files and folders, owned by the agent, without setuid, secrets or runtime files", () => {
    const parent = tempDir();
    const target = path.join(parent, "home");
    const r = restore("acme-2026-01-01T00:00:01", target, ["--skip-unsafe"]);
    expect(r.status, r.stderr).toBe(0);
    expect(listing(outside)).toBe(outsideListing);
    expect(fs.readdirSync(parent)).toEqual(["home"]);
    const found = spawnSync("find", [target, "-printf", "%y %m %u %P\\n"], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    const u = agentUser().name;
    for (const line of found) {
      const [type, mode, owner] = line.split(" ");
      expect(["d", "f"], line).toContain(type);
      expect(owner, line).toBe(u);
      expect(Number.parseInt(mode!, 8) & 0o7077, line).toBe(0);
    }
    const names = found.map((l) => l.split(" ").slice(3).join(" "));
    for (const gone of [".env", "gateway.pid", "lnk", "hard", "dev", "fifo", "escape1", "a"]) expect(names, gone).not.toContain(gone);
    expect(fs.readFileSync(path.join(target, "memories", "MEMORY.md"), "utf8")).toBe(memory);
    expect(spawnSync("grep", ["-rl", CANARY, target]).status).toBe(1);
  });

  test("a drill of such an archive is unhealthy, never healthy", () => {
    const report = path.join(tempDir(), "report.json");
    const t = box.tenants.acme!;
    const r = runScript("agent-drill", ["--repo", t.repoUrl, "--ssh-key", t.keys.drill, "--known-hosts", box.knownHosts, "--passphrase-file",
      t.passphraseFile, "--tenant", "acme", "--archive", "acme-2026-01-01T00:00:01", "--target", path.join(tempDir(), "drill"), "--report", report], box.clientEnv);
    expect(r.status).toBe(1);
    const rep = JSON.parse(fs.readFileSync(report, "utf8"));
    expect(rep.healthy).toBe(false);
    expect(rep.checks.find((c: { name: string }) => c.name === "restore").ok).toBe(false);
    expect(listing(outside)).toBe(outsideListing);
  });

  test("runtime and secret files of an archive are never restored, and a strict restore refuses them", () => {
    const name = "acme-2026-01-01T00:00:02";
    importCrafted(name, [...safePart(name), { name: ".env", data: `X=${CANARY}` }, { name: "gateway.pid", data: "1" }, { name: "vault", type: "dir" },
      { name: "vault/vault.key", data: CANARY }]);
    const strict = restore(name, path.join(tempDir(), "home"), ["--strict"]);
    expect(strict.status).toBe(1);
    expect(strict.stderr).toMatch(/refusing in --strict mode/);
    const target = path.join(tempDir(), "home");
    const r = restore(name, target);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/not restored \(dangerous\): vault\/vault.key/);
    expect(fs.existsSync(path.join(target, ".env"))).toBe(false);
    expect(fs.existsSync(path.join(target, "gateway.pid"))).toBe(false);
    expect(fs.existsSync(path.join(target, "vault"))).toBe(false);
  });

  test("a restore larger than the space it may use stops before it writes anything", () => {
    const name = "acme-2026-01-01T00:00:03";
    importCrafted(name, [...safePart(name, ["big.bin"]), { name: "big.bin", size: 8 * 1024 * 1024 }]);
    const parent = tempDir();
    const r = restore(name, path.join(parent, "home"), ["--max-bytes", String(1024 * 1024)]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/needs \d+ bytes, more than the 1048576 this restore may use/);
    expect(fs.readdirSync(parent)).toEqual([]);
  });

  test("agent-verify on a home holding a FIFO where a checksummed file belongs and a view that recurses forever: it answers, unhealthy", () => {
    const home = tempDir();
    fs.mkdirSync(path.join(home, ".agent-backup"));
    fs.mkdirSync(path.join(home, "memories"));
    spawnSync("mkfifo", [path.join(home, "memories", "MEMORY.md")]);
    sql(path.join(home, "state.db"), "CREATE TABLE t(v); CREATE VIEW forever AS WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r;", { write: true });
    fs.writeFileSync(path.join(home, ".agent-backup", "manifest.json"), JSON.stringify({
      format: 2, archive: "x", unclassified: [], paths: [".agent-backup", ".agent-backup/manifest.json", "memories", "memories/MEMORY.md", "state.db"],
      stores: [{ path: "state.db", tables: { forever: 1, t: 0 } }, { path: "../../etc/shadow", tables: {} }],
      sha256: { "memories/MEMORY.md": "0".repeat(64), "../../etc/passwd": "0".repeat(64) },
    }));
    const started = Date.now();
    const r = runScript("agent-verify", ["--home", home, "--json"], process.env, 60_000);
    expect(r.status, r.stderr).toBe(1);
    expect(Date.now() - started).toBeLessThan(60_000);
    const out = JSON.parse(r.stdout);
    expect(out.healthy).toBe(false);
    const detail = (n: string) => out.checks.find((c: { name: string }) => c.name === n)?.detail ?? "";
    expect(detail("store:state.db")).toMatch(/forever: not an ordinary table/);
    expect(detail("store:../../etc/shadow")).toMatch(/leaving the home/);
    expect(detail("checksums")).toMatch(/memories\/MEMORY.md/);
  });
});

describe("agent-restore killed, and onto a live home", () => {
  let config: string;
  let live: string;

  beforeAll(() => {
    const work = tempDir();
    live = makeAgentHome(path.join(work, "home"), { sessions: 10, profiles: 0 }).home;
    config = box.writeConfig("acme", { agentHome: live });
    const r = runScript("agent-backup", ["--config", config], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
  });

  /** An old home (a marker file in it) and agent-restore --force started over it, in the background. */
  function restoreOverOldHome() {
    const parent = tempDir();
    const target = path.join(parent, "home");
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, "OLD-HOME"), "old");
    const child = spawn(path.join(scriptsDir, "agent-restore"), ["--config", config, "--target", target, "--force"], { env: box.clientEnv, stdio: "ignore" });
    return { parent, target, child };
  }

  test("SIGKILL while extracting: the old home stays in place, and the next run removes the leftover", async () => {
    const { parent, target, child } = restoreOverOldHome();
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    // The signal: the extraction folder appearing beside the target.
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("no extraction folder appeared in 60 s")), 60_000);
      const w = fs.watch(parent, (_e, name) => {
        if (String(name).startsWith(".agent-restore.")) {
          child.kill("SIGKILL");
          clearTimeout(t);
          w.close();
          resolve();
        }
      });
    });
    await exited;
    expect(fs.readFileSync(path.join(target, "OLD-HOME"), "utf8")).toBe("old");
    expect(fs.readdirSync(parent).some((n) => n.startsWith(".agent-restore."))).toBe(true);
    const again = runScript("agent-restore", ["--config", config, "--target", target, "--force"], box.clientEnv);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/removing the leftover of an earlier restore/);
    expect(fs.readdirSync(parent)).toEqual(["home"]);
    expect(fs.existsSync(path.join(target, "OLD-HOME"))).toBe(false);
  });

  test("at every instant of a restore the target exists: the old home or the new one", async () => {
    const { parent, target, child } = restoreOverOldHome();
    let missing = 0;
    let polls = 0;
    const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
    const poll = setInterval(() => {
      polls++;
      if (!fs.existsSync(target)) missing++;
    }, 1);
    const code = await exited;
    clearInterval(poll);
    expect(code).toBe(0);
    expect(polls).toBeGreaterThan(100);
    expect(missing).toBe(0);
    expect(fs.existsSync(path.join(target, "OLD-HOME"))).toBe(false);
    expect(fs.existsSync(path.join(target, "state.db"))).toBe(true);
  });

  test("--force onto a home a running agent holds open is refused, unless told to stop the agent", async () => {
    // The agent: a process of the agent's user with state.db open (held until stopped).
    const u = agentUser();
    const agent = spawn("python3", ["-c", "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1])\nc.execute('SELECT 1 FROM sqlite_schema').fetchall()\ntime.sleep(300)", path.join(live, "state.db")], {
      uid: u.uid, gid: u.gid, stdio: "ignore",
    });
    const exited = new Promise<void>((r) => agent.once("exit", () => r()));
    const holds = () => fs.readdirSync(`/proc/${agent.pid}/fd`).some((fd) => {
      try { return fs.readlinkSync(`/proc/${agent.pid}/fd/${fd}`) === path.join(live, "state.db"); } catch { return false; }
    });
    // Bounded: 200 x 50 ms for the store to be open.
    for (let i = 0; i < 200 && agent.exitCode === null && !holds(); i++) await new Promise((r) => setTimeout(r, 50));
    expect(holds()).toBe(true);
    try {
      const refused = runScript("agent-restore", ["--config", config, "--target", live, "--force"], box.clientEnv);
      expect(refused.status, refused.stderr).toBe(2);
      expect(refused.stderr).toMatch(/processes hold files of .* open \(pids .*\): stop the agent first/);
      const stopped = runScript("agent-restore", ["--config", config, "--target", live, "--force", "--stop-agent"], box.clientEnv);
      expect(stopped.status, stopped.stderr).toBe(0);
      expect(stopped.stderr).toMatch(new RegExp(`stopping the processes that hold .*: ${agent.pid} \\(SIGTERM\\)`));
      await exited;
    } finally {
      if (agent.exitCode === null && agent.signalCode === null) process.kill(agent.pid!, "SIGTERM");
    }
  });
});

describe("--path, --list-files and --diff on crafted archives", () => {
  const drill = () => {
    const t = box.tenants.acme!;
    return ["--repo", t.repoUrl, "--ssh-key", t.keys.drill, "--known-hosts", box.knownHosts, "--passphrase-file", t.passphraseFile];
  };
  const hostileName = "acme-2026-01-01T00:00:05";
  const ESC = "\u001b";

  beforeAll(() => importCrafted(hostileName, [...hostile(hostileName), { name: `memories/${ESC}[31mred.md`, data: "red" }]));

  test("a symlink member on the requested path, or a `..` member below it, is never restored, even with --skip-unsafe", () => {
    for (const [p, extra] of [["lnk", []], ["lnk", ["--skip-unsafe"]], ["lnk/inside", ["--skip-unsafe"]], ["a", ["--skip-unsafe"]]] as const) {
      const parent = tempDir();
      const r = restore(hostileName, path.join(parent, "t"), ["--path", p, ...extra]);
      expect(r.status, `${p} ${extra.join(" ")}`).toBe(1);
      expect(r.stderr).toMatch(extra.length ? new RegExp(`--path ${p}: .* holds it as an unsafe member`) : /members agent-backup never writes/);
      expect(fs.readdirSync(parent)).toEqual([]);
    }
    const traversal = restore(hostileName, path.join(tempDir(), "t"), ["--path", "a/../../escape1", "--skip-unsafe"]);
    expect(traversal.status).toBe(2);
    expect(listing(outside)).toBe(outsideListing);
  });

  test("--skip-unsafe --path takes only the safe member asked for, the agent's, private, nothing outside", () => {
    const parent = tempDir();
    const target = path.join(parent, "t");
    const r = restore(hostileName, target, ["--path", "memories/MEMORY.md", "--skip-unsafe"]);
    expect(r.status, r.stderr).toBe(0);
    const found = spawnSync("find", [target, "-printf", "%y %m %u %P\\n"], { encoding: "utf8" }).stdout.trim().split("\n").sort();
    const u = agentUser().name;
    expect(found).toEqual([`d 700 ${u} `, `d 700 ${u} memories`, `f 600 ${u} memories/MEMORY.md`]);
    expect(listing(outside)).toBe(outsideListing);
  });

  test("a live home whose folder the agent swapped for a symlink: nothing is restored through it", () => {
    const live = path.join(tempDir(), "home");
    fs.mkdirSync(live);
    fs.writeFileSync(path.join(live, "SOUL.md"), "live soul\n");
    fs.symlinkSync(outside, path.join(live, "memories"));
    chownToAgent(live);
    const r = restore(hostileName, live, ["--path", "memories/MEMORY.md", "--skip-unsafe", "--into-live"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/memories is a symlink: refusing to restore through it/);
    expect(fs.readlinkSync(path.join(live, "memories"))).toBe(outside);
    expect(listing(outside)).toBe(outsideListing);
  });

  test("--list-files marks the unsafe members and prints every name escaped", () => {
    const r = runScript("agent-restore", [...drill(), "--archive", hostileName, "--list-files"], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toContain(ESC);
    expect(r.stdout).toMatch(/UNSAFE \(symlink\), never restored {2}lnk$/m);
    expect(r.stdout).toMatch(/UNSAFE \(path\), never restored {2}a\/\.\.\/\.\.\/escape1$/m);
    expect(r.stdout).toContain(String.raw`"memories/\u001b[31mred.md"`);
    expect(r.stdout).toMatch(/dangerous:allowlist, not restored {2}\.env$/m);
    const j = runScript("agent-restore", [...drill(), "--archive", hostileName, "--list-files", "--json"], box.clientEnv);
    const rows = j.stdout.trim().split("\n").map((l) => JSON.parse(l) as { path: string; class: string; restored: boolean });
    expect(rows.find((x) => x.path === "hard")).toMatchObject({ class: "unsafe", restored: false });
    // A control character in a name: unsafe, like every name agent-backup never writes.
    expect(rows.find((x) => x.path === `memories/${ESC}[31mred.md`)).toMatchObject({ class: "unsafe", restored: false });
  });

  test("--diff reads crafted manifests as data: malformed entries are dropped, names escaped, nothing trusted", () => {
    const a = "acme-2026-01-01T00:00:06";
    const b = "acme-2026-01-01T00:00:07";
    const crafted = {
      format: 2, archive: a, sha256: {}, paths: [],
      stores: [
        { path: `state${ESC}[2J.db`, tables: { messages: 5, [`x${ESC}q`]: 1, bad: "NaN", nested: { a: 1 } } },
        { path: "../../etc/shadow", tables: { t: 1 } },
        "junk", { path: 5, tables: {} }, { path: "state.db", tables: "no" },
      ],
    };
    importCrafted(a, [{ name: ".agent-backup", type: "dir" }, { name: ".agent-backup/manifest.json", data: JSON.stringify(crafted) }, { name: "SOUL.md", data: "a" }]);
    importCrafted(b, [{ name: ".agent-backup", type: "dir" }, { name: ".agent-backup/manifest.json", data: "{{{ not json" }, { name: "SOUL.md", data: "b" },
      { name: "lnk", type: "symlink", link: "/etc" }]);
    const r = runScript("agent-restore", [...drill(), "--diff", a, b], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).not.toContain(ESC);
    expect(r.stdout).toMatch(/^ {4}~ SOUL\.md$/m);
    expect(r.stdout).toContain(String.raw`  "state\u001b[2J.db": messages 5 -> -; "x\u001bq" 1 -> -`);
    expect(r.stdout).toMatch(/\.\.\/\.\.\/etc\/shadow: t 1 -> -/);
    expect(r.stdout).toMatch(/the manifest of the to archive is unusable: "not a JSON object"/);
    expect(r.stdout).toMatch(/the to archive holds 1 unsafe members/);
    const j = runScript("agent-restore", [...drill(), "--diff", a, b, "--json"], box.clientEnv);
    expect(j.status, j.stderr).toBe(0);
    const d = JSON.parse(j.stdout);
    expect(d.stores.map((s: { path: string }) => s.path).sort()).toEqual(["../../etc/shadow", `state${ESC}[2J.db`]);
    expect(Object.keys(d.stores.find((s: { path: string }) => s.path !== "../../etc/shadow").tables).sort()).toEqual(["messages", `x${ESC}q`]);
    expect(d.classes.precious?.added ?? []).not.toContain("lnk");
    expect(listing(outside)).toBe(outsideListing);
  });
});

describe("rename-at, which puts restored paths in place", () => {
  test("a folder on the way that is a symlink (the agent swapped it in) stops the rename: nothing lands outside", () => {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, "stage", "memories"), { recursive: true });
    fs.writeFileSync(path.join(dir, "stage", "memories", "MEMORY.md"), "restored\n");
    fs.mkdirSync(path.join(dir, "home"));
    fs.symlinkSync(outside, path.join(dir, "home", "memories"));
    const r = spawnSync("bash", ["-c", 'exec {s}<"$1/stage" {h}<"$1/home"; "$2" "$s" memories/MEMORY.md "$h" memories/MEMORY.md noreplace', "bash", dir,
      path.join(scriptsDir, "lib", "rename-at")], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/a folder on the way: Not a directory/);
    expect(fs.existsSync(path.join(dir, "stage", "memories", "MEMORY.md"))).toBe(true);
    expect(listing(outside)).toBe(outsideListing);
    // The same rename without the link goes through.
    fs.unlinkSync(path.join(dir, "home", "memories"));
    fs.mkdirSync(path.join(dir, "home", "memories"));
    const ok = spawnSync("bash", ["-c", 'exec {s}<"$1/stage" {h}<"$1/home"; "$2" "$s" memories/MEMORY.md "$h" memories/MEMORY.md noreplace', "bash", dir,
      path.join(scriptsDir, "lib", "rename-at")], { encoding: "utf8" });
    expect(ok.status, ok.stderr).toBe(0);
    expect(fs.readFileSync(path.join(dir, "home", "memories", "MEMORY.md"), "utf8")).toBe("restored\n");
  });
});
