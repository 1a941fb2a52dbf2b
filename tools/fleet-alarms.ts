// Alarms that reach a person: one Slack-compatible message and one ntfy message listing the
// tenants in alarm, and a healthchecks-style ping per tenant (BASE/<tenant> when it is fine,
// BASE/<tenant>/fail when not). The URLs carry tokens: they come from environment variables the
// config names, and no message, report line or error ever contains them. Every request has a
// timeout; one failing receiver is reported and the others are still tried.
import type { FleetConfig } from "../config/fleet";
import type { Fleet, FleetRow } from "./fleet-aggregate";

export interface Delivery {
  channel: "slack" | "ntfy" | "healthchecks";
  /** The tenant of a healthchecks ping. */
  tenant?: string;
  ok: boolean;
  /** Secret-free: "sent", "HTTP 500", "timed out after 10 s", "FLEET_X is not set". */
  detail: string;
}

/** Tenants listed in a message at most; the rest are counted. */
const LISTED = 40;
const PING_CONCURRENCY = 8;

function alarmLines(rows: FleetRow[]): string[] {
  const bad = rows.filter((r) => r.status === "alarm");
  const lines = bad.slice(0, LISTED).map((r) => `${r.tenant} (${r.box}): ${r.reasons.filter((x) => x.level === "alarm").map((x) => x.text).join("; ")}`);
  if (bad.length > LISTED) lines.push(`... and ${bad.length - LISTED} more tenant(s) in alarm`);
  return lines;
}

/** Slack's mrkdwn reads <...> as links and &, <, > as entities: escape them. */
const slackText = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function slackBody(fleet: Fleet): { text: string } {
  const c = fleet.counts;
  const head = `Backup fleet: ${c.alarm} tenant(s) in alarm, ${c.warn} warn, ${c.ok} ok (${fleet.generated})`;
  return { text: slackText([head, ...alarmLines(fleet.tenants).map((l) => `• ${l}`)].join("\n")) };
}

export function ntfyMessage(fleet: Fleet): { title: string; body: string } {
  return {
    title: `Backup fleet: ${fleet.counts.alarm} tenant(s) in alarm`,
    body: alarmLines(fleet.tenants).join("\n"),
  };
}

/** The body of one tenant's ping: its status and why (healthchecks shows it in the check's log). */
export function pingBody(row: FleetRow): string {
  return [`${row.tenant}: ${row.status}`, ...row.reasons.map((r) => `${r.level}: ${r.text}`)].join("\n").slice(0, 10_000);
}

/** A URL from the environment: http(s) only; the value itself never leaves this function in text. */
function urlFromEnv(name: string, env: NodeJS.ProcessEnv): { url: URL } | { problem: string } {
  const v = env[name];
  if (!v) return { problem: `${name} is not set` };
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return { problem: `${name} is not a URL` };
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") return { problem: `${name} is not an http(s) URL` };
  return { url: u };
}

async function send(url: URL, init: { method: string; headers: Record<string, string>; body?: string }, timeoutSeconds: number): Promise<{ ok: boolean; detail: string }> {
  try {
    const r = await fetch(url, { ...init, redirect: "error", signal: AbortSignal.timeout(timeoutSeconds * 1000) });
    // Drain without keeping: a receiver's answer is not ours to print.
    await r.arrayBuffer().catch(() => undefined);
    return r.ok ? { ok: true, detail: `sent (HTTP ${r.status})` } : { ok: false, detail: `HTTP ${r.status}` };
  } catch (e) {
    const err = e as Error & { cause?: { code?: string } };
    if (err.name === "TimeoutError" || err.name === "AbortError") return { ok: false, detail: `timed out after ${timeoutSeconds} s` };
    // Only the error code: messages can quote the URL.
    return { ok: false, detail: `not delivered (${err.cause?.code ?? err.name})` };
  }
}

async function pool<T>(items: T[], limit: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export async function sendAlarms(fleet: Fleet, config: FleetConfig, env: NodeJS.ProcessEnv = process.env): Promise<Delivery[]> {
  const { slack, ntfy, healthchecks, timeoutSeconds } = config.alarms;
  const out: Delivery[] = [];
  const anyAlarm = fleet.counts.alarm > 0;
  const jobs: Promise<void>[] = [];
  if (slack && anyAlarm) {
    jobs.push((async () => {
      const u = urlFromEnv(slack.urlEnv, env);
      if ("problem" in u) return void out.push({ channel: "slack", ok: false, detail: u.problem });
      const r = await send(u.url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(slackBody(fleet)) }, timeoutSeconds);
      out.push({ channel: "slack", ...r });
    })());
  }
  if (ntfy && anyAlarm) {
    jobs.push((async () => {
      const u = urlFromEnv(ntfy.urlEnv, env);
      if ("problem" in u) return void out.push({ channel: "ntfy", ok: false, detail: u.problem });
      const m = ntfyMessage(fleet);
      const r = await send(u.url, { method: "POST", headers: { "content-type": "text/plain; charset=utf-8", Title: m.title, Priority: "urgent", Tags: "rotating_light" }, body: m.body }, timeoutSeconds);
      out.push({ channel: "ntfy", ...r });
    })());
  }
  if (healthchecks) {
    jobs.push((async () => {
      const u = urlFromEnv(healthchecks.urlEnv, env);
      if ("problem" in u) return void out.push({ channel: "healthchecks", ok: false, detail: u.problem });
      const base = u.url.href.replace(/\/+$/, "");
      await pool(fleet.tenants, PING_CONCURRENCY, async (row) => {
        // Tenant names match the strict tenant pattern: safe as one path segment.
        const target = new URL(`${base}/${encodeURIComponent(row.tenant)}${row.status === "alarm" ? "/fail" : ""}`);
        const r = await send(target, { method: "POST", headers: { "content-type": "text/plain; charset=utf-8" }, body: pingBody(row) }, timeoutSeconds);
        out.push({ channel: "healthchecks", tenant: row.tenant, ...r });
      });
    })());
  }
  await Promise.all(jobs);
  return out;
}
