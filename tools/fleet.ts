// `npm run fleet -- --state-root DIR --config FILE --out DIR [--now ISO] [--pushgateway URL] [--send-alarms]`
// `npm run fleet -- --next-drills --state-root DIR --config FILE [--budget N] [--now ISO]`
// The fleet's recoverability ledger, built on the trusted side (CI or an operator's machine, never
// an agent host) from the tenants' trusted state (one folder per tenant under the state root).
// Exit: 0 every tenant ok or warn and every alarm delivered; 1 a tenant in alarm or a delivery
// failed (the outputs are written either way); 2 bad usage or config.
import * as fs from "node:fs";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { FleetConfigError, loadFleetConfig, type FleetConfig } from "../config/fleet";
import { aggregate, nextDrills, seriesOf, type Fleet, type TenantSeries } from "./fleet-aggregate";
import { sendAlarms } from "./fleet-alarms";
import { readTenant, strayFolders, type TenantInput } from "./fleet-inputs";
import { renderPage } from "./fleet-page";
import { renderProm, renderSummary } from "./fleet-report";
import { peakPerBox, scan, type ScanResult } from "./fleet-scan";

const maintainScript = path.resolve(__dirname, "..", "scripts", "agent-maintain");

export const usage = `usage: npm run fleet -- --state-root DIR --config FILE --out DIR [--now ISO] [--pushgateway URL] [--send-alarms]
                     [--scan --maintain-configs DIR [--scan-jobs N] [--scan-timeout SECONDS]]
       npm run fleet -- --next-drills --state-root DIR --config FILE [--budget N] [--now ISO]
Writes fleet.json, fleet.prom, summary.md and fleet.html to --out (summary.md is also appended to
$GITHUB_STEP_SUMMARY when set). fleet.prom is pushed to --pushgateway URL, else to the URL in the
environment variable the config's "pushgateway" names. --send-alarms sends the alarms the config's "alarms" names.
--next-drills prints, as a JSON array, the tenants the next drill run restores (oldest healthy
drill first, never-drilled before all), up to --budget (default: the config's drill.budgetPerRun).
--scan first runs scripts/agent-maintain --observe --config DIR/<tenant>.conf for every tenant
(each config's STATE_DIR must be <state-root>/<tenant>), at most the box's "connections" at once
per box and --scan-jobs (default 4) in all; each run's output goes to <out>/scan/<tenant>.log.`;

export interface Built {
  fleet: Fleet;
  series: Map<string, TenantSeries>;
}

/** Reads every configured tenant's state and aggregates it. */
export function build(config: FleetConfig, stateRoot: string, now: Date): Built {
  const inputs = new Map<string, TenantInput>();
  const series = new Map<string, TenantSeries>();
  for (const t of config.tenants) {
    const input = readTenant(stateRoot, t.name);
    inputs.set(t.name, input);
    series.set(t.name, seriesOf(input));
  }
  const problems = strayFolders(stateRoot, new Set(config.tenants.map((t) => t.name)));
  return { fleet: aggregate(config, inputs, now, problems), series };
}

