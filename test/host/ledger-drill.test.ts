// agent-ledger record-drill: the drill workflow records each drill in the tenant's trusted state.
// A drill report comes from a box the tenant's data ran on, so it is attacker input: a valid report
// (by the drill report format, components/drill-report.ts) is recorded as one bounded line; a
// hostile one is refused whole and nothing is written. No borg here: the ledger's own files only.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeEach, describe, expect, test } from "vitest";
import { drillReportSchema } from "../../components/drill-report";
import { scriptsUnderTest } from "../lib/maintain-fixtures";

const roots: string[] = [];
afterAll(() => {
  for (const r of roots) fs.rmSync(r, { recursive: true, force: true });
});

let stateDir: string;
beforeEach(() => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "ab-ledger-drill-"));
  roots.push(root);
  stateDir = path.join(root, "state");
  fs.mkdirSync(stateDir, { mode: 0o700 });
  fs.writeFileSync(path.join(stateDir, "ledger.json"), JSON.stringify({ format: 1, tenant: "acme" }));
});

const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();
function report(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    tenant: "acme",
    archive: "acme-2026-11-30T03:17:00",
    archiveAgeSeconds: 5400.25,
    bytes: 123456,
    backupSeconds: 12.5,
    restoreSeconds: 48,
    checks: [{ name: "sqlite:state.db", ok: true, detail: "integrity ok" }, { name: "agent:doctor", ok: true, detail: "" }],
    healthy: true,
    agent: { name: "hermes-agent", version: "0.9.1" },
    startedAt: minutesAgo(10),
    finishedAt: minutesAgo(5),
    ...over,
  };
}

function record(body: string | Record<string, unknown>) {
  const file = path.join(path.dirname(stateDir), `report-${Math.random().toString(16).slice(2)}.json`);
  fs.writeFileSync(file, typeof body === "string" ? body : JSON.stringify(body));
  const r = spawnSync(path.join(scriptsUnderTest, "agent-ledger"), ["record-drill", "--state-dir", stateDir, "--report", file], {
    encoding: "utf8",
    timeout: 60_000,
  });
  if (r.error) throw r.error;
  return r;
}
const drills = () =>
  fs.existsSync(path.join(stateDir, "drills.jsonl"))
    ? fs.readFileSync(path.join(stateDir, "drills.jsonl"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l))
    : [];

