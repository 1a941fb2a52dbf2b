// The CI workflows for users, parsed as GitHub reads them: their triggers, that the drill box is
// always destroyed, and that secrets only come in through env and are never printed. Every run
// script is checked with shellcheck, and the ones that handle tenants and key material are run
// for real against stand-ins for the pulumi and aws CLIs.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { recoveryDocument } from "../../components/control-vault";

const root = path.join(__dirname, "..", "..");
const workflowsDir = path.join(root, ".github", "workflows");

interface Step { name?: string; uses?: string; run?: string; if?: string; env?: Record<string, string>; with?: Record<string, unknown>; id?: string }
interface Job { "runs-on": string; needs?: string | string[]; env?: Record<string, string>; steps: Step[]; strategy?: { matrix: Record<string, unknown>; "fail-fast"?: boolean }; container?: unknown }
interface Workflow { name: string; on: Record<string, any>; env?: Record<string, string>; permissions?: Record<string, string>; jobs: Record<string, Job> }

const load = (file: string): Workflow => parseYaml(fs.readFileSync(path.join(workflowsDir, file), "utf8")) as Workflow;
const files = ["preview.yml", "drill.yml", "maintenance.yml"];
const workflows = Object.fromEntries(files.map((f) => [f, load(f)])) as Record<string, Workflow>;
const steps = (w: Workflow) => Object.values(w.jobs).flatMap((j) => j.steps);
const runSteps = (w: Workflow) => steps(w).filter((s): s is Step & { run: string } => typeof s.run === "string");
const stepUsing = (job: Job, action: string) => job.steps.filter((s) => s.uses?.startsWith(`${action}@`));

/** Every `env:` mapping of a workflow (workflow, job and step level) as [name, value] pairs. */
function envEntries(w: Workflow): [string, string][] {
  const maps = [w.env, ...Object.values(w.jobs).flatMap((j) => [j.env, ...j.steps.map((s) => s.env)])];
  return maps.flatMap((m) => Object.entries(m ?? {}));
}

