// The maintenance workflow's fleet job, parsed as GitHub reads it and its run scripts run for real
// (bash, a stand-in aws CLI, the real `npm run fleet`): it runs after the maintain matrix even when
// a tenant failed, takes only the ledger files from the bucket and writes nothing there, gives the
// alarm URLs to the tool only through env under the names the example config uses, keeps the page
// as an artifact, and fails when the fleet config misses a tenant of the prod stack.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { simulateTenant, writeTenantState } from "../../tools/fleet-simulate";

interface Step { name?: string; uses?: string; run?: string; if?: string; id?: string; env?: Record<string, string>; with?: Record<string, unknown> }
interface Job { needs?: string[]; if?: string; environment?: string; env?: Record<string, string>; steps: Step[] }

const root = path.join(__dirname, "..", "..");
const workflow = parseYaml(fs.readFileSync(path.join(root, ".github", "workflows", "maintenance.yml"), "utf8")) as { jobs: Record<string, Job> };
const job = workflow.jobs.fleet as Job;
const step = (pred: (s: Step) => boolean) => job.steps.find(pred) as Step;
const fetchStep = step((s) => s.id === "fetch");
const fleetStep = step((s) => s.run?.includes("npm run -s fleet") ?? false);
const coverStep = step((s) => s.name?.includes("lists every tenant of the prod stack") ?? false);

let dir: string;
let bin: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "fleet-workflow-"));
  bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  // A stand-in aws CLI: records its arguments; `s3 sync s3://... DEST` copies the fake bucket
  // (FAKE_BUCKET) to DEST honouring only the ledger-file includes this step passes.
  fs.writeFileSync(path.join(bin, "aws"), `#!/bin/bash
set -euo pipefail
printf '%s\\n' "$*" >>"$FAKE_AWS_LOG"
dest=\${!#}
if [[ $1 == s3 && $2 == sync && $dest != s3://* ]]; then
  (cd "$FAKE_BUCKET" && find . -type f \\( -name ledger.json -o -name ledger-history.jsonl -o -name drills.jsonl \\) -print0 |
    while IFS= read -r -d '' f; do mkdir -p "$dest/$(dirname "$f")"; cp "$f" "$dest/$f"; done)
fi
`, { mode: 0o755 });
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function run(s: Step, env: Record<string, string>, cwd = root) {
  const output = path.join(dir, "github_output");
  fs.writeFileSync(output, "");
  const r = spawnSync("bash", ["--noprofile", "--norc", "-eo", "pipefail", "-c", s.run ?? ""], {
    cwd,
    encoding: "utf8",
    timeout: 120_000,
    env: { PATH: `${bin}:${process.env.PATH}`, HOME: process.env.HOME, GITHUB_OUTPUT: output, RUNNER_TEMP: dir, FAKE_AWS_LOG: path.join(dir, "aws.log"), ...env },
  });
  if (r.error) throw r.error;
  const outputs = Object.fromEntries(fs.readFileSync(output, "utf8").split("\n").filter(Boolean).map((l) => l.split(/=(.*)/s).slice(0, 2)));
  return { status: r.status, stderr: r.stderr, outputs: outputs as Record<string, string> };
}

