// The fleet's recoverability ledger (tools/fleet*.ts): each tenant state an operator must tell
// apart (fresh, stale, tampered, shrunk, never drilled), the state files attacked (bad types,
// links, oversize, another tenant's name, hostile strings), the drill rota, and the outputs.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { parseFleetConfig, type FleetConfig } from "../../config/fleet";
import { nextDrills } from "../../tools/fleet-aggregate";
import { build, main } from "../../tools/fleet";
import { simulateTenant, writeTenantState, type Scenario } from "../../tools/fleet-simulate";
import { renderPage } from "../../tools/fleet-page";
import { renderProm, renderSummary } from "../../tools/fleet-report";

const now = new Date("2026-11-30T06:00:00Z");
const DAY = 86400_000;
let root: string;
let stateRoot: string;

function config(tenants: string[], extra: Record<string, unknown> = {}): FleetConfig {
  return parseFleetConfig({
    format: 1,
    boxes: [{ name: "box-a", connections: 4 }, { name: "box-b", connections: 4 }],
    tenants: tenants.map((name, i) => ({ name, box: i % 2 ? "box-b" : "box-a", schedule: 86400, grace: 21600 })),
    drill: { periodDays: 90, budgetPerRun: 2 },
    ...extra,
  });
}

const scenario = (tenant: string, s: Scenario, historyDays = 60) => writeTenantState(stateRoot, simulateTenant(tenant, s, now, { historyDays }));
const rowOf = (c: FleetConfig, tenant: string) => build(c, stateRoot, now).fleet.tenants.find((r) => r.tenant === tenant)!;
const codes = (r: { reasons: { code: string }[] }) => r.reasons.map((x) => x.code).sort();
const ledgerFile = (t: string) => path.join(stateRoot, t, "ledger.json");
const editLedger = (t: string, f: (l: any) => void) => {
  const l = JSON.parse(fs.readFileSync(ledgerFile(t), "utf8"));
  f(l);
  fs.writeFileSync(ledgerFile(t), JSON.stringify(l));
};

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), "fleet-ledger-"));
  stateRoot = path.join(root, "state");
  fs.mkdirSync(stateRoot);
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