function writeAtomically(file: string, content: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, content, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

export function writeOutputs(built: Built, outDir: string): { summary: string } {
  fs.mkdirSync(outDir, { recursive: true });
  const summary = renderSummary(built.fleet);
  writeAtomically(path.join(outDir, "fleet.json"), `${JSON.stringify(built.fleet, null, 2)}\n`);
  // Atomic: a node_exporter textfile collector must never read half a file.
  writeAtomically(path.join(outDir, "fleet.prom"), renderProm(built.fleet));
  writeAtomically(path.join(outDir, "summary.md"), summary);
  writeAtomically(path.join(outDir, "fleet.html"), renderPage(built.fleet, built.series));
  return { summary };
}

async function push(prom: string, gateway: string, timeoutSeconds: number): Promise<string | null> {
  let u: URL;
  try {
    u = new URL(`${gateway.replace(/\/+$/, "")}/metrics/job/agent_backups_fleet`);
  } catch {
    return "the Pushgateway URL is not a URL";
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return "the Pushgateway URL is not an http(s) URL";
  try {
    const r = await fetch(u, { method: "PUT", headers: { "content-type": "text/plain; version=0.0.4" }, body: prom, redirect: "error", signal: AbortSignal.timeout(timeoutSeconds * 1000) });
    await r.arrayBuffer().catch(() => undefined);
    return r.ok ? null : `pushgateway answered HTTP ${r.status}`;
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    return `pushgateway not reached (${err.name === "TimeoutError" ? "timed out" : (err.cause?.code ?? err.name)})`;
  }
}

export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let a;
  try {
    a = parseArgs({
      args: argv,
      options: {
        "state-root": { type: "string" }, config: { type: "string" }, out: { type: "string" }, now: { type: "string" },
        pushgateway: { type: "string" }, "send-alarms": { type: "boolean" }, "next-drills": { type: "boolean" }, budget: { type: "string" },
        scan: { type: "boolean" }, "maintain-configs": { type: "string" }, "scan-jobs": { type: "string" }, "scan-timeout": { type: "string" },
        help: { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    process.stderr.write(`fleet: ${(e as Error).message}\n${usage}\n`);
    return 2;
  }
  if (a.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const fail = (m: string): number => {
    process.stderr.write(`fleet: ${m}\n${usage}\n`);
    return 2;
  };
  if (!a["state-root"] || !a.config) return fail("--state-root and --config are required");
  if (!a["next-drills"] && !a.out) return fail("--out is required");
  let now = new Date();
  if (a.now !== undefined) {
    if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$/.test(a.now) || !Number.isFinite(Date.parse(a.now))) return fail("--now takes an ISO time in UTC such as 2026-11-30T06:00:00Z");
    now = new Date(a.now);
  }
  let config: FleetConfig;
  try {
    config = loadFleetConfig(a.config);
  } catch (e) {
    if (e instanceof FleetConfigError || (e as NodeJS.ErrnoException).code) {
      process.stderr.write(`fleet: ${(e as Error).message}\n`);
      return 2;
    }
    throw e;
  }
  if (!fs.existsSync(a["state-root"]) || !fs.statSync(a["state-root"]).isDirectory()) return fail(`--state-root ${a["state-root"]} is not a directory`);
  let scanned: ScanResult[] | null = null;
  if (a.scan) {
    if (a["next-drills"]) return fail("--scan refreshes the state for a full run, not for --next-drills");
    if (!a["maintain-configs"]) return fail("--scan needs --maintain-configs DIR");
    const jobs = a["scan-jobs"] ?? "4";
    const timeout = a["scan-timeout"] ?? "3600";
    if (!/^[1-9][0-9]?$/.test(jobs)) return fail("--scan-jobs takes a number from 1 to 99");
    if (!/^[1-9][0-9]{0,5}$/.test(timeout)) return fail("--scan-timeout takes seconds, 1 to 999999");
    const started = Date.now();
    scanned = await scan(config, {
      configsDir: a["maintain-configs"], stateRoot: a["state-root"], logDir: path.join(a.out!, "scan"),
      maintainScript, timeoutSeconds: Number(timeout), maxJobs: Number(jobs),
    });
    const failed = scanned.filter((r) => r.exitCode !== 0 && r.exitCode !== 3);
    process.stderr.write(`fleet: scan: ${scanned.length - failed.length} of ${scanned.length} observe run(s) done in ${((Date.now() - started) / 1000).toFixed(1)} s; most at once per box: ${JSON.stringify(peakPerBox(scanned))}\n`);
    for (const r of failed) process.stderr.write(`fleet: scan ${r.tenant}: ${r.problem ?? `agent-maintain exited ${r.exitCode}`} (log: ${path.join(a.out!, "scan", `${r.tenant}.log`)})\n`);
  }
  const built = build(config, a["state-root"], now);

  if (a["next-drills"]) {
    let budget = config.drill.budgetPerRun;
    if (a.budget !== undefined) {
      if (!/^[1-9][0-9]{0,3}$/.test(a.budget)) return fail("--budget takes a number from 1 to 9999");
      budget = Number(a.budget);
    }
    process.stdout.write(`${JSON.stringify(nextDrills(built.fleet.tenants, budget))}\n`);
    return 0;
  }

  const { summary } = writeOutputs(built, a.out!);
  if (env.GITHUB_STEP_SUMMARY) fs.appendFileSync(env.GITHUB_STEP_SUMMARY, summary);
  const f = built.fleet;
  process.stderr.write(`fleet: ${f.tenants.length} tenant(s): ${f.counts.alarm} alarm, ${f.counts.warn} warn, ${f.counts.ok} ok; wrote ${a.out}/fleet.{json,prom,html} and summary.md\n`);
  for (const p of f.problems) process.stderr.write(`fleet: ${p}\n`);
  let failures = scanned ? scanned.filter((r) => r.exitCode !== 0 && r.exitCode !== 3).length : 0;
  const gateway = a.pushgateway ?? (config.pushgateway ? env[config.pushgateway.urlEnv] : undefined);
  // Optional: an unset variable means this run does not push (a run by hand, say).
  if (config.pushgateway && !gateway) process.stderr.write(`fleet: pushgateway: ${config.pushgateway.urlEnv} is not set: not pushed\n`);
  if (gateway) {
    const problem = await push(renderProm(f), gateway, config.alarms.timeoutSeconds);
    if (problem) {
      failures++;
      process.stderr.write(`fleet: ${problem}\n`);
    } else process.stderr.write("fleet: pushgateway: pushed\n");
  }
  if (a["send-alarms"]) {
    const deliveries = await sendAlarms(f, config, env);
    const bad = deliveries.filter((d) => !d.ok);
    failures += bad.length;
    const pings = deliveries.filter((d) => d.channel === "healthchecks" && d.tenant);
    for (const d of deliveries) if (!d.tenant) process.stderr.write(`fleet: alarm ${d.channel}: ${d.detail}\n`);
    if (pings.length) process.stderr.write(`fleet: healthchecks: ${pings.length - pings.filter((d) => !d.ok).length} of ${pings.length} ping(s) delivered\n`);
    for (const d of bad) if (d.tenant) process.stderr.write(`fleet: healthchecks ${d.tenant}: ${d.detail}\n`);
  }
  return f.counts.alarm > 0 || failures > 0 ? 1 : 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => {
    process.stderr.write(`fleet: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(2);
  });
}
