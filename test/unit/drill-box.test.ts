// The shell the drill box runs, run for real here: with bash, a pass-through sudo, temporary paths,
// the real scripts/agent-drill for the refused-usage case, shellcheck and systemd-analyze.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  agentInstallScript,
  drillBoxPaths,
  expiryUnit,
  installScriptsCommand,
  renderUserData,
  reportVerdictScript,
  runDrillScript,
  scriptsContentHash,
  tenantDrillFiles,
  writeRootOnlyFileScript,
} from "../../components/drill-box";
import { drillReportSchema, type DrillReport } from "../../components/drill-report";
import { drillAgentBin, drillAgentUser, drillAgentVenv, pipInstallArgs } from "../../components/drill-agent";
import { hostFiles, remoteSourceDir, scriptsDir, writeHostFilesArchive } from "../../components/host-install-plan";

const healthy: DrillReport = drillReportSchema.parse({
  tenant: "acme",
  archive: "acme-2026-11-24T03:17:00",
  archiveAgeSeconds: 60,
  bytes: 10,
  backupSeconds: 1,
  restoreSeconds: 2,
  checks: [{ name: "restore", ok: true, detail: "ok" }, { name: "verify:manifest", ok: true, detail: "ok" }],
  healthy: true,
  agent: { name: "hermes-agent", version: "0.19.0" },
  startedAt: "2026-11-24T04:00:00Z",
  finishedAt: "2026-11-24T04:01:00Z",
});
const unhealthy: DrillReport = {
  ...healthy,
  checks: [{ name: "restore", ok: true, detail: "ok" }, { name: "verify:manifest", ok: false, detail: "2 files missing" }],
  healthy: false,
};

let dir: string;
let bin: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "drill-box-"));
  // A pass-through sudo: the scripts' own logic runs, as the (root) test user.
  bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  fs.writeFileSync(path.join(bin, "sudo"), '#!/bin/sh\nexec "$@"\n', { mode: 0o755 });
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(shell: "bash" | "sh", script: string, stdin = "", env: Record<string, string> = {}) {
  const r = spawnSync(shell, ["-c", script], {
    input: stdin,
    encoding: "utf8",
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, ...env },
  });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A stand-in agent-drill: prints a line, optionally writes the report, exits with `code`. */
function fakeDrill(report: string | null, code: number): string {
  const program = path.join(dir, `fake-drill-${code}-${report === null ? "none" : "report"}`);
  const reportPath = path.join(dir, "report.json");
  const write = report === null ? "" : `cat > ${reportPath} <<'EOF'\n${report}\nEOF\n`;
  fs.writeFileSync(program, `#!/bin/sh\necho "progress on stdout"\n${write}exit ${code}\n`, { mode: 0o755 });
  return program;
}

function shellcheck(script: string, shell: "bash" | "sh") {
  const r = spawnSync("shellcheck", ["-s", shell, "-"], { input: script, encoding: "utf8" });
  if (r.error) throw r.error;
  return r;
}