describe("record-drill", () => {
  test("a valid report becomes one line: time, archive, health, data loss window, restore time, agent", () => {
    // Finished an hour ago, written with a +01:00 offset and a fraction: recorded in UTC seconds.
    const finished = Math.floor(Date.now() / 1000) * 1000 - 3_600_000;
    const inPlusOne = new Date(finished + 3_600_000).toISOString().slice(0, 19);
    const body = report({ finishedAt: `${inPlusOne}.5+01:00`, startedAt: new Date(finished - 600_000).toISOString() });
    expect(drillReportSchema.safeParse(body).success).toBe(true);
    const r = record(body);
    expect(r.status, r.stderr).toBe(0);
    expect(drills()).toEqual([
      { time: new Date(finished).toISOString().replace(".000Z", "Z"), tenant: "acme", archive: "acme-2026-11-30T03:17:00", healthy: true, dataLossWindowSeconds: 5400.25, restoreSeconds: 48, agent: { name: "hermes-agent", version: "0.9.1" } },
    ]);
    expect(fs.statSync(path.join(stateDir, "drills.jsonl")).mode & 0o777).toBe(0o600);
  });

  test("an unhealthy drill without an agent is recorded as such", () => {
    const { agent: _agent, ...body } = report({ healthy: false, checks: [{ name: "restore", ok: false, detail: "exit 1" }] });
    expect(record(body).status).toBe(0);
    expect(drills()[0]).toMatchObject({ healthy: false, agent: null });
  });

  test("the file keeps the last 1000 drills", () => {
    const old = Array.from({ length: 1000 }, (_, i) => JSON.stringify({ time: "2026-01-01T00:00:00Z", archive: `acme-old-${i}` }));
    fs.writeFileSync(path.join(stateDir, "drills.jsonl"), `${old.join("\n")}\n`);
    expect(record(report()).status).toBe(0);
    const all = drills();
    expect(all).toHaveLength(1000);
    expect(all[0].archive).toBe("acme-old-1");
    expect(all.at(-1).archive).toBe("acme-2026-11-30T03:17:00");
  });

  // Each is invalid by the drill report format too (the schema is the oracle), except those marked
  // as record-drill's own rules (another tenant's state, times from the future or long ago).
  const hostile: [string, string | Record<string, unknown>, RegExp, boolean][] = [
    ["not JSON", "{\"tenant\": \"acme\",", /not JSON/, true],
    ["not an object", "[1, 2, 3]", /not a JSON object/, true],
    ["an unknown field", report({ extra: "$(touch /tmp/pwned)" }), /unknown field "extra"/, true],
    ["a tenant with shell characters", report({ tenant: "acme;rm -rf /" }), /tenant is not a tenant name/, true],
    ["an archive name with a path", report({ archive: "../../etc/passwd" }), /archive is not an archive name/, true],
    ["a control character in the archive name", report({ archive: "acme-2026\n-x" }), /archive is not an archive name/, true],
    ["negative seconds", report({ archiveAgeSeconds: -1 }), /archiveAgeSeconds is not a number of seconds/, true],
    ["seconds as a string", report({ restoreSeconds: "48" }), /restoreSeconds is not a number of seconds/, true],
    ["a huge number", report({ restoreSeconds: 1e300 }), /restoreSeconds is not a number of seconds/, false],
    ["fractional bytes", report({ bytes: 1.5 }), /bytes is not a byte count/, true],
    ["healthy with a failed check", report({ checks: [{ name: "restore", ok: false, detail: "" }] }), /healthy must be true exactly when/, true],
    ["no checks", report({ checks: [] }), /checks is not a list/, true],
    ["a check of the wrong shape", report({ checks: [{ name: "x", ok: "yes", detail: 1 }] }), /check 0 is not/, true],
    ["an agent with an extra field", report({ agent: { name: "hermes", version: "1", cmd: "sh" } }), /agent is not/, true],
    ["a missing field", (({ healthy: _h, ...rest }) => rest)(report()), /missing field healthy/, true],
    ["a time that is no time", report({ startedAt: "yesterday" }), /startedAt is not an ISO 8601 time/, true],
    ["finished before it started", report({ startedAt: minutesAgo(1), finishedAt: minutesAgo(5) }), /finishedAt is before startedAt/, true],
    ["finished in the future", report({ finishedAt: new Date(Date.now() + 86_400_000).toISOString() }), /ahead of this clock/, false],
    ["finished years ago", report({ startedAt: "2020-01-01T00:00:00Z", finishedAt: "2020-01-01T01:00:00Z" }), /more than a year ago/, false],
    ["another tenant", report({ tenant: "other" }), /not this state directory's \(acme\)/, false],
  ];
  for (const [what, body, message, schemaRejects] of hostile) {
    test(`refuses a report with ${what}, and writes nothing`, () => {
      fs.writeFileSync(path.join(stateDir, "drills.jsonl"), '{"kept":true}\n');
      if (schemaRejects) {
        const parsed = typeof body === "string" ? (() => { try { return JSON.parse(body); } catch { return undefined; } })() : body;
        expect(drillReportSchema.safeParse(parsed).success).toBe(false);
      }
      const r = record(body);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/nothing was recorded|refused/);
      expect(drills()).toEqual([{ kept: true }]);
    });
  }

  test("refuses a report larger than 1 MiB", () => {
    const r = record(report({ checks: [{ name: "big", ok: true, detail: "x".repeat(1_100_000) }] }));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/more than 1048576/);
    expect(drills()).toEqual([]);
  });

  test("refuses a state directory that is not an absolute path of plain characters", () => {
    const r = spawnSync(path.join(scriptsUnderTest, "agent-ledger"), ["record-drill", "--state-dir", "state;x", "--report", "/dev/null"], { encoding: "utf8" });
    expect(r.status).toBe(2);
  });
});