describe("one row per tenant", () => {
  it("a fresh tenant is ok, with its newest archive's age, last drill, size and growth", () => {
    scenario("acme", "fresh");
    const r = rowOf(config(["acme"]), "acme");
    expect(r.status).toBe("ok");
    expect(r.reasons).toEqual([]);
    expect(r.stale).toBe(false);
    // The simulated newest archive was made 3 h ago and first seen 2 h ago: the older time counts.
    expect(r.newestArchive?.ageSeconds).toBe(3 * 3600);
    expect(r.tamper?.verdict).toBe("ok");
    expect(r.lastDrill).toMatchObject({ time: new Date(now.getTime() - 10 * DAY).toISOString(), healthy: true });
    expect(r.lastDrill!.dataLossWindowSeconds).toBeGreaterThan(0);
    expect(r.repo!.growth7dBytes).toBeGreaterThan(0);
    expect(r.repo!.growth30dBytes).toBeGreaterThan(r.repo!.growth7dBytes!);
    expect(r.nextDrill).toMatchObject({ run: 0, overdue: false });
  });

  it("a tenant that stopped backing up is stale and in alarm", () => {
    scenario("acme", "stale");
    const r = rowOf(config(["acme"]), "acme");
    expect(r.status).toBe("alarm");
    expect(r.stale).toBe(true);
    expect(codes(r)).toEqual(["stale"]);
    expect(r.newestArchive!.ageSeconds).toBeGreaterThan(r.staleAfterSeconds);
  });

  it("staleness is schedule plus grace, per tenant", () => {
    scenario("acme", "fresh"); // newest archive 3 h old
    const c = config(["acme"]);
    c.tenants[0]!.schedule = 3600;
    c.tenants[0]!.grace = 3599;
    expect(rowOf(c, "acme").stale).toBe(true);
    c.tenants[0]!.grace = 7201;
    expect(rowOf(c, "acme").stale).toBe(false);
  });

  it("a host clock set ahead does not make an old archive look fresh: the storage side's first sighting counts", () => {
    scenario("acme", "fresh");
    editLedger("acme", (l) => {
      l.newestArchive.time = new Date(now.getTime() + 3600_000).toISOString();
      l.newestArchive.firstSeen = new Date(now.getTime() - 5 * DAY).toISOString();
    });
    const r = rowOf(config(["acme"]), "acme");
    expect(r.stale).toBe(true);
    expect(r.newestArchive!.ageSeconds).toBe(5 * 86400);
  });

  it("a tampered repository alarms with the first finding", () => {
    scenario("acme", "tampered");
    const r = rowOf(config(["acme"]), "acme");
    expect(r.status).toBe("alarm");
    expect(codes(r)).toEqual(["tampered"]);
    expect(r.reasons[0]!.text).toContain("vanished since the trusted state");
  });

  it("a tamper verdict with thousands of findings (one per junk archive) is read, counted, and kept short", () => {
    scenario("acme", "tampered");
    editLedger("acme", (l) => { l.tamper.findings = Array.from({ length: 5000 }, (_, i) => `junk archive acme-${i}`); });
    const r = rowOf(config(["acme"]), "acme");
    expect(codes(r)).toEqual(["tampered"]);
    expect(r.reasons[0]!.text).toMatch(/5000 finding\(s\), first: junk archive acme-0$/);
    expect(r.tamper!.findings).toHaveLength(20);
  });

  it("a shrunk archive alarms and its pin is shown until released", () => {
    scenario("acme", "shrunk");
    const r = rowOf(config(["acme"]), "acme");
    expect(r.status).toBe("alarm");
    expect(codes(r)).toEqual(["pinned", "shrunk"]);
    expect(r.reasons.find((x) => x.code === "shrunk")!.text).toContain("state.db messages 18000 -> 0");
    expect(r.pins).toHaveLength(1);
  });

  it("a never-drilled tenant warns and is first in the rota", () => {
    scenario("acme", "fresh");
    scenario("globex", "never-drilled");
    const f = build(config(["acme", "globex"]), stateRoot, now).fleet;
    const g = f.tenants.find((r) => r.tenant === "globex")!;
    expect(g.status).toBe("warn");
    expect(codes(g)).toEqual(["never-drilled"]);
    expect(g.lastDrill).toBeNull();
    expect(g.nextDrill).toMatchObject({ run: 0, overdue: true });
    expect(nextDrills(f.tenants, 1)).toEqual(["globex"]);
  });

  it("an unhealthy last drill alarms, and an old drill alarms past the tenant's limit", () => {
    scenario("acme", "unhealthy-drill");
    expect(codes(rowOf(config(["acme"]), "acme"))).toEqual(["drill-unhealthy"]);
    scenario("globex", "fresh"); // last drill 10 days ago
    const c = config(["globex"]);
    c.tenants[0]!.thresholds = { drillMaxAgeDays: 9 };
    expect(codes(rowOf(c, "globex"))).toEqual(["drill-old"]);
    c.tenants[0]!.thresholds = { drillMaxAgeDays: 11 };
    expect(rowOf(c, "globex").status).toBe("ok");
  });

  it("unclassified paths above the limit alarm; an old ledger warns", () => {
    scenario("acme", "fresh");
    editLedger("acme", (l) => { l.unclassified.count = 3; });
    expect(codes(rowOf(config(["acme"]), "acme"))).toEqual(["unclassified"]);
    expect(rowOf(config(["acme"], { thresholds: { unclassifiedMax: 3 } }), "acme").status).toBe("ok");
    editLedger("acme", (l) => { l.unclassified.count = 0; l.updated = new Date(now.getTime() - 4 * DAY).toISOString(); });
    expect(codes(rowOf(config(["acme"]), "acme"))).toEqual(["ledger-old"]);
  });

  it("a failed maintenance run alarms (its ledger carries the facts it could not measure)", () => {
    scenario("acme", "fresh");
    editLedger("acme", (l) => { l.ok = false; l.mode = "maintain"; });
    expect(codes(rowOf(config(["acme"]), "acme"))).toEqual(["maintenance-failed"]);
  });

  it("growth is measured against the history at 7 and 30 days", () => {
    const s = simulateTenant("acme", "fresh", now, { historyDays: 40 });
    s.history = [
      { time: new Date(now.getTime() - 35 * DAY).toISOString(), mode: "observe", archives: 1, newestArchiveTime: null, uniqueCsize: 1000, tamper: null, shrink: null },
      { time: new Date(now.getTime() - 8 * DAY).toISOString(), mode: "observe", archives: 2, newestArchiveTime: null, uniqueCsize: 5000, tamper: null, shrink: null },
      { time: new Date(now.getTime() - 2 * DAY).toISOString(), mode: "observe", archives: 3, newestArchiveTime: null, uniqueCsize: 6000, tamper: null, shrink: null },
    ];
    s.ledger.repo = { uniqueCsize: 9000, totalSize: 99999 };
    writeTenantState(stateRoot, s);
    expect(rowOf(config(["acme"]), "acme").repo).toEqual({ uniqueCsize: 9000, totalSize: 99999, growth7dBytes: 4000, growth30dBytes: 8000 });
  });
});