describe("runDrillScript", () => {
  const reportOf = () => path.join(dir, "report.json");
  // The box's lock and restore folder in temporary paths; root (the test user) owns the folder.
  const where = () => ({ lock: path.join(dir, "drill.lock"), restoreRoot: path.join(dir, "agents"), user: "root" });
  const script = (line: string, tenant = "acme", report = reportOf()) => runDrillScript(tenant, line, report, 60, where());

  it("prints only the report when the drill is healthy", () => {
    const r = run("bash", script(fakeDrill(JSON.stringify(healthy), 0)));
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(healthy);
    expect(r.stderr).toContain("progress on stdout");
  });

  it("keeps the report of an unhealthy drill: the verdict is taken from it", () => {
    const r = run("bash", script(fakeDrill(JSON.stringify(unhealthy), 1)));
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(unhealthy);
  });

  it("fails with agent-drill's exit code when no report was written (the real script, bad usage)", () => {
    fs.writeFileSync(reportOf(), "stale report of an earlier run");
    const r = run("bash", script(`${path.join(scriptsDir, "agent-drill")} --no-such-option x`));
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("agent-drill for acme exited 2 and wrote no report");
    expect(fs.existsSync(reportOf())).toBe(false);
  });

  it("fails when agent-drill exits 0 without a report", () => {
    const r = run("bash", script(fakeDrill(null, 0)));
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("agent-drill for acme exited 0 and wrote no report");
  });

  it("makes the tenant's folder anew for the agent's user before the drill (an earlier restore is gone)", () => {
    const folder = path.join(where().restoreRoot, "acme");
    fs.mkdirSync(path.join(folder, ".hermes"), { recursive: true });
    fs.writeFileSync(path.join(folder, ".hermes", "old"), "an earlier restore");
    const r = run("bash", script(fakeDrill(JSON.stringify(healthy), 0)));
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readdirSync(folder)).toEqual([]);
    expect(fs.statSync(folder).mode & 0o777).toBe(0o755);
    // On the box: the agent's user, as in the local drill.
    expect(runDrillScript("acme", "x", "/r", 60)).toContain(`install -d -m 0755 -o ${drillAgentUser} -g ${drillAgentUser} /srv/agents/acme`);
  });

  it("restores tenants one after another on one box: their drills never overlap", async () => {
    // Two tenants' commands started at once (as Pulumi does): each drill logs its start and end.
    const log = path.join(dir, "order.log");
    const slowDrill = (tenant: string) => {
      const program = path.join(dir, `slow-${tenant}`);
      const report = JSON.stringify({ ...healthy, tenant });
      fs.writeFileSync(program, `#!/bin/sh
echo "start ${tenant}" >> ${log}
sleep 1
echo "end ${tenant}" >> ${log}
` +
        `cat > ${path.join(dir, `${tenant}.json`)} <<'EOF'
${report}
EOF
`, { mode: 0o755 });
      return program;
    };
    const { spawn } = await import("child_process");
    const runAsync = (tenant: string) => new Promise<number | null>((resolve) => {
      const child = spawn("bash", ["-c", script(slowDrill(tenant), tenant, path.join(dir, `${tenant}.json`))], {
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}` }, stdio: "ignore",
      });
      child.on("exit", (code) => resolve(code));
    });
    const codes = await Promise.all([runAsync("acme"), runAsync("globex")]);
    expect(codes).toEqual([0, 0]);
    const lines = fs.readFileSync(log, "utf8").trim().split("\n");
    expect(lines).toHaveLength(4);
    // start A, end A, start B, end B (in either order of tenants), never interleaved.
    expect(lines[0]!.slice("start ".length)).toBe(lines[1]!.slice("end ".length));
    expect(lines[2]!.slice("start ".length)).toBe(lines[3]!.slice("end ".length));
    expect(lines.filter((l) => l.startsWith("start"))).toHaveLength(2);
  });

  it("refuses a bad tenant or lock wait", () => {
    expect(() => runDrillScript("../x", "x", "/r", 60)).toThrow(/refusing tenant/);
    expect(() => runDrillScript("acme", "x", "/r", 0)).toThrow(/refusing lock wait/);
  });

  it("is shellcheck clean", () => {
    const r = shellcheck(runDrillScript("acme", "/usr/local/lib/agent-backup/install-source/agent-drill --tenant acme", tenantDrillFiles("acme").report, 14400), "bash");
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});

describe("agentInstallScript", () => {
  it("installs exactly the pinned, hash-checked wheels into the agent's venv, puts hermes on PATH, makes the agent's user", () => {
    const script = agentInstallScript();
    expect(shellcheck(script, "bash").stdout).toBe("");
    const lines = script.split("\n");
    expect(lines).toContain(`sudo sh -c 'umask 022 && cat > ${drillBoxPaths.requirements}'`);
    expect(lines).toContainEqual(expect.stringContaining(`${drillAgentVenv}/bin/pip ${pipInstallArgs.join(" ")} -r ${drillBoxPaths.requirements}`));
    expect(pipInstallArgs).toEqual(expect.arrayContaining(["--require-hashes", "--no-deps", "--only-binary=:all:"]));
    expect(lines).toContain(`sudo ln -sfn ${drillAgentVenv}/bin/hermes ${drillAgentBin}`);
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`useradd --create-home --shell /bin/bash ${drillAgentUser}$`)));
    // The version comes last: it is the step's output (the stack's agent output).
    expect(lines.at(-1)).toBe(`sudo ${remoteSourceDir}/agent-check-hermes --version`);
  });
});

describe("reportVerdictScript", () => {
  it("writes the report root-only where pulumi runs and passes a healthy drill", () => {
    const file = path.join(dir, "out", "drill-report.json");
    const text = `${JSON.stringify(healthy, null, 2)}\n`;
    const r = run("sh", reportVerdictScript(healthy), text, { DRILL_REPORT_FILE: file });
    expect(r.status).toBe(0);
    expect(fs.readFileSync(file, "utf8")).toBe(text);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it("writes the report and fails the update when the drill is not healthy, naming the failed checks", () => {
    const file = path.join(dir, "drill-report.json");
    const r = run("sh", reportVerdictScript(unhealthy), JSON.stringify(unhealthy), { DRILL_REPORT_FILE: file });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("drill of acme (acme-2026-11-24T03:17:00) is not healthy; failed checks: verify:manifest");
    expect(JSON.parse(fs.readFileSync(file, "utf8"))).toEqual(unhealthy);
  });

  it("is shellcheck clean both ways", () => {
    for (const report of [healthy, unhealthy]) {
      const r = shellcheck(reportVerdictScript(report), "sh");
      expect(r.stdout + r.stderr).toBe("");
    }
  });
});

describe("writeRootOnlyFileScript", () => {
  it("writes stdin to a 0600 file in a 0700 directory, nothing on the command line", () => {
    const secrets = path.join(dir, "agent-drill");
    const file = path.join(secrets, "passphrase");
    const script = writeRootOnlyFileScript(file, secrets);
    const r = run("bash", script, "s3cret passphrase\n");
    expect(r.status).toBe(0);
    expect(fs.readFileSync(file, "utf8")).toBe("s3cret passphrase\n");
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.statSync(secrets).mode & 0o777).toBe(0o700);
    expect(script).not.toContain("s3cret");
    expect(shellcheck(script, "bash").status).toBe(0);
  });
});

describe("renderUserData", () => {
  const userData = renderUserData("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "ssh-ed25519 AAAAhost\n", 4);

  it("is cloud-config that pins the given host key and drops all others", () => {
    expect(userData.startsWith("#cloud-config\n")).toBe(true);
    const config = parseYaml(userData);
    expect(config.ssh_deletekeys).toBe(true);
    expect(config.ssh_keys).toEqual({
      ed25519_private: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
      ed25519_public: "ssh-ed25519 AAAAhost",
    });
  });

  it("arms a poweroff timer at the time to live that systemd accepts", () => {
    const [cmd] = parseYaml(userData).bootcmd as string[][];
    expect(cmd?.[0]).toBe("systemd-run");
    expect(cmd).toContain(`--unit=${expiryUnit}`);
    expect(cmd?.slice(-2)).toEqual(["/usr/bin/systemctl", "poweroff"]);
    const onBoot = cmd?.find((a) => a.startsWith("--on-boot="))?.slice("--on-boot=".length) ?? "";
    const span = spawnSync("systemd-analyze", ["timespan", onBoot], { encoding: "utf8" });
    if (span.error) throw span.error;
    expect(span.status).toBe(0);
    expect(span.stdout).toMatch(/Human: 4h\b/);
  });
});

describe("tenantDrillFiles", () => {
  it("keeps each tenant's files apart, like the local drill, and refuses a bad tenant", () => {
    expect(tenantDrillFiles("acme")).toEqual({
      dir: "/etc/agent-drill/acme",
      sshKey: "/etc/agent-drill/acme/ssh_key",
      passphrase: "/etc/agent-drill/acme/passphrase",
      knownHosts: "/etc/agent-drill/acme/known_hosts",
      report: "/var/lib/agent-drill/acme-report.json",
    });
    expect(() => tenantDrillFiles("../root")).toThrow(/refusing tenant/);
  });
});

describe("scripts on the box", () => {
  /** A scripts/ tree of our own, with the real tree's names and x bits. */
  function fixtureTree(): string {
    const tree = path.join(dir, "scripts");
    for (const { rel, executable } of hostFiles()) {
      fs.mkdirSync(path.dirname(path.join(tree, rel)), { recursive: true });
      fs.writeFileSync(path.join(tree, rel), `content of ${rel}\n`, { mode: executable ? 0o755 : 0o644 });
    }
    return tree;
  }

  it("checks the uploaded archive and unpacks it as root where the plan puts the files, in a shellcheck-clean script", () => {
    const tree = fixtureTree();
    const { localPath, sha256 } = writeHostFilesArchive(tree, path.join(dir, "cache"));
    const target = path.join(dir, "install-source");
    const script = installScriptsCommand(sha256);
    expect(shellcheck(script, "bash").status).toBe(0);
    const r = run("bash", script.replaceAll(drillBoxPaths.archive, localPath).replaceAll(remoteSourceDir, target));
    expect(r.status, r.stderr).toBe(0);
    for (const { rel, executable } of hostFiles(tree)) {
      expect(fs.readFileSync(path.join(target, rel), "utf8")).toBe(`content of ${rel}\n`);
      expect(fs.statSync(path.join(target, rel)).mode & 0o777, rel).toBe(executable ? 0o755 : 0o644);
    }
    expect(drillBoxPaths.program.endsWith("/agent-drill")).toBe(true);
    // Another archive than the one built is refused.
    const other = run("bash", installScriptsCommand("0".repeat(64)).replaceAll(drillBoxPaths.archive, localPath).replaceAll(remoteSourceDir, target));
    expect(other.status).not.toBe(0);
  });

  it("hashes the copied files so that a changed or a new script re-runs the drill", () => {
    const tree = fixtureTree();
    const before = scriptsContentHash(tree);
    fs.appendFileSync(path.join(tree, "agent-drill"), "# changed\n");
    const changed = scriptsContentHash(tree);
    expect(changed).not.toBe(before);
    fs.writeFileSync(path.join(tree, "lib", "new-helper.awk"), "{ print }\n");
    expect(scriptsContentHash(tree)).not.toBe(changed);
  });
});
