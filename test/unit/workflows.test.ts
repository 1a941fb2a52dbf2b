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
import { debianMirror, defaultRecipe } from "../../drill/lib/rootfs";

const root = path.join(__dirname, "..", "..");
const workflowsDir = path.join(root, ".github", "workflows");

interface Step { name?: string; uses?: string; run?: string; if?: string; env?: Record<string, string>; with?: Record<string, unknown>; id?: string }
interface Job { "runs-on": string; needs?: string | string[]; env?: Record<string, string>; steps: Step[]; strategy?: { matrix: Record<string, unknown>; "fail-fast"?: boolean }; container?: unknown; services?: unknown; permissions?: Record<string, string> }
interface Workflow { name: string; on: Record<string, any>; env?: Record<string, string>; permissions?: Record<string, string>; jobs: Record<string, Job> }

const load = (file: string): Workflow => parseYaml(fs.readFileSync(path.join(workflowsDir, file), "utf8")) as Workflow;
const files = ["preview.yml", "drill.yml", "maintenance.yml"];
const workflows = Object.fromEntries(files.map((f) => [f, load(f)])) as Record<string, Workflow>;
const steps = (w: Workflow) => Object.values(w.jobs).flatMap((j) => j.steps);
const runSteps = (w: Workflow) => steps(w).filter((s): s is Step & { run: string } => typeof s.run === "string");
const stepUsing = (job: Job, action: string) => job.steps.filter((s) => s.uses?.startsWith(`${action}@`));
const packageJson = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { dependencies: Record<string, string> };

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

  it("pins every action by full commit SHA, with its release tag as the comment", () => {
    const lines = fs.readFileSync(path.join(workflowsDir, file), "utf8").split("\n").filter((l) => /^\s*(- )?uses:/.test(l));
    expect(lines.length).toBe(steps(w).filter((s) => s.uses !== undefined).length);
    for (const line of lines) expect(line.trim(), line).toMatch(/^(- )?uses: [\w.-]+\/[\w.-]+(\/[\w./-]+)?@[0-9a-f]{40} # v\d+\.\d+\.\d+$/);
    for (const s of steps(w).filter((s) => s.uses !== undefined)) expect(s.uses, s.name).toMatch(/@[0-9a-f]{40}$/);
  });

  it("installs the Pulumi CLI of the version package.json's @pulumi/pulumi is pinned to", () => {
    const sdk = packageJson.dependencies["@pulumi/pulumi"];
    expect(sdk, "@pulumi/pulumi is pinned exactly in package.json").toMatch(/^\d+\.\d+\.\d+$/);
    const installs = Object.values(w.jobs).flatMap((j) => stepUsing(j, "pulumi/actions"));
    expect(installs.length).toBeGreaterThan(0);
    for (const s of installs) expect(String(s.with?.["pulumi-version"]), s.name ?? s.uses).toBe(sdk);
  });

  it("runs no job in a container, and keeps no checkout credentials", () => {
    for (const [name, job] of Object.entries(w.jobs)) {
      expect(job.container, name).toBeUndefined();
      expect(job.services, name).toBeUndefined();
      for (const s of stepUsing(job, "actions/checkout")) expect(s.with?.["persist-credentials"], name).toBe(false);
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

describe("actions across the workflows", () => {
  it("use one pinned commit per action, so an update moves all of them", () => {
    const pins = new Map<string, Set<string>>();
    for (const w of Object.values(workflows)) {
      for (const s of steps(w)) {
        if (s.uses === undefined) continue;
        const [action, ref] = s.uses.split("@") as [string, string];
        pins.set(action, (pins.get(action) ?? new Set()).add(ref));
      }
    }
    expect([...pins.keys()].sort()).toEqual(["actions/checkout", "actions/download-artifact", "actions/setup-node", "actions/upload-artifact", "pulumi/actions"]);
    for (const [action, refs] of pins) expect([...refs], action).toHaveLength(1);
  });
});

describe("preview.yml", () => {
  const w = workflows["preview.yml"] as Workflow;

  it("runs on pull requests only", () => {
    expect(Object.keys(w.on)).toEqual(["pull_request"]);
  });

  it("installs and runs the whole test suite through the project's CI entry, as root on a VM runner", () => {
    const test = w.jobs.test as Job;
    // A container has no git in the checkout and cannot run systemd-nspawn boxes: a VM and sudo.
    expect(test.container).toBeUndefined();
    expect(test.services).toBeUndefined();
    expect(test["runs-on"]).toBe("ubuntu-24.04");
    const runs = test.steps.filter((s) => s.run !== undefined).map((s) => s.run?.trim());
    expect(runs.at(-1)).toBe("sudo --preserve-env=CI bash .ci/run");
    const ciRun = fs.readFileSync(path.join(root, ".ci", "run"), "utf8");
    expect(ciRun).toMatch(/bash \.ci\/setup/);
    expect(ciRun).toMatch(/npm test/);
  });

  it("gives the drill boxes' debootstrap a Debian 12 mirror that drill/lib/rootfs.ts finds, and apt never installs from", () => {
    const prepare = (w.jobs.test as Job).steps.find((s) => s.run?.includes("debian-bookworm.sources"))?.run ?? "";
    const heredoc = (tag: string) => new RegExp(`<<'${tag}'\\n([\\s\\S]*?)\\n${tag}\\n`).exec(prepare)?.[1] ?? "";
    const etcApt = fs.mkdtempSync(path.join(os.tmpdir(), "workflows-apt-"));
    try {
      fs.mkdirSync(path.join(etcApt, "sources.list.d"));
      fs.writeFileSync(path.join(etcApt, "sources.list.d", "debian-bookworm.sources"), `${heredoc("SOURCES")}\n`);
      const { suite } = defaultRecipe();
      expect(debianMirror(suite, etcApt)).toMatch(/^https?:\/\/\S+\/debian$/);
    } finally {
      fs.rmSync(etcApt, { recursive: true, force: true });
    }
    expect(heredoc("SOURCES")).toContain("Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg");
    expect(prepare.indexOf("install -y --no-install-recommends debian-archive-keyring")).toBeLessThan(prepare.indexOf("debian-bookworm.sources"));
    expect(heredoc("PIN").split("\n")).toEqual(["Package: *", `Pin: release n=${defaultRecipe().suite}`, "Pin-Priority: -1"]);
  });

  it("previews the prod stack with pulumi/actions and comments on the pull request", () => {
    const preview = w.jobs.preview as Job;
    expect(preview.needs).toBe("test");
    expect(preview.steps.some((s) => s.run?.includes("npm ci"))).toBe(true);
    const [pulumi] = stepUsing(preview, "pulumi/actions");
    expect(pulumi?.with).toMatchObject({ command: "preview", "comment-on-pr": true });
    expect(String(pulumi?.with?.["stack-name"])).toMatch(/\/prod$/);
    // Only the preview job may comment; the test job runs the pull request's code with read only.
    expect(w.permissions).toEqual({ contents: "read" });
    expect(preview.permissions).toEqual({ contents: "read", "pull-requests": "write" });
    expect((w.jobs.test as Job).permissions).toBeUndefined();
  });

  it("previews only after the tests passed", () => {
    expect((w.jobs.preview as Job).needs).toBe("test");
    expect(Object.keys(w.jobs).sort()).toEqual(["preview", "test"]);
  });
});

// drill.yml (the rota, boxes, reports, recording) is tested in test/unit/drill-workflow.test.ts.

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

  it("maintenance.yml: lists every tenant, or only the chosen one, and refuses a bad or unknown one", () => {
    const step = tenantsStep(workflows["maintenance.yml"] as Workflow);
    const env = { PULUMI_ORG: "acme-org" };
    expect(runStep(step, { ...env, TENANT_INPUT: "" }).outputs.list).toBe('["acme"]');
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
});
