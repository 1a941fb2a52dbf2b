// Running commands for the drill: every child is started with an argument vector (no shell on
// this machine), bounded by a timeout, and its output captured for the error message.
import { spawn, type SpawnOptions } from "child_process";

export interface RunOptions {
  /** Text written to the child's stdin (then closed). */
  input?: string | Buffer;
  /** Kill the child (by its PID) after this many milliseconds. Default 120 s. */
  timeoutMs?: number;
  /** Resolve instead of throwing on a non-zero exit. */
  allowFailure?: boolean;
  /** Do not include the command's output in errors (it may hold a secret). */
  secretOutput?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  /** stdout as bytes, for binary streams such as tar. */
  stdoutBytes: Buffer;
  stderr: string;
}

/** Children still running, by PID: teardown stops them if the drill is interrupted mid-command. */
export const activeChildren = new Set<number>();

/** Set once the drill is interrupted: no new command starts and every wait gives up. */
export const abort = { reason: undefined as string | undefined, tearingDown: false };

export function throwIfAborted(): void {
  if (abort.reason !== undefined && !abort.tearingDown) throw new Error(`interrupted (${abort.reason})`);
}

/** SIGKILL every child still running (each by its own PID). */
export function killActiveChildren(): void {
  for (const pid of activeChildren) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

export class CommandError extends Error {
  constructor(message: string, readonly result: RunResult) {
    super(message);
  }
}

/** A short form of a command for messages. */
export function describeCommand(argv: readonly string[]): string {
  return argv.map((a) => (/^[A-Za-z0-9._/:=@,+-]+$/.test(a) ? a : JSON.stringify(a))).join(" ").slice(0, 300);
}

/** Run argv to completion. Throws CommandError on a non-zero exit unless allowFailure. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [file, ...args] = argv;
  if (!file) throw new Error("run: empty command");
  const timeoutMs = opts.timeoutMs ?? 120_000;
  throwIfAborted();
  return new Promise((resolve, reject) => {
    const spawnOpts: SpawnOptions = { stdio: ["pipe", "pipe", "pipe"], env: opts.env ?? process.env, cwd: opts.cwd };
    const child = spawn(file, args, spawnOpts);
    const pid = child.pid;
    if (pid !== undefined) activeChildren.add(pid);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (d: Buffer) => out.push(d));
    child.stderr?.on("data", (d: Buffer) => err.push(d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL");
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      if (pid !== undefined) activeChildren.delete(pid);
      reject(new Error(`${describeCommand(argv)}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      if (pid !== undefined) activeChildren.delete(pid);
      const bytes = Buffer.concat(out);
      const result = { code: code ?? 128, stdout: bytes.toString("utf8"), stdoutBytes: bytes, stderr: Buffer.concat(err).toString("utf8") };
      if (result.code === 0 || opts.allowFailure) return resolve(result);
      const why = timedOut ? `timed out after ${timeoutMs / 1000}s` : signal ? `killed by ${signal}` : `exit ${result.code}`;
      const tail = opts.secretOutput ? "(output withheld)" : (result.stderr.trim() || result.stdout.trim()).split("\n").slice(-8).join("\n");
      reject(new CommandError(`${describeCommand(argv)}: ${why}\n${tail}`, result));
    });
    child.stdin?.on("error", () => undefined); // a child that exits early closes its stdin
    child.stdin?.end(opts.input ?? "");
  });
}

/** Sleep without keeping the process alive past a signal. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll `probe` until it returns a value (not undefined), at most `attempts` times `intervalMs` apart. */
export async function waitFor<T>(what: string, attempts: number, intervalMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    throwIfAborted();
    const value = await probe();
    if (value !== undefined) return value;
    await sleep(intervalMs);
  }
  throw new Error(`gave up waiting for ${what} after ${((attempts * intervalMs) / 1000).toFixed(0)}s`);
}