/** Every `${{ secrets.* }}` anywhere in the text, with where it sits (the line before it). */
function secretUses(file: string): { line: string }[] {
  return fs.readFileSync(path.join(workflowsDir, file), "utf8").split("\n")
    .filter((l) => /\bsecrets[.[]/.test(l) && !l.trimStart().startsWith("#"))
    .map((line) => ({ line }));
}

describe.each(files)("%s", (file) => {
  const w = workflows[file] as Workflow;

  it("parses, and every job has steps on a pinned runner", () => {
    expect(Object.keys(w.jobs).length).toBeGreaterThan(0);
    for (const job of Object.values(w.jobs)) {
      expect(job["runs-on"]).toMatch(/^ubuntu-\d+\.\d+$/);
      expect(job.steps.length).toBeGreaterThan(0);
    }
  });

  it("takes secrets only as env values, whole, and only from secrets", () => {
    const uses = secretUses(file);
    const fromEnv = envEntries(w).filter(([, v]) => /secrets/.test(v));
    // Each line that mentions secrets is a `NAME: ${{ secrets.NAME }}` entry of an env mapping.
    expect(uses.length).toBe(fromEnv.length);
    for (const [name, value] of fromEnv) {
      expect(value, name).toMatch(/^\$\{\{ secrets\.[A-Z0-9_]+ \}\}$/);
      expect(name).toBe(value.replace(/^\$\{\{ secrets\.([A-Z0-9_]+) \}\}$/, "$1"));
    }
    for (const s of steps(w)) {
      expect(JSON.stringify(s.with ?? {}), `${s.name ?? s.uses} with:`).not.toMatch(/\bsecrets[.[]/);
      expect(s.run ?? "", `${s.name} run:`).not.toMatch(/\bsecrets[.[]/);
    }
  });

  it("never expands an expression inside a run script (inputs and outputs come in through env)", () => {
    for (const s of runSteps(w)) expect(s.run, s.name).not.toContain("${{");
  });

  it("never prints a secret: no run script names one, traces, or dumps the environment", () => {
    const secretNames = envEntries(w).filter(([, v]) => /secrets\./.test(v)).map(([k]) => k);
    expect(secretNames.length).toBeGreaterThan(0);
    for (const s of runSteps(w)) {
      for (const name of secretNames) expect(s.run, `${s.name} uses $${name}`).not.toMatch(new RegExp(`\\$\\{?${name}\\b`));
      expect(s.run, s.name).not.toMatch(/set -[a-wyz]*x|\bprintenv\b|^\s*env\s*$|\benv\s*\|/m);
    }
  });

  it("runs shellcheck-clean bash in every step", () => {
    for (const s of runSteps(w)) {
      // GitHub runs `bash -e {0}`; the scripts source the project's own common.sh.
      const r = spawnSync("shellcheck", ["-s", "bash", "-x", "-"], { input: s.run, encoding: "utf8", cwd: root });
      if (r.error) throw r.error;
      expect(r.stdout + r.stderr, s.name ?? s.run).toBe("");
    }
  });
});

describe("preview.yml", () => {
  const w = workflows["preview.yml"] as Workflow;

  it("runs on pull requests only", () => {
    expect(Object.keys(w.on)).toEqual(["pull_request"]);
  });

  it("installs and runs the whole test suite through the project's CI entry", () => {
    const test = w.jobs.test as Job;
    expect(test.steps.some((s) => s.run?.trim() === "bash .ci/run")).toBe(true);
    const ciRun = fs.readFileSync(path.join(root, ".ci", "run"), "utf8");
    expect(ciRun).toMatch(/bash \.ci\/setup/);
    expect(ciRun).toMatch(/npm test/);
  });

  it("previews the prod stack with pulumi/actions and comments on the pull request", () => {
    const preview = w.jobs.preview as Job;
    expect(preview.needs).toBe("test");
    expect(preview.steps.some((s) => s.run?.includes("npm ci"))).toBe(true);
    const [pulumi] = stepUsing(preview, "pulumi/actions");
    expect(pulumi?.with).toMatchObject({ command: "preview", "comment-on-pr": true });
    expect(String(pulumi?.with?.["stack-name"])).toMatch(/\/prod$/);
    expect(w.permissions?.["pull-requests"]).toBe("write");
  });
});

describe("drill.yml", () => {
  const w = workflows["drill.yml"] as Workflow;
  const drill = w.jobs.drill as Job;

  it("runs monthly and by hand, with an optional tenant", () => {
    expect(Object.keys(w.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    const [cron] = w.on.schedule.map((s: { cron: string }) => s.cron);
    expect(w.on.schedule).toHaveLength(1);
    // minute hour day-of-month month day-of-week: one fixed day of every month.
    expect(cron).toMatch(/^\d+ \d+ \d+ \* \*$/);
    expect(w.on.workflow_dispatch.inputs.tenant).toMatchObject({ required: false, type: "string" });
  });

  it("drills every tenant of the prod stack, or the chosen one after validating it", () => {
    const list = (w.jobs.tenants as Job).steps.find((s) => s.id === "list");
    expect(list?.run).toContain("pulumi stack output tenants --json");
    expect(list?.run).toContain('require_valid tenant "tenant input" "$TENANT_INPUT"');
    expect(drill.strategy?.matrix.tenant).toBe("${{ fromJSON(needs.tenants.outputs.list) }}");
    expect(drill.strategy?.["fail-fast"]).toBe(false);
  });

  it("brings the drill stack up with the tenant set, then checks the report", () => {
    const names = drill.steps.map((s) => s.name ?? s.uses);
    const setUp = drill.steps.find((s) => s.id === "stack")?.run ?? "";
    expect(setUp).toContain('pulumi config set --stack "$stack" tenant "$TENANT"');
    expect(setUp).toContain('cp Pulumi.drill.yaml "Pulumi.drill-$TENANT.yaml"');
    const up = drill.steps.findIndex((s) => /pulumi up\b/.test(s.run ?? ""));
    const check = drill.steps.findIndex((s) => /jq -e '\.healthy == true'/.test(s.run ?? ""));
    expect(up, names.join(", ")).toBeGreaterThan(0);
    expect(check).toBeGreaterThan(up);
  });

  it("always destroys the drill stack, after the drill, even when it failed", () => {
    const destroy = drill.steps.findIndex((s) => /pulumi destroy\b/.test(s.run ?? ""));
    const up = drill.steps.findIndex((s) => /pulumi up\b/.test(s.run ?? ""));
    expect(destroy).toBeGreaterThan(up);
    expect(drill.steps[destroy]?.if).toBe("always()");
  });

  it("always uploads the report as an artifact", () => {
    const [upload] = stepUsing(drill, "actions/upload-artifact");
    expect(upload?.if).toBe("always()");
    expect(upload?.with?.path).toBe("drill-report-${{ matrix.tenant }}.json");
    expect(drill.env?.REPORT_FILE).toBe(upload?.with?.path);
    const setUp = drill.steps.find((s) => s.id === "stack")?.run ?? "";
    expect(setUp).toContain('reportFile "$REPORT_FILE"');
  });
});

describe("maintenance.yml", () => {
  const w = workflows["maintenance.yml"] as Workflow;
  const maintain = w.jobs.maintain as Job;

  it("maintains weekly, observes on the other days, and runs by hand", () => {
    expect(Object.keys(w.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    expect(w.on.schedule).toHaveLength(2);
    expect(w.on.schedule[0].cron).toMatch(/^\d+ \d+ \* \* [0-6]$/);
    expect(w.on.schedule[1].cron).toBe("43 2 * * 1-6");
    expect((maintain as Job & { env: Record<string, string> }).env.MODE).toBe("${{ inputs.mode || (github.event.schedule == '43 2 * * 1-6' && 'observe') || 'maintain' }}");
    expect(w.on.workflow_dispatch.inputs.mode.options).toEqual(["maintain", "tamper-check", "observe", "adopt"]);
  });

  it("runs scripts/agent-maintain --config FILE for each tenant, one at a time", () => {
    const run = maintain.steps.find((s) => s.run?.includes("scripts/agent-maintain"))?.run ?? "";
    expect(run).toContain('scripts/agent-maintain --config "$WORK/agent-maintain.conf"');
    expect(maintain.strategy?.matrix.tenant).toBe("${{ fromJSON(needs.tenants.outputs.list) }}");
    expect((maintain as Job & { strategy: { "max-parallel": number } }).strategy["max-parallel"]).toBe(1);
  });

  it("writes the maintenance key root-only from the vault, masks what it derives, and removes it", () => {
    const fetch = maintain.steps.find((s) => s.id === "fetch")?.run ?? "";
    expect(fetch).toContain("umask 077");
    expect(fetch).toContain("jq -er '.maintenancePrivateKey'");
    expect(fetch).toContain('echo "::add-mask::$line"');
    // Masking comes before any later step could print, and the key files are never echoed.
    expect(fetch.indexOf("::add-mask::")).toBeLessThan(fetch.indexOf("aws s3 sync"));
    const cleanup = maintain.steps.find((s) => /rm -rf -- "\$WORK"/.test(s.run ?? ""));
    expect(cleanup?.if).toBe("always()");
  });

  it("writes only config keys that agent-maintain accepts, and all it requires", () => {
    const source = fs.readFileSync(path.join(root, "scripts", "agent-maintain"), "utf8");
    const keysOf = (name: string) => (new RegExp(`readonly ${name}="([^"]*)"`).exec(source)?.[1] ?? "").split(" ").filter(Boolean);
    const required = keysOf("REQUIRED_KEYS");
    const optional = keysOf("OPTIONAL_KEYS");
    expect(required.length).toBeGreaterThan(0);
    const fetch = maintain.steps.find((s) => s.id === "fetch")?.run ?? "";
    const written = [...fetch.matchAll(/echo "([A-Z_]+)=/g)].map((m) => m[1] as string);
    for (const key of required) expect(written, key).toContain(key);
    for (const key of written) expect([...required, ...optional], key).toContain(key);
  });
});

// --- the run scripts, run for real against stand-ins for the pulumi and aws CLIs ----------------

describe("run scripts, run for real", () => {
  let dir: string;
  let bin: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "workflows-"));
    bin = path.join(dir, "bin");
    fs.mkdirSync(bin);
    const arns = { acme: "arn:aws:secretsmanager:eu-central-1:123456789012:secret:agent-backups/acme/recovery-AbCdEf" };
    fs.writeFileSync(path.join(bin, "pulumi"), [
      "#!/bin/bash",
      'case "$*" in',
      `  *"stack output tenants --json"*) echo '${JSON.stringify({ acme: {}, globex: {} })}' ;;`,
      `  *"stack output vaultSecretArns --json"*) echo '${JSON.stringify(arns)}' ;;`,
      '  *) echo "unexpected pulumi $*" >&2; exit 9 ;;',
      "esac",
    ].join("\n"), { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "aws"), [
      "#!/bin/bash",
      'echo "aws $*" >>"$FAKE_AWS_LOG"',
      'if [[ $1 == secretsmanager ]]; then cat "$FAKE_RECOVERY"; fi',
    ].join("\n"), { mode: 0o755 });
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A step's script as GitHub runs it: bash --noprofile --norc -eo pipefail, from the checkout. */
  function runStep(step: Step | undefined, env: Record<string, string>, cwd: string = root) {
    expect(step?.run).toBeDefined();
    const output = path.join(dir, "github_output");
    fs.writeFileSync(output, "");
    const r = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", step?.run ?? ""], {
      cwd,
      encoding: "utf8",
      env: { PATH: `${bin}:${process.env.PATH}`, GITHUB_OUTPUT: output, RUNNER_TEMP: dir, FAKE_AWS_LOG: path.join(dir, "aws.log"), ...env },
    });
    if (r.error) throw r.error;
    const outputs = Object.fromEntries(fs.readFileSync(output, "utf8").split("\n").filter(Boolean).map((l) => l.split(/=(.*)/s).slice(0, 2)));
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, outputs: outputs as Record<string, string> };
  }

  const tenantsStep = (w: Workflow) => (w.jobs.tenants as Job).steps.find((s) => s.id === "list");

  it.each(["drill.yml", "maintenance.yml"])("%s: lists every tenant, or only the chosen one, and refuses a bad or unknown one", (file) => {
    const step = tenantsStep(workflows[file] as Workflow);
    const env = { PULUMI_ORG: "acme-org" };
    expect(runStep(step, { ...env, TENANT_INPUT: "" }).outputs.list).toBe(file === "drill.yml" ? '["acme","globex"]' : '["acme"]');
    expect(runStep(step, { ...env, TENANT_INPUT: "acme" }).outputs.list).toBe('["acme"]');
    const unknown = runStep(step, { ...env, TENANT_INPUT: "initech" });
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toContain("tenant initech is not in the prod stack");
    const bad = runStep(step, { ...env, TENANT_INPUT: "acme;reboot" });
    expect(bad.status).toBe(2);
    expect(bad.outputs.list).toBeUndefined();
  });

  it("maintenance: writes the key material root-only, masks every secret line first, and a config agent-maintain accepts", () => {
    const material = {
      tenant: "acme",
      repoUrl: "ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg",
      knownHosts: "[u1-sub1.your-storagebox.de]:23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs",
      remoteBorg: "borg-1.4",
      passphrase: "pass phrase 1",
      maintenancePrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nbWFpbnRlbmFuY2Uta2V5LWxpbmUtMQ==\nbWFpbnRlbmFuY2Uta2V5LWxpbmUtMg==\n-----END OPENSSH PRIVATE KEY-----",
      drillPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nZHJpbGw=\n-----END OPENSSH PRIVATE KEY-----",
      repoKeyExport: "BORG_KEY 0123456789abcdef\nhqlhbGdvcml0aG2mc2hhMjU2\n",
      retention: { daily: 7, weekly: 4, monthly: 6 },
    };
    const recovery = path.join(dir, "recovery.json");
    fs.writeFileSync(recovery, recoveryDocument(material));
    const step = (workflows["maintenance.yml"]?.jobs.maintain as Job).steps.find((s) => s.id === "fetch");
    const r = runStep(step, { PULUMI_ORG: "acme-org", TENANT: "acme", STATE_BUCKET: "acme-maintenance-state", FAKE_RECOVERY: recovery });
    expect(r.status, r.stderr).toBe(0);
    const work = r.outputs.work as string;
    expect(work).toBe(path.join(dir, "agent-maintain"));
    for (const f of ["ssh_key", "passphrase", "key-export", "known_hosts", "agent-maintain.conf"]) {
      expect(fs.statSync(path.join(work, f)).mode & 0o777, f).toBe(0o600);
    }
    expect(fs.statSync(work).mode & 0o777).toBe(0o700);
    expect(fs.existsSync(path.join(work, "recovery.json"))).toBe(false);
    expect(fs.readFileSync(path.join(work, "ssh_key"), "utf8")).toBe(`${material.maintenancePrivateKey}\n`);
    expect(fs.readFileSync(path.join(work, "passphrase"), "utf8")).toBe(`${material.passphrase}\n`);

    // Every secret line is masked; none is printed otherwise.
    const secretLines = [material.passphrase, ...material.maintenancePrivateKey.split("\n"), ...material.repoKeyExport.split("\n")]
      .filter((l) => l !== "" && !l.startsWith("-----"));
    const masked = r.stdout.split("\n").filter((l) => l.startsWith("::add-mask::")).map((l) => l.slice("::add-mask::".length));
    expect(masked.sort()).toEqual([...secretLines].sort());
    const printed = (r.stdout + r.stderr).split("\n").filter((l) => !l.startsWith("::add-mask::")).join("\n");
    for (const line of secretLines) expect(printed).not.toContain(line);

    // The vault region comes from the ARN; the state is fetched from the tenant's own prefix.
    const aws = fs.readFileSync(path.join(dir, "aws.log"), "utf8");
    expect(aws).toContain("secretsmanager get-secret-value --region eu-central-1 --secret-id arn:aws:secretsmanager:eu-central-1:");
    expect(aws).toContain(`s3 sync --only-show-errors s3://acme-maintenance-state/agent-maintain/acme/ ${work}/state/`);

    // The config passes the project's own parser with agent-maintain's key lists.
    const source = fs.readFileSync(path.join(root, "scripts", "agent-maintain"), "utf8");
    const keys = (name: string) => new RegExp(`readonly ${name}="([^"]*)"`).exec(source)?.[1] ?? "";
    const parse = spawnSync("bash", ["-c", 'source scripts/lib/common.sh; config_load "$1" "$2" "$3"; for k in "${!CFG[@]}"; do printf "%s=%s\\n" "$k" "${CFG[$k]}"; done',
      "-", path.join(work, "agent-maintain.conf"), keys("REQUIRED_KEYS"), keys("OPTIONAL_KEYS")], { cwd: root, encoding: "utf8" });
    expect(parse.status, parse.stderr).toBe(0);
    const cfg = Object.fromEntries(parse.stdout.trim().split("\n").map((l) => l.split(/=(.*)/s).slice(0, 2)));
    expect(cfg).toMatchObject({
      BORG_REPO: material.repoUrl, REMOTE_BORG: "borg-1.4", ARCHIVE_PREFIX: "acme", KEEP_DAILY: "7", KEEP_WEEKLY: "4", KEEP_MONTHLY: "6",
      SSH_KEY: `${work}/ssh_key`, PASSPHRASE_FILE: `${work}/passphrase`, KEY_EXPORT_FILE: `${work}/key-export`, STATE_DIR: `${work}/state`,
    });
  });

  it("maintenance: refuses a vault ARN that is not a Secrets Manager secret", () => {
    fs.writeFileSync(path.join(bin, "pulumi"), `#!/bin/bash\necho '{"acme":"arn:aws:s3:::bucket; rm -rf /"}'\n`, { mode: 0o755 });
    const step = (workflows["maintenance.yml"]?.jobs.maintain as Job).steps.find((s) => s.id === "fetch");
    const r = runStep(step, { PULUMI_ORG: "acme-org", TENANT: "acme", STATE_BUCKET: "b", FAKE_RECOVERY: "/dev/null" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("unexpected vault secret ARN for acme");
    expect(fs.existsSync(path.join(dir, "aws.log"))).toBe(false);
  });

  describe("drill.yml drill job", () => {
    const drill = workflows["drill.yml"]?.jobs.drill as Job;
    const stepRunning = (pattern: RegExp) => drill.steps.find((s) => pattern.test(s.run ?? ""));
    beforeEach(() => {
      // A pulumi that logs its calls; destroy fails as often as FAKE_DESTROY_FAILURES says.
      fs.writeFileSync(path.join(bin, "pulumi"), [
        "#!/bin/bash",
        'echo "pulumi $*" >>"$FAKE_PULUMI_LOG"',
        'if [[ $1 == destroy ]]; then',
        '  n=$(grep -c "^pulumi destroy" "$FAKE_PULUMI_LOG")',
        '  (( n > ${FAKE_DESTROY_FAILURES:-0} )) || exit 1',
        "fi",
      ].join("\n"), { mode: 0o755 });
      fs.writeFileSync(path.join(bin, "curl"), `#!/bin/bash\necho "\${FAKE_IP:-198.51.100.23}"\n`, { mode: 0o755 });
    });
    const pulumiLog = () => fs.readFileSync(path.join(dir, "pulumi.log"), "utf8");
    const env = () => ({ FAKE_PULUMI_LOG: path.join(dir, "pulumi.log"), PULUMI_ORG: "acme-org", TENANT: "acme" });

    /** A checkout of our own (scripts/ and Pulumi.drill.yaml), so the step's copy stays out of the tree. */
    function checkout(): string {
      const co = path.join(dir, "checkout");
      fs.mkdirSync(co);
      fs.symlinkSync(path.join(root, "scripts"), path.join(co, "scripts"));
      fs.copyFileSync(path.join(root, "Pulumi.drill.yaml"), path.join(co, "Pulumi.drill.yaml"));
      return co;
    }

    it("sets up drill-<tenant> from Pulumi.drill.yaml with the tenant, this runner's address and the report file", () => {
      const co = checkout();
      const r = runStep(drill.steps.find((s) => s.id === "stack"), { ...env(), REPORT_FILE: "drill-report-acme.json", DRILL_REGION: "" }, co);
      expect(r.status, r.stderr).toBe(0);
      expect(r.outputs.stack).toBe("acme-org/drill-acme");
      expect(fs.readFileSync(path.join(co, "Pulumi.drill-acme.yaml"), "utf8")).toBe(fs.readFileSync(path.join(root, "Pulumi.drill.yaml"), "utf8"));
      const log = pulumiLog();
      expect(log).toContain("pulumi stack select --create acme-org/drill-acme");
      expect(log).toContain("pulumi config set --stack acme-org/drill-acme tenant acme");
      expect(log).toContain("pulumi config set --stack acme-org/drill-acme sshCidr 198.51.100.23/32");
      expect(log).toContain("pulumi config set --stack acme-org/drill-acme reportFile drill-report-acme.json");
      expect(log).toContain("pulumi config set --stack acme-org/drill-acme prodStack acme-org/agent-backups/prod");
      expect(log).not.toContain(" region ");
      const withRegion = runStep(drill.steps.find((s) => s.id === "stack"), { ...env(), REPORT_FILE: "r.json", DRILL_REGION: "eu-west-1" }, co);
      expect(withRegion.status).toBe(0);
      expect(pulumiLog()).toContain("pulumi config set --stack acme-org/drill-acme region eu-west-1");
    });

    it("refuses to open SSH to whatever the address lookup returned when it is not an IPv4 address", () => {
      const r = runStep(drill.steps.find((s) => s.id === "stack"), { ...env(), REPORT_FILE: "r.json", DRILL_REGION: "", FAKE_IP: "<html>" }, checkout());
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("could not learn this runner's public IPv4 address");
      expect(pulumiLog()).not.toContain("sshCidr");
    });

    it("passes a healthy report, writes the summary, and fails an unhealthy or missing one", () => {
      const check = stepRunning(/\.healthy == true/);
      const report = path.join(dir, "report.json");
      const summary = path.join(dir, "summary.md");
      const base = { REPORT_FILE: report, GITHUB_STEP_SUMMARY: summary, TENANT: "acme" };
      const doc = {
        tenant: "acme", archive: "acme-2026-11-24T03:17:00", archiveAgeSeconds: 60, bytes: 10, backupSeconds: 1, restoreSeconds: 2,
        checks: [{ name: "restore", ok: true, detail: "ok" }, { name: "verify:manifest", ok: false, detail: "2 files missing" }],
        healthy: false, startedAt: "2026-11-24T04:00:00Z", finishedAt: "2026-11-24T04:01:00Z",
      };
      fs.writeFileSync(report, JSON.stringify(doc));
      const failed = runStep(check, base);
      expect(failed.status).toBe(1);
      expect(fs.readFileSync(summary, "utf8")).toContain("- FAILED verify:manifest: 2 files missing");
      fs.writeFileSync(report, JSON.stringify({ ...doc, healthy: true, checks: [doc.checks[0]] }));
      expect(runStep(check, base).status).toBe(0);
      fs.rmSync(report);
      const missing = runStep(check, base);
      expect(missing.status).toBe(1);
      expect(missing.stderr).toContain("no drill report");
    });

    it("destroys, retries once after a refresh, and fails loudly when the box may be left behind", () => {
      const destroy = stepRunning(/pulumi destroy/);
      expect(runStep(destroy, { ...env(), STACK: "" }).stdout).toContain("nothing to destroy");
      expect(runStep(destroy, { ...env(), STACK: "acme-org/drill-acme", FAKE_DESTROY_FAILURES: "1" }).status).toBe(0);
      expect(pulumiLog()).toContain("pulumi refresh --yes --skip-preview --non-interactive --stack acme-org/drill-acme");
      fs.rmSync(path.join(dir, "pulumi.log"));
      const stuck = runStep(destroy, { ...env(), STACK: "acme-org/drill-acme", FAKE_DESTROY_FAILURES: "5" });
      expect(stuck.status).toBe(1);
      expect(stuck.stderr).toContain("acme-org/drill-acme was not destroyed");
      expect(pulumiLog().match(/^pulumi destroy/gm)).toHaveLength(2);
    });
  });
});
