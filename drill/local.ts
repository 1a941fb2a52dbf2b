// `npm run drill:local`: the whole loop on this machine, with no cloud account. A storage box, one
// agent host per tenant and a fresh restore box, each a systemd-nspawn box in its own network
// namespace; the real agent writes its home on the host and keeps at work; the backup installed
// over SSH exactly as the prod stack does, run twice through systemd, restored with the drill key
// by agent-drill, and the real agent's own checks decide whether the restored home is healthy.
// Progress on stderr, one JSON report on stdout, everything torn down at the end (unless --keep).
//
//   npm run drill:local -- [--tenants N] [--keep] [--scenario standard|compromised-host] [--agent real|standin]
//   npm run drill:local -- --cleanup RUNID     remove what a --keep run left
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import type { DrillCheck, DrillReport } from "../components/drill-report";
import { agentKinds, backupTwice, hostAgent, installBackup, makeLiveAgentHome, makeRealAgentHome, readCanaries, type AgentKind } from "./lib/agent-host";
import { Box } from "./lib/box";
import { compromisedHost } from "./lib/compromise";
import { Control } from "./lib/control";
import { abort } from "./lib/exec";
import { isolationChecks } from "./lib/isolation";
import { makeKeyPair, makeTenantSecrets, type TenantSecrets } from "./lib/keys";
import { describeLeftovers, findLeftovers, runDirFor, runsRoot, sweepRun } from "./lib/leftovers";
import { createNetns, createStorageNetns, linkToStorage, netnsName, type Link } from "./lib/netns";
import { preflightProblems } from "./lib/preflight";
import { Progress } from "./lib/progress";
import { localDrillReportSchema, scenarios, summaryLines, withChecks, type LocalDrillReport, type Scenario } from "./lib/report";
import { ensureWheelhouse } from "./lib/real-agent";
import { liveWritesCheck, sessionStats } from "./lib/real-agent-box";
import { drillTenant, prepareRestoreBox, type TenantAgent } from "./lib/restore";
import { defaultRecipe, ensureRootfs } from "./lib/rootfs";
import { setUpStorage, snapshotChecks, storageKnownHosts, takeSnapshot, type TenantAccount } from "./lib/storage";
import { installSignalHandlers, Teardown } from "./lib/teardown";

const maxTenants = 8;

interface Options {
  tenants: number;
  keep: boolean;
  scenario: Scenario;
  agent: AgentKind;
  cleanup?: string;
}

const usage = `usage: npm run drill:local -- [--tenants N] [--keep] [--scenario ${scenarios.join("|")}] [--agent ${agentKinds.join("|")}]
       npm run drill:local -- --cleanup RUNID
  --tenants N    tenants sharing the storage box (1..${maxTenants}, default 1); with 2 or more, each
                 tenant's key is shown unable to read or write another's repository
  --keep         leave the boxes running for inspection and print how to enter them
  --scenario compromised-host
                 the host's push key runs delete, prune and change-passphrase; the drill shows what
                 survived and recovers from the storage-layer snapshot and the escrowed key export
  --agent real   the real agent (hermes-agent, pinned; its wheels downloaded once from the package
                 index and cached) writes the home and checks the restored one (the default)
  --agent standin
                 a sample home and a stand-in agent, for a machine that cannot reach the package index
  --cleanup ID   stop and remove everything a --keep run with this id left behind`;

class UsageError extends Error {}

function parseArgs(argv: string[]): Options {
  const opts: Options = { tenants: 1, keep: false, scenario: "standard", agent: "real" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    if (arg === "--tenants") {
      const v = value();
      if (!/^[0-9]+$/.test(v) || Number(v) < 1 || Number(v) > maxTenants) throw new UsageError(`--tenants must be 1..${maxTenants}, got ${v}`);
      opts.tenants = Number(v);
    } else if (arg === "--keep") opts.keep = true;
    else if (arg === "--scenario") {
      const v = value();
      if (!(scenarios as readonly string[]).includes(v)) throw new UsageError(`--scenario must be one of ${scenarios.join(", ")}, got ${v}`);
      opts.scenario = v as Scenario;
    } else if (arg === "--agent") {
      const v = value();
      if (!(agentKinds as readonly string[]).includes(v)) throw new UsageError(`--agent must be one of ${agentKinds.join(", ")}, got ${v}`);
      opts.agent = v as AgentKind;
    } else if (arg === "--cleanup") {
      const v = value();
      if (!/^[0-9a-f]{6}$/.test(v)) throw new UsageError(`--cleanup needs a run id (6 hex digits), got ${v}`);
      opts.cleanup = v;
    } else if (arg === "-h" || arg === "--help") throw new UsageError("");
    else throw new UsageError(`unknown argument ${arg}`);
  }
  return opts;
}

