import { spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { HostBackup, HostBackupArgs, agentBackupPath, keyExportCommand } from "../../components/host-backup";
import { hostFiles, hostFilesArchive, remoteArchivePath, remoteSourceDir, remoteUploadDir } from "../../components/host-install-plan";
import { MockRun, fixtureScriptsDir, isSecretValue, mockKeyExport, plain, runMocked, valueOf } from "./prod-mocks";

const scriptsDir = fixtureScriptsDir();
const archiveDir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-archive-"));
afterAll(() => {
  fs.rmSync(scriptsDir, { recursive: true, force: true });
  fs.rmSync(archiveDir, { recursive: true, force: true });
});

const repo = "ssh://u4242-sub1@u4242-sub1.your-storagebox.de:23/./borg";
const pushKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nPUSHKEY\n-----END OPENSSH PRIVATE KEY-----\n";
const hostKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nHOSTKEY\n-----END OPENSSH PRIVATE KEY-----\n";
const knownHosts = "[u4242-sub1.your-storagebox.de]:23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs\n";

function args(user: string): HostBackupArgs {
  return {
    host: { address: "10.1.2.3", user, port: 2201, privateKey: hostKey, hostKey: "ssh-ed25519 " + "H".repeat(68) },
    install: { tenant: "acme", agentHome: "/home/hermes/.hermes", remoteBorg: "borg-1.4", schedule: "*-*-* 03:17:00", healthcheckUrl: "https://hc-ping.com/abc" },
    repoUrl: repo,
    pushPrivateKey: pushKey,
    passphrase: "correct-horse",
    knownHosts,
    scriptsDir,
    archiveDir,
  };
}

async function mocked(user: string): Promise<MockRun<HostBackup>> {
  const run = await runMocked(() => new HostBackup("host-acme", args(user)));
  await valueOf(run.result.repoKeyExport);
  return run;
}

describe("HostBackup component (non-root SSH user)", () => {
  let run: MockRun<HostBackup>;
  let hash: string;
  beforeAll(async () => {
    run = await mocked("ubuntu");
    hash = (await valueOf(run.result.contentHash)).value;
  });

  test("the install plan's files go to the host as one archive in one copy, re-copied when the content hash changes", async () => {
    const copies = run.byType("command:remote:CopyToRemote");
    expect(copies).toHaveLength(1);
    const copy = copies[0]!;
    expect(copy.inputs.remotePath).toBe(remoteArchivePath);
    const local = await copy.inputs.source.path;
    expect(path.dirname(local)).toBe(archiveDir);
    expect(fs.readFileSync(local).equals(hostFilesArchive(scriptsDir))).toBe(true);
    expect(copy.inputs.triggers).toEqual([hash]);
    // The private key makes the whole connection secret.
    expect(isSecretValue(copy.inputs.connection)).toBe(true);
    expect(plain(copy.inputs.connection)).toMatchObject({ host: "10.1.2.3", user: "ubuntu", port: 2201, privateKey: hostKey });
    expect(copy.parentType).toBe("agent-backups:host:HostBackup");
    // The archive holds every file of the plan, the operator-only wrapper excluded.
    const list = spawnSync("tar", ["-tf", local], { encoding: "utf8" }).stdout.split("\n").filter((l) => l !== "" && !l.endsWith("/"));
    expect(list.sort()).toEqual(hostFiles(scriptsDir).map((f) => f.rel).sort());
    expect(list).not.toContain("check-storage-box");
  });

  test("install: modes, then agent-install as root with the plan's arguments; secrets only on stdin", async () => {
    const install = run.one("command:remote:Command", "host-acme-install");
    const create = install.inputs.create as string;
    const archive = fs.readFileSync(await run.byType("command:remote:CopyToRemote")[0]!.inputs.source.path);
    const sha = crypto.createHash("sha256").update(archive).digest("hex");
    expect(create.split("\n").slice(0, 5)).toEqual([
      "set -e",
      `printf '%s  %s\\n' ${sha} ${remoteArchivePath} | sha256sum --check --quiet --strict`,
      `sudo -n rm -rf ${remoteSourceDir}`,
      `sudo -n install -d -m 0700 ${remoteSourceDir}`,
      `sudo -n tar -x --no-same-owner -f ${remoteArchivePath} -C ${remoteSourceDir}`,
    ]);
    const chmod755 = create.split("\n").find((l) => l.startsWith("sudo -n chmod 0755 ")) ?? "";
    expect(chmod755.split(" ")).toContain(`${remoteSourceDir}/agent-install`);
    expect(create).toContain(
      `sudo -n bash ${remoteSourceDir}/agent-install --source ${remoteSourceDir} --tenant acme --agent-home /home/hermes/.hermes ` +
        `--repo ${repo} --remote-borg borg-1.4 --schedule '*-*-* 03:17:00' --healthcheck-url https://hc-ping.com/abc`,
    );
    expect(create).not.toMatch(/PUSHKEY|correct-horse/);
    expect(isSecretValue(install.inputs.stdin)).toBe(true);
    const stdin = plain<string>(install.inputs.stdin);
    const b64 = (s: string) => Buffer.from(s).toString("base64");
    expect(stdin).toBe(`SSH_KEY_B64=${b64(pushKey)}\nPASSPHRASE_B64=${b64("correct-horse")}\nKNOWN_HOSTS_B64=${b64(knownHosts)}\n`);
    expect(install.inputs.triggers).toEqual([hash]);
    expect(install.inputs.logging).toBe("stderr");
    expect(install.opts.additionalSecretOutputs).toEqual(expect.arrayContaining(["stdin", "stdout", "stderr"]));
    expect(install.opts.dependsOn).toHaveLength(1);
  });

  test("the unpack-and-install command is shellcheck clean (the SSH user's shell may be sh)", () => {
    const r = spawnSync("shellcheck", ["-s", "sh", "-"], { input: run.one("command:remote:Command", "host-acme-install").inputs.create as string, encoding: "utf8" });
    if (r.error) throw r.error;
    expect(r.stdout + r.stderr).toBe("");
  });

  test("the upload lands in a directory the SSH user owns", () => {
    const prep = run.one("command:remote:Command", "host-acme-upload-dir");
    expect(prep.inputs.create).toBe(`sudo -n install -d -m 0700 -o ubuntu ${remoteUploadDir}`);
  });

  test("no command sends its earlier output to the host again", () => {
    for (const c of run.byType("command:remote:Command")) expect(c.inputs.addPreviousOutputInEnv, c.name).toBe(false);
  });

  test("key export after install: never logged, a secret output", async () => {
    const exp = run.one("command:remote:Command", "host-acme-key-export");
    expect(exp.inputs.create).toBe(keyExportCommand("ubuntu"));
    expect(exp.inputs.create).toContain("sudo -n /usr/local/sbin/agent-backup --config /etc/agent-backup/agent-backup.conf --key-export");
    expect(exp.inputs.logging).toBe("none");
    expect(exp.opts.additionalSecretOutputs).toEqual(expect.arrayContaining(["stdout", "stderr"]));
    expect(exp.inputs.triggers).toEqual([repo]);
    const v = await valueOf(run.result.repoKeyExport);
    expect(v).toEqual({ value: mockKeyExport, secret: true });
  });

  test("the connection pins the host key and keeps the private key secret", () => {
    const exp = run.one("command:remote:Command", "host-acme-key-export");
    const conn = plain<Record<string, unknown>>(exp.inputs.connection);
    expect(conn.hostKey).toBe("ssh-ed25519 " + "H".repeat(68));
    expect(isSecretValue(exp.inputs.connection)).toBe(true);
    expect(conn.privateKey).toBe(hostKey);
  });

  test("changing an installed file changes the trigger", async () => {
    const file = path.join(scriptsDir, "agent-install");
    const before = fs.readFileSync(file, "utf8");
    fs.appendFileSync(file, "# changed\n");
    try {
      const again = await mocked("ubuntu");
      const newHash = (await valueOf(again.result.contentHash)).value;
      expect(newHash).not.toBe(hash);
      expect(again.one("command:remote:Command", "host-acme-install").inputs.triggers).toEqual([newHash]);
    } finally {
      fs.writeFileSync(file, before);
    }
  });
});

describe("HostBackup component (root)", () => {
  test("no sudo when connecting as root", async () => {
    const run = await mocked("root");
    expect(run.one("command:remote:Command", "host-acme-install").inputs.create).toMatch(/\nbash \/var\/lib\/agent-backup\/install-source\/agent-install /);
    expect(run.one("command:remote:Command", "host-acme-install").inputs.create).not.toContain("sudo");
    expect(run.one("command:remote:Command", "host-acme-upload-dir").inputs.create).toBe(`install -d -m 0700 ${remoteUploadDir}`);
    expect(run.one("command:remote:Command", "host-acme-key-export").inputs.create).not.toContain("sudo");
  });
});

describe("HostBackup refuses to connect without knowing who answers", () => {
  test.each([
    ["no host key", undefined],
    ["an empty host key", ""],
    ["a host key with options", `no-pty ssh-ed25519 ${"H".repeat(68)}`],
  ])("%s", (_what, bad) => {
    const a = args("ubuntu");
    // Thrown before the component registers anything.
    expect(() => new HostBackup("host-acme", { ...a, host: { ...a.host, hostKey: bad as string } })).toThrow(/refusing host key/);
  });
});

describe("keyExportCommand, run for real by bash and dash with stand-ins for sudo and agent-backup", () => {
  const exportText = "BORG_KEY 902557ac451f636d2aa9a05d3d73841a9239ce7372a981ebae488363632a52a4\nhqlhbGdvcml0aG2mc2hhMjU2pGRhdGHaAZ4xw94klMpkVjgsQO5\n18xbXVRDO238zxFmHzz+eMqImE\n";
  const secretLines = exportText.trim().split("\n");

  /** Runs the command with an agent-backup that prints `printed` on stdout and exits `code`. */
  function runExport(shell: "bash" | "dash", user: string, printed: string, code: number) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-keyexport-"));
    try {
      const bin = path.join(dir, "bin");
      const tmp = path.join(dir, "tmp");
      fs.mkdirSync(bin);
      fs.mkdirSync(tmp);
      fs.writeFileSync(path.join(bin, "sudo"), '#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n', { mode: 0o755 });
      const stub = path.join(bin, "agent-backup");
      fs.writeFileSync(stub, `#!/bin/sh\ncat <<'EOF'\n${printed}EOF\necho "agent-backup: progress" >&2\nexit ${code}\n`, { mode: 0o755 });
      const script = keyExportCommand(user).replaceAll(agentBackupPath, stub);
      const r = spawnSync(shell, ["-c", script], { encoding: "utf8", env: { PATH: `${bin}:/usr/bin:/bin`, TMPDIR: tmp } });
      if (r.error) throw r.error;
      return { status: r.status, stdout: r.stdout, stderr: r.stderr, leftovers: fs.readdirSync(tmp) };
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }

  test("is shellcheck clean for sh and bash, as root and through sudo", () => {
    for (const user of ["ubuntu", "root"]) {
      for (const shell of ["sh", "bash"]) {
        const r = spawnSync("shellcheck", ["-s", shell, "-"], { input: keyExportCommand(user), encoding: "utf8" });
        if (r.error) throw r.error;
        expect(r.stdout + r.stderr, `${user} ${shell}`).toBe("");
      }
    }
  });

  test.each(["bash", "dash"] as const)("%s: prints the export and nothing else when it worked, leaving no file", (shell) => {
    for (const user of ["ubuntu", "root"]) {
      const r = runExport(shell, user, exportText, 0);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(exportText);
      expect(r.leftovers).toEqual([]);
    }
  });

  test.each(["bash", "dash"] as const)("%s: a failure after the export was written prints none of it", (shell) => {
    const r = runExport(shell, "ubuntu", exportText, 1);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("agent-backup --key-export failed");
    for (const line of secretLines) expect(r.stdout + r.stderr).not.toContain(line);
    expect(r.leftovers).toEqual([]);
  });

  test.each(["bash", "dash"] as const)("%s: output that is not a key export is refused without being shown", (shell) => {
    const r = runExport(shell, "ubuntu", "passphrase=hunter2-not-a-key\n", 0);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("printed no borg key export");
    expect(r.stdout + r.stderr).not.toContain("hunter2");
    expect(r.leftovers).toEqual([]);
  });
});
