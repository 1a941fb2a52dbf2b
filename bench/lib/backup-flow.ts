// One measured night, side by side: the naive ways (tar czf of the whole home, borg of the whole
// home without the rules), the floor (reading the precious bytes once; plain borg create of a
// quiesced copy of the precious set), and the project's way (agent-backup full, a day, agent-backup
// incremental, agent-restore + agent-verify next to a plain borg extract of the same archive).
// Every repository sits on one loopback storage box (test/lib/storage-box.ts) so all borg runs
// pay the same ssh transport.
import * as fs from "node:fs";
import * as path from "node:path";
import type { StorageBox } from "../../test/lib/storage-box";
import { liveADay, isSqlite, type DayResult } from "./day";
import { chownToAgent } from "../../test/lib/agent-home";
import { bytesOf, copyFiles, preciousFiles, REPO_ROOT } from "./home";
import { measure, mustMeasure, progress, run, type Measured } from "./measure";

const SCRIPTS = path.join(REPO_ROOT, "scripts");
export const AGENT_BACKUP = path.join(SCRIPTS, "agent-backup");
const AGENT_RESTORE = path.join(SCRIPTS, "agent-restore");
const AGENT_VERIFY = path.join(SCRIPTS, "agent-verify");

/** One timed step: what ran, how long, how much CPU and memory, and how many bytes it made. */
export interface Step {
  command: string;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssKb: number;
  bytes?: BorgBytes | { output: number };
}

export interface BorgBytes {
  original: number;
  compressed: number;
  deduplicated: number;
  files: number;
}

export interface NightRun {
  run: number;
  preciousFiles: number;
  preciousBytes: number;
  steps: Record<StepName, Step>;
  day: DayResult;
}

export const STEP_NAMES = [
  "naiveTar",
  "naiveBorg",
  "readPrecious",
  "floorBorg",
  "agentFull",
  "agentIncremental",
  "agentRestoreVerify",
  "agentRestore",
  "agentVerify",
  "plainExtract",
] as const;
export type StepName = (typeof STEP_NAMES)[number];

/** Tenants (repositories on the box) of one run. */
export function runTenants(runNo: number): { naive: string; floor: string; agent: string } {
  return { naive: `r${runNo}-naive`, floor: `r${runNo}-floor`, agent: `r${runNo}-agent` };
}

function step(m: Measured, bytes?: Step["bytes"]): Step {
  progress(`  ${m.wallSeconds.toFixed(2)} s wall, ${m.cpuSeconds.toFixed(2)} s CPU: ${m.command.slice(0, 100)}`);
  return { command: m.command, wallSeconds: m.wallSeconds, cpuSeconds: m.cpuSeconds, peakRssKb: m.peakRssKb, ...(bytes ? { bytes } : {}) };
}

function borgJson(box: StorageBox, tenant: string, args: string[]): unknown {
  const r = box.borg(tenant, "push", args);
  if (r.status !== 0) throw new Error(`borg ${args.join(" ")} (${tenant}) failed: ${r.stderr.slice(-1500)}`);
  return JSON.parse(r.stdout);
}

function statsOf(json: unknown): BorgBytes {
  const a = (json as { archive?: { stats: Record<string, number> }; archives?: { stats: Record<string, number> }[] });
  const s = a.archive?.stats ?? a.archives?.[0]?.stats;
  if (!s) throw new Error("borg JSON without archive stats");
  return { original: s.original_size!, compressed: s.compressed_size!, deduplicated: s.deduplicated_size!, files: s.nfiles! };
}

function lastArchive(box: StorageBox, tenant: string): string {
  const list = borgJson(box, tenant, ["list", "--json"]) as { archives: { name: string }[] };
  const last = list.archives[list.archives.length - 1];
  if (!last) throw new Error(`no archive in ${tenant}'s repository after a backup that exited 0`);
  return last.name;
}

/** A plain `borg create` of DIR's content (paths relative to DIR), the way a user would run it. */
async function plainBorgCreate(box: StorageBox, tenant: string, dir: string, name: string, extra: string[] = []): Promise<Step> {
  const m = await mustMeasure(["borg", "create", "--json", ...extra, `::${name}`, "."], { cwd: dir, env: box.borgEnv(tenant, "push") });
  return step(m, statsOf(JSON.parse(m.stdout)));
}

/** What stopping the agent does to its stores: the WAL checkpointed into the main file. */
function quiesce(home: string, files: string[]): string[] {
  const stores = files.filter((f) => f.endsWith(".db") && isSqlite(path.join(home, f)));
  for (const s of stores) run(["sqlite3", path.join(home, s), ".timeout 10000", "PRAGMA wal_checkpoint(TRUNCATE)"]);
  return stores;
}

