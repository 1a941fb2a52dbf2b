// The agent host of one tenant: a home written by the real agent, which keeps taking turns (or, with
// --agent standin, a sample home with a live writer), then the backup installed over SSH exactly
// as the prod stack's host component does it (components/host-backup.ts runs installCommand(plan)
// with hostInstallStdin(...) on stdin), then two runs through systemd.
import * as path from "path";
import { drillAgentUser } from "../../components/drill-agent";
import type { DrillCheck } from "../../components/drill-report";
import { installCommand } from "../../components/host-backup";
import { hostInstallPlan, hostInstallStdin, type HostInstallInput } from "../../components/host-install-plan";
import type { Box } from "./box";
import type { Control } from "./control";
import type { TenantSecrets } from "./keys";
import { installAgent, startFakeServer, writeAgentHome, type AgentUserHome } from "./real-agent-box";
import type { TenantAccount } from "./storage";

export const repoRoot = path.resolve(__dirname, "..", "..");
/** Where the drill puts its test fixtures and helpers inside boxes. */
export const boxToolsDir = "/usr/local/lib/agent-backups-drill";
export const agentUser = drillAgentUser;
export const agentHome = `/home/${agentUser}/.hermes`;
/** The agent's user, HOME and HERMES_HOME on the agent host. */
export const hostAgent: AgentUserHome = { user: agentUser, home: `/home/${agentUser}`, hermesHome: agentHome };

/** Which agent the drill runs: the real one (the default), or the stand-in of a machine without it. */
export const agentKinds = ["real", "standin"] as const;
export type AgentKind = (typeof agentKinds)[number];
// Not the unit's default textfile directory: the drill proves agent-install opens a custom one to
// the sandboxed service (a drop-in), as an operator's metricsDir needs.
export const metricsDir = "/srv/metrics/agent-backup";

export interface BackupRun {
  seconds: number;
  result: string;
}

export interface AgentHostResult {
  checks: DrillCheck[];
  backups: BackupRun[];
}

/**
 * The real agent installed from the wheelhouse; it writes its home with its own commands as its
 * own user and keeps taking turns. Returns the API key canaries it was given, one per line.
 */
export async function makeRealAgentHome(box: Box, wheelhouse: string): Promise<string> {
  await box.exec(["useradd", "--create-home", "--shell", "/bin/bash", agentUser]);
  await installAgent(box, wheelhouse);
  await startFakeServer(box);
  return writeAgentHome(box, hostAgent);
}

/** The sample home (make-agent-home) owned by the agent user, and agent-writer running as a unit. */
export async function makeLiveAgentHome(box: Box, control: Control): Promise<void> {
  await control.copyFiles(box, [
    { localPath: path.join(repoRoot, "test/fixtures/make-agent-home"), remotePath: `${boxToolsDir}/make-agent-home`, mode: "0755" },
    { localPath: path.join(repoRoot, "test/fixtures/agent-writer"), remotePath: `${boxToolsDir}/agent-writer`, mode: "0755" },
  ]);
  await box.exec(["useradd", "--create-home", "--shell", "/bin/bash", agentUser]);
  await box.exec(["runuser", "-u", agentUser, "--", `${boxToolsDir}/make-agent-home`, "--home", agentHome,
    "--canaries-out", `/home/${agentUser}/canaries.txt`], { timeoutMs: 300_000 });
  await box.writeFile(
    "/etc/systemd/system/agent-writer.service",
    "[Unit]\nDescription=Stand-in for the live agent: keeps writing to state.db\n\n" +
      `[Service]\nUser=${agentUser}\nExecStart=${boxToolsDir}/agent-writer --home ${agentHome} --rate 20 --duration 3600\n`,
    "0644",
  );
  await box.exec(["systemctl", "daemon-reload"]);
  await box.exec(["systemctl", "start", "agent-writer.service"]);
}

export function installInput(account: TenantAccount): HostInstallInput {
  return { tenant: account.tenant, agentHome, repoUrl: account.repoUrl, remoteBorg: "borg", schedule: "*-*-* 03:17:00", metricsDir };
}

/** Install as the prod host component does; run it twice, the second must change nothing. */
export async function installBackup(box: Box, control: Control, account: TenantAccount, secrets: TenantSecrets, knownHosts: string): Promise<DrillCheck[]> {
  const plan = hostInstallPlan(installInput(account));
  const stdin = hostInstallStdin({ sshPrivateKey: secrets.keys.push.privateKey, passphrase: secrets.passphrase, knownHosts });
  await control.ssh(box, `install -d -m 0700 ${plan.remoteSourceDir}`);
  await control.copyFiles(box, plan.files);
  const first = await control.ssh(box, installCommand("root", plan), { input: stdin, secretOutput: true, timeoutMs: 300_000 });
  const second = await control.ssh(box, installCommand("root", plan), { input: stdin, secretOutput: true, timeoutMs: 300_000 });
  const lastLine = (s: string) => s.trim().split("\n").pop() ?? "";
  const checks: DrillCheck[] = [
    { name: "install", ok: true, detail: `agent-install over SSH: ${lastLine(first.stdout)}` },
    { name: "install:idempotent", ok: lastLine(second.stdout) === "changed=none", detail: `second run: ${lastLine(second.stdout)}` },
  ];
  const enabled = (await box.exec(["systemctl", "is-enabled", "agent-backup.timer"], { allowFailure: true })).stdout.trim();
  const next = (await box.exec(["systemctl", "show", "-P", "NextElapseUSecRealtime", "agent-backup.timer"], { allowFailure: true })).stdout.trim();
  const calendar = (await box.exec(["systemctl", "show", "-P", "TimersCalendar", "agent-backup.timer"], { allowFailure: true })).stdout.trim();
  checks.push({
    name: "timer:scheduled",
    ok: enabled === "enabled" && next !== "" && calendar.includes("03:17:00"),
    detail: `agent-backup.timer ${enabled}, next run ${next || "none"}`,
  });
  return checks;
}

