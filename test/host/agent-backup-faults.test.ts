// agent-backup under bad input and faults, each for real. After each: a clear message and a
// non-zero exit, the live home unmodified, `borg check` passing, and the next run succeeding.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cleanupTemp, fingerprint, makeAgentHome, runScript, tempDir } from "../lib/agent-home";
import { scriptsDir, startStorageBox, type StorageBox } from "../lib/storage-box";

let box: StorageBox;
let work: string;
let home: string;

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["acme", "fresh"] });
  work = tempDir();
  home = makeAgentHome(path.join(work, "home"), { sessions: 20 }).home;
  const init = runScript("agent-backup", ["--config", box.writeConfig("acme", { agentHome: home }), "--init"], box.clientEnv);
  expect(init.status, init.stderr).toBe(0);
});

afterAll(async () => {
  await box?.stop();
  cleanupTemp();
});

function archives(): string[] {
  const r = box.borg("acme", "maintenance", ["list", "--short"]);
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split("\n").filter(Boolean);
}

/** Runs the fault, then checks what must hold after any fault. */
async function afterFault(fault: () => Promise<void> | void, opts: { agentHome?: string } = {}): Promise<void> {
  const agentHome = opts.agentHome ?? home;
  const before = fingerprint(agentHome);
  const count = archives().length;
  await fault();
  expect(fingerprint(agentHome), "the live home is unmodified").toEqual(before);
  const check = box.borg("acme", "maintenance", ["check"]);
  expect(check.status, `borg check: ${check.stderr}`).toBe(0);
  expect(archives().length, "no archive from the failed run").toBe(count);
  const next = runScript("agent-backup", ["--config", box.writeConfig("acme", { agentHome })], box.clientEnv);
  expect(next.status, `the next run: ${next.stderr}`).toBe(0);
  expect(archives().length).toBe(count + 1);
}

function backup(config: string, env: NodeJS.ProcessEnv = box.clientEnv) {
  return runScript("agent-backup", ["--config", config], env);
}

describe("agent-backup: bad config", () => {
  test("unknown key, missing key, bad value, readable by others: exit 2 with a clear message", () => {
    const cases: [Record<string, string | null>, RegExp][] = [
      [{ COLOUR: "blue" }, /unknown key COLOUR/],
      [{ PASSPHRASE_FILE: null }, /missing required key PASSPHRASE_FILE/],
      [{ AGENT_HOME: "/tmp/x;rm -rf /" }, /AGENT_HOME: refusing value/],
      [{ BORG_REPO: "ssh://u@host:23/../../etc" }, /BORG_REPO: refusing/],
      [{ LOCK_WAIT: "soon" }, /LOCK_WAIT: refusing/],
    ];
    for (const [override, message] of cases) {
      const r = backup(box.writeConfig("acme", { agentHome: home, override }));
      expect(r.status, JSON.stringify(override)).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    const loose = box.writeConfig("acme", { agentHome: home });
    fs.chmodSync(loose, 0o644);
    const r = backup(loose);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/lets others read it/);
    expect(runScript("agent-backup", ["--help"]).status).toBe(2);
  });
});