describe("hostile or broken state never stops the fleet", () => {
  it("refuses a ledger with bad types, another tenant's name, a link or an oversized file; the others are still read", () => {
    for (const t of ["acme", "globex", "initech", "umbrella", "hooli"]) scenario(t, "fresh");
    editLedger("acme", (l) => { l.archives = "12"; l.newestArchive.time = "yesterday"; });
    editLedger("globex", (l) => { l.tenant = "initech"; });
    fs.renameSync(ledgerFile("initech"), path.join(root, "elsewhere.json"));
    fs.symlinkSync(path.join(root, "elsewhere.json"), ledgerFile("initech"));
    fs.writeFileSync(ledgerFile("umbrella"), `{"format":1,"pad":"${"x".repeat(2 * 2 ** 20)}"}`);
    const f = build(config(["acme", "globex", "initech", "umbrella", "hooli", "absent"]), stateRoot, now).fleet;
    const by = Object.fromEntries(f.tenants.map((r) => [r.tenant, r]));
    expect(by.acme!.status).toBe("alarm");
    expect(by.acme!.reasons[0]).toMatchObject({ code: "ledger-refused" });
    expect(by.acme!.reasons[0]!.text).toMatch(/archives: .*expected number.*newestArchive\.time/);
    expect(by.globex!.reasons[0]!.text).toContain('names tenant "initech", not its folder');
    expect(by.initech!.reasons[0]!.text).toContain("symbolic link");
    expect(by.umbrella!.reasons[0]!.text).toMatch(/above the limit/);
    expect(by.absent!.reasons[0]).toMatchObject({ code: "no-ledger" });
    for (const t of ["acme", "globex", "initech", "umbrella", "absent"]) expect(by[t]!.stale, t).toBe(true);
    expect(by.hooli!.status).toBe("ok");
  });

  it("skips bad history and drill lines, counts them, and keeps the good ones", () => {
    scenario("acme", "fresh", 10);
    const h = path.join(stateRoot, "acme", "ledger-history.jsonl");
    fs.appendFileSync(h, 'not json\n{"time":"2026-11-30T05:00:00Z","mode":"rm -rf","archives":-1}\n');
    const drill = { time: "2026-11-29T00:00:00Z", tenant: "acme", archive: null, healthy: false, dataLossWindowSeconds: 1, restoreSeconds: 1, agent: null };
    fs.appendFileSync(path.join(stateRoot, "acme", "drills.jsonl"), `${JSON.stringify({ ...drill, healthy: "yes" })}\n${JSON.stringify({ ...drill, tenant: "globex" })}\n`);
    const r = rowOf(config(["acme"]), "acme");
    expect(r.status).toBe("warn");
    expect(codes(r)).toEqual(["input-problems"]);
    expect(r.inputProblems).toHaveLength(2);
    expect(r.inputProblems[0]).toMatch(/ledger-history.jsonl: 2 line\(s\) refused \(first: line 11: not JSON\)/);
    expect(r.inputProblems[1]).toMatch(/drills.jsonl: 2 line\(s\) refused \(first: line \d+: healthy: .*expected boolean/);
    // The refused lines (a bad type, another tenant's unhealthy drill) are not the last drill.
    expect(r.lastDrill!.healthy).toBe(true);
  });

  it("reports stray folders of the state root without reading them", () => {
    scenario("acme", "fresh");
    scenario("intruder", "tampered");
    fs.mkdirSync(path.join(stateRoot, "../x"), { recursive: true });
    fs.mkdirSync(path.join(stateRoot, "Bad\nName<script>"));
    const f = build(config(["acme"]), stateRoot, now).fleet;
    expect(f.tenants.map((r) => r.tenant)).toEqual(["acme"]);
    expect(f.problems).toContain('state folder "intruder" is not a tenant of the fleet config: ignored');
    const bad = f.problems.find((p) => p.includes("not a valid tenant name"))!;
    expect(bad).not.toMatch(/\n/);
  });

  it("hostile strings are escaped in every output: summary, metrics, page", () => {
    scenario("acme", "tampered");
    const evil = "</script><script>alert(1)</script> | <img src=x onerror=alert(2)> ]](javascript:x) \u2028";
    editLedger("acme", (l) => { l.tamper.findings = [evil]; });
    const { fleet, series } = build(config(["acme"]), stateRoot, now);
    expect(fleet.tenants[0]!.reasons[0]!.text).toContain("</script>");
    const summary = renderSummary(fleet);
    const row = summary.split("\n").find((l) => l.includes("acme"))!;
    expect(row).not.toMatch(/<script|<img/);
    expect(row.split(/(?<!\\)\|/).length).toBe(17); // 15 cells: no cell broken by the finding's "|"
    const page = renderPage(fleet, series);
    expect(page.match(/<\/script/gi)).toHaveLength(2); // the data element's and the script's own
    expect(page).not.toContain("<img");
    expect(page).not.toContain("\u2028");
    expect(renderProm(fleet)).not.toContain("script");
  });
});

describe("the drill rota", () => {
  it("never drilled first (by name), then the oldest healthy drill; an unhealthy drill does not count; empty repositories are skipped", () => {
    const at = (daysAgo: number, healthy = true) => ({ time: new Date(now.getTime() - daysAgo * DAY).toISOString(), archive: null, healthy, dataLossWindowSeconds: 60, restoreSeconds: 60, agent: null });
    const plan: Record<string, ReturnType<typeof at>[]> = {
      dora: [at(50)], beta: [], alpha: [], carl: [at(80), at(5, false)], emil: [at(20)], fred: [],
    };
    for (const [t, drills] of Object.entries(plan)) {
      const s = simulateTenant(t, "fresh", now, { historyDays: 5 });
      s.drills = drills;
      if (t === "fred") { s.ledger.archives = 0; s.ledger.newestArchive = null; }
      writeTenantState(stateRoot, s);
    }
    const f = build(config(Object.keys(plan)), stateRoot, now).fleet;
    expect(nextDrills(f.tenants, 10)).toEqual(["alpha", "beta", "carl", "dora", "emil"]);
    expect(nextDrills(f.tenants, 3)).toEqual(["alpha", "beta", "carl"]);
    const by = Object.fromEntries(f.tenants.map((r) => [r.tenant, r]));
    // budget 2 per run, every 30 days
    expect(by.carl!.nextDrill).toEqual({ run: 1, by: new Date(now.getTime() + 60 * DAY).toISOString(), overdue: false });
    expect(by.emil!.nextDrill!.run).toBe(2);
    expect(by.fred!.nextDrill).toBeNull();
    expect(f.drillPlan).toMatchObject({ runsToDrillAll: 3, daysToDrillAll: 90, withinPeriod: true });
  });
});

describe("config", () => {
  it("takes alarm URLs only from named environment variables and refuses a URL in the file", () => {
    const base = { format: 1, boxes: [{ name: "box-a", connections: 2 }], tenants: [{ name: "acme", box: "box-a", schedule: 3600, grace: 60 }], drill: { periodDays: 30, budgetPerRun: 1 } };
    expect(() => parseFleetConfig({ ...base, alarms: { slack: { url: "https://hooks.example.invalid/T000/B000/XXXX" } } })).toThrow(/Unrecognized key: "url"/);
    expect(() => parseFleetConfig({ ...base, alarms: { slack: { urlEnv: "https://x" } } })).toThrow(/environment variable name/);
    expect(() => parseFleetConfig({ ...base, tenants: [{ name: "acme", box: "box-z", schedule: 3600, grace: 60 }, { name: "acme", box: "box-a", schedule: 3600, grace: 60 }] }))
      .toThrow(/box box-z is not in boxes[\s\S]*tenant acme is listed twice/);
    expect(() => parseFleetConfig({ ...base, tenants: [{ name: "../etc", box: "box-a", schedule: 3600, grace: 60 }] })).toThrow(/not a valid tenant name/);
  });

  it("the worked example is valid", () => {
    const c = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "fleet.example.json"), "utf8"));
    expect(parseFleetConfig(c).tenants.map((t) => t.name)).toEqual(["acme", "globex", "initech"]);
  });
});

