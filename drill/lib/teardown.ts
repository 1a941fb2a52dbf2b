// Teardown: everything the drill creates registers how to undo it, right after creating it. The
// undo steps run in reverse order on success, failure and interrupt; one failing does not stop
// the others, and each is bounded in time.
import * as fs from "fs";
import { abort, killActiveChildren, run } from "./exec";
import type { Progress } from "./progress";

interface Undo {
  title: string;
  fn: () => Promise<void>;
}

export class Teardown {
  private readonly undos: Undo[] = [];
  private ran = false;

  /** Register an undo step; the last registered runs first. */
  defer(title: string, fn: () => Promise<void>): void {
    if (this.ran) throw new Error(`teardown already ran; cannot register ${title}`);
    this.undos.push({ title, fn });
  }

  /** Run every undo step (once). Returns the titles of those that failed. */
  async run(progress: Progress): Promise<string[]> {
    if (this.ran) return [];
    this.ran = true;
    killActiveChildren();
    abort.tearingDown = true; // undo steps run their commands even after an interrupt
    const failed: string[] = [];
    for (const undo of this.undos.reverse()) {
      const t0 = Date.now();
      try {
        await withTimeout(undo.fn(), 60_000, undo.title);
        const secs = (Date.now() - t0) / 1000;
        if (secs >= 2) progress.line(`  ${undo.title}: ${secs.toFixed(1)}s`);
      } catch (err) {
        failed.push(undo.title);
        progress.line(`teardown: ${undo.title} failed: ${(err as Error).message}`);
      }
    }
    return failed;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms / 1000}s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * SIGINT/SIGTERM/SIGHUP abort the drill: running commands are killed and the main flow falls
 * through to its teardown. A second signal only says that teardown is under way.
 */
export function installSignalHandlers(progress: Progress): void {
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(sig, () => {
      if (abort.reason !== undefined) {
        progress.line(`${sig} again: still tearing down, please wait`);
        return;
      }
      abort.reason = sig;
      progress.line(`${sig}: stopping, then tearing everything down`);
      killActiveChildren();
    });
  }
}

/** Mount points at or below `dir`, deepest first (from /proc/self/mountinfo). */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : dir + "/";
  return fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4] ?? "")
    .map((p) => p.replace(/\\040/g, " "))
    .filter((p) => p === dir || p.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

/** Unmount whatever is mounted under `dir`, then remove it. Never follows a mount into rm. */
export async function removeTree(dir: string): Promise<void> {
  for (const m of mountsUnder(dir)) await run(["umount", "--lazy", m], { allowFailure: true });
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`not removing ${dir}: still mounted: ${left.join(", ")}`);
  // --one-file-system: even a mount we failed to see is never descended into.
  await run(["rm", "-rf", "--one-file-system", "--", dir], { timeoutMs: 300_000 });
}
