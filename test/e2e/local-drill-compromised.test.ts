// The compromised-host scenario, run once for real: the host's append-only push key deletes,
// prunes and changes the passphrase; the snapshot and the escrowed key export bring it all back.
import { beforeAll, describe, expect, it } from "vitest";
import { findLeftovers } from "../../drill/lib/leftovers";
import { type LocalDrillReport } from "../../drill/lib/report";
import { runDrillForReport } from "./run-drill";

describe("npm run drill:local -- --scenario compromised-host", () => {
  let report: LocalDrillReport;
  let code: number | null;
  let stderr: string;

  beforeAll(async () => {
    ({ code, stderr, report } = await runDrillForReport(["--scenario", "compromised-host"]));
  }, 900_000);

  it("shows the attack worked through the append-only key, what survived, and the recovery", () => {
    expect(report.scenario).toBe("compromised-host");
    expect(report.tenants).toHaveLength(1);
    const checks = report.tenants[0]?.checks ?? [];
    for (const name of ["attack:append-only-key-ran", "attack:damage-visible", "survived:snapshot", "recovered:key", "recovered:rollback", "recovered:drill"]) {
      expect(checks.find((c) => c.name === name), `${name}\n${stderr.slice(-3000)}`).toMatchObject({ ok: true });
    }
    // The archive restored after recovery is the one the attacker deleted.
    expect(checks.find((c) => c.name === "recovered:drill")?.detail).toContain(`restored ${report.tenants[0]?.archive}`);
  });

  it("is healthy, exits 0 and leaves nothing behind", async () => {
    expect(report.error).toBeUndefined();
    expect(report.healthy).toBe(true);
    expect(code).toBe(0);
    expect(await findLeftovers(report.runId)).toEqual({ netns: [], links: [], processes: [], mounts: [], runDir: [] });
  });
});