describe("npm run fleet", () => {
  it("writes the four outputs, appends the summary for CI, and exits 1 when a tenant is in alarm", async () => {
    scenario("acme", "fresh");
    scenario("globex", "stale");
    const cfg = path.join(root, "fleet.json");
    fs.writeFileSync(cfg, JSON.stringify({ format: 1, boxes: [{ name: "box-a", connections: 2 }], tenants: ["acme", "globex"].map((name) => ({ name, box: "box-a", schedule: 86400, grace: 3600 })), drill: { periodDays: 30, budgetPerRun: 1 } }));
    const out = path.join(root, "out");
    const stepSummary = path.join(root, "step-summary.md");
    fs.writeFileSync(stepSummary, "earlier step\n");
    const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      expect(await main(["--state-root", stateRoot, "--config", cfg, "--out", out, "--now", now.toISOString()], { GITHUB_STEP_SUMMARY: stepSummary })).toBe(1);
      const fleet = JSON.parse(fs.readFileSync(path.join(out, "fleet.json"), "utf8"));
      expect(fleet.counts).toEqual({ ok: 1, warn: 0, alarm: 1 });
      expect(fs.readFileSync(path.join(out, "fleet.prom"), "utf8")).toContain('agent_backups_fleet_stale{tenant="globex",box="box-a"} 1');
      expect(fs.readFileSync(stepSummary, "utf8")).toMatch(/^earlier step\n## Fleet recoverability ledger[\s\S]*\| \*\*ALARM\*\* \| globex \|/);
      expect(fs.readFileSync(path.join(out, "fleet.html"), "utf8")).toMatch(/^<!doctype html>/);

      fs.rmSync(path.join(stateRoot, "globex"), { recursive: true });
      fs.writeFileSync(cfg, JSON.stringify({ format: 1, boxes: [{ name: "box-a", connections: 2 }], tenants: [{ name: "acme", box: "box-a", schedule: 86400, grace: 3600 }], drill: { periodDays: 30, budgetPerRun: 1 } }));
      expect(await main(["--state-root", stateRoot, "--config", cfg, "--out", out, "--now", now.toISOString()], {})).toBe(0);
      fs.writeFileSync(cfg, "{\"format\":2}");
      expect(await main(["--state-root", stateRoot, "--config", cfg, "--out", out], {})).toBe(2);
      expect(stderr.mock.calls.map((c) => String(c[0])).join("")).toMatch(/format: Invalid input: expected 1/);
    } finally {
      stderr.mockRestore();
    }
  });

  it("--next-drills prints the rota's head as JSON, up to the budget", async () => {
    for (const t of ["acme", "globex"]) scenario(t, "fresh");
    scenario("initech", "never-drilled");
    const cfg = path.join(root, "fleet.json");
    fs.writeFileSync(cfg, JSON.stringify({ format: 1, boxes: [{ name: "box-a", connections: 2 }], tenants: ["acme", "globex", "initech"].map((name) => ({ name, box: "box-a", schedule: 86400, grace: 3600 })), drill: { periodDays: 30, budgetPerRun: 1 } }));
    const stdout = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
    try {
      expect(await main(["--next-drills", "--state-root", stateRoot, "--config", cfg, "--budget", "2", "--now", now.toISOString()], {})).toBe(0);
      expect(await main(["--next-drills", "--state-root", stateRoot, "--config", cfg, "--now", now.toISOString()], {})).toBe(0);
      // acme and globex were drilled at the same time: by name
      expect(stdout.mock.calls.map((c) => String(c[0]))).toEqual(['["initech","acme"]\n', '["initech"]\n']);
    } finally {
      stdout.mockRestore();
    }
  });
});