describe("agent-backup: faults", () => {
  test("a missing agent home", async () => {
    await afterFault(() => {
      const r = backup(box.writeConfig("acme", { agentHome: path.join(work, "no-such-home") }));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/agent home .*no-such-home does not exist/);
    });
  });

  test("an agent home its own user cannot read (root reads nothing of the home itself)", async () => {
    await afterFault(() => {
      fs.chmodSync(home, 0o000);
      try {
        const r = backup(box.writeConfig("acme", { agentHome: home }));
        expect(r.status, r.stderr).toBe(1);
        expect(r.stderr).toMatch(/cannot enter the agent home/);
        expect(r.stderr).toMatch(/no archive committed/);
      } finally {
        fs.chmodSync(home, 0o700);
      }
    });
  });

  test("a database held locked by another process: reported by name, everything else archived", async () => {
    const before = fingerprint(home);
    const count = archives().length;
    // Exclusive locking mode plus a write, by the agent's own user: no other connection can even
    // read until it ends.
    const owner = fs.statSync(home);
    const holder = spawn("sqlite3", [path.join(home, "kanban.db")], { stdio: ["pipe", "pipe", "inherit"], uid: owner.uid, gid: owner.gid });
    holder.stdin!.write("PRAGMA locking_mode=EXCLUSIVE;\nBEGIN EXCLUSIVE;\nSELECT 'locked';\n");
    await new Promise<void>((resolve) => holder.stdout!.once("data", () => resolve()));
    try {
      const r = backup(box.writeConfig("acme", { agentHome: home, override: { STORE_TIMEOUT: "2" } }));
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/store-not-copied: "kanban\.db"/);
    } finally {
      holder.stdin!.end("ROLLBACK;\n");
      await new Promise((r) => holder.once("exit", r));
    }
    expect(fingerprint(home)).toEqual(before);
    expect(archives().length).toBe(count + 1);
    const latest = archives().pop()!;
    const paths = box.borg("acme", "maintenance", ["list", "--short", `::${latest}`]).stdout.split("\n");
    expect(paths).not.toContain("kanban.db");
    expect(paths).toContain("state.db");
  });

  test("a corrupt database: reported by name, everything else archived", async () => {
    const corrupt = path.join(tempDir(), "home");
    makeAgentHome(corrupt, { profiles: 0 });
    const db = path.join(corrupt, "projects.db");
    const bad = Buffer.from(fs.readFileSync(db));
    bad.fill(0x5a, 4096, 8192);
    fs.writeFileSync(db, bad);
    const before = fingerprint(corrupt);
    const count = archives().length;
    const r = backup(box.writeConfig("acme", { agentHome: corrupt }));
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/store-not-copied: "projects\.db"/);
    expect(fingerprint(corrupt)).toEqual(before);
    expect(archives().length).toBe(count + 1);
    const paths = box.borg("acme", "maintenance", ["list", "--short", `::${archives().pop()!}`]).stdout.split("\n");
    expect(paths).not.toContain("projects.db");
    expect(paths).toContain("state.db");
  });

  test("a full disk under the agent side's work folder", async () => {
    const mnt = path.join(work, "small-tmp");
    fs.mkdirSync(mnt);
    const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=256k,mode=1777", "tmpfs", mnt], { encoding: "utf8" });
    expect(m.status, `mount tmpfs: ${m.stderr}`).toBe(0);
    try {
      await afterFault(() => {
        const r = backup(box.writeConfig("acme", { agentHome: home, override: { AGENT_TMPDIR: mnt } }));
        expect(r.status, r.stderr).toBe(1);
        expect(r.stderr).toMatch(/No space left on device|database or disk is full/);
        expect(fs.readdirSync(mnt)).toEqual([]);
      });
    } finally {
      spawnSync("umount", [mnt]);
    }
  });

  test("an unreachable storage box", async () => {
    await afterFault(() => {
      const t = box.tenants.acme!;
      const closed = `ssh://${t.user}@127.0.0.1:1${t.repoPath}`;
      const r = backup(box.writeConfig("acme", { agentHome: home, override: { BORG_REPO: closed } }));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/no archive committed: cannot talk to the storage box: .*Connection refused/);
    });
  });

  test("a wrong passphrase", async () => {
    await afterFault(() => {
      const wrong = path.join(work, "wrong-passphrase");
      fs.writeFileSync(wrong, "not-the-passphrase\n", { mode: 0o600 });
      const r = backup(box.writeConfig("acme", { agentHome: home, override: { PASSPHRASE_FILE: wrong } }));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/no archive committed: wrong passphrase/);
    });
  });

  test("a failed run pings /start then /fail, and its metric keeps the last success", async () => {
    const pings: string[] = [];
    const server = http.createServer((req, res) => {
      pings.push(req.url ?? "");
      res.end("ok");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/hc`;
    const metricsDir = path.join(work, "metrics");
    const prom = () => fs.readFileSync(path.join(metricsDir, "agent-backup-acme.prom"), "utf8");
    const value = (name: string) => Number(new RegExp(`^${name}\\{archive_prefix="acme"\\} (\\S+)$`, "m").exec(prom())?.[1]);
    try {
      const ok = await runAsync(box.writeConfig("acme", { agentHome: home, metricsDir, healthcheckUrl: url }));
      expect(ok, "a good run first").toBe(0);
      const lastSuccess = value("agent_backup_last_success_timestamp_seconds");
      const files = value("agent_backup_files");
      expect(pings).toEqual(["/hc/start", "/hc"]);
      const wrong = path.join(work, "wrong-passphrase-2");
      fs.writeFileSync(wrong, "nope\n", { mode: 0o600 });
      const bad = await runAsync(box.writeConfig("acme", { agentHome: home, metricsDir, healthcheckUrl: url, override: { PASSPHRASE_FILE: wrong } }));
      expect(bad).toBe(1);
      expect(pings).toEqual(["/hc/start", "/hc", "/hc/start", "/hc/fail"]);
      expect(value("agent_backup_last_run_success")).toBe(0);
      expect(value("agent_backup_last_success_timestamp_seconds")).toBe(lastSuccess);
      expect(value("agent_backup_files")).toBe(files);
      expect(fs.readdirSync(metricsDir)).toEqual(["agent-backup-acme.prom"]);
    } finally {
      server.close();
    }
  });

  test("a repository that was never initialised", async () => {
    await afterFault(() => {
      const r = backup(box.writeConfig("fresh", { agentHome: home }));
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/repository .* does not exist \(create it with agent-backup --init\)/);
      expect(fs.existsSync(box.tenants.fresh!.repoPath)).toBe(false);
    });
  });

  test("SSH killed in the middle of borg import-tar", async () => {
    const big = makeAgentHome(path.join(tempDir(), "home"), { stateDbMb: 120, profiles: 0 }).home;
    await afterFault(
      async () => {
        const child = spawn(path.join(scriptsDir, "agent-backup"), ["--config", box.writeConfig("acme", { agentHome: big })], {
          env: box.clientEnv,
          stdio: ["ignore", "ignore", "pipe"],
        });
        let stderr = "";
        child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
        const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
        const sshPid = await findSshUnderCreate(child);
        expect(sshPid, `no ssh seen under borg create: ${stderr}`).toBeGreaterThan(0);
        process.kill(sshPid, "SIGKILL");
        expect(await exited).toBe(1);
        expect(stderr).toMatch(/no archive committed/);
      },
      { agentHome: big },
    );
  });

  test("two runs at once: the second waits up to LOCK_WAIT, then gives up clearly", async () => {
    // A healthcheck endpoint that holds the first run's /start ping: the run holds its lock meanwhile.
    const pings: string[] = [];
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    let startSeen: () => void = () => undefined;
    const started = new Promise<void>((r) => (startSeen = r));
    const server = http.createServer((req, res) => {
      pings.push(req.url ?? "");
      if (req.url === "/hc/start") {
        startSeen();
        void held.then(() => res.end("ok"));
      } else res.end("ok");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    const before = fingerprint(home);
    const count = archives().length;
    try {
      const first = spawn(path.join(scriptsDir, "agent-backup"), [
        "--config", box.writeConfig("acme", { agentHome: home, healthcheckUrl: `http://127.0.0.1:${port}/hc` }),
      ], { env: box.clientEnv, stdio: "ignore" });
      const firstExit = new Promise<number | null>((r) => first.once("exit", (code) => r(code)));
      await started;
      const second = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const c = spawn(path.join(scriptsDir, "agent-backup"), ["--config", box.writeConfig("acme", { agentHome: home, lockWait: 1 })], {
          env: box.clientEnv,
          stdio: ["ignore", "ignore", "pipe"],
        });
        let err = "";
        c.stderr!.on("data", (d: Buffer) => (err += d.toString()));
        c.once("exit", (code) => resolve({ code, stderr: err }));
      });
      expect(second.code).toBe(1);
      expect(second.stderr).toMatch(/another agent-backup run for acme holds .*acme\.lock \(waited 1s\)/);
      release();
      expect(await firstExit).toBe(0);
      // The refused run pinged nothing: the healthcheck saw the first run start and succeed.
      expect(pings).toEqual(["/hc/start", "/hc"]);
    } finally {
      release();
      server.close();
    }
    expect(fingerprint(home)).toEqual(before);
    expect(archives().length).toBe(count + 1);
    expect(box.borg("acme", "maintenance", ["check"]).status).toBe(0);
    expect(backup(box.writeConfig("acme", { agentHome: home })).status).toBe(0);
  });
});

/** agent-backup in the background (the test's HTTP server must keep answering meanwhile). */
function runAsync(config: string): Promise<number | null> {
  const c = spawn(path.join(scriptsDir, "agent-backup"), ["--config", config], { env: box.clientEnv, stdio: "ignore" });
  return new Promise((r) => c.once("exit", (code) => r(code)));
}

/** The PID of the ssh client that borg create talks through, found in the test's own process tree. */
async function findSshUnderCreate(root: ChildProcess): Promise<number> {
  const children = (pid: number): number[] => {
    try {
      return fs
        .readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    } catch {
      return [];
    }
  };
  const cmdline = (pid: number) => {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    } catch {
      return [];
    }
  };
  // Bounded: 6000 polls of 10 ms.
  for (let i = 0; i < 6000 && root.exitCode === null; i++) {
    const stack = [root.pid!];
    while (stack.length > 0) {
      const pid = stack.pop()!;
      const cmd = cmdline(pid);
      if (cmd.some((a) => /borg$/.test(a)) && cmd.includes("import-tar")) {
        const ssh = children(pid).find((c) => path.basename(cmdline(c)[0] ?? "") === "ssh");
        if (ssh) return ssh;
      }
      stack.push(...children(pid));
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return -1;
}
