// The restore side: a fresh box gets the host scripts (the same files the install plan copies),
// the real agent (installed from the wheelhouse, no network), the tenant's drill key, and runs
// agent-drill with the command built by drillCommand and the agent check both drills share
// (agentHealthCheck): the agent's own checks decide whether the restored home is healthy. Then the
// agent takes one more turn on it. With --agent standin, a stand-in agent does instead.
import * as path from "path";
import { drillRestorePaths, drillRestoreRoot } from "../../components/drill-agent";
import { tenantDrillCommand, tenantDrillFiles } from "../../components/drill-command";
import { parseDrillReport, type DrillAgent, type DrillCheck, type DrillReport } from "../../components/drill-report";
import { hostInstallPlan } from "../../components/host-install-plan";
import { agentUser, boxToolsDir, installInput, type AgentKind } from "./agent-host";
import type { Box } from "./box";
import type { Control } from "./control";
import { waitFor } from "./exec";
import type { TenantSecrets } from "./keys";
import { agentPackage } from "./real-agent";
import { installAgent, restoredTurnCheck, startFakeServer, type AgentUserHome } from "./real-agent-box";
import type { TenantAccount } from "./storage";

export const restoreRoot = drillRestoreRoot;
const standinPath = `${boxToolsDir}/agent-standin`;

/** The agent a tenant's drill starts from the restored home, and the canaries planted on its host. */
export interface TenantAgent {
  kind: AgentKind;
  /** Secret values planted in the host's home, one per line: none may be restored. */
  canaries: string;
}

/** Who runs the real agent on the restore box, on a tenant's restored home. */
function restoredAgent(tenant: string): AgentUserHome {
  return { user: agentUser, home: `/home/${agentUser}`, hermesHome: `${restoreRoot}/${tenant}/.hermes` };
}

/**
 * Scripts, and the agent, on the restore box (once per box): the real agent installed from the
 * wheelhouse with its user and the fake model server, or the stand-in agent's unit.
 */
export async function prepareRestoreBox(box: Box, control: Control, someAccount: TenantAccount, kind: AgentKind, wheelhouse?: string): Promise<DrillAgent> {
  const plan = hostInstallPlan(installInput(someAccount));
  await control.ssh(box, `install -d -m 0700 ${plan.remoteSourceDir}`);
  await control.copyFiles(box, [
    ...plan.files,
    { localPath: path.join(__dirname, "agent-standin"), remotePath: standinPath, mode: "0755" },
  ]);
  if (kind === "real") {
    if (wheelhouse === undefined) throw new Error("the real agent needs the wheelhouse");
    await box.exec(["useradd", "--create-home", "--shell", "/bin/bash", agentUser]);
    const version = await installAgent(box, wheelhouse);
    await startFakeServer(box);
    return { name: agentPackage, version };
  }
  await box.writeFile(
    "/etc/systemd/system/agent-standin@.service",
    "[Unit]\nDescription=Stand-in agent serving the restored home of %i\n\n" +
      `[Service]\nExecStart=${standinPath} --serve --home ${restoreRoot}/%i/.hermes\n`,
    "0644",
  );
  await box.exec(["systemctl", "daemon-reload"]);
  return { name: "agent-standin", version: "fixture" };
}

export interface TenantRestore {
  report: DrillReport;
  /** Checks of the local drill beyond agent-drill's: a turn of the real agent (or the stand-in service), canaries. */
  checks: DrillCheck[];
}

/**
 * agent-drill for one tenant with its drill key; the report comes back through its schema. Then
 * the agent on the restored home, and proof that none of the host's canaries reached it.
 */
