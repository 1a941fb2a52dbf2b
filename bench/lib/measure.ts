// Running commands and measuring them: wall time, CPU (user+sys of the whole process tree, as
// reported by GNU time through wait4), peak RSS, exit code, and the command line for the record.
import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

export interface Measured {
  /** The command as run (argv joined with spaces), for the results file. */
  command: string;
  wallSeconds: number;
  cpuSeconds: number;
  peakRssKb: number;
  exitCode: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command (SIGTERM, then SIGKILL) after this many seconds (default: 2 hours). */
  timeoutSeconds?: number;
  /** Bytes written to the command's stdin. */
  input?: string;
  /** Pass the command's stderr through (for progress of long steps) instead of capturing it. */
  stderrToConsole?: boolean;
}

const GNU_TIME = "/usr/bin/time";
/** No step of the benchmark may run unbounded: even the default scale's steps take minutes. */
const DEFAULT_TIMEOUT_SECONDS = 7200;

/** Fails with a clear message when a tool the benchmark relies on is missing. */
export function requireTools(tools: string[]): void {
  const missing = tools.filter((t) => spawnSync("sh", ["-c", 'command -v "$1"', "sh", t]).status !== 0);
  if (!fs.existsSync(GNU_TIME)) missing.push(GNU_TIME + " (apt-get install time)");
  if (missing.length > 0) throw new Error(`bench: missing tools: ${missing.join(", ")}`);
}

/** Runs argv under GNU time and resolves with its measurements (never rejects on exit code). */
export function measure(argv: string[], opts: RunOptions = {}): Promise<Measured> {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error("measure: empty command");
  const timeFile = path.join(os.tmpdir(), `bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const child = spawn(GNU_TIME, ["-f", "%e %U %S %M", "-o", timeFile, cmd, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ["pipe", "pipe", opts.stderrToConsole ? "inherit" : "pipe"],
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout!.on("data", (b: Buffer) => out.push(b));
  child.stderr?.on("data", (b: Buffer) => err.push(b));
  child.stdin!.end(opts.input ?? "");
  const started = process.hrtime.bigint();
  let timer: NodeJS.Timeout;
  let killTimer: NodeJS.Timeout | undefined;
  let timedOut = false;
  timer = setTimeout(() => {
    timedOut = true;
    killTree(child.pid, "SIGTERM");
    killTimer = setTimeout(() => killTree(child.pid, "SIGKILL"), 5000);
  }, (opts.timeoutSeconds ?? DEFAULT_TIMEOUT_SECONDS) * 1000);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      const wall = Number(process.hrtime.bigint() - started) / 1e9;
      let cpu = NaN;
      let rss = NaN;
      try {
        // GNU time prints "Command exited with non-zero status N" before the numbers on failure.
        const lines = fs.readFileSync(timeFile, "utf8").trim().split("\n");
        const [, user, sys, maxRss] = (lines[lines.length - 1] ?? "").split(" ").map(Number);
        cpu = (user ?? NaN) + (sys ?? NaN);
        rss = maxRss ?? NaN;
      } catch {
        // killed before GNU time could write: CPU and RSS stay unknown (NaN -> null in JSON)
      } finally {
        fs.rmSync(timeFile, { force: true });
      }
      resolve({
        command: argv.join(" "),
        wallSeconds: wall,
        cpuSeconds: cpu,
        peakRssKb: rss,
        exitCode: timedOut ? 124 : (code ?? (signal ? 128 : 1)),
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
      });
    });
  });
}

/** Like measure, but throws with the command's stderr when it exits non-zero. */
export async function mustMeasure(argv: string[], opts: RunOptions = {}): Promise<Measured> {
  const m = await measure(argv, opts);
  if (m.exitCode !== 0) {
    const tail = (m.stderr || m.stdout).trim().split("\n").slice(-15).join("\n");
    throw new Error(`command failed (exit ${m.exitCode}): ${m.command}\n${tail}`);
  }
  return m;
}

/** Runs a short helper command synchronously and returns its stdout; throws on failure. */
export function run(argv: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  const [cmd, ...args] = argv;
  if (cmd === undefined) throw new Error("run: empty command");
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, input: opts.input, encoding: "utf8", maxBuffer: 1 << 30, timeout: DEFAULT_TIMEOUT_SECONDS * 1000 });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`command failed (exit ${r.status}): ${argv.join(" ")}\n${(r.stderr || r.stdout).trim().split("\n").slice(-15).join("\n")}`);
  }
  return r.stdout;
}

/** Signals the process and, since GNU time sits in between, its direct children by their PIDs. */
export function killTree(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  const r = spawnSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" });
  const children = (r.stdout ?? "").split("\n").map((s) => Number(s.trim())).filter((n) => n > 0);
  for (const c of children) killTree(c, signal);
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const mid = Math.floor(v.length / 2);
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

export function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}
