// The compromised-host scenario (--scenario compromised-host): the agent host's push key, which is
// append-only, is used to delete, prune and change the passphrase. The drill shows what survived
// (every committed segment, the storage-layer snapshot, the escrowed key export) and recovers:
// scripts/agent-recover-repo imports the escrowed key and rolls the repository back to the
// snapshot's transaction, then the restore drill runs again and must be healthy.
import * as fs from "fs";
import * as path from "path";
import type { DrillCheck } from "../../components/drill-report";
import { hostInstallPlan, scriptsDir } from "../../components/host-install-plan";
import { agentBackupPath, hostConfigPath } from "../../components/host-backup";
import { hostArchives, hostBorg, installInput } from "./agent-host";
import type { Box } from "./box";
import type { Control } from "./control";
import type { TenantSecrets } from "./keys";
import type { Progress } from "./progress";
import { drillTenant, restoreRoot, type TenantAgent } from "./restore";
import type { TenantAccount } from "./storage";

export interface CompromiseArgs {
  storage: Box;
  host: Box;
  restoreBox: Box;
  control: Control;
  account: TenantAccount;
  secrets: TenantSecrets;
  knownHosts: string;
  /** The storage-layer snapshot taken before the attack. */
  snapshot: string;
  progress: Progress;
  /** The tenant's agent and canaries, for the second restore drill. */
  agent: TenantAgent;
}

/** Where the admin side (the storage box's root, standing in for the main account) keeps things. */
const adminDir = "/root/agent-admin";

