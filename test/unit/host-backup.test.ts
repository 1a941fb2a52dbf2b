import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { HostBackup, HostBackupArgs } from "../../components/host-backup";
import { hostFiles, remoteSourceDir } from "../../components/host-install-plan";
import { MockRun, fixtureScriptsDir, isSecretValue, mockKeyExport, plain, runMocked, valueOf } from "./prod-mocks";

const scriptsDir = fixtureScriptsDir();
afterAll(() => fs.rmSync(scriptsDir, { recursive: true, force: true }));

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

  test("every file of the install plan is copied to the host, re-copied when the content hash changes", async () => {
    const copies = run.byType("command:remote:CopyToRemote");
    expect(copies.map((c) => c.inputs.remotePath).sort()).toEqual(hostFiles.map((f) => `${remoteSourceDir}/${f.rel}`).sort());
    for (const c of copies) {
      const rel = (c.inputs.remotePath as string).slice(remoteSourceDir.length + 1);
      expect(await c.inputs.source.path).toBe(path.join(scriptsDir, rel));
      expect(c.inputs.triggers).toEqual([hash]);
      // The private key makes the whole connection secret.
      expect(isSecretValue(c.inputs.connection)).toBe(true);
      expect(plain(c.inputs.connection)).toMatchObject({ host: "10.1.2.3", user: "ubuntu", port: 2201, privateKey: hostKey });
      expect(c.parentType).toBe("agent-backups:host:HostBackup");
    }
  });

  test("install: modes, then agent-install as root with the plan's arguments; secrets only on stdin", () => {
    const install = run.one("command:remote:Command", "host-acme-install");
    const create = install.inputs.create as string;
    expect(create).toContain(`sudo -n chmod 0755 ${remoteSourceDir}/agent-install`);
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
    expect(install.opts.dependsOn).toHaveLength(hostFiles.length);
  });

  test("the copies land in a directory the SSH user owns", () => {
    const prep = run.one("command:remote:Command", "host-acme-source-dir");
    expect(prep.inputs.create).toBe(`sudo -n install -d -m 0700 -o ubuntu ${remoteSourceDir}`);
  });

  test("key export after install: never logged, a secret output", async () => {
    const exp = run.one("command:remote:Command", "host-acme-key-export");
    expect(exp.inputs.create).toBe("sudo -n /usr/local/sbin/agent-backup --config /etc/agent-backup/agent-backup.conf --key-export");
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
    const file = path.join(scriptsDir, "backup-set.patterns");
    const before = fs.readFileSync(file, "utf8");
    fs.appendFileSync(file, "- fm:*/new-dead-weight\n");
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
    expect(run.one("command:remote:Command", "host-acme-source-dir").inputs.create).toBe(`install -d -m 0700 ${remoteSourceDir}`);
  });
});
