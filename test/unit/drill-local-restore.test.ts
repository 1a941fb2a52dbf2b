// The local drill's restore step runs exactly drillCommand's line (the cloud drill stack's test
// asserts the same for the EC2 box) with the agent check both drills share, and turns the agent's
// turn on the restored home (or the stand-in agent's state) into a check.
import { describe, expect, it } from "vitest";
import { agentHealthCheck, drillCommand } from "../../components/drill-command";
import { remoteSourceDir } from "../../components/host-install-plan";
import type { Box } from "../../drill/lib/box";
import type { Control } from "../../drill/lib/control";
import type { RunResult } from "../../drill/lib/exec";
import type { TenantSecrets } from "../../drill/lib/keys";
import { rememberedWord } from "../../drill/lib/real-agent";
import { drillTenant, restoreRoot, type TenantAgent } from "../../drill/lib/restore";
import { tenantAccount } from "../../drill/lib/storage";

const report = {
  tenant: "tenant-a",
  archive: "tenant-a-2026-11-25T10:00:00",
  archiveAgeSeconds: 5,
  bytes: 1000,
  backupSeconds: 1,
  restoreSeconds: 1,
  checks: [{ name: "restore", ok: true, detail: "ok" }],
  healthy: true,
  agent: { name: "none", version: "none" },
  startedAt: "2026-11-25T10:00:05Z",
  finishedAt: "2026-11-25T10:00:07Z",
};

const result = (stdout: string, code = 0): RunResult => ({ code, stdout, stdoutBytes: Buffer.from(stdout), stderr: "" });

function fakes(standinActive: boolean, recall = "yes") {
  const sshCommands: string[] = [];
  const execs: string[][] = [];
  const written: Record<string, string> = {};
  let sessions = 5;
  const box = {
    spec: { name: "box" },
    writeFile: async (p: string, content: string) => {
      written[p] = content;
    },
    exec: async (argv: string[]) => {
      execs.push(argv);
      if (argv[0] === "cat") return result("healthy 1764064800 42\n");
      if (argv[0] === "systemctl" && argv[1] === "is-active") return result(standinActive ? "active\n" : "failed\n", standinActive ? 0 : 3);
      // grep and find | grep: no canary found (exit 1).
      if (argv[0] === "grep" || argv[0] === "sh") return result("", 1);
      if (argv[0] === "runuser") {
        const args = argv.slice(argv.lastIndexOf("hermes") + 1).join(" ");
        if (args === "sessions stats") return result(`Total sessions: ${sessions}\nTotal messages: 20\n`);
        if (args.startsWith("-z ")) {
          sessions++;
          return result(`recalled ${rememberedWord}: ${recall}\n`);
        }
      }
      return result("");
    },
  } as unknown as Box;
  const control = {
    ssh: async (_box: Box, command: string) => {
      sshCommands.push(command);
      return result(JSON.stringify(report));
    },
  } as unknown as Control;
  return { box, control, sshCommands, execs, written };
}

const standin: TenantAgent = { kind: "standin", canaries: "canary-one\n" };
const real: TenantAgent = { kind: "real", canaries: "sk-canary-cfg-1\nsk-canary-env-2\n" };

const secrets = {
  tenant: "tenant-a",
  keys: { drill: { privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n", publicKey: "", privatePath: "" } },
  passphrase: "secret-passphrase",
} as unknown as TenantSecrets;

describe("local drill restore step", () => {
  it("runs drillCommand's line with the tenant's drill key and returns its report", async () => {
    const { box, control, sshCommands, written } = fakes(true);
    const account = tenantAccount("tenant-a");
    const out = await drillTenant(box, control, account, secrets, "10.77.255.1 ssh-ed25519 AAAA\n", standin);
    const target = `${restoreRoot}/tenant-a/.hermes`;
    expect(sshCommands).toEqual([
      drillCommand({
        program: `${remoteSourceDir}/agent-drill`,
        repoUrl: account.repoUrl,
        sshKeyFile: "/etc/agent-drill/tenant-a/ssh_key",
        knownHostsFile: "/etc/agent-drill/tenant-a/known_hosts",
        passphraseFile: "/etc/agent-drill/tenant-a/passphrase",
        remoteBorg: "borg",
        tenant: "tenant-a",
        target,
        agentCheck: `/usr/local/lib/agent-backups-drill/agent-standin --check --home ${target}`,
        reportFile: "/var/lib/agent-drill/tenant-a-report.json",
      }),
    ]);
    // The drill key (not the push key) and the passphrase go to files, never to the command line.
    expect(written["/etc/agent-drill/tenant-a/ssh_key"]).toBe(secrets.keys.drill.privateKey);
    expect(sshCommands[0]).not.toContain("secret-passphrase");
    expect(out.report).toEqual(report);
    expect(out.checks).toEqual([
      expect.objectContaining({ name: "agent:service", ok: true }),
      expect.objectContaining({ name: "secrets:none-restored", ok: true }),
    ]);
  });

  it("reports a stand-in agent that is not active as a failed check", async () => {
    const { box, control } = fakes(false);
    const out = await drillTenant(box, control, tenantAccount("tenant-a"), secrets, "h k\n", standin);
    expect(out.checks).toContainEqual(expect.objectContaining({ name: "agent:service", ok: false }));
  });

  it("with the real agent: the shared agent check, a home owned by the agent's user, and a turn on it", async () => {
    const { box, control, sshCommands, execs } = fakes(false);
    const out = await drillTenant(box, control, tenantAccount("tenant-a"), secrets, "h k\n", real);
    expect(sshCommands[0]).toContain(` --agent-check '${agentHealthCheck}' `);
    expect(execs).toContainEqual(["install", "-d", "-m", "0755", "-o", "hermes", "-g", "hermes", `${restoreRoot}/tenant-a`]);
    const turn = execs.find((a) => a[0] === "runuser" && a.includes("-z"));
    expect(turn).toEqual(expect.arrayContaining(["-u", "hermes", `HERMES_HOME=${restoreRoot}/tenant-a/.hermes`, `RECALL: ${rememberedWord}`]));
    expect(out.checks).toEqual([
      expect.objectContaining({ name: "agent:turn", ok: true }),
      expect.objectContaining({ name: "secrets:none-restored", ok: true }),
    ]);
  });

  it("with the real agent: a turn without the restored memory in its prompt fails", async () => {
    const { box, control } = fakes(false, "no");
    const out = await drillTenant(box, control, tenantAccount("tenant-a"), secrets, "h k\n", real);
    expect(out.checks).toContainEqual(expect.objectContaining({ name: "agent:turn", ok: false }));
  });
});