describe("maintenance.yml: the fleet job", () => {
  it("reads the committed fleet config, fleet.config.json unless the FLEET_CONFIG variable names another", () => {
    expect(job.env?.FLEET_CONFIG).toBe("${{ vars.FLEET_CONFIG || 'fleet.config.json' }}");
  });

  it("runs after the maintain matrix, also when a tenant's run failed, with the maintenance environment", () => {
    expect(job.needs).toEqual(["tenants", "maintain"]);
    expect(job.if).toBe("${{ !cancelled() && needs.tenants.result == 'success' }}");
    expect(job.environment).toBe("maintenance");
  });

  it("passes exactly the alarm variables the example config names, each from the secret of its name, to the fleet step only", () => {
    const example = JSON.parse(fs.readFileSync(path.join(root, "fleet.example.json"), "utf8"));
    const named = [...Object.values(example.alarms).flatMap((c) => (typeof c === "object" && c ? [(c as { urlEnv: string }).urlEnv] : [])), example.pushgateway.urlEnv].sort();
    const given = Object.entries(fleetStep.env ?? {}).filter(([, v]) => v.includes("secrets.")).map(([k, v]) => {
      expect(v).toBe(`\${{ secrets.${k} }}`);
      return k;
    });
    expect(given.sort()).toEqual(named);
    for (const s of job.steps.filter((x) => x !== fleetStep)) for (const n of named) expect(JSON.stringify(s), s.name).not.toContain(n);
    expect(fleetStep.run).toContain("--send-alarms");
  });

  it("keeps the page, the rows, the metrics and the summary as an artifact, whatever the fleet step's exit", () => {
    const upload = step((s) => s.uses?.startsWith("actions/upload-artifact@") ?? false);
    expect(upload.if).toBe("always()");
    expect(String(upload.with?.path).trim().split("\n").map((p) => path.basename(p.trim())).sort()).toEqual(["fleet.html", "fleet.json", "fleet.prom", "summary.md"]);
    expect(job.steps.indexOf(upload)).toBeGreaterThan(job.steps.indexOf(fleetStep));
  });

  it("fetches only the ledger files, writes nothing to the bucket, and the fleet step builds the ledger and the summary from them", () => {
    const bucket = path.join(dir, "bucket", "agent-maintain");
    const now = new Date();
    writeTenantState(bucket, simulateTenant("acme", "fresh", now, { historyDays: 20 }));
    writeTenantState(bucket, simulateTenant("globex", "stale", now, { historyDays: 20 }));
    fs.writeFileSync(path.join(bucket, "acme", "state.json"), "{}");
    // A checkout of the project with the operator's fleet config committed at its root.
    const checkout = path.join(dir, "checkout");
    fs.mkdirSync(checkout);
    for (const f of ["package.json", "node_modules", "scripts", "tools", "config"]) fs.symlinkSync(path.join(root, f), path.join(checkout, f));
    const config = path.join(checkout, "fleet.config.json");
    fs.writeFileSync(config, JSON.stringify({ format: 1, boxes: [{ name: "box-a", connections: 2 }], tenants: ["acme", "globex"].map((name) => ({ name, box: "box-a", schedule: 86400, grace: 21600 })), drill: { periodDays: 90, budgetPerRun: 2 } }));
    const env = { STATE_BUCKET: "acme-maintenance-state", FAKE_BUCKET: bucket };

    // FLEET_CONFIG must be a path inside the checkout (the rel_path pattern)
    expect(run(fetchStep, { ...env, FLEET_CONFIG: config }, checkout).status).toBe(2);
    expect(run(fetchStep, { ...env, FLEET_CONFIG: "../fleet.config.json" }, checkout).status).toBe(2);
    expect(run(fetchStep, { ...env, FLEET_CONFIG: "missing.json" }, checkout).stderr).toContain("commit the fleet config missing.json");
    fs.rmSync(path.join(dir, "aws.log"), { force: true });
    const fetched = run(fetchStep, { ...env, FLEET_CONFIG: "fleet.config.json" }, checkout);
    expect(fetched.status, fetched.stderr).toBe(0);
    const state = fetched.outputs.state!;
    expect(fs.readFileSync(path.join(dir, "aws.log"), "utf8").trim().split("\n")).toEqual([
      `s3 sync --only-show-errors --exclude * --include */ledger.json --include */ledger-history.jsonl --include */drills.jsonl s3://acme-maintenance-state/agent-maintain/ ${state}/`,
    ]);
    expect(fs.existsSync(path.join(state, "acme", "state.json"))).toBe(false);

    const summary = path.join(dir, "step-summary.md");
    const r = run(fleetStep, { STATE: state, FLEET_CONFIG: "fleet.config.json", GITHUB_STEP_SUMMARY: summary }, checkout);
    expect(r.status).toBe(1); // globex is stale
    expect(fs.readFileSync(summary, "utf8")).toMatch(/\| \*\*ALARM\*\* \| globex \|/);
    expect(fs.readdirSync(path.join(dir, "fleet")).sort()).toEqual(["fleet.html", "fleet.json", "fleet.prom", "summary.md"]);
  }, 120_000);

  it("fails when the fleet config misses a tenant of the prod stack (unless one tenant was chosen by hand)", () => {
    const config = path.join(dir, "fleet.json");
    fs.writeFileSync(config, JSON.stringify({ tenants: [{ name: "acme" }, { name: "globex" }] }));
    const env = { FLEET_CONFIG: config, PROD_TENANTS: '["acme","globex","initech"]' };
    const missing = run(coverStep, { ...env, TENANT_INPUT: "" });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`tenants of the prod stack missing from ${config} (no ledger row, no alarm): initech`);
    expect(run(coverStep, { ...env, TENANT_INPUT: "acme" }).status).toBe(0);
    expect(run(coverStep, { ...env, TENANT_INPUT: "", PROD_TENANTS: '["globex","acme"]' }).status).toBe(0);
  });
});
