// fleet.html in a real headless browser (Debian's chromium driven by playwright-core): it renders
// under its own Content-Security-Policy without loading anything else, a header click sorts the
// table, a stale tenant's row is red, each tenant has its three charts, and a hostile string from
// the state stays text. Requires /usr/bin/chromium: without it this test fails, never skips.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseFleetConfig } from "../../config/fleet";
import { build, writeOutputs } from "../../tools/fleet";
import { simulateTenant, writeTenantState, type Scenario } from "../../tools/fleet-simulate";

// playwright-core is loaded untyped: its type declarations need the DOM library, which the
// project's strict Node-only tsconfig leaves out. The little this test uses is typed here.
/* eslint-disable @typescript-eslint/no-explicit-any */
interface Page {
  on(event: "request", f: (r: { url(): string }) => void): void;
  on(event: "pageerror", f: (e: Error) => void): void;
  on(event: "console", f: (m: { type(): string; text(): string }) => void): void;
  goto(url: string): Promise<unknown>;
  click(selector: string): Promise<void>;
  textContent(selector: string): Promise<string | null>;
  getAttribute(selector: string, name: string): Promise<string | null>;
  $eval<R>(selector: string, f: (e: any) => R): Promise<R>;
  $$eval<R>(selector: string, f: (es: any[]) => R): Promise<R>;
  $$(selector: string): Promise<unknown[]>;
  evaluate<R>(f: () => R): Promise<R>;
}
interface Browser { newPage(): Promise<Page>; close(): Promise<void> }
const { chromium } = createRequire(import.meta.url)("playwright-core") as { chromium: { launch(o: { executablePath: string; args: string[] }): Promise<Browser> } };

const CHROMIUM = "/usr/bin/chromium";
const now = new Date("2026-11-30T06:00:00Z");
const tenants: [string, Scenario][] = [["delta", "fresh"], ["acme", "fresh"], ["globex", "stale"], ["initech", "tampered"], ["hooli", "never-drilled"], ["umbrella", "shrunk"]];
const hostile = "<img src=x onerror=\"window.__pwned=1\"></script><script>window.__pwned=2</script>";

let root: string;
let browser: Browser;
let page: Page;
const requests: string[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  expect(fs.existsSync(CHROMIUM), `${CHROMIUM} is required (apt-get install chromium)`).toBe(true);
  root = fs.mkdtempSync(path.join(os.tmpdir(), "fleet-page-"));
  const stateRoot = path.join(root, "state");
  tenants.forEach(([t, s], i) => writeTenantState(stateRoot, simulateTenant(t, s, now, { historyDays: 120, seed: i + 1 })));
  const ledger = path.join(stateRoot, "initech", "ledger.json");
  const l = JSON.parse(fs.readFileSync(ledger, "utf8"));
  l.tamper.findings = [hostile];
  fs.writeFileSync(ledger, JSON.stringify(l));
  const config = parseFleetConfig({
    format: 1,
    boxes: [{ name: "box-a", connections: 2 }],
    tenants: tenants.map(([name]) => ({ name, box: "box-a", schedule: 86400, grace: 21600 })),
    drill: { periodDays: 90, budgetPerRun: 2 },
  });
  writeOutputs(build(config, stateRoot, now), path.join(root, "out"));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  page = await browser.newPage();
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  await page.goto(`file://${path.join(root, "out", "fleet.html")}`);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

const tenantColumn = () => page.$$eval("#fleet tbody tr", (trs) => trs.map((tr) => tr.getAttribute("data-tenant") as string));

describe("fleet.html in chromium", () => {
  it("renders every tenant, worst first, from its own inline script only", async () => {
    expect(await tenantColumn()).toEqual(["globex", "initech", "umbrella", "hooli", "acme", "delta"]);
    expect(await page.textContent("#count-alarm")).toBe("3");
    expect(requests).toEqual([`file://${path.join(root, "out", "fleet.html")}`]);
    expect(pageErrors).toEqual([]); // the CSP let the page's own script and style run, nothing else
  });

  it("clicking a header sorts the table, a second click reverses it", async () => {
    await page.click('th[data-key="tenant"]');
    expect(await tenantColumn()).toEqual(["acme", "delta", "globex", "hooli", "initech", "umbrella"]);
    expect(await page.getAttribute('th[data-key="tenant"]', "aria-sort")).toBe("ascending");
    await page.click('th[data-key="tenant"]');
    expect(await tenantColumn()).toEqual(["umbrella", "initech", "hooli", "globex", "delta", "acme"]);
    await page.click('th[data-key="age"]');
    const ages = await tenantColumn();
    expect(ages[ages.length - 1]).toBe("globex"); // the stale one is the oldest
    await page.click('th[data-key="drill"]');
    expect((await tenantColumn())[5]).toBe("hooli"); // never drilled: unknown sorts last
  });

  it("a stale tenant's row is red; a fresh one is not", async () => {
    const bg = (t: string) => page.$eval(`#fleet tr[data-tenant="${t}"] td`, (td) => (globalThis as any).getComputedStyle(td).backgroundColor as string);
    const rgb = (s: string) => (s.match(/[0-9]+/g) ?? []).map(Number);
    const [r, g, b] = rgb(await bg("globex"));
    expect(r!).toBeGreaterThan(200);
    expect(g!).toBeLessThan(200);
    expect(b!).toBeLessThan(200);
    expect(await page.getAttribute('#fleet tr[data-tenant="globex"]', "class")).toContain("stale");
    expect(await bg("acme")).toBe("rgba(0, 0, 0, 0)");
    expect(await bg("initech")).not.toBe(await bg("globex")); // in alarm, but not stale
  });

  it("shows each tenant's data-loss window, restore time and repository size as SVG charts", async () => {
    await page.click('#fleet tr[data-tenant="acme"] button.tenant');
    expect(await page.textContent("#charts-title")).toBe("Tenant acme over time");
    const charts = await page.$$eval("#charts svg", (svgs) => svgs.map((s) => ({ name: s.getAttribute("data-chart") as string, paths: s.querySelectorAll("path").length as number, dots: s.querySelectorAll("circle").length as number })));
    expect(charts.map((c) => c.name)).toEqual(["data-loss window at each drill", "restore time at each drill", "repository size (deduplicated, compressed)"]);
    expect(charts.every((c) => c.paths === 1)).toBe(true);
    expect(charts[0]!.dots).toBe(4); // drills 10, 40, 70 and 100 days ago
    await page.click('#fleet tr[data-tenant="hooli"] button.tenant');
    expect(await page.$$eval("#charts svg", (svgs) => svgs.map((s) => (s.textContent as string).includes("no data")))).toEqual([true, true, false]);
  });

  it("a hostile string from the state stays text", async () => {
    const why = await page.textContent('#fleet tr[data-tenant="initech"] td.why');
    expect(why).toContain(hostile);
    expect(await page.evaluate(() => (globalThis as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(await page.$$("img")).toHaveLength(0);
    expect(await page.$$("script")).toHaveLength(2);
  });
});
