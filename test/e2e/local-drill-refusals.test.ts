// The local drill refuses to start, with a message saying what is missing and how to get it, when
// it is not root or a tool is missing; and it tears down what it made when interrupted.
import { spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterAll, describe, expect, it } from "vitest";
import { findLeftovers } from "../../drill/lib/leftovers";
import { realAgentTools, requiredTools } from "../../drill/lib/preflight";
import { localDrillReportSchema } from "../../drill/lib/report";
import { repoRoot as root, runDrill, tsxCli } from "./run-drill";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "drill-refusals-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function runWith(argv: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0] as string, argv.slice(1), { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const netnsList = () => (fs.existsSync("/run/netns") ? fs.readdirSync("/run/netns").filter((n) => n.startsWith("abd-")).sort() : []);

describe("local drill preflight", () => {
  it("needs root to run these tests (it refuses without, as the next test shows)", () => {
    expect(process.getuid?.(), "run the e2e tests as root").toBe(0);
  });

  it("without root: says so and how, exits 2, creates nothing", async () => {
    const before = netnsList();
    // The same drill as user nobody: tsx needs a writable cache dir, so give it one.
    const env = { PATH: process.env.PATH ?? "", HOME: tmp, TMPDIR: tmp };
    fs.chmodSync(tmp, 0o777);
    const r = await runWith(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, tsxCli, "drill/local.ts"], env);
    expect(r.stderr).toMatch(/must run as root .*sudo npm run drill:local/);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(netnsList()).toEqual(before);
  });

  it("without systemd-nspawn or debootstrap: names them with their packages, exits 2", async () => {
    // A PATH holding every tool the drill needs except those two (links to the real ones).
    const bin = path.join(tmp, "bin");
    fs.mkdirSync(bin, { recursive: true });
    const which = (t: string) => (process.env.PATH ?? "").split(":").map((d) => path.join(d, t)).find((p) => fs.existsSync(p));
    for (const { tool } of [...requiredTools, ...realAgentTools]) {
      const real = which(tool);
      if (tool !== "systemd-nspawn" && tool !== "debootstrap" && real && !fs.existsSync(path.join(bin, tool))) fs.symlinkSync(real, path.join(bin, tool));
    }
    const before = netnsList();
    const r = await runWith([process.execPath, tsxCli, "drill/local.ts"], { PATH: bin, HOME: process.env.HOME ?? "/root" });
    expect(r.stderr).toContain("missing systemd-nspawn: apt-get install -y systemd-container");
    expect(r.stderr).toContain("missing debootstrap: apt-get install -y debootstrap");
    expect(r.stderr).not.toContain("missing ip:");
    expect(r.code).toBe(2);
    expect(netnsList()).toEqual(before);
  });

  it("refuses a bad option with its usage", async () => {
    const r = await runWith([process.execPath, tsxCli, "drill/local.ts", "--tenants", "0"], process.env);
    expect(r.stderr).toContain("--tenants must be 1..8");
    expect(r.stderr).toContain("usage: npm run drill:local");
    expect(r.code).toBe(2);
    const agent = await runWith([process.execPath, tsxCli, "drill/local.ts", "--agent", "claude"], process.env);
    expect(agent.stderr).toContain("--agent must be one of real, standin");
    expect(agent.code).toBe(2);
  });

  it("without python3 for the real agent: says how to get it or to use the stand-in, exits 2", async () => {
    const bin = path.join(tmp, "bin-no-python");
    fs.mkdirSync(bin, { recursive: true });
    const which = (t: string) => (process.env.PATH ?? "").split(":").map((d) => path.join(d, t)).find((p) => fs.existsSync(p));
    for (const { tool } of requiredTools) {
      const real = which(tool);
      if (real && !fs.existsSync(path.join(bin, tool))) fs.symlinkSync(real, path.join(bin, tool));
    }
    const before = netnsList();
    const r = await runWith([process.execPath, tsxCli, "drill/local.ts"], { PATH: bin, HOME: process.env.HOME ?? "/root" });
    expect(r.stderr).toContain("missing python3: apt-get install -y python3-venv");
    expect(r.stderr).toContain("--agent standin");
    expect(r.code).toBe(2);
    expect(netnsList()).toEqual(before);
  });
});

describe("local drill interrupted", () => {
  it("on SIGINT while the boxes run: stops, tears everything down, reports it, exits 130", async () => {
    let sent = false;
    const r = await runDrill([], (line, pid) => {
      // Interrupt in the middle: boxes up, the live writer running, a backup under way.
      if (!sent && line.includes("two backups through systemd ...")) {
        sent = true;
        process.kill(pid, "SIGINT");
      }
    });
    expect(sent, r.stderr.slice(-2000)).toBe(true);
    const report = localDrillReportSchema.parse(JSON.parse(r.stdout));
    expect(report.error).toBe("interrupted by SIGINT");
    expect(report.healthy).toBe(false);
    expect(report.checks.find((c) => c.name === "teardown")).toMatchObject({ ok: true });
    expect(r.code).toBe(130);
    expect(await findLeftovers(report.runId)).toEqual({ netns: [], links: [], processes: [], mounts: [], runDir: [] });
  }, 600_000);
});