export async function drillTenant(
  box: Box, control: Control, account: TenantAccount, secrets: TenantSecrets, knownHosts: string, agent: TenantAgent,
): Promise<TenantRestore> {
  const files = tenantDrillFiles(account.tenant);
  await box.writeFile(files.sshKey, secrets.keys.drill.privateKey, "0600");
  await box.writeFile(files.passphrase, secrets.passphrase, "0600");
  await box.writeFile(files.knownHosts, knownHosts, "0644");
  // The folder belongs to the agent's user, so the restored home does (agent-restore's default
  // owner) and the agent check runs the agent as that user, never as root.
  const owner = agent.kind === "real" ? ["-o", agentUser, "-g", agentUser] : [];
  const { dir, target } = drillRestorePaths(account.tenant);
  await box.exec(["install", "-d", "-m", "0755", ...owner, dir]);
  const command = localDrillCommand(account, agent.kind);
  const r = await control.ssh(box, command, { allowFailure: true, timeoutMs: 900_000 });
  let report: DrillReport;
  try {
    report = parseDrillReport(r.stdout);
  } catch (err) {
    throw new Error(`agent-drill for ${account.tenant} (exit ${r.code}) gave no valid report: ${(err as Error).message}\n${r.stderr.trim().split("\n").slice(-10).join("\n")}`);
  }
  const restored = report.checks.some((c) => c.name === "restore" && c.ok);
  const checks: DrillCheck[] = [];
  if (agent.kind === "standin") checks.push(await startStandin(box, account.tenant));
  else if (restored) checks.push(await restoredTurnCheck(box, restoredAgent(account.tenant)));
  else checks.push({ name: "agent:turn", ok: false, detail: "no restored home to take a turn on" });
  checks.push(await canaryCheck(box, account.tenant, target, agent.canaries));
  return { report, checks };
}

/**
 * The local drill's agent-drill line for a tenant: tenantDrillCommand, as the cloud drill stack
 * renders it, with the loopback storage box's borg; the stand-in has a check of its own.
 */
export function localDrillCommand(account: Pick<TenantAccount, "tenant" | "repoUrl">, kind: AgentKind, remoteBorg = "borg"): string {
  const { target } = drillRestorePaths(account.tenant);
  return tenantDrillCommand({
    tenant: account.tenant,
    repoUrl: account.repoUrl,
    remoteBorg,
    ...(kind === "real" ? {} : { agentCheck: `${standinPath} --check --home ${target}` }),
  });
}

/** No planted secret value appears anywhere in the restored home (file names or contents). */
async function canaryCheck(box: Box, tenant: string, target: string, canaries: string): Promise<DrillCheck> {
  const list = `/root/canaries-${tenant}.txt`;
  await box.writeFile(list, canaries, "0600");
  const count = canaries.split("\n").filter((l) => l.trim() !== "").length;
  const contents = await box.exec(["grep", "-rlF", "-f", list, "--", target], { allowFailure: true, secretOutput: true });
  const names = await box.exec(["sh", "-c", `find ${target} | grep -F -f ${list}`], { allowFailure: true, secretOutput: true });
  await box.exec(["rm", "-f", list]);
  // grep exits 1 when nothing matched, 2 on an error (which must not pass for "nothing found").
  const ok = contents.code === 1 && names.code === 1;
  const found = [...contents.stdout.split("\n"), ...names.stdout.split("\n")].filter(Boolean).map((f) => f.slice(target.length + 1));
  return {
    name: "secrets:none-restored",
    ok,
    detail: ok ? `none of the ${count} canary secrets is in the restored home` : `canaries found in: ${found.join(", ") || `(grep exit ${contents.code}/${names.code})`}`,
  };
}

/** Start the stand-in agent from the restored home; it must be active and report healthy. */
async function startStandin(box: Box, tenant: string): Promise<DrillCheck> {
  const unit = `agent-standin@${tenant}.service`;
  const started = await box.exec(["systemctl", "start", unit], { allowFailure: true });
  if (started.code !== 0) return { name: "agent:service", ok: false, detail: `${unit} did not start: ${started.stderr.trim()}` };
  try {
    const health = await waitFor(`${unit} to report health`, 40, 250, async () => {
      const r = await box.exec(["cat", `/run/agent-standin/${tenant}.health`], { allowFailure: true });
      return r.code === 0 && r.stdout.trim() !== "" ? r.stdout.trim() : undefined;
    });
    const active = (await box.exec(["systemctl", "is-active", unit], { allowFailure: true })).stdout.trim();
    return { name: "agent:service", ok: active === "active" && health.startsWith("healthy "), detail: `${unit} ${active}, ${health}` };
  } catch (err) {
    const journal = await box.exec(["journalctl", "-u", unit, "-n", "10", "--no-pager", "-o", "cat"], { allowFailure: true });
    return { name: "agent:service", ok: false, detail: `${(err as Error).message}: ${journal.stdout.trim()}` };
  }
}

