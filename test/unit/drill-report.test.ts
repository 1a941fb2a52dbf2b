import { describe, expect, it } from "vitest";
import { drillReportFields, drillReportSchema, parseDrillReport } from "../../components/drill-report";

const good = {
  tenant: "acme",
  archive: "acme-2026-11-25T10:00:00",
  archiveAgeSeconds: 42,
  bytes: 123456,
  backupSeconds: 1.25,
  restoreSeconds: 2.5,
  checks: [
    { name: "restore", ok: true, detail: "restored" },
    { name: "verify:soul-md", ok: true, detail: "sha256 matches" },
  ],
  healthy: true,
  agent: { name: "hermes-agent", version: "0.19.0" },
  startedAt: "2026-11-25T10:00:42Z",
  finishedAt: "2026-11-25T10:00:50Z",
};

describe("drill report schema", () => {
  it("accepts a healthy report and lists the fields both drills share", () => {
    expect(parseDrillReport(JSON.stringify(good))).toEqual(good);
    expect(drillReportFields).toEqual([
      "tenant", "archive", "archiveAgeSeconds", "bytes", "backupSeconds", "restoreSeconds", "checks", "healthy", "agent", "startedAt", "finishedAt",
    ]);
  });

  it("names the agent and its version, always, and refuses odd ones", () => {
    const { agent: _agent, ...noAgent } = good;
    expect(() => parseDrillReport(JSON.stringify(noAgent))).toThrow(/agent/);
    const none = { ...good, agent: { name: "none", version: "none" } };
    expect(parseDrillReport(JSON.stringify(none))).toEqual(none);
    expect(() => parseDrillReport(JSON.stringify({ ...good, agent: { name: "hermes-agent" } }))).toThrow(/version/);
    expect(() => parseDrillReport(JSON.stringify({ ...good, agent: { name: "Hermes Agent", version: "1" } }))).toThrow(/name/);
    expect(() => parseDrillReport(JSON.stringify({ ...good, agent: { name: "hermes-agent", version: "1; rm" } }))).toThrow(/version/);
    expect(() => parseDrillReport(JSON.stringify({ ...good, agent: { name: "hermes-agent", version: "1", extra: 1 } }))).toThrow(/extra/);
  });

  it("refuses healthy=true with a failed check, and healthy=false with none", () => {
    const failed = { ...good, checks: [...good.checks, { name: "agent:service", ok: false, detail: "inactive" }] };
    expect(drillReportSchema.safeParse(failed).success).toBe(false);
    expect(drillReportSchema.safeParse({ ...failed, healthy: false }).success).toBe(true);
    expect(drillReportSchema.safeParse({ ...good, healthy: false }).success).toBe(false);
  });

  it("refuses missing or extra fields, bad names and negative numbers", () => {
    const { bytes: _bytes, ...noBytes } = good;
    expect(() => parseDrillReport(JSON.stringify(noBytes))).toThrow(/bytes/);
    expect(() => parseDrillReport(JSON.stringify({ ...good, extra: 1 }))).toThrow(/extra/);
    expect(() => parseDrillReport(JSON.stringify({ ...good, tenant: "Bad Tenant" }))).toThrow(/tenant/);
    expect(() => parseDrillReport(JSON.stringify({ ...good, restoreSeconds: -1 }))).toThrow(/restoreSeconds/);
    expect(() => parseDrillReport(JSON.stringify({ ...good, checks: [] }))).toThrow(/checks/);
    expect(() => parseDrillReport(JSON.stringify({ ...good, finishedAt: "2026-11-25T09:00:00Z" }))).toThrow(/finishedAt/);
    expect(() => parseDrillReport("not json")).toThrow(/not JSON/);
  });
});
