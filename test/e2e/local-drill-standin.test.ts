// `--agent standin` keeps the drill for a machine that cannot reach the package index: a sample
// home (test/fixtures/make-agent-home) with a live writer, and the stand-in agent on the restore box.
import { beforeAll, describe, expect, it } from "vitest";
import { findLeftovers } from "../../drill/lib/leftovers";
import { type LocalDrillReport } from "../../drill/lib/report";
import { runDrillForReport } from "./run-drill";

describe("npm run drill:local -- --agent standin", () => {
  let report: LocalDrillReport;
  let code: number | null;
  let stderr: string;

  beforeAll(async () => {
    ({ code, stderr, report } = await runDrillForReport(["--agent", "standin"]));
  }, 900_000);

  it("restores the sample home and the stand-in agent finds it healthy", () => {
    expect(report.error, stderr.slice(-3000)).toBeUndefined();
    const [t] = report.tenants;
    expect(t?.agent).toEqual({ name: "agent-standin", version: "fixture" });
    for (const name of ["agent:service", "secrets:none-restored", "verify:agent-check"]) {
      expect(t?.checks.find((c) => c.name === name), name).toMatchObject({ ok: true });
    }
    expect(t?.checks.find((c) => c.name === "verify:agent-check")?.detail).toContain("agent-standin --check");
    expect(t?.checks.some((c) => c.name === "agent:turn" || c.name === "agent:writing")).toBe(false);
    expect(stderr).not.toContain("wheelhouse");
    expect(report.healthy).toBe(true);
    expect(code).toBe(0);
  });

  it("leaves nothing behind", async () => {
    expect(await findLeftovers(report.runId)).toEqual({ netns: [], links: [], processes: [], mounts: [], runDir: [] });
  });
});
