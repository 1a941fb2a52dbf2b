// .github/workflows/drill.yml at fleet scale, parsed as GitHub reads it and its run scripts run for
// real (bash as GitHub runs it) against stand-ins for the pulumi, aws, npm and curl CLIs: the rota
// of `npm run fleet -- --next-drills` split into boxes, one drill stack per box with its tenants,
// each report checked, the box always destroyed, and each report recorded by the real
// scripts/agent-ledger in the tenant's state from the maintenance state bucket.
// (test/unit/workflows.test.ts checks what every workflow shares: pins, secrets, shellcheck.)
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { maxTenantsPerBox } from "../../config/drill";

const root = path.join(__dirname, "..", "..");

interface Step { name?: string; uses?: string; run?: string; if?: string; env?: Record<string, string>; with?: Record<string, unknown>; id?: string }
interface Job { needs?: string | string[]; if?: string; environment?: string; env: Record<string, string>; steps: Step[]; outputs?: Record<string, string>; strategy?: Record<string, any> }
const workflow = parseYaml(fs.readFileSync(path.join(root, ".github", "workflows", "drill.yml"), "utf8")) as { on: Record<string, any>; jobs: Record<string, Job> };
const plan = workflow.jobs.plan as Job;
const drill = workflow.jobs.drill as Job;
const record = workflow.jobs.record as Job;
const stepNamed = (job: Job, pattern: RegExp) => job.steps.find((s) => pattern.test(s.name ?? ""));

const report = (tenant: string, healthy = true) => ({
  tenant, archive: `${tenant}-2026-11-24T03:17:00`, archiveAgeSeconds: 60, bytes: 10, backupSeconds: 1, restoreSeconds: 2,
  checks: [{ name: "restore", ok: true, detail: "ok" }, { name: "verify", ok: healthy, detail: healthy ? "ok" : "agent check failed" }],
  healthy, agent: { name: "hermes-agent", version: "0.19.0" },
  startedAt: new Date(Date.now() - 120_000).toISOString().replace(/\.\d+Z$/, "Z"),
  finishedAt: new Date(Date.now() - 60_000).toISOString().replace(/\.\d+Z$/, "Z"),
});

describe("drill.yml, as GitHub reads it", () => {
  it("runs monthly, or by hand with a tenant or a budget", () => {
    expect(workflow.on.schedule).toEqual([{ cron: "17 5 1 * *" }]);
    expect(Object.keys(workflow.on.workflow_dispatch.inputs).sort()).toEqual(["budget", "tenant"]);
  });

  it("plans in the maintenance environment (it reads the ledgers), drills per box in the drill environment, records in the maintenance one", () => {
    expect(plan.environment).toBe("maintenance");
    expect(drill.environment).toBe("drill");
    expect(record.environment).toBe("maintenance");
    expect(drill.needs).toBe("plan");
    expect(drill.if).toBe("${{ needs.plan.outputs.boxes != '[]' }}");
    expect(drill.strategy?.matrix).toEqual({ include: "${{ fromJSON(needs.plan.outputs.boxes) }}" });
    expect(drill.strategy?.["fail-fast"]).toBe(false);
    expect(drill.env.BOX_TENANTS).toBe("${{ matrix.tenants }}");
    expect(record.needs).toEqual(["plan", "drill"]);
    // After failed drills too: an unhealthy report is a drill to record.
    expect(record.if).toContain("!cancelled()");
    expect(record.env.TENANTS).toBe("${{ needs.plan.outputs.tenants }}");
  });

  it("reads the same fleet config and state bucket as the maintenance workflow's fleet job", () => {
    const maintenance = parseYaml(fs.readFileSync(path.join(root, ".github", "workflows", "maintenance.yml"), "utf8")) as { jobs: Record<string, Job> };
    const fleet = maintenance.jobs.fleet as Job;
    expect(plan.env.FLEET_CONFIG).toBe(fleet.env.FLEET_CONFIG);
    expect(plan.env.STATE_BUCKET).toBe(fleet.env.STATE_BUCKET);
    expect(record.env.STATE_BUCKET).toBe(fleet.env.STATE_BUCKET);
  });

  it("brings each box's stack up, checks the reports, always destroys, and keeps the reports for the record job", () => {
    const names = drill.steps.map((s) => s.run ?? s.uses ?? "");
    const up = names.findIndex((r) => /pulumi up .*--continue-on-error/.test(r));
    const check = drill.steps.findIndex((s) => /Check the reports/.test(s.name ?? ""));
    const destroy = names.findIndex((r) => /pulumi destroy\b/.test(r));
    expect(up).toBeGreaterThan(0);
    expect(check).toBeGreaterThan(up);
    expect(destroy).toBeGreaterThan(check);
    expect(drill.steps[destroy]?.if).toBe("always()");
    expect(drill.steps[check]?.if).toBe("always() && steps.stack.outcome == 'success'");
    const upload = drill.steps.find((s) => s.uses?.startsWith("actions/upload-artifact@"));
    expect(upload?.if).toBe("always()");
    expect(upload?.with).toMatchObject({ name: "drill-reports-${{ matrix.box }}", path: "drill-reports/" });
    expect(drill.env.REPORT_DIR).toBe("drill-reports");
    const download = record.steps.find((s) => s.uses?.startsWith("actions/download-artifact@"));
    expect(download?.uses).toMatch(/@[0-9a-f]{40}$/);
    expect(download?.with).toEqual({ pattern: "drill-reports-*", path: "drill-reports", "merge-multiple": true });
  });
});

