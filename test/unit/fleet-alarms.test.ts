// The fleet's alarms against a loopback HTTP receiver this test starts: the Slack-compatible body,
// the ntfy message, a healthchecks-style ping per tenant (success when fine, /fail when in alarm),
// no secret in any body, header or report line, and a failing, unreachable or hanging receiver
// reported without stopping the others.
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { parseFleetConfig } from "../../config/fleet";
import { main, build } from "../../tools/fleet";
import { sendAlarms } from "../../tools/fleet-alarms";
import { simulateTenant, writeTenantState, type Scenario } from "../../tools/fleet-simulate";

interface Received { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }

const SECRETS = { slack: "T0SLACKSECRET/B0HOOK/xoxsecrettoken", ntfy: "topic-secret-4f9a2c", hc: "ping-key-secret-77e1" };
const now = new Date("2026-11-30T06:00:00Z");
let server: http.Server;
let port: number;
let received: Received[];
const hanging: http.ServerResponse[] = [];
let root: string;
let stateRoot: string;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const url = req.url ?? "";
      received.push({ method: req.method ?? "", url, headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      if (url.includes("/hang")) return void hanging.push(res); // never answered: the sender must time out
      res.statusCode = url.includes("/globex") || url.startsWith("/broken") ? 500 : 200;
      res.end("OK");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(async () => {
  for (const r of hanging) r.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  received = [];
  root = fs.mkdtempSync(path.join(os.tmpdir(), "fleet-alarms-"));
  stateRoot = path.join(root, "state");
  const tenants: [string, Scenario][] = [["acme", "fresh"], ["globex", "stale"], ["initech", "tampered"], ["hooli", "never-drilled"]];
  for (const [t, s] of tenants) writeTenantState(stateRoot, simulateTenant(t, s, now, { historyDays: 30 }));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const config = (timeoutSeconds = 5) => parseFleetConfig({
  format: 1,
  boxes: [{ name: "box-a", connections: 2 }],
  tenants: ["acme", "globex", "initech", "hooli"].map((name) => ({ name, box: "box-a", schedule: 86400, grace: 21600 })),
  drill: { periodDays: 90, budgetPerRun: 2 },
  alarms: { slack: { urlEnv: "FLEET_SLACK" }, ntfy: { urlEnv: "FLEET_NTFY" }, healthchecks: { urlEnv: "FLEET_HC" }, timeoutSeconds },
});
const env = (over: Record<string, string | undefined> = {}): NodeJS.ProcessEnv => ({
  FLEET_SLACK: `http://127.0.0.1:${port}/slack/${SECRETS.slack}`,
  FLEET_NTFY: `http://127.0.0.1:${port}/ntfy/${SECRETS.ntfy}`,
  FLEET_HC: `http://127.0.0.1:${port}/hc/${SECRETS.hc}/`,
  ...over,
});

/** No secret (nor any distinctive part of one) in a text that leaves the program. */
function expectNoSecret(text: string): void {
  for (const s of Object.values(SECRETS)) {
    expect(text).not.toContain(s);
    for (const part of s.split("/")) expect(text).not.toContain(part);
  }
}
const everythingSent = (r: Received[]) => r.map((x) => `${x.body}\n${JSON.stringify(x.headers)}`).join("\n");

describe("alarms", () => {
  it("sends a Slack body and an ntfy message naming the tenants in alarm, and a ping per tenant", async () => {
    const fleet = build(config(), stateRoot, now).fleet;
    const deliveries = await sendAlarms(fleet, config(), env());
    expect(deliveries.filter((d) => !d.ok)).toEqual([{ channel: "healthchecks", tenant: "globex", ok: false, detail: "HTTP 500" }]);

    const slack = received.filter((r) => r.url.startsWith("/slack/"));
    expect(slack).toHaveLength(1);
    expect(slack[0]!.method).toBe("POST");
    expect(slack[0]!.headers["content-type"]).toBe("application/json");
    const body = JSON.parse(slack[0]!.body) as { text: string };
    expect(Object.keys(body)).toEqual(["text"]);
    expect(body.text).toMatch(/^Backup fleet: 2 tenant\(s\) in alarm, 1 warn, 1 ok/);
    expect(body.text).toMatch(/• globex \(box-a\): newest archive is 4\.1 d old/);
    expect(body.text).toMatch(/• initech \(box-a\): tamper check .*vanished since the trusted state/);
    expect(body.text).not.toMatch(/acme|hooli/);

    const ntfy = received.filter((r) => r.url.startsWith("/ntfy/"));
    expect(ntfy).toHaveLength(1);
    expect(ntfy[0]!.headers.title).toBe("Backup fleet: 2 tenant(s) in alarm");
    expect(ntfy[0]!.headers.priority).toBe("urgent");
    expect(ntfy[0]!.body.split("\n").map((l) => l.split(" ")[0])).toEqual(["globex", "initech"]);

    const pings = received.filter((r) => r.url.startsWith("/hc/")).map((r) => [r.url.replace(`/hc/${SECRETS.hc}/`, ""), r.body.split("\n")[0]]).sort();
    expect(pings).toEqual([["acme", "acme: ok"], ["globex/fail", "globex: alarm"], ["hooli", "hooli: warn"], ["initech/fail", "initech: alarm"]]);
    expectNoSecret(everythingSent(received));
    expectNoSecret(JSON.stringify(deliveries));
  });

  it("sends no Slack or ntfy message when nothing is in alarm, but still pings every tenant", async () => {
    for (const t of ["globex", "initech"]) fs.rmSync(path.join(stateRoot, t), { recursive: true });
    const c = config();
    c.tenants = c.tenants.filter((t) => t.name === "acme" || t.name === "hooli");
    const deliveries = await sendAlarms(build(c, stateRoot, now).fleet, c, env());
    expect(deliveries.every((d) => d.ok)).toBe(true);
    expect(received.map((r) => r.url.replace(`/hc/${SECRETS.hc}/`, "")).sort()).toEqual(["acme", "hooli"]);
  });

  it("a failing, unreachable or hanging receiver is reported and does not stop the others", async () => {
    // A port nothing listens on: bind one, then close it.
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const deadPort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const c = config(1);
    const started = Date.now();
    const deliveries = await sendAlarms(build(c, stateRoot, now).fleet, c, env({
      FLEET_SLACK: `http://127.0.0.1:${deadPort}/slack/${SECRETS.slack}`,
      FLEET_NTFY: `http://127.0.0.1:${port}/hang/${SECRETS.ntfy}`,
    }));
    expect(Date.now() - started).toBeLessThan(30_000); // bounded: the 1 s timeout, not forever
    const by = (ch: string, tenant?: string) => deliveries.find((d) => d.channel === ch && d.tenant === tenant);
    expect(by("slack")).toEqual({ channel: "slack", ok: false, detail: "not delivered (ECONNREFUSED)" });
    expect(by("ntfy")).toEqual({ channel: "ntfy", ok: false, detail: "timed out after 1 s" });
    expect(by("healthchecks", "globex")).toMatchObject({ ok: false, detail: "HTTP 500" });
    for (const t of ["acme", "initech", "hooli"]) expect(by("healthchecks", t), t).toMatchObject({ ok: true });
    expectNoSecret(JSON.stringify(deliveries));
  });

  it("a channel whose variable is unset or not an http(s) URL is reported by the variable's name only", async () => {
    const c = config();
    const deliveries = await sendAlarms(build(c, stateRoot, now).fleet, c, env({ FLEET_SLACK: undefined, FLEET_NTFY: `file:///etc/${SECRETS.ntfy}` }));
    expect(deliveries.find((d) => d.channel === "slack")).toEqual({ channel: "slack", ok: false, detail: "FLEET_SLACK is not set" });
    expect(deliveries.find((d) => d.channel === "ntfy")).toEqual({ channel: "ntfy", ok: false, detail: "FLEET_NTFY is not an http(s) URL" });
    expect(deliveries.filter((d) => d.channel === "healthchecks")).toHaveLength(4);
    expectNoSecret(JSON.stringify(deliveries));
  });

  it("npm run fleet --send-alarms reports deliveries without printing a secret, and exits 1 on a failed one", async () => {
    const cfg = path.join(root, "fleet.json");
    fs.writeFileSync(cfg, JSON.stringify({ ...config(), thresholds: undefined }));
    const err: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((s) => { err.push(String(s)); return true; });
    const out = path.join(root, "out");
    try {
      const code = await main(["--state-root", stateRoot, "--config", cfg, "--out", out, "--now", now.toISOString(), "--send-alarms", "--pushgateway", `http://127.0.0.1:${port}/broken`], env());
      expect(code).toBe(1);
    } finally {
      spy.mockRestore();
    }
    const text = err.join("");
    expect(text).toContain("fleet: alarm slack: sent (HTTP 200)");
    expect(text).toContain("fleet: healthchecks: 3 of 4 ping(s) delivered");
    expect(text).toContain("fleet: healthchecks globex: HTTP 500");
    expect(text).toContain("fleet: pushgateway answered HTTP 500");
    const pushed = received.find((r) => r.url === "/broken/metrics/job/agent_backups_fleet")!;
    expect(pushed.method).toBe("PUT");
    expect(pushed.body).toContain('agent_backups_fleet_status{tenant="globex",box="box-a"} 2');
    expectNoSecret(text);
    for (const f of fs.readdirSync(out)) expectNoSecret(fs.readFileSync(path.join(out, f), "utf8"));
  });

  it("pushes the metrics to the Pushgateway the config's variable names, and says so without its URL", async () => {
    const cfg = path.join(root, "fleet.json");
    const secretPath = `/gw-${SECRETS.hc}`;
    fs.writeFileSync(cfg, JSON.stringify({ ...config(), alarms: undefined, pushgateway: { urlEnv: "FLEET_PUSH" } }));
    const err: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((s) => { err.push(String(s)); return true; });
    try {
      await main(["--state-root", stateRoot, "--config", cfg, "--out", path.join(root, "out"), "--now", now.toISOString()], { FLEET_PUSH: `http://127.0.0.1:${port}${secretPath}` });
      await main(["--state-root", stateRoot, "--config", cfg, "--out", path.join(root, "out"), "--now", now.toISOString()], {});
    } finally {
      spy.mockRestore();
    }
    expect(received.map((r) => `${r.method} ${r.url}`)).toEqual([`PUT ${secretPath}/metrics/job/agent_backups_fleet`]);
    expect(err.join("")).toContain("fleet: pushgateway: pushed\n");
    expect(err.join("")).toContain("fleet: pushgateway: FLEET_PUSH is not set: not pushed\n");
    expectNoSecret(err.join(""));
  });
});
