// The local drill, run once for real (as root, with the cached rootfs and wheelhouse; the first run
// builds them): two tenants on one storage box, each home written by the real agent on its own
// agent host, backed up while the agent works, restored on a fresh box and found healthy by the
// agent's own checks. Asserts on the JSON report it prints, and that nothing of the run is left.
import { beforeAll, describe, expect, it } from "vitest";
import { agentHealthCheck } from "../../components/drill-command";
import { drillReportFields } from "../../components/drill-report";
import { findLeftovers } from "../../drill/lib/leftovers";
import { agentPackage, agentVersion } from "../../drill/lib/real-agent";
import { type LocalDrillReport } from "../../drill/lib/report";
import { runDrillForReport } from "./run-drill";

describe("npm run drill:local -- --tenants 2", () => {
  let code: number | null;
  let stderr: string;
  let report: LocalDrillReport;

  beforeAll(async () => {
    ({ code, stderr, report } = await runDrillForReport(["--tenants", "2"]));
  }, 900_000);

  it("ends healthy, with exit 0, and says why not otherwise", () => {
    const failed = [...report.tenants.flatMap((t) => t.checks.map((c) => ({ ...c, name: `${t.tenant}/${c.name}` }))), ...report.checks].filter((c) => !c.ok);
    expect(report.error, stderr.slice(-3000)).toBeUndefined();
    expect(failed).toEqual([]);
    expect(report.healthy).toBe(true);
    expect(code).toBe(0);
  });

  it("reports per tenant the fields of the cloud drill's report", () => {
    expect(report.tenants.map((t) => t.tenant)).toEqual(["tenant-a", "tenant-b"]);
    for (const t of report.tenants) {
      expect(Object.keys(t).sort()).toEqual([...drillReportFields].sort());
      expect(t.archive.startsWith(`${t.tenant}-`)).toBe(true);
      expect(t.bytes).toBeGreaterThan(0);
      expect(t.restoreSeconds).toBeGreaterThan(0);
      expect(Date.parse(t.finishedAt)).toBeGreaterThanOrEqual(Date.parse(t.startedAt));
    }
  });

  it("ran every step of the loop for each tenant", () => {
    const expected = [
      "install", "install:idempotent", "timer:scheduled", "backup:systemd", "backup:incremental", "backup:metrics",
      "isolation:own-repo", "isolation:other-path", "snapshot:taken", "snapshot:tenant-cannot-alter",
      "agent:writing", "archive", "restore", "verify", "verify:agent-check", "agent:turn", "secrets:none-restored",
    ];
    expect(report.tenants).toHaveLength(2);
    for (const t of report.tenants) {
      const names = t.checks.map((c) => c.name);
      for (const name of expected) expect(names, `${t.tenant} lacks ${name}`).toContain(name);
      expect(names.some((n) => n.startsWith("verify:store:"))).toBe(true);
    }
  });

  it("ran the real agent, pinned, and its own checks decided that the restored home is healthy", () => {
    expect(report.tenants).toHaveLength(2);
    for (const t of report.tenants) {
      expect(t.agent).toEqual({ name: agentPackage, version: agentVersion() });
      expect(t.checks.find((c) => c.name === "verify:agent-check")?.detail).toBe(`${agentHealthCheck}: exit 0`);
      // The agent kept taking turns while the two backups ran.
      expect(t.checks.find((c) => c.name === "agent:writing")?.detail).toMatch(/^hermes-turns\.service active; sessions (\d+) -> (\d+)/);
    }
  });

  it("shows that neither tenant's key can read or write the other's repository", () => {
    for (const [t, other] of [["tenant-a", "tenant-b"], ["tenant-b", "tenant-a"]] as const) {
      const checks = report.tenants.find((r) => r.tenant === t)?.checks ?? [];
      for (const kind of ["read-via-own-account", "read-as-other", "write-as-other"]) {
        const c = checks.find((x) => x.name === `isolation:${other}:${kind}`);
        expect(c, `${t} isolation:${other}:${kind}`).toBeDefined();
        expect(c?.ok).toBe(true);
        expect(c?.detail).toContain("refused");
      }
    }
  });

  it("restored the archive the second backup made, with the drill key", () => {
    expect(report.tenants).toHaveLength(2);
    for (const t of report.tenants) {
      const incremental = t.checks.find((c) => c.name === "backup:incremental");
      // "<first> stored N bytes; <second> stored M of its K bytes": the restored archive is the second.
      expect(incremental?.detail).toContain(`; ${t.archive} stored`);
    }
  });

  it("tore everything down: no namespace, veth, process, mount or directory of the run is left", async () => {
    expect(report.checks.find((c) => c.name === "teardown")?.ok).toBe(true);
    const left = await findLeftovers(report.runId);
    expect(left).toEqual({ netns: [], links: [], processes: [], mounts: [], runDir: [] });
  });
});