describe("drill.yml run scripts, run for real", () => {
  let dir: string;
  let bin: string;
  let bucket: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "drill-workflow-"));
    bin = path.join(dir, "bin");
    bucket = path.join(dir, "bucket");
    fs.mkdirSync(bin);
    fs.mkdirSync(bucket);
    // pulumi: logs its calls; the prod stack has acme, globex, initech; destroy fails as told.
    fs.writeFileSync(path.join(bin, "pulumi"), [
      "#!/bin/bash",
      'echo "pulumi $*" >>"$FAKE_LOG"',
      'case "$*" in',
      `  *"stack output tenants --json"*) echo '${JSON.stringify({ acme: {}, globex: {}, initech: {} })}' ;;`,
      '  destroy*) n=$(grep -c "^pulumi destroy" "$FAKE_LOG"); (( n > ${FAKE_DESTROY_FAILURES:-0} )) || exit 1 ;;',
      "esac",
    ].join("\n"), { mode: 0o755 });
    // npm run -s fleet -- ...: logs its arguments, prints the rota it was given.
    fs.writeFileSync(path.join(bin, "npm"), '#!/bin/bash\necho "npm $*" >>"$FAKE_LOG"\nprintf "%s\\n" "$FAKE_ROTA"\n', { mode: 0o755 });
    // aws s3 sync/cp against a folder standing in for the bucket (s3://b/ = $FAKE_BUCKET/).
    fs.writeFileSync(path.join(bin, "aws"), [
      "#!/bin/bash",
      'echo "aws $*" >>"$FAKE_LOG"',
      'args=(); for a in "$@"; do args+=("${a/#s3:\\/\\/b\\//$FAKE_BUCKET/}"); done',
      'set -- "${args[@]}"',
      '[[ $1 == s3 ]] || exit 9',
      'if [[ $2 == cp ]]; then mkdir -p "$(dirname "${@: -1}")"; cp "${@: -2:1}" "${@: -1}"; exit 0; fi',
      'src=${@: -2:1} dst=${@: -1}; [[ -d $src ]] || exit 0',
      // Only the --include'd names (the scripts use --exclude "*" first).
      'includes=(); prev=""; for a in "$@"; do [[ $prev == --include ]] && includes+=("$a"); prev=$a; done',
      '(cd "$src" && find . -type f) | while read -r f; do f=${f#./}; for g in "${includes[@]}"; do',
      '  # shellcheck disable=SC2053',
      '  if [[ $f == $g || ${f##*/} == $g ]]; then mkdir -p "$dst/$(dirname "$f")"; cp "$src/$f" "$dst/$f"; fi; done; done',
    ].join("\n"), { mode: 0o755 });
    fs.writeFileSync(path.join(bin, "curl"), `#!/bin/bash\necho "\${FAKE_IP:-198.51.100.23}"\n`, { mode: 0o755 });
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  const log = () => (fs.existsSync(path.join(dir, "log")) ? fs.readFileSync(path.join(dir, "log"), "utf8") : "");

  /** A step's script as GitHub runs it: bash --noprofile --norc -eo pipefail, from the checkout. */
  function runStep(step: Step | undefined, env: Record<string, string>, cwd: string = root) {
    expect(step?.run).toBeDefined();
    const output = path.join(dir, "github_output");
    fs.writeFileSync(output, "");
    const r = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", step?.run ?? ""], {
      cwd,
      encoding: "utf8",
      env: {
        PATH: `${bin}:${process.env.PATH}`, GITHUB_OUTPUT: output, GITHUB_STEP_SUMMARY: path.join(dir, "summary.md"), RUNNER_TEMP: dir,
        FAKE_LOG: path.join(dir, "log"), FAKE_BUCKET: bucket, PULUMI_ORG: "acme-org", ...env,
      },
    });
    if (r.error) throw r.error;
    const outputs = Object.fromEntries(fs.readFileSync(output, "utf8").split("\n").filter(Boolean).map((l) => l.split(/=(.*)/s).slice(0, 2)));
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, outputs: outputs as Record<string, string> };
  }

  /** A checkout of our own (scripts/, Pulumi.drill.yaml, a fleet config) so a step's files stay out of the tree. */
  function checkout(): string {
    const co = path.join(dir, "checkout");
    if (fs.existsSync(co)) return co;
    fs.mkdirSync(co);
    fs.symlinkSync(path.join(root, "scripts"), path.join(co, "scripts"));
    fs.copyFileSync(path.join(root, "Pulumi.drill.yaml"), path.join(co, "Pulumi.drill.yaml"));
    fs.copyFileSync(path.join(root, "fleet.example.json"), path.join(co, "fleet.config.json"));
    return co;
  }

  describe("plan", () => {
    const step = () => plan.steps.find((s) => s.id === "plan");
    const base = { STATE_BUCKET: "b", FLEET_CONFIG: "fleet.config.json", TENANTS_PER_BOX: "2", TENANT_INPUT: "", BUDGET_INPUT: "" };

    it("takes the rota from npm run fleet -- --next-drills over the ledger files, and splits it into boxes", () => {
      fs.mkdirSync(path.join(bucket, "agent-maintain", "acme", "borg"), { recursive: true });
      for (const f of ["ledger.json", "drills.jsonl", "state.json", "borg/cache"]) fs.writeFileSync(path.join(bucket, "agent-maintain", "acme", f), "{}\n");
      const r = runStep(step(), { ...base, FAKE_ROTA: '["globex","acme","initech"]' }, checkout());
      expect(r.status, r.stderr).toBe(0);
      expect(r.outputs.tenants).toBe('["globex","acme","initech"]');
      expect(JSON.parse(r.outputs.boxes ?? "")).toEqual([{ box: "1", tenants: '["globex","acme"]' }, { box: "2", tenants: '["initech"]' }]);
      expect(log()).toMatch(new RegExp(`^npm run -s fleet -- --next-drills --state-root ${dir}/fleet-state --config fleet.config.json$`, "m"));
      // Only the ledger files came out of the bucket.
      expect(fs.readdirSync(path.join(dir, "fleet-state", "acme")).sort()).toEqual(["drills.jsonl", "ledger.json"]);
    });

    it("passes a budget given by hand, and refuses a bad one", () => {
      expect(runStep(step(), { ...base, BUDGET_INPUT: "7", FAKE_ROTA: '["acme"]' }, checkout()).status).toBe(0);
      expect(log()).toMatch(/--next-drills .* --budget 7$/m);
      const bad = runStep(step(), { ...base, BUDGET_INPUT: "7; reboot", FAKE_ROTA: '["acme"]' }, checkout());
      expect(bad.status).toBe(2);
      expect(bad.outputs.boxes).toBeUndefined();
    });

    it("drills only the tenant given by hand, without the rota, and refuses a bad or unknown one", () => {
      const r = runStep(step(), { ...base, TENANT_INPUT: "globex" }, checkout());
      expect(r.status, r.stderr).toBe(0);
      expect(r.outputs.boxes).toBe('[{"box":"1","tenants":"[\\"globex\\"]"}]');
      expect(log()).not.toContain("npm ");
      const unknown = runStep(step(), { ...base, TENANT_INPUT: "hooli" }, checkout());
      expect(unknown.status).toBe(1);
      expect(unknown.stderr).toContain("tenant hooli is not in the prod stack");
      expect(runStep(step(), { ...base, TENANT_INPUT: "acme;reboot" }, checkout()).status).toBe(2);
    });

    it("refuses whatever the rota printed unless it is a list of valid tenants of the prod stack, each once", () => {
      const cases: [string, RegExp][] = [
        ["not json", /no JSON array of tenant names/],
        ['{"acme":1}', /no JSON array/],
        ['["acme",1]', /no JSON array/],
        ['["acme","$(reboot)"]', /refusing/],
        ['["acme","hooli"]', /tenant hooli is not in the prod stack/],
        ['["acme","acme"]', /listed twice/],
      ];
      for (const [rota, message] of cases) {
        const r = runStep(step(), { ...base, FAKE_ROTA: rota }, checkout());
        expect(r.status, rota).not.toBe(0);
        expect(r.stderr, rota).toMatch(message);
        expect(r.outputs.boxes, rota).toBeUndefined();
      }
    });

    it("gives an empty rota no box (the drill job is skipped), and refuses a box size the drill stack cannot take", () => {
      const empty = runStep(step(), { ...base, FAKE_ROTA: "[]" }, checkout());
      expect(empty.status, empty.stderr).toBe(0);
      expect(empty.outputs.boxes).toBe("[]");
      for (const size of ["0", String(maxTenantsPerBox + 1), "x"]) {
        expect(runStep(step(), { ...base, TENANTS_PER_BOX: size, FAKE_ROTA: '["acme"]' }, checkout()).status, size).toBe(2);
      }
      expect(runStep(step(), { ...base, TENANTS_PER_BOX: String(maxTenantsPerBox), FAKE_ROTA: '["acme"]' }, checkout()).status).toBe(0);
      expect(runStep(step(), { ...base, FLEET_CONFIG: "missing.json", FAKE_ROTA: '["acme"]' }, checkout()).stderr).toContain("commit the fleet config");
    });
  });

  describe("drill", () => {
    const stackStep = () => drill.steps.find((s) => s.id === "stack");

    it("sets up drill-<box> from Pulumi.drill.yaml with the box's tenants as a list, this runner's address and the report folder", () => {
      const co = checkout();
      const r = runStep(stackStep(), { BOX: "2", BOX_TENANTS: '["globex","initech"]', REPORT_DIR: "drill-reports", DRILL_REGION: "" }, co);
      expect(r.status, r.stderr).toBe(0);
      expect(r.outputs.stack).toBe("acme-org/drill-2");
      expect(fs.readFileSync(path.join(co, "Pulumi.drill-2.yaml"), "utf8")).toBe(fs.readFileSync(path.join(root, "Pulumi.drill.yaml"), "utf8"));
      const calls = log().split("\n").filter(Boolean);
      expect(calls).toEqual([
        "pulumi stack select --create acme-org/drill-2",
        "pulumi config set --stack acme-org/drill-2 prodStack acme-org/agent-backups/prod",
        "pulumi config rm --stack acme-org/drill-2 tenants",
        "pulumi config set --stack acme-org/drill-2 --path tenants[0] globex",
        "pulumi config set --stack acme-org/drill-2 --path tenants[1] initech",
        "pulumi config set --stack acme-org/drill-2 sshCidr 198.51.100.23/32",
        "pulumi config set --stack acme-org/drill-2 reportDir drill-reports",
        "pulumi config set --stack acme-org/drill-2 ttlHours 3",
      ]);
      // More tenants, a longer life, never beyond the job's 6 hours.
      const many = JSON.stringify(Array.from({ length: 25 }, (_, i) => `t${i}`));
      expect(runStep(stackStep(), { BOX: "1", BOX_TENANTS: many, REPORT_DIR: "d", DRILL_REGION: "eu-west-1" }, co).status).toBe(0);
      expect(log()).toContain("pulumi config set --stack acme-org/drill-1 ttlHours 6");
      expect(log()).toContain("pulumi config set --stack acme-org/drill-1 region eu-west-1");
    });

    it("refuses a bad box, a bad tenant list, and an address lookup that is not IPv4, before opening anything", () => {
      const co = checkout();
      const cases: Record<string, string>[] = [
        { BOX: "1;id", BOX_TENANTS: '["acme"]' },
        { BOX: "1", BOX_TENANTS: "[]" },
        { BOX: "1", BOX_TENANTS: '["acme;reboot"]' },
        { BOX: "1", BOX_TENANTS: JSON.stringify(Array.from({ length: 26 }, (_, i) => `t${i}`)) },
      ];
      for (const c of cases) {
        const r = runStep(stackStep(), { ...c, REPORT_DIR: "d", DRILL_REGION: "" }, co);
        expect(r.status, JSON.stringify(c)).not.toBe(0);
      }
      expect(log()).toBe("");
      const r = runStep(stackStep(), { BOX: "1", BOX_TENANTS: '["acme"]', REPORT_DIR: "d", DRILL_REGION: "", FAKE_IP: "<html>" }, co);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("could not learn this runner's public IPv4 address");
      expect(log()).not.toContain("sshCidr");
    });

    it("checks every tenant's report: passes healthy ones, fails an unhealthy or missing one, summarises each", () => {
      const reports = path.join(dir, "reports");
      fs.mkdirSync(reports);
      const check = stepNamed(drill, /Check the reports/);
      const env = { BOX_TENANTS: '["acme","globex"]', REPORT_DIR: reports };
      fs.writeFileSync(path.join(reports, "acme.json"), JSON.stringify(report("acme")));
      fs.writeFileSync(path.join(reports, "globex.json"), JSON.stringify(report("globex")));
      expect(runStep(check, env).status).toBe(0);
      const summary = fs.readFileSync(path.join(dir, "summary.md"), "utf8");
      expect(summary).toContain("### Drill of acme");
      expect(summary).toContain("by hermes-agent 0.19.0: healthy=true");
      fs.writeFileSync(path.join(reports, "globex.json"), JSON.stringify(report("globex", false)));
      const unhealthy = runStep(check, env);
      expect(unhealthy.status).toBe(1);
      expect(unhealthy.stderr).toContain("drill of globex is not healthy");
      expect(fs.readFileSync(path.join(dir, "summary.md"), "utf8")).toContain("- FAILED verify: agent check failed");
      fs.rmSync(path.join(reports, "acme.json"));
      const missing = runStep(check, env);
      expect(missing.status).toBe(1);
      expect(missing.stderr).toContain("no drill report for acme");
    });

    it("destroys, retries once after a refresh, and fails loudly when the box may be left behind", () => {
      const destroy = drill.steps.find((s) => /pulumi destroy/.test(s.run ?? ""));
      expect(runStep(destroy, { STACK: "" }).stdout).toContain("nothing to destroy");
      expect(runStep(destroy, { STACK: "acme-org/drill-1", FAKE_DESTROY_FAILURES: "1" }).status).toBe(0);
      expect(log()).toContain("pulumi refresh --yes --skip-preview --non-interactive --stack acme-org/drill-1");
      fs.rmSync(path.join(dir, "log"));
      const stuck = runStep(destroy, { STACK: "acme-org/drill-1", FAKE_DESTROY_FAILURES: "5" });
      expect(stuck.status).toBe(1);
      expect(stuck.stderr).toContain("acme-org/drill-1 was not destroyed");
      expect(log().match(/^pulumi destroy/gm)).toHaveLength(2);
    });
  });

  describe("record", () => {
    const recordStep = () => stepNamed(record, /Record each drill/);

    it("appends each tenant's report to its drills.jsonl in the bucket with agent-ledger, and touches nothing else", () => {
      const co = checkout();
      fs.mkdirSync(path.join(co, "drill-reports"));
      for (const t of ["acme", "globex"]) {
        fs.writeFileSync(path.join(co, "drill-reports", `${t}.json`), JSON.stringify(report(t, t === "acme")));
        fs.mkdirSync(path.join(bucket, "agent-maintain", t), { recursive: true });
        fs.writeFileSync(path.join(bucket, "agent-maintain", t, "state.json"), "trusted state\n");
      }
      fs.writeFileSync(path.join(bucket, "agent-maintain", "acme", "drills.jsonl"), '{"an":"earlier drill"}\n');
      const r = runStep(recordStep(), { STATE_BUCKET: "b", TENANTS: '["acme","globex","initech"]' }, co);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toContain("::warning::no drill report for initech");
      const drills = (t: string) => fs.readFileSync(path.join(bucket, "agent-maintain", t, "drills.jsonl"), "utf8").trim().split("\n");
      expect(drills("acme")).toHaveLength(2);
      expect(drills("acme")[0]).toBe('{"an":"earlier drill"}');
      expect(JSON.parse(drills("acme")[1] ?? "")).toMatchObject({ tenant: "acme", healthy: true, archive: "acme-2026-11-24T03:17:00", agent: { name: "hermes-agent", version: "0.19.0" } });
      // An unhealthy drill is recorded too: the ledger shows it.
      expect(JSON.parse(drills("globex")[0] ?? "")).toMatchObject({ tenant: "globex", healthy: false });
      for (const t of ["acme", "globex"]) expect(fs.readFileSync(path.join(bucket, "agent-maintain", t, "state.json"), "utf8")).toBe("trusted state\n");
      expect(fs.existsSync(path.join(bucket, "agent-maintain", "initech"))).toBe(false);
      // Only ledger.json and drills.jsonl were fetched; only drills.jsonl was put back.
      expect(log()).not.toContain("--delete");
      expect(log().match(/^aws s3 cp /gm)).toHaveLength(2);
    });

    it("refuses (and records nothing from) a report that is not the report format or names another tenant", () => {
      const co = checkout();
      fs.mkdirSync(path.join(co, "drill-reports"));
      fs.writeFileSync(path.join(co, "drill-reports", "acme.json"), JSON.stringify({ ...report("acme"), healthy: false }));
      fs.writeFileSync(path.join(co, "drill-reports", "globex.json"), JSON.stringify(report("globex")));
      fs.mkdirSync(path.join(bucket, "agent-maintain", "globex"), { recursive: true });
      // globex's folder holds acme's ledger: the report names another tenant than the ledger.
      fs.writeFileSync(path.join(bucket, "agent-maintain", "globex", "ledger.json"), JSON.stringify({ tenant: "acme" }));
      const r = runStep(recordStep(), { STATE_BUCKET: "b", TENANTS: '["acme","globex"]' }, co);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("the drill report of acme was refused");
      expect(r.stderr).toContain("the drill report of globex was refused");
      expect(log()).not.toMatch(/^aws s3 cp /m);
    });
  });
});
