// The agent-drill command line, built in one place: the local drill and the cloud drill stack both
// call drillCommand, so the restore box runs the same command in both.
import { matchesPattern } from "../config/patterns";
import { drillRestorePaths } from "./drill-agent";
import { isValidRepoUrl, remoteSourceDir } from "./host-install-plan";

/**
 * The restored agent's health check, one for every drill (the local drill and the cloud drill
 * stack): the agent's own offline checks, scripts/agent-check-hermes as the host install plan puts
 * it on the box. agent-verify runs it with HERMES_HOME set to the restored home; it runs `hermes`
 * (found on PATH) as the owner of that home.
 */
export const agentHealthCheck = `${remoteSourceDir}/agent-check-hermes`;

export interface DrillCommandArgs {
  /** Borg repository URL, as in the host config (`ssh://USER@HOST:PORT/PATH`). */
  repoUrl: string;
  /** Private key of the tenant's drill role, as a file on the restore box. */
  sshKeyFile: string;
  /** known_hosts file for the storage host, on the restore box. */
  knownHostsFile: string;
  /** File holding the repository passphrase, on the restore box. */
  passphraseFile: string;
  /** Server-side borg ("borg-1.4" on the Storage Box). Omitted: agent-drill's default. */
  remoteBorg?: string;
  tenant: string;
  /** Archive name, or "latest" (the default). */
  archive?: string;
  /** Directory to restore into; must not hold a home already (agent-restore never overwrites). */
  target: string;
  /**
   * Optional health command run against the restored home (agent-verify --agent-check). Words of
   * [A-Za-z0-9._/:=-] separated by single spaces: no quoting, no shell syntax.
   */
  agentCheck?: string;
  /** Where agent-drill writes the report JSON. */
  reportFile: string;
  /** agent-drill on the restore box (the installed symlink unless the box has it elsewhere). */
  program?: string;
}

export const defaultDrillProgram = "/usr/local/sbin/agent-drill";
const agentCheckPattern = /^[A-Za-z0-9._/:=-]+( [A-Za-z0-9._/:=-]+)*$/;

/** The command line to run as root on the restore box. Every value is validated, none escaped. */
export function drillCommand(args: DrillCommandArgs): string {
  const program = args.program ?? defaultDrillProgram;
  const archive = args.archive ?? "latest";
  const checks: [string, boolean][] = [
    ["program", matchesPattern("abs_path", program)],
    ["repoUrl", isValidRepoUrl(args.repoUrl)],
    ["sshKeyFile", matchesPattern("abs_path", args.sshKeyFile)],
    ["knownHostsFile", matchesPattern("abs_path", args.knownHostsFile)],
    ["passphraseFile", matchesPattern("abs_path", args.passphraseFile)],
    ["tenant", matchesPattern("tenant", args.tenant)],
    ["archive", archive === "latest" || matchesPattern("archive_name", archive)],
    ["target", matchesPattern("abs_path", args.target)],
    ["reportFile", matchesPattern("abs_path", args.reportFile)],
  ];
  if (args.remoteBorg !== undefined) checks.push(["remoteBorg", matchesPattern("borg_command", args.remoteBorg)]);
  if (args.agentCheck !== undefined) checks.push(["agentCheck", agentCheckPattern.test(args.agentCheck)]);
  const bad = checks.filter(([, ok]) => !ok).map(([name]) => name);
  if (bad.length > 0) throw new Error(`drill command: refusing invalid ${bad.join(", ")}`);

  const words = [program, "--repo", args.repoUrl, "--ssh-key", args.sshKeyFile, "--known-hosts", args.knownHostsFile,
    "--passphrase-file", args.passphraseFile];
  if (args.remoteBorg !== undefined) words.push("--remote-borg", args.remoteBorg);
  words.push("--tenant", args.tenant, "--archive", archive, "--target", args.target);
  // The only value with spaces; validated above to hold no quote or shell syntax.
  if (args.agentCheck !== undefined) words.push("--agent-check", `'${args.agentCheck}'`);
  words.push("--report", args.reportFile);
  return words.join(" ");
}

/**
 * The tenant's drill files on a restore box, the same layout in both drills: secrets in a root-only
 * directory per tenant, the report beside the other tenants' reports.
 */
export function tenantDrillFiles(tenant: string) {
  if (!matchesPattern("tenant", tenant)) throw new Error(`drill box: refusing tenant ${JSON.stringify(tenant)}`);
  const dir = `/etc/agent-drill/${tenant}`;
  return {
    dir,
    sshKey: `${dir}/ssh_key`,
    passphrase: `${dir}/passphrase`,
    knownHosts: `${dir}/known_hosts`,
    report: `/var/lib/agent-drill/${tenant}-report.json`,
  };
}

/** What differs between tenants (and between the two drills' storage boxes). */
export interface TenantDrill {
  tenant: string;
  repoUrl: string;
  remoteBorg: string;
  /** Archive name, or "latest" (the default). */
  archive?: string;
  /** The agent check; agentHealthCheck (the agent's own checks) unless a drill says otherwise. */
  agentCheck?: string;
}

/**
 * One tenant's agent-drill line on a restore box, for both drills: agent-drill where the host
 * install plan puts it, the tenant's drill files, the home restored under the agent's user's
 * folder (drillRestorePaths), and the shared agent check.
 */
export function tenantDrillCommand(t: TenantDrill): string {
  const files = tenantDrillFiles(t.tenant);
  return drillCommand({
    program: `${remoteSourceDir}/agent-drill`,
    repoUrl: t.repoUrl,
    sshKeyFile: files.sshKey,
    knownHostsFile: files.knownHosts,
    passphraseFile: files.passphrase,
    remoteBorg: t.remoteBorg,
    tenant: t.tenant,
    archive: t.archive ?? "latest",
    target: drillRestorePaths(t.tenant).target,
    agentCheck: t.agentCheck ?? agentHealthCheck,
    reportFile: files.report,
  });
}
