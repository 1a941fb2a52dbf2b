// Everything a drill run names after itself (namespaces, veths, box processes, mounts, its run
// dir), found on the machine: empty after a clean teardown. Also used to sweep a kept run.
import * as fs from "fs";
import * as path from "path";
import { run } from "./exec";
import { runPrefix } from "./netns";

export const runsRoot = "/var/tmp/agent-backups-drill";

export function runDirFor(runId: string): string {
  runPrefix(runId); // validates the id
  return path.join(runsRoot, runId);
}

export interface Leftovers {
  netns: string[];
  links: string[];
  processes: { pid: number; cmdline: string }[];
  mounts: string[];
  runDir: string[];
}

export async function findLeftovers(runId: string): Promise<Leftovers> {
  const prefix = runPrefix(runId);
  const runDir = runDirFor(runId);
  const netns = (await run(["ip", "netns", "list"])).stdout
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith(prefix.netns));
  const links = (await run(["ip", "-o", "link", "show"])).stdout
    .split("\n")
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? "")
    .filter((n) => n.startsWith(prefix.veth));
  const processes: { pid: number; cmdline: string }[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline = "";
    try {
      cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " ").trim();
    } catch {
      continue;
    }
    if (cmdline.includes(prefix.netns) || cmdline.includes(runDir)) processes.push({ pid: Number(entry), cmdline });
  }
  // Every process inside one of the run's namespaces (a box's systemd and all below it).
  for (const n of netns) {
    const pids = (await run(["ip", "netns", "pids", n], { allowFailure: true })).stdout.split("\n").filter((l) => /^\d+$/.test(l));
    for (const pid of pids.map(Number)) {
      if (processes.some((p) => p.pid === pid)) continue;
      let cmdline = "";
      try {
        cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ").trim();
      } catch {
        continue;
      }
      processes.push({ pid, cmdline: `${cmdline} [in netns ${n}]` });
    }
  }
  const mounts = fs
    .readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.includes(prefix.netns) || m.startsWith(runDir));
  return { netns, links, processes, mounts, runDir: fs.existsSync(runDir) ? [runDir] : [] };
}

export function describeLeftovers(l: Leftovers): string {
  const parts = [
    ...l.netns.map((n) => `netns ${n}`),
    ...l.links.map((n) => `link ${n}`),
    ...l.processes.map((p) => `process ${p.pid} (${p.cmdline.slice(0, 80)})`),
    ...l.mounts.map((m) => `mount ${m}`),
    ...l.runDir.map((d) => `dir ${d}`),
  ];
  return parts.length === 0 ? "nothing left" : parts.join(", ");
}

/**
 * Remove what a kept (or killed) run left: box processes killed by PID (PID 1 of a box first,
 * which ends its whole PID namespace), then namespaces, links, mounts and the run dir.
 */
export async function sweepRun(runId: string): Promise<Leftovers> {
  const found = await findLeftovers(runId);
  for (const p of found.processes) {
    try {
      process.kill(p.pid, "SIGKILL");
    } catch {
      // gone already
    }
  }
  for (let i = 0; i < 50 && (await findLeftovers(runId)).processes.length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  for (const n of found.netns) await run(["ip", "netns", "del", n], { allowFailure: true });
  for (const l of found.links) await run(["ip", "link", "del", l], { allowFailure: true });
  for (const m of [...found.mounts].sort((a, b) => b.length - a.length)) await run(["umount", "--lazy", m], { allowFailure: true });
  if (found.runDir.length > 0 && (await findLeftovers(runId)).mounts.length === 0) {
    await run(["rm", "-rf", "--one-file-system", "--", runDirFor(runId)], { timeoutMs: 300_000 });
  }
  return findLeftovers(runId);
}