const tenantNames = (n: number) => Array.from({ length: n }, (_, i) => `tenant-${String.fromCharCode(97 + i)}`);

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      if (err.message) process.stderr.write(`drill:local: ${err.message}\n`);
      process.stderr.write(usage + "\n");
      return 2;
    }
    throw err;
  }
  const problems = preflightProblems(process.env, process.getuid?.() ?? -1, opts.agent);
  if (problems.length > 0) {
    process.stderr.write(`drill:local: cannot run here:\n${problems.map((p) => `  - ${p}`).join("\n")}\n`);
    return 2;
  }
  if (opts.cleanup) {
    const left = await sweepRun(opts.cleanup);
    process.stderr.write(`drill:local: cleanup of run ${opts.cleanup}: ${describeLeftovers(left)}\n`);
    return left.netns.length + left.links.length + left.processes.length + left.mounts.length + left.runDir.length === 0 ? 0 : 1;
  }

  const progress = new Progress();
  installSignalHandlers(progress);
  const teardown = new Teardown();
  const runId = crypto.randomBytes(3).toString("hex");
  const startedAt = new Date();
  const runDir = runDirFor(runId);
  const tenantReports: DrillReport[] = [];
  const runChecks: DrillCheck[] = [];
  let error: string | undefined;
  const boxes: Box[] = [];
  progress.line(`local drill ${runId}: ${opts.tenants} tenant(s), scenario ${opts.scenario}, agent ${opts.agent}`);

  try {
    const rootfs = await progress.step("box root filesystem (cached)", () => ensureRootfs(defaultRecipe(), progress));
    const wheelhouse = opts.agent === "real" ? await progress.step("the real agent's wheelhouse (cached)", () => ensureWheelhouse((l) => progress.line(l))) : undefined;
    fs.mkdirSync(runsRoot, { recursive: true, mode: 0o700 });
    fs.mkdirSync(runDir, { mode: 0o700 });
    teardown.defer(`remove run dir ${runDir}`, async () => {
      if (!opts.keep || abort.reason !== undefined) fs.rmSync(runDir, { recursive: true, force: true });
    });
    fs.writeFileSync(path.join(runDir, "drill.pid"), `${process.pid}\n`);

    const names = tenantNames(opts.tenants);
    const { control, secrets, storage, hosts, restoreBox } = await progress.step("keys, namespaces and boxes", async () => {
      const controlKey = await makeKeyPair(path.join(runDir, "keys", "control"), `control@${runId}`);
      const secrets: TenantSecrets[] = [];
      for (const t of names) secrets.push(await makeTenantSecrets(runDir, t));
      const storageNs = await createStorageNetns(runId, teardown);
      const control = new Control(runDir, storageNs, controlKey);
      const roles = [...names.map((_, i) => `h${i + 1}`), "rs"];
      const nets: { role: string; ns: string; link: Link }[] = [];
      for (const [i, role] of roles.entries()) {
        const ns = await createNetns(netnsName(runId, role), teardown);
        nets.push({ role, ns, link: await linkToStorage(runId, storageNs, ns, i + 1, teardown) });
      }
      const spec = (name: string, hostname: string, netns: string) => ({ name, hostname, rootfs, runDir, netns, controlPublicKey: controlKey.publicKey });
      // Boxes boot in parallel; each registers its own teardown as soon as it exists.
      const booted = await Promise.all([
        Box.create(spec(netnsName(runId, "st"), "storage", storageNs), teardown, (l) => progress.line(l)),
        ...nets.map((n, i) => Box.create(spec(n.ns, n.role === "rs" ? "restore" : `agent-${names[i]}`, n.ns), teardown, (l) => progress.line(l))),
      ]);
      boxes.push(...booted);
      const [storage, ...rest] = booted;
      if (!storage) throw new Error("no storage box");
      rest.forEach((b, i) => {
        b.link = nets[i]?.link;
        control.trust(b);
      });
      const restoreBox = rest.pop();
      if (!restoreBox) throw new Error("no restore box");
      return { control, secrets, storage, hosts: rest, restoreBox };
    });

    const accounts: TenantAccount[] = await progress.step("storage box accounts and snapshot timer", () => setUpStorage(storage, secrets));
    // The restore box gets its scripts and agent while the agent hosts work (installing the real
    // agent takes a while); awaited in its own step below, where a failure is reported.
    const restorePrepared = prepareRestoreBox(restoreBox, control, accounts[0] as TenantAccount, opts.agent, wheelhouse);
    restorePrepared.catch(() => undefined);
    const knownHosts = storageKnownHosts(storage);
    const tenantChecks = new Map<string, DrillCheck[]>(names.map((t) => [t, []]));
    const add = (t: string, checks: DrillCheck[]) => tenantChecks.get(t)?.push(...checks);
    const agents = new Map<string, TenantAgent>();

    for (const [i, account] of accounts.entries()) {
      const host = hosts[i];
      const s = secrets[i];
      if (!host || !s) throw new Error(`no host for ${account.tenant}`);
      const canaries = opts.agent === "real" && wheelhouse !== undefined
        ? await progress.step(`${account.tenant}: the real agent writes its home and keeps at work`, () => makeRealAgentHome(host, wheelhouse))
        : await progress.step(`${account.tenant}: sample agent home and live writer`, async () => {
          await makeLiveAgentHome(host, control);
          return readCanaries(host);
        });
      agents.set(account.tenant, { kind: opts.agent, canaries });
      add(account.tenant, await progress.step(`${account.tenant}: install over SSH (as the prod stack)`, () => installBackup(host, control, account, s, knownHosts)));
      const before = opts.agent === "real" ? await sessionStats(host, hostAgent) : undefined;
      const { checks } = await progress.step(`${account.tenant}: two backups through systemd`, () => backupTwice(host, account));
      add(account.tenant, checks);
      if (before !== undefined) add(account.tenant, [await liveWritesCheck(host, hostAgent, before)]);
    }
    for (const [i, account] of accounts.entries()) {
      const host = hosts[i];
      if (!host) continue;
      add(account.tenant, await progress.step(`${account.tenant}: what its push key can reach`, () => isolationChecks(host, account, accounts.filter((a) => a !== account))));
    }
    const snapshot = await progress.step("storage-layer snapshot", () => takeSnapshot(storage));
    for (const account of accounts) add(account.tenant, await snapshotChecks(storage, snapshot, account));

    const restoreAgent = await progress.step(`restore box: scripts and the ${opts.agent === "real" ? "real" : "stand-in"} agent (begun with the hosts)`, () => restorePrepared);
    for (const [i, account] of accounts.entries()) {
      const s = secrets[i] as TenantSecrets;
      const agent = agents.get(account.tenant) as TenantAgent;
      const { report, checks } = await progress.step(`${account.tenant}: restore drill (agent-drill) and the agent on the restored home`, () =>
        drillTenant(restoreBox, control, account, s, knownHosts, agent),
      );
      tenantReports.push(withChecks(report, tenantChecks.get(account.tenant) ?? [], checks, restoreAgent));
    }

    if (opts.scenario === "compromised-host") {
      const [account] = accounts;
      const [host] = hosts;
      const [s] = secrets;
      if (!account || !host || !s) throw new Error("compromised-host needs a tenant");
      const agent = agents.get(account.tenant) as TenantAgent;
      const checks = await progress.step(`${account.tenant}: compromised host (delete, prune, change-passphrase) and recovery`, () =>
        compromisedHost({ storage, host, restoreBox, control, account, secrets: s, knownHosts, snapshot, progress, agent }),
      );
      const i = tenantReports.findIndex((r) => r.tenant === account.tenant);
      const r = tenantReports[i];
      if (r) tenantReports[i] = withChecks(r, [], checks);
    }
  } catch (err) {
    error = abort.reason !== undefined ? `interrupted by ${abort.reason}` : (err as Error).message;
    progress.line(`drill stopped: ${error}`);
  }

  if (opts.keep && abort.reason === undefined) {
    progress.line(`--keep: the boxes stay up. Enter one with:`);
    for (const b of boxes) progress.line(`  nsenter -t ${b.leaderPid} -a bash     # ${b.spec.hostname} (${b.spec.name})`);
    progress.line(`remove everything with: npm run drill:local -- --cleanup ${runId}`);
    runChecks.push({ name: "teardown", ok: true, detail: `kept for inspection (--keep); remove with --cleanup ${runId}` });
  } else {
    const failed = await progress.step("teardown", () => teardown.run(progress));
    const left = await findLeftovers(runId);
    const clean = failed.length === 0 && describeLeftovers(left) === "nothing left";
    runChecks.push({
      name: "teardown",
      ok: clean,
      detail: clean ? "boxes off; namespaces, veths, processes, mounts and run dir removed" : `failed: ${failed.join(", ") || "-"}; left: ${describeLeftovers(left)}`,
    });
  }

  const finishedAt = new Date();
  const report: LocalDrillReport = {
    runId,
    scenario: opts.scenario,
    tenants: tenantReports,
    checks: runChecks,
    healthy: false,
    ...(error === undefined ? {} : { error }),
    steps: Object.entries(progress.stepSeconds).map(([step, seconds]) => ({ step, seconds: Math.round(seconds * 10) / 10 })),
    wallSeconds: Math.round(progress.elapsed() * 10) / 10,
    startedAt: startedAt.toISOString(),
    finishedAt: finishedAt.toISOString(),
  };
  report.healthy = error === undefined && tenantReports.length > 0 && tenantReports.every((t) => t.healthy) && runChecks.every((c) => c.ok);
  const parsed = localDrillReportSchema.parse(report);
  for (const line of summaryLines(parsed)) process.stderr.write(line + "\n");
  process.stdout.write(JSON.stringify(parsed, null, 2) + "\n");
  if (abort.reason !== undefined) return abort.reason === "SIGINT" ? 130 : 143;
  return parsed.healthy ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`drill:local: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
