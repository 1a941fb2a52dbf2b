// Reading one tenant's trusted state as agent-maintain and the drill workflow leave it
// (/work/notes/ledger-interface.md): ledger.json, ledger-history.jsonl, drills.jsonl. A host's
// attacker influences these indirectly (archive names, counts, findings), so every file is bounded
// in size, must be a regular file (never followed through a link), and is validated by zod; a bad
// file or line becomes a problem of that tenant, never an exception for the fleet.
import * as fs from "node:fs";
import * as path from "node:path";
import { z } from "zod";
import { matchesPattern } from "../config/patterns";

export const LIMITS = {
  ledgerBytes: 1 * 2 ** 20,
  historyBytes: 16 * 2 ** 20,
  drillsBytes: 4 * 2 ** 20,
  lines: 100_000,
  folders: 20_000,
  /** A problem's text as kept in the outputs. */
  problemChars: 300,
  /** Problems kept per tenant. */
  problems: 20,
};

const isoTime = z.string().max(40)
  .regex(/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:?[0-9]{2})$/, "an ISO 8601 time")
  .refine((v) => Number.isFinite(Date.parse(v)), "an ISO 8601 time");
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const seconds = z.number().min(0).max(100 * 365 * 86400);
const text = (max: number) => z.string().max(max);
const archiveName = text(128).refine((v) => matchesPattern("archive_name", v), "a valid archive name");
const tenantName = text(32).refine((v) => matchesPattern("tenant", v), "a valid tenant name");
const modes = z.enum(["maintain", "observe", "tamper-check", "adopt"]);
const tamperVerdict = z.enum(["ok", "tampered"]);
const shrinkVerdict = z.enum(["ok", "shrunk", "unknown"]);
const measure = z.union([z.number().finite(), text(200), z.null()]);

export const ledgerSchema = z.object({
  format: z.literal(1),
  tenant: tenantName,
  updated: isoTime,
  mode: modes,
  /** False when the run that wrote this ledger failed (its unmeasured facts are carried over). */
  ok: z.boolean().optional(),
  archives: count,
  newestArchive: z.object({ name: archiveName, time: isoTime, firstSeen: isoTime }).nullable(),
  repo: z.object({ uniqueCsize: count, totalSize: count }).nullable(),
  // Null tolerated: a tenant whose repository was never tamper-checked or has one archive only.
  // Findings can be one per junk archive a host pushed: many are accepted (the file's size bounds
  // them), the row keeps the first few.
  tamper: z.object({ verdict: tamperVerdict, checked: isoTime, findings: z.array(text(2000)).max(20_000) })
    .transform((t) => ({ ...t, findingsCount: t.findings.length, findings: t.findings.slice(0, 20) })).nullable(),
  unclassified: z.object({ archive: archiveName, count }).nullable(),
  shrink: z.object({
    verdict: shrinkVerdict,
    archive: archiveName.nullable().optional(),
    previous: archiveName.nullable().optional(),
    findings: z.array(z.object({ what: text(200), before: measure, after: measure })).max(200),
  }).nullable(),
  pins: z.array(z.object({ archive: archiveName, id: z.string().regex(/^[0-9a-f]{64}$/).optional(), reason: text(500), since: isoTime })).max(1000),
});
export type Ledger = z.infer<typeof ledgerSchema>;
/** ledger.json as agent-maintain writes it (before the reader's transforms). */
export type LedgerFile = z.input<typeof ledgerSchema>;

export const historyLineSchema = z.object({
  time: isoTime,
  mode: modes,
  archives: count,
  newestArchiveTime: isoTime.nullable(),
  uniqueCsize: count.nullable(),
  tamper: tamperVerdict.nullable(),
  shrink: shrinkVerdict.nullable(),
});
export type HistoryLine = z.infer<typeof historyLineSchema>;

export const drillLineSchema = z.object({
  time: isoTime,
  /** The drill report's tenant: a line of another tenant is refused. */
  tenant: tenantName.optional(),
  archive: archiveName.nullable(),
  healthy: z.boolean(),
  dataLossWindowSeconds: seconds.nullable(),
  restoreSeconds: seconds.nullable(),
  agent: z.record(text(100), z.unknown()).nullable(),
});
export type DrillLine = z.infer<typeof drillLineSchema>;

export interface TenantInput {
  tenant: string;
  /** The folder exists. */
  present: boolean;
  ledger: Ledger | null;
  /** Why the ledger is missing or was refused (null when it was read). */
  ledgerProblem: string | null;
  /** Oldest first. */
  history: HistoryLine[];
  /** Oldest first. */
  drills: DrillLine[];
  /** Skipped lines and refused files besides the ledger. */
  problems: string[];
}

/** Strips control characters and bounds the length: problems quote hostile input. */
export function cleanText(s: string, max = LIMITS.problemChars): string {
  // eslint-disable-next-line no-control-regex
  const t = s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, " ");
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

function describeIssues(e: z.ZodError): string {
  return e.issues.slice(0, 3).map((i) => `${i.path.join(".") || "(top)"}: ${i.message}`).join("; ") + (e.issues.length > 3 ? `; +${e.issues.length - 3} more` : "");
}

type Read = { kind: "missing" } | { kind: "refused"; why: string } | { kind: "text"; text: string };

