// `--scan`: refresh every tenant's trusted state from the operator's machine before aggregating,
// by running `scripts/agent-maintain --observe --config DIR/<tenant>.conf` per tenant (observe
// writes nothing to a repository). A Storage Box accepts a limited number of connections, so at
// most `connections` runs touch one box at a time, and at most `maxJobs` run at all (CPU).
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import type { FleetConfig } from "../config/fleet";

export interface ScanResult {
  tenant: string;
  box: string;
  /** agent-maintain's exit code (3: work done, the shrink guard alarmed); null when not run. */
  exitCode: number | null;
  /** Why it was not run or was stopped, when so. */
  problem: string | null;
  startedMs: number;
  endedMs: number;
}

export interface ScanOptions {
  /** Folder of per-tenant agent-maintain configs, <tenant>.conf. */
  configsDir: string;
  /** Every config's STATE_DIR must be <stateRoot>/<tenant>: the fleet reads what the scan wrote. */
  stateRoot: string;
  /** Each tenant's output goes to <logDir>/<tenant>.log. */
  logDir: string;
  maintainScript: string;
  timeoutSeconds: number;
  maxJobs: number;
}

const LOG_BYTES = 1 << 20;

/** The STATE_DIR a config names (KEY=VALUE lines, parsed as agent-maintain parses them, never sourced). */
export function configuredStateDir(text: string): string | null {
  let v: string | null = null;
  for (const line of text.split("\n")) {
    const m = /^STATE_DIR=(.*)$/.exec(line.trim());
    if (m) v = m[1]!.replace(/^"(.*)"$/, "$1");
  }
  return v;
}

function runOne(o: ScanOptions, tenant: string, configFile: string): Promise<{ exitCode: number | null; problem: string | null }> {
  return new Promise((resolve) => {
    const log = fs.openSync(path.join(o.logDir, `${tenant}.log`), "w", 0o600);
    let written = 0;
    const child = spawn(o.maintainScript, ["--observe", "--config", configFile], { stdio: ["ignore", "pipe", "pipe"] });
    const keep = (b: Buffer) => {
      if (written >= LOG_BYTES) return;
      const part = b.subarray(0, LOG_BYTES - written);
      fs.writeSync(log, part);
      written += part.length;
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    let timedOut = false;
    let killer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGTERM");
      killer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    }, o.timeoutSeconds * 1000);
    child.on("error", (e) => {
      clearTimeout(timer);
      fs.closeSync(log);
      resolve({ exitCode: null, problem: `could not start agent-maintain (${(e as NodeJS.ErrnoException).code ?? "error"})` });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (killer) clearTimeout(killer);
      fs.closeSync(log);
      resolve({ exitCode: code, problem: timedOut ? `stopped after ${o.timeoutSeconds} s` : null });
    });
  });
}

export async function scan(config: FleetConfig, o: ScanOptions): Promise<ScanResult[]> {
  fs.mkdirSync(o.logDir, { recursive: true });
  const limit = new Map(config.boxes.map((b) => [b.name, b.connections]));
  const busy = new Map<string, number>(config.boxes.map((b) => [b.name, 0]));
  const waiting = [...config.tenants];
  const results: ScanResult[] = [];
  let running = 0;
  return new Promise((resolve) => {
    const pump = (): void => {
      if (waiting.length === 0 && running === 0) return resolve(results);
      // The first waiting tenant whose box has a free connection, while a job slot is free.
      for (let i = 0; i < waiting.length && running < o.maxJobs; ) {
        const t = waiting[i]!;
        if ((busy.get(t.box) ?? 0) >= (limit.get(t.box) ?? 1)) { i++; continue; }
        waiting.splice(i, 1);
        const startedMs = Date.now();
        const configFile = path.join(o.configsDir, `${t.name}.conf`);
        let text: string;
        try {
          text = fs.readFileSync(configFile, "utf8");
        } catch {
          results.push({ tenant: t.name, box: t.box, exitCode: null, problem: `no readable ${t.name}.conf in the configs folder`, startedMs, endedMs: startedMs });
          continue;
        }
        const want = path.resolve(o.stateRoot, t.name);
        const got = configuredStateDir(text);
        if (got === null || path.resolve(got) !== want) {
          results.push({ tenant: t.name, box: t.box, exitCode: null, problem: `its config's STATE_DIR is not ${want}: not run`, startedMs, endedMs: startedMs });
          continue;
        }
        busy.set(t.box, (busy.get(t.box) ?? 0) + 1);
        running++;
        void runOne(o, t.name, configFile).then((r) => {
          busy.set(t.box, (busy.get(t.box) ?? 1) - 1);
          running--;
          results.push({ tenant: t.name, box: t.box, ...r, startedMs, endedMs: Date.now() });
          pump();
        });
      }
      if (waiting.length === 0 && running === 0) resolve(results);
    };
    pump();
  });
}

/** The most runs that overlapped on each box (from the runs' start and end times). */
export function peakPerBox(results: ScanResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  const events = results.filter((r) => r.exitCode !== null || r.problem?.startsWith("stopped")).flatMap((r) => [
    { box: r.box, at: r.startedMs, d: 1 },
    { box: r.box, at: r.endedMs, d: -1 },
  ]).sort((a, b) => a.at - b.at || a.d - b.d);
  const now: Record<string, number> = {};
  for (const e of events) {
    now[e.box] = (now[e.box] ?? 0) + e.d;
    out[e.box] = Math.max(out[e.box] ?? 0, now[e.box]!);
  }
  return out;
}
