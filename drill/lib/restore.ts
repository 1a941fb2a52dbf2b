// The restore side: a fresh box gets the host scripts (the same files the install plan copies),
// the tenant's drill key, and runs agent-drill with the command built by drillCommand, the same
// function the cloud drill stack uses. Then a stand-in agent starts from the restored home.
import * as path from "path";
import { drillCommand } from "../../components/drill-command";
import { parseDrillReport, type DrillCheck, type DrillReport } from "../../components/drill-report";
import { hostInstallPlan, remoteSourceDir } from "../../components/host-install-plan";
import { boxToolsDir, installInput } from "./agent-host";
import type { Box } from "./box";
import type { Control } from "./control";
import { waitFor } from "./exec";
import type { TenantSecrets } from "./keys";
import type { TenantAccount } from "./storage";

export const restoreRoot = "/srv/agents";
const standinPath = `${boxToolsDir}/agent-standin`;

/** Scripts and the stand-in agent unit on the restore box (once per box). */
export async function prepareRestoreBox(box: Box, control: Control, someAccount: TenantAccount): Promise<void> {
  const plan = hostInstallPlan(installInput(someAccount));
  await control.ssh(box, `install -d -m 0700 ${plan.remoteSourceDir}`);
  await control.copyFiles(box, [
    ...plan.files,
    { localPath: path.join(__dirname, "agent-standin"), remotePath: standinPath, mode: "0755" },
  ]);
  await box.writeFile(
    "/etc/systemd/system/agent-standin@.service",
    "[Unit]\nDescription=Stand-in agent serving the restored home of %i\n\n" +
      `[Service]\nExecStart=${standinPath} --serve --home ${restoreRoot}/%i/.hermes\n`,
    "0644",
  );
  await box.exec(["systemctl", "daemon-reload"]);
}

export interface TenantRestore {
  report: DrillReport;
  /** Checks of the local drill beyond agent-drill's: the stand-in agent service. */
  checks: DrillCheck[];
}

/**
 * agent-drill for one tenant with its drill key; the report comes back through its schema. With
 * the canaries planted in the host's home, also proves none of them reached the restored home.
 */
export async function drillTenant(
  box: Box, control: Control, account: TenantAccount, secrets: TenantSecrets, knownHosts: string, canaries?: string,
): Promise<TenantRestore> {
  const dir = `/etc/agent-drill/${account.tenant}`;
  await box.writeFile(`${dir}/ssh_key`, secrets.keys.drill.privateKey, "0600");
  await box.writeFile(`${dir}/passphrase`, secrets.passphrase, "0600");
  await box.writeFile(`${dir}/known_hosts`, knownHosts, "0644");
  await box.exec(["install", "-d", "-m", "0755", `${restoreRoot}/${account.tenant}`]);
  const target = `${restoreRoot}/${account.tenant}/.hermes`;
  const reportFile = `/var/lib/agent-drill/${account.tenant}-report.json`;
  const command = drillCommand({
    program: `${remoteSourceDir}/agent-drill`,
    repoUrl: account.repoUrl,
    sshKeyFile: `${dir}/ssh_key`,
    knownHostsFile: `${dir}/known_hosts`,
    passphraseFile: `${dir}/passphrase`,
    remoteBorg: "borg",
    tenant: account.tenant,
    target,
    agentCheck: `${standinPath} --check --home ${target}`,
    reportFile,
  });
  const r = await control.ssh(box, command, { allowFailure: true, timeoutMs: 900_000 });
  let report: DrillReport;
  try {
    report = parseDrillReport(r.stdout);
  } catch (err) {
    throw new Error(`agent-drill for ${account.tenant} (exit ${r.code}) gave no valid report: ${(err as Error).message}\n${r.stderr.trim().split("\n").slice(-10).join("\n")}`);
  }
  const checks = [await startStandin(box, account.tenant)];
  if (canaries !== undefined) checks.push(await canaryCheck(box, account.tenant, target, canaries));
  return { report, checks };
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

