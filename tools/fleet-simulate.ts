// Simulated trusted state in the shape agent-maintain and the drill workflow write it
// (/work/notes/ledger-interface.md), for the fleet's tests and its benchmark: a tenant with a
// history of daily observe runs and weekly maintenance, monthly drills, in one of the states an
// operator must tell apart.
import * as fs from "node:fs";
import * as path from "node:path";
import type { DrillLine, HistoryLine, LedgerFile } from "./fleet-inputs";

export type Scenario = "fresh" | "stale" | "tampered" | "shrunk" | "never-drilled" | "unhealthy-drill";

export interface SimulatedTenant {
  ledger: LedgerFile;
  history: HistoryLine[];
  drills: DrillLine[];
}

const DAY = 86400_000;
const iso = (ms: number): string => new Date(ms).toISOString();

/** Deterministic pseudo-random numbers from a seed (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

export function simulateTenant(tenant: string, scenario: Scenario, now: Date, opts: { historyDays?: number; seed?: number } = {}): SimulatedTenant {
  const days = opts.historyDays ?? 365;
  const rand = rng(opts.seed ?? tenant.length * 7919 + tenant.charCodeAt(0));
  const nowMs = now.getTime();
  // A stale tenant stopped backing up four days ago; the storage side keeps seeing the old archive.
  const lastBackupMs = scenario === "stale" ? nowMs - 4 * DAY - 3 * 3600_000 : nowMs - 3 * 3600_000;
  const history: HistoryLine[] = [];
  let size = 200 * 2 ** 20 + Math.floor(rand() * 50 * 2 ** 20);
  for (let d = days; d >= 1; d--) {
    const t = nowMs - d * DAY + 2 * 3600_000;
    size += Math.floor(rand() * 3 * 2 ** 20);
    const weekly = d % 7 === 0;
    history.push({
      time: iso(t),
      mode: weekly ? "maintain" : "observe",
      archives: Math.min(60, days - d + 1),
      newestArchiveTime: iso(Math.min(t - 3600_000, lastBackupMs)),
      uniqueCsize: size,
      tamper: weekly ? "ok" : null,
      shrink: "ok",
    });
  }
  const drills: DrillLine[] = [];
  if (scenario !== "never-drilled") {
    for (let m = Math.floor(days / 30); m >= 0; m--) {
      const t = nowMs - m * 30 * DAY - 10 * DAY;
      if (t < nowMs - days * DAY) continue;
      drills.push({
        time: iso(t),
        tenant,
        archive: `${tenant}-${iso(t - 5 * 3600_000).slice(0, 19).replace(/:/g, "-")}`,
        healthy: scenario === "unhealthy-drill" && m === 0 ? false : true,
        dataLossWindowSeconds: 3600 + Math.floor(rand() * 20 * 3600),
        restoreSeconds: 60 + Math.floor(rand() * 600),
        agent: { check: "agent-check-hermes", ok: true },
      });
    }
  }
  const newestName = `${tenant}-${iso(lastBackupMs).slice(0, 19).replace(/:/g, "-")}`;
  const previousName = `${tenant}-${iso(lastBackupMs - DAY).slice(0, 19).replace(/:/g, "-")}`;
  const ledger: LedgerFile = {
    format: 1,
    tenant,
    updated: iso(nowMs - 3600_000),
    mode: "observe",
    ok: true,
    archives: Math.min(60, days),
    newestArchive: { name: newestName, time: iso(lastBackupMs), firstSeen: iso(lastBackupMs + 3600_000) },
    repo: { uniqueCsize: size, totalSize: size * 9 },
    tamper: scenario === "tampered"
      ? { verdict: "tampered", checked: iso(nowMs - 3600_000), findings: [`archive ${previousName} vanished since the trusted state`] }
      : { verdict: "ok", checked: iso(nowMs - 3 * DAY), findings: [] },
    unclassified: { archive: newestName, count: 0 },
    shrink: scenario === "shrunk"
      ? { verdict: "shrunk", archive: newestName, previous: previousName, findings: [{ what: "state.db messages", before: 18000, after: 0 }] }
      : { verdict: "ok", archive: newestName, previous: previousName, findings: [] },
    pins: scenario === "shrunk" ? [{ archive: previousName, id: "a".repeat(64), reason: "last archive before a shrink", since: iso(nowMs - 3600_000) }] : [],
  };
  return { ledger, history, drills };
}

export function writeTenantState(stateRoot: string, s: SimulatedTenant): void {
  const dir = path.join(stateRoot, s.ledger.tenant);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "ledger.json"), `${JSON.stringify(s.ledger, null, 2)}\n`);
  fs.writeFileSync(path.join(dir, "ledger-history.jsonl"), s.history.map((h) => `${JSON.stringify(h)}\n`).join(""));
  if (s.drills.length) fs.writeFileSync(path.join(dir, "drills.jsonl"), s.drills.map((d) => `${JSON.stringify(d)}\n`).join(""));
}
