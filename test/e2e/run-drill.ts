// Runs `drill/local.ts` (what `npm run drill:local` runs) as a child, collecting its output and
// handing each stderr line (progress) to a callback, e.g. to interrupt it at a chosen step.
import { spawn } from "child_process";
import * as path from "path";
import { localDrillReportSchema, type LocalDrillReport } from "../../drill/lib/report";

export const repoRoot = path.resolve(__dirname, "..", "..");
export const tsxCli = path.join(repoRoot, "node_modules", "tsx", "dist", "cli.mjs");

export function runDrill(args: string[], onStderr?: (line: string, pid: number) => void): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsxCli, "drill/local.ts", ...args], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let partial = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
      partial += d.toString();
      const lines = partial.split("\n");
      partial = lines.pop() ?? "";
      for (const l of lines) onStderr?.(l, child.pid ?? 0);
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}


/** Runs the drill and parses its JSON report; throws with the end of its progress log when there is none. */
export async function runDrillForReport(args: string[]): Promise<{ code: number | null; stderr: string; report: LocalDrillReport }> {
  const r = await runDrill(args);
  const parsed = localDrillReportSchema.safeParse(JSON.parse(r.stdout || "null"));
  if (!parsed.success) throw new Error(`no valid report on stdout (exit ${r.code}):\n${r.stderr.slice(-4000)}`);
  return { code: r.code, stderr: r.stderr, report: parsed.data };
}