export async function compromisedHost(a: CompromiseArgs): Promise<DrillCheck[]> {
  const checks: DrillCheck[] = [];
  const t = a.account.tenant;
  const before = await hostArchives(a.host, a.account);
  const latest = before[before.length - 1]?.name;
  if (before.length < 2 || latest === undefined) throw new Error(`expected two archives before the attack, found ${before.length}`);

  // Escrow, as onboarding does: the key export goes to the control vault (here: the admin side).
  const exported = await a.host.exec([agentBackupPath, "--config", hostConfigPath, "--key-export"], { secretOutput: true });
  await a.storage.writeFile(`${adminDir}/${t}.key-export`, exported.stdout, "0600");
  await a.storage.writeFile(`${adminDir}/${t}.passphrase`, a.secrets.passphrase, "0600");
  // The admin side gets the same scripts as hosts (agent-recover-repo and its lib).
  for (const f of hostInstallPlan(installInput(a.account)).files) {
    await a.storage.writeFile(f.remotePath, fs.readFileSync(f.localPath), f.mode);
  }
  // Not a host file (hosts never hold the repository's files): copied beside the host scripts.
  const recoverRepo = `${hostInstallPlan(installInput(a.account)).remoteSourceDir}/agent-recover-repo`;
  await a.storage.writeFile(recoverRepo, fs.readFileSync(path.join(scriptsDir, "agent-recover-repo")), "0755");

  // --- the attack, with the host's own installed push key ----------------------------------------
  a.progress.line(`  ${t}: attacker on the host: prune, delete, change-passphrase with the push key`);
  const [first, second] = before;
  const prune = await hostBorg(a.host, ["prune", "--keep-last", "1", a.account.repoUrl], { allowFailure: true });
  const del = await hostBorg(a.host, ["delete", `${a.account.repoUrl}::${second?.name ?? ""}`], { allowFailure: true });
  const change = await a.host.exec(["bash", "-c",
    "export BORG_NEW_PASSPHRASE=attacker-owns-this BORG_RSH='ssh -i /etc/agent-backup/ssh_key -o IdentitiesOnly=yes " +
    "-o UserKnownHostsFile=/etc/agent-backup/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes' " +
    "BORG_PASSCOMMAND='cat /etc/agent-backup/passphrase' BORG_BASE_DIR=/var/lib/agent-backup/borg; " +
    `borg key change-passphrase '${a.account.repoUrl}'`], { allowFailure: true, secretOutput: true });
  checks.push({
    name: "attack:append-only-key-ran",
    ok: prune.code === 0 && del.code === 0 && change.code === 0,
    detail: `through the append-only key: prune exit ${prune.code}, delete ${second?.name} exit ${del.code}, change-passphrase exit ${change.code} (append-only does not refuse these)`,
  });
  const afterList = await hostBorg(a.host, ["list", "--short", a.account.repoUrl], { allowFailure: true });
  checks.push({
    name: "attack:damage-visible",
    ok: afterList.code !== 0,
    detail: afterList.code !== 0 ? "the real passphrase no longer opens the repository (its repokey was rewritten)" : `still opens: ${afterList.stdout.trim()}`,
  });

  // --- what survived -----------------------------------------------------------------------------
  const snapRepo = `${a.snapshot}/${t}`;
  const snapList = await a.storage.exec(["bash", "-c",
    `set -euo pipefail; d=$(mktemp -d); trap 'rm -rf "$d"' EXIT; cp -a ${snapRepo} "$d/repo"; ` +
    `BORG_BASE_DIR="$d/base" BORG_PASSCOMMAND='cat ${adminDir}/${t}.passphrase' borg list --short "$d/repo"`], { allowFailure: true });
  const survived = snapList.stdout.split("\n").filter(Boolean);
  checks.push({
    name: "survived:snapshot",
    ok: snapList.code === 0 && before.every((b) => survived.includes(b.name)),
    detail: `the storage-layer snapshot ${a.snapshot} still lists ${survived.join(", ") || "nothing"} with the real passphrase`,
  });

  // --- recovery: roll back to the snapshot's transaction, import the escrowed key ----------------
  const idx = await a.storage.exec(["bash", "-c", `ls ${snapRepo} | sed -n 's/^index\\.\\([0-9]*\\)$/\\1/p'`]);
  const transaction = idx.stdout.trim();
  if (!/^[0-9]+$/.test(transaction)) throw new Error(`no index.N in the snapshot of ${t}: ${JSON.stringify(transaction)}`);
  const repoDir = a.account.repoPath;
  // The key first: the rolled-back copy is checked with the real passphrase, which the attacker's
  // change-passphrase made useless until the escrowed repokey is back.
  const importKey = await a.storage.exec([recoverRepo, "--import-key", `${adminDir}/${t}.key-export`, "--repo-dir", repoDir, "--passphrase-file", `${adminDir}/${t}.passphrase`],
    { allowFailure: true, timeoutMs: 300_000, secretOutput: true });
  const rollback = await a.storage.exec([recoverRepo, "--repo-dir", repoDir, "--to-transaction", transaction, "--passphrase-file", `${adminDir}/${t}.passphrase`],
    { allowFailure: true, timeoutMs: 300_000 });
  await a.storage.exec(["chown", "-R", `${t}:${t}`, repoDir]);
  const tail = (s: string) => s.trim().split("\n").slice(-2).join(" | ").slice(0, 240);
  checks.push({ name: "recovered:key", ok: importKey.code === 0, detail: `agent-recover-repo --import-key from the escrowed export: exit ${importKey.code}` });
  checks.push({ name: "recovered:rollback", ok: rollback.code === 0, detail: `agent-recover-repo --to-transaction ${transaction} (the snapshot's): exit ${rollback.code}: ${tail(rollback.stderr)}` });

  // Clients drop their borg state for the repository (it went back in time), then drill again.
  await a.restoreBox.exec(["rm", "-rf", "/var/lib/agent-backup/borg"]);
  await a.restoreBox.exec(["systemctl", "stop", `agent-standin@${t}.service`], { allowFailure: true });
  await a.restoreBox.exec(["rm", "-rf", `${restoreRoot}/${t}`]);
  const again = await drillTenant(a.restoreBox, a.control, a.account, a.secrets, a.knownHosts, a.agent);
  const ok = again.report.healthy && again.checks.every((c) => c.ok) && again.report.archive === latest;
  checks.push({
    name: "recovered:drill",
    ok,
    detail: `restore drill after recovery: restored ${again.report.archive}, which the attacker had deleted (${first?.name} was pruned), ${again.report.checks.filter((c) => c.ok).length}/${again.report.checks.length} checks ok` +
      (ok ? "" : `; failed: ${[...again.report.checks, ...again.checks].filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`).join("; ")}`),
  });
  return checks;
}