/** `systemctl start agent-backup.service` (a oneshot: returns when the run ends), with its result. */
export async function runBackup(box: Box): Promise<BackupRun> {
  const t0 = Date.now();
  const r = await box.exec(["systemctl", "start", "agent-backup.service"], { allowFailure: true, timeoutMs: 900_000 });
  const seconds = (Date.now() - t0) / 1000;
  const result = (await box.exec(["systemctl", "show", "-P", "Result", "agent-backup.service"])).stdout.trim();
  if (r.code !== 0 || result !== "success") {
    const journal = await box.exec(["journalctl", "-u", "agent-backup.service", "-n", "30", "--no-pager", "-o", "cat"], { allowFailure: true });
    throw new Error(`agent-backup.service failed (${result}):\n${journal.stdout.trim()}`);
  }
  return { seconds, result };
}

/** Run borg on the agent host with the host's own push key and passphrase (values validated). */
export function hostBorg(box: Box, args: readonly string[], opts: { allowFailure?: boolean } = {}) {
  for (const a of args) if (!/^[A-Za-z0-9@:/._=-]+$/.test(a)) throw new Error(`hostBorg: refusing argument ${JSON.stringify(a)}`);
  const script =
    "set -euo pipefail\n" +
    "export BORG_RSH='ssh -i /etc/agent-backup/ssh_key -o IdentitiesOnly=yes -o UserKnownHostsFile=/etc/agent-backup/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes'\n" +
    "export BORG_PASSCOMMAND='cat /etc/agent-backup/passphrase' BORG_BASE_DIR=/var/lib/agent-backup/borg\n" +
    `exec borg ${args.join(" ")}\n`;
  return box.exec(["bash", "-c", script], { timeoutMs: 300_000, allowFailure: opts.allowFailure ?? false });
}

/** Borg's view of the tenant's last archives, read on the host with its own (push) key. */
export async function hostArchives(box: Box, account: TenantAccount): Promise<{ name: string; dedup: number; compressed: number }[]> {
  const r = await hostBorg(box, ["info", "--json", "--last", "2", account.repoUrl]);
  const info = JSON.parse(r.stdout) as { archives: { name: string; stats: { deduplicated_size: number; compressed_size: number } }[] };
  return info.archives.map((a) => ({ name: a.name, dedup: a.stats.deduplicated_size, compressed: a.stats.compressed_size }));
}

/**
 * Two runs through systemd. The second is incremental when it stores less than its own size: what
 * did not change (SOUL.md, memories, unchanged stores) is referenced from the first, not stored
 * again. (Small files are one chunk each, so a changed store is stored whole.)
 */
export async function backupTwice(box: Box, account: TenantAccount): Promise<AgentHostResult> {
  const backups = [await runBackup(box), await runBackup(box)];
  const archives = await hostArchives(box, account);
  const [a1, a2] = archives;
  const checks: DrillCheck[] = [
    { name: "backup:systemd", ok: true, detail: `agent-backup.service succeeded twice (${backups.map((b) => b.seconds.toFixed(1) + "s").join(", ")})` },
  ];
  checks.push({
    name: "backup:incremental",
    ok: archives.length === 2 && a1 !== undefined && a2 !== undefined && a2.dedup < a2.compressed,
    detail: a1 && a2
      ? `${a1.name} stored ${a1.dedup} bytes; ${a2.name} stored ${a2.dedup} of its ${a2.compressed} bytes, the rest reused`
      : `expected 2 archives, found ${archives.length}`,
  });
  const metrics = await box.exec(["sh", "-c", `cat ${metricsDir}/*.prom`], { allowFailure: true });
  checks.push({
    name: "backup:metrics",
    ok: metrics.code === 0 && /\S/.test(metrics.stdout),
    detail: metrics.code === 0 ? `${metrics.stdout.trim().split("\n").filter((l) => !l.startsWith("#")).length} samples in ${metricsDir}` : `no textfile metrics in ${metricsDir}`,
  });
  return { checks, backups };
}

/** The canary secrets make-agent-home planted in the home (one per line). */
export async function readCanaries(box: Box): Promise<string> {
  const r = await box.exec(["cat", `/home/${agentUser}/canaries.txt`], { secretOutput: true });
  if (!/\S/.test(r.stdout)) throw new Error("make-agent-home planted no canaries");
  return r.stdout;
}