export async function oneNight(box: StorageBox, home: string, work: string, runNo: number): Promise<NightRun> {
  const t = runTenants(runNo);
  const steps: Partial<Record<StepName, Step>> = {};
  const say = (what: string): void => progress(`run ${runNo}: ${what}`);

  for (const tenant of [t.naive, t.floor]) {
    const r = box.borg(tenant, "push", ["init", "--encryption=repokey-blake2"]);
    if (r.status !== 0) throw new Error(`borg init for ${tenant} failed: ${r.stderr}`);
  }
  const config = box.writeConfig(t.agent, { agentHome: home, stagingDir: path.join(work, `staging-${runNo}`) });
  const agentEnv = box.clientEnv;
  await mustMeasure(["bash", AGENT_BACKUP, "--config", config, "--init"], { env: agentEnv });

  // The precious set as the rules select it, and a quiesced copy of it for the floor.
  const files = preciousFiles(home);
  const stores = quiesce(home, files);
  // Whatever root touched in the home (the checkpoint's sidecars) is the agent's again.
  chownToAgent(home);
  const floorSrc = path.join(work, "floor-src");
  copyFiles(home, files, floorSrc);
  const preciousBytes = bytesOf(home, files);
  const list = path.join(work, "precious.list");
  fs.writeFileSync(list, files.join("\0") + "\0");

  say("naive: tar czf of the whole home");
  const tgz = path.join(work, "naive.tgz");
  const tar = await mustMeasure(["tar", "czf", tgz, "-C", home, "."]);
  steps.naiveTar = step(tar, { output: fs.statSync(tgz).size });
  fs.rmSync(tgz);

  say("naive: borg create of the whole home, no rules");
  steps.naiveBorg = await plainBorgCreate(box, t.naive, home, "whole-home");

  // Alternate which goes first so neither always inherits the other's warm caches.
  const floorFirst = runNo % 2 === 1;
  const floor = async (): Promise<void> => {
    say("floor: read the precious bytes once");
    const read = await mustMeasure(["sh", "-c", 'cd "$1" && xargs -0 cat <"$2" >/dev/null', "sh", home, list]);
    steps.readPrecious = step(read, { output: preciousBytes });
    say("floor: plain borg create of the quiesced precious copy");
    steps.floorBorg = await plainBorgCreate(box, t.floor, floorSrc, "precious");
  };
  const full = async (): Promise<void> => {
    say("agent-backup: full");
    const m = await mustMeasure(["bash", AGENT_BACKUP, "--config", config], { env: agentEnv });
    steps.agentFull = step(m, statsOf(borgJson(box, t.agent, ["info", "--json", `::${lastArchive(box, t.agent)}`])));
  };
  if (floorFirst) {
    await floor();
    await full();
  } else {
    await full();
    await floor();
  }
  fs.rmSync(floorSrc, { recursive: true, force: true });

  say("a day: new sessions, 1% more rows in every store, memories edited");
  const day = await liveADay(home, stores, runNo);
  chownToAgent(home);

  say("agent-backup: nightly incremental");
  const incr = await mustMeasure(["bash", AGENT_BACKUP, "--config", config], { env: agentEnv });
  const archive = lastArchive(box, t.agent);
  steps.agentIncremental = step(incr, statsOf(borgJson(box, t.agent, ["info", "--json", `::${archive}`])));

  const restoreDir = path.join(work, `restore-${runNo}`);
  const extractDir = path.join(work, `extract-${runNo}`);
  const restoreVerify = async (): Promise<void> => {
    say(`agent-restore + agent-verify of ${archive}`);
    fs.rmSync(restoreDir, { recursive: true, force: true });
    const restore = await mustMeasure(["bash", AGENT_RESTORE, "--config", config, "--archive", archive, "--target", restoreDir], { env: agentEnv });
    const verify = await measure(["bash", AGENT_VERIFY, "--home", restoreDir, "--json"], { env: agentEnv });
    if (verify.exitCode !== 0) throw new Error(`agent-verify found drift (exit ${verify.exitCode}): ${(verify.stdout + verify.stderr).slice(-1500)}`);
    steps.agentRestore = step(restore);
    steps.agentVerify = step(verify);
    steps.agentRestoreVerify = {
      command: `${restore.command} && ${verify.command}`,
      wallSeconds: restore.wallSeconds + verify.wallSeconds,
      cpuSeconds: restore.cpuSeconds + verify.cpuSeconds,
      peakRssKb: Math.max(restore.peakRssKb, verify.peakRssKb),
    };
    fs.rmSync(restoreDir, { recursive: true, force: true });
  };
  const extract = async (): Promise<void> => {
    say(`plain borg extract of ${archive}`);
    fs.rmSync(extractDir, { recursive: true, force: true });
    fs.mkdirSync(extractDir);
    const m = await mustMeasure(["borg", "extract", `::${archive}`], { cwd: extractDir, env: box.borgEnv(t.agent, "push") });
    steps.plainExtract = step(m);
    fs.rmSync(extractDir, { recursive: true, force: true });
  };
  if (floorFirst) {
    await restoreVerify();
    await extract();
  } else {
    await extract();
    await restoreVerify();
  }
  for (const name of STEP_NAMES) if (!steps[name]) throw new Error(`run ${runNo}: step ${name} did not run`);
  return { run: runNo, preciousFiles: files.length, preciousBytes, steps: steps as Record<StepName, Step>, day };
}