/** A regular file of at most maxBytes, opened without following a link. */
export function readBounded(file: string, maxBytes: number): Read {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { kind: "missing" };
    if (code === "ELOOP") return { kind: "refused", why: "is a symbolic link" };
    return { kind: "refused", why: `cannot be opened (${code ?? "error"})` };
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) return { kind: "refused", why: "is not a regular file" };
    if (st.size > maxBytes) return { kind: "refused", why: `is ${st.size} bytes, above the limit of ${maxBytes}` };
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < st.size) {
      const n = fs.readSync(fd, buf, off, st.size - off, off);
      if (n === 0) break;
      off += n;
    }
    return { kind: "text", text: buf.subarray(0, off).toString("utf8") };
  } finally {
    fs.closeSync(fd);
  }
}

function readJsonLines<T>(file: string, label: string, maxBytes: number, schema: z.ZodType<T>, problems: string[]): T[] {
  const r = readBounded(file, maxBytes);
  if (r.kind === "missing") return [];
  if (r.kind === "refused") {
    problems.push(`${label} ${r.why}: not read`);
    return [];
  }
  const out: T[] = [];
  const lines = r.text.split("\n");
  if (lines.length > LIMITS.lines + 1) problems.push(`${label} has ${lines.length} lines: only the last ${LIMITS.lines} are read`);
  let bad = 0;
  let firstBad = "";
  for (const [i, line] of lines.slice(-LIMITS.lines).entries()) {
    if (line.trim() === "") continue;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch {
      bad++;
      firstBad ||= `line ${i + 1}: not JSON`;
      continue;
    }
    const p = schema.safeParse(doc);
    if (p.success) out.push(p.data);
    else {
      bad++;
      firstBad ||= `line ${i + 1}: ${describeIssues(p.error)}`;
    }
  }
  if (bad > 0) problems.push(`${label}: ${bad} line(s) refused (first: ${firstBad})`);
  const time = (x: T): number => Date.parse((x as { time: string }).time);
  return out.sort((a, b) => time(a) - time(b));
}

/** Reads one tenant's folder; never throws for anything found in it. */
export function readTenant(stateRoot: string, tenant: string): TenantInput {
  const dir = path.join(stateRoot, tenant);
  const problems: string[] = [];
  const input: TenantInput = { tenant, present: false, ledger: null, ledgerProblem: null, history: [], drills: [], problems };
  let st: fs.Stats;
  try {
    st = fs.lstatSync(dir);
  } catch {
    input.ledgerProblem = "no state folder: the maintenance job never reported this tenant";
    return input;
  }
  if (!st.isDirectory()) {
    input.ledgerProblem = "the state folder is not a directory (a link or a file): refused";
    return input;
  }
  input.present = true;
  const r = readBounded(path.join(dir, "ledger.json"), LIMITS.ledgerBytes);
  if (r.kind === "missing") input.ledgerProblem = "no ledger.json: the maintenance job has not written a ledger for this tenant";
  else if (r.kind === "refused") input.ledgerProblem = `ledger.json ${r.why}: refused`;
  else {
    let doc: unknown;
    try {
      doc = JSON.parse(r.text);
    } catch {
      doc = undefined;
      input.ledgerProblem = "ledger.json is not valid JSON: refused";
    }
    if (doc !== undefined) {
      const p = ledgerSchema.safeParse(doc);
      if (!p.success) input.ledgerProblem = cleanText(`ledger.json refused: ${describeIssues(p.error)}`);
      else if (p.data.tenant !== tenant) input.ledgerProblem = cleanText(`ledger.json names tenant ${JSON.stringify(p.data.tenant)}, not its folder's: refused`);
      else input.ledger = p.data;
    }
  }
  input.history = readJsonLines(path.join(dir, "ledger-history.jsonl"), "ledger-history.jsonl", LIMITS.historyBytes, historyLineSchema, problems);
  const ownDrill = drillLineSchema.refine((d) => d.tenant === undefined || d.tenant === tenant, { message: "a drill of another tenant", path: ["tenant"] });
  input.drills = readJsonLines(path.join(dir, "drills.jsonl"), "drills.jsonl", LIMITS.drillsBytes, ownDrill, problems);
  input.problems = problems.slice(0, LIMITS.problems).map((p) => cleanText(p));
  return input;
}

/** Folders of the state root that are not configured tenants (or not tenant names at all). */
export function strayFolders(stateRoot: string, configured: Set<string>): string[] {
  const problems: string[] = [];
  let dir: fs.Dir;
  try {
    dir = fs.opendirSync(stateRoot);
  } catch (e) {
    return [`state root cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"})`];
  }
  try {
    for (let i = 0; i < LIMITS.folders; i++) {
      const d = dir.readSync();
      if (d === null) return problems;
      if (configured.has(d.name)) continue;
      const shown = cleanText(JSON.stringify(d.name), 80);
      if (!matchesPattern("tenant", d.name)) problems.push(`state root entry ${shown} is not a valid tenant name: ignored`);
      else problems.push(`state folder ${shown} is not a tenant of the fleet config: ignored`);
    }
    problems.push(`state root has more than ${LIMITS.folders} entries: the rest were not looked at`);
    return problems;
  } finally {
    dir.closeSync();
  }
}
