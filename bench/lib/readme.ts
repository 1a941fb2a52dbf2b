// bench/README.md is generated from bench/results/*.json by this file, so the table and the
// recorded numbers cannot disagree. Others' results files (prod-program.json, local-drill.json)
// are shown as they are, as flat key/value tables of their numbers.
import * as fs from "node:fs";
import * as path from "node:path";
import { RESULTS_KIND, type BenchResults, type Goal } from "./results";
import { STEP_NAMES, type StepName } from "./backup-flow";

export const BENCH_DIR = path.resolve(__dirname, "..");
export const RESULTS_DIR = path.join(BENCH_DIR, "results");
export const README = path.join(BENCH_DIR, "README.md");

const STEP_LABEL: Record<StepName, string> = {
  naiveTar: "naive: `tar czf` of the whole home",
  naiveBorg: "naive: `borg create` of the whole home, no rules",
  readPrecious: "floor: read the precious bytes once",
  floorBorg: "floor: plain `borg create` of the quiesced precious copy",
  agentFull: "agent-backup, full (first night)",
  agentIncremental: "agent-backup, nightly incremental after a day",
  agentRestoreVerify: "agent-restore + agent-verify",
  agentRestore: "  agent-restore",
  agentVerify: "  agent-verify",
  plainExtract: "plain `borg extract` of the same archive",
};

const mb = (b: number | null | undefined): string => fx(typeof b === "number" ? b / 2 ** 20 : b, 1);
/** Results files store unknown numbers (NaN) as null: format both as "-". */
const fx = (x: number | null | undefined, digits: number): string => (typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "-");
const sec = (s: number): string => fx(s, 2);
const verdict = (g: Goal): string => (g.met === true ? "**met**" : g.met === false ? "**MISSED**" : "not measured");
const cell = (s: string): string => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

function benchSection(r: BenchResults, file: string): string[] {
  const L: string[] = [];
  L.push(`## Scale \`${r.scale}\` (${file})`, "");
  L.push(`- Date: ${r.date}; the whole run took ${(r.durationSeconds / 60).toFixed(1)} min.`);
  L.push(`- Command: \`${r.invocation}\` at commit ${r.source?.head.slice(0, 12) ?? "unknown"}${r.source?.uncommitted.length ? ` (uncommitted under test: ${r.source.uncommitted.map((u) => u.trim()).join(", ")})` : ""}`);
  const m = r.machine;
  L.push(`- Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGb} GiB RAM, ${m.os}, ${m.kernel}; load at start ${m.loadAverageAtStart.join(" ")}.`);
  L.push(`- Tools: ${Object.entries(m.versions).map(([k, v]) => `${k} ${v}`).join("; ")}.`);
  const s = r.homeScale;
  L.push(
    `- Home: \`make-agent-home\` with ${s.sessions} sessions${s.sessionFiles === undefined ? "" : ` (${s.sessionFiles} session files)`}, state.db ~${s.stateDbMb} MiB, ${s.deadWeightMb} MiB dead weight (sparse), ${s.profiles} profile(s), seed ${s.seed}` +
      (r.home ? `: ${mb(r.home.apparentBytes)} MiB apparent, ${mb(r.home.diskBytes)} MiB on disk, ${r.home.files} files.` : "."),
  );
  if (r.nights[0]) L.push(`- Precious set (as the rules select it): ${r.nights[0].preciousFiles} files, ${mb(r.nights[0].preciousBytes)} MiB.`);
  L.push("");
  if (r.errors.length > 0) {
    L.push("**Errors in this run** (the sections they stopped are not measured):", "");
    for (const e of r.errors) L.push(`- ${cell(e.split("\n")[0] ?? e)}`);
    L.push("");
  }

  L.push("### Goals (issue 7)", "", "| goal | target | measured | verdict | margin |", "|---|---|---|---|---|");
  for (const g of r.goals) L.push(`| ${cell(g.goal)} | ${cell(g.target)} | ${cell(g.measured)} | ${verdict(g)} | ${cell(g.margin)} |`);
  L.push("");

  if (Object.keys(r.steps).length > 0) {
    L.push(`### Side by side (medians of ${r.nights.length} runs)`, "");
    L.push("| step | wall s | CPU s | peak RSS MiB | original MiB | compressed MiB | deduplicated MiB | output MiB |", "|---|---|---|---|---|---|---|---|");
    for (const name of STEP_NAMES) {
      const st = r.steps[name];
      if (!st) continue;
      const b = st.bytes ?? {};
      L.push(`| ${STEP_LABEL[name]} | ${sec(st.medianWallSeconds)} | ${sec(st.medianCpuSeconds)} | ${fx(st.medianPeakRssMb, 0)} | ${mb(b.original)} | ${mb(b.compressed)} | ${mb(b.deduplicated)} | ${mb(b.output)} |`);
    }
    L.push("", "Ratios, taken within each run and then the median:", "", "| ratio | median | per run |", "|---|---|---|");
    for (const q of r.ratios) L.push(`| ${cell(q.description)} | ${fx(q.median, 3)} | ${q.perRun.map((x) => fx(x, 3)).join(", ")} |`);
    L.push("");
  }

  const sq = r.sqliteCopy;
  if (sq) {
    L.push("### SQLite copy under a concurrent writer", "");
    L.push(
      `Store: ${cell(sq.sourceDescription)}, ${mb(sq.dbBytes)} MiB with the writer's tables. Writer: ${sq.writerTargetRate} commits/s target, ` +
        `${fx(sq.writerAchievedRate, 0)} achieved over the trials, TRUNCATE checkpoint every ${sq.writerCheckpointEvery} commits (as Hermes does). ` +
        `${sq.trialsPerMethod} trials per method, order rotated; a copy is bounded to ${sq.timeoutSeconds} s. ` +
        `Inconsistent = the copy fails \`PRAGMA integrity_check\` or the writer's invariant (ledger sum, journal count). ` +
        `Night to night: ${sq.dayRows} new messages (1% of the store) from the live writer between two copies; borg's new bytes for the second. ` +
        `agent-backup's method: ${sq.chosenMethod ?? "unknown"} (${cell(sq.chosenMethodSource)}).`,
      "",
    );
    L.push("| method | median s | completed | inconsistent | failed | timed out | writer commits/s during copy | copy MiB | night-to-night new bytes |", "|---|---|---|---|---|---|---|---|---|");
    for (const x of sq.methods) {
      L.push(
        `| ${x.method}${x.method === sq.chosenMethod ? " (agent-backup)" : ""} | ${sec(x.medianSeconds)} | ${x.completed}/${x.trials}${x.abandoned ? " (abandoned)" : ""} | ${x.inconsistent} | ${x.failed} | ${x.timedOut} | ${fx(x.writerRateDuringCopy, 0)} | ${mb(x.medianCopyBytes)} | ${typeof x.nightToNightNewFraction === "number" && Number.isFinite(x.nightToNightNewFraction) ? `${fx(100 * x.nightToNightNewFraction, 1)}% (${mb(x.nightToNightNewBytes)} MiB)` : "-"} |`,
      );
    }
    L.push("", "Commands:", "");
    for (const x of sq.methods) L.push(`- ${x.method}: \`${cell(x.command.replace(/\n/g, "; "))}\``);
    L.push("");
  }
  if (Object.keys(r.steps).length > 0) {
    L.push("### Commands of the side-by-side steps (first run)", "");
    for (const name of STEP_NAMES) {
      const st = r.steps[name];
      if (st) L.push(`- ${STEP_LABEL[name].trim()}: \`${cell(st.command)}\``);
    }
    L.push("");
  }
  return L;
}

function flatten(prefix: string, v: unknown, out: [string, string][]): void {
  if (out.length >= 60) return;
  if (v !== null && typeof v === "object") {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) flatten(prefix ? `${prefix}.${k}` : k, x, out);
  } else if (typeof v === "number" || typeof v === "string" || typeof v === "boolean") {
    out.push([prefix, String(v)]);
  }
}

function otherSection(file: string, data: unknown): string[] {
  const rows: [string, string][] = [];
  flatten("", data, rows);
  return [`## ${file} (recorded by its owner, shown as is)`, "", "| key | value |", "|---|---|", ...rows.map(([k, v]) => `| ${cell(k)} | ${cell(v)} |`), ""];
}

export function renderReadme(): string {
  const files = fs.existsSync(RESULTS_DIR) ? fs.readdirSync(RESULTS_DIR).filter((f) => f.endsWith(".json")).sort() : [];
  const ours: [string, BenchResults][] = [];
  const others: [string, unknown][] = [];
  for (const f of files) {
    const data: unknown = JSON.parse(fs.readFileSync(path.join(RESULTS_DIR, f), "utf8"));
    if ((data as { kind?: string }).kind === RESULTS_KIND) ours.push([f, data as BenchResults]);
    else others.push([f, data]);
  }
  // The default scale first: it is the one the goals are held to.
  ours.sort(([, a], [, b]) => (a.scale === "default" ? -1 : b.scale === "default" ? 1 : a.scale.localeCompare(b.scale)));
  const L = [
    "# Benchmarks",
    "",
    "<!-- Generated by bench/lib/readme.ts from bench/results/*.json: do not edit by hand; run `npm run bench` (or `npx tsx bench/run.ts --readme-only`). -->",
    "",
    "What the project exists for, measured side by side with what a user would do instead, in one run:",
    "a sample agent home (test/fixtures/make-agent-home) is backed up by `scripts/agent-backup` to a",
    "loopback storage box (test/lib/storage-box.ts: real sshd, append-only forced command), next to",
    "`tar czf` and `borg create` of the whole home, and next to the floor: reading the precious bytes once",
    "and a plain `borg create` of a quiesced copy of the precious set (selected by the scripts' own classifier from",
    "`scripts/backup-set.rules`). Then a day happens (the live writer adds 1% of the rows, new sessions,",
    "edited memories), the nightly incremental runs, and the last archive is restored with agent-restore +",
    "agent-verify next to a plain `borg extract`. Timings are medians of several runs; ratios are taken",
    "within each run (same machine state) and then the median. Nothing is tuned to pass: a missed goal",
    "says so, and by how much.",
    "",
    "    npm run bench              # default scale (20,000 sessions and session files, 1 GiB state.db, 5 GiB dead weight)",
    "    npm run bench -- --quick   # small scale, under 5 minutes",
    "",
    "Options: `--runs N` (side-by-side runs, default 3), `--trials N` (SQLite trials, default 20),",
    "`--only sqlite|nights`, `--keep-work`, `--readme-only` (regenerate this file from the JSON).",
    "Results: `bench/results/<scale>.json` (machine, date, commands, every run's numbers).",
    "All timings are with a warm page cache (the home was just generated on a machine with more RAM than",
    "the home's size), on a shared 2-core machine: read ratios rather than absolute seconds.",
    "",
    "How to read it:",
    "",
    "- Every borg repository is on the same loopback storage box, over ssh, with borg's default `lz4`",
    "  (agent-backup's setting too), encrypted `repokey-blake2`: the floor pays the same transport and",
    "  crypto as agent-backup. The floor's precious copy is made (untimed) from a quiesced home (stores",
    "  checkpointed, no writer), as if the agent had been stopped; agent-backup runs on the same home.",
    "- agent-restore runs agent-verify itself before it swaps the target in; the restore + verify row",
    "  adds the separate agent-verify run the issue asks for, so the home is verified twice there.",
    "- SQLite: the writer under the copies is bench/lib/ledger_writer.py (python3, paced at a target rate;",
    "  Hermes-like: BEGIN IMMEDIATE with retries, 1 s busy timeout, TRUNCATE checkpoint every 50 commits).",
    "  Its invariant (balances that always sum to the same total, a journal row per commit) spans pages all",
    "  over the file. \"Writer commits/s during copy\" shows how much each method slowed the writer: a copy's",
    "  read transaction makes the writer's TRUNCATE checkpoint wait (up to its 1 s timeout).",
    "  The \"backup API in one step\" is python3's `sqlite3` module, `src.backup(dst, pages=-1)`.",
    "  \"shell-backup-read-txn\" is the sqlite3 shell's `.backup` run after `BEGIN` and a `SELECT` in the same",
    "  invocation: every step of the copy reads the one snapshot that SELECT pinned (agent-backup's method",
    "  since the default-scale run showed VACUUM INTO making ~93% of each night's store copy new to borg).",
    "- Since issue 10 agent-backup reads the home only as the agent's own user and streams the precious set",
    "  as a tar into `borg import-tar` (root never follows a path of the home): import-tar has no files",
    "  cache, so every precious byte is read and chunked every night (deduplication still stores only new",
    "  chunks), and each run checks the newest and the new archive's objects (`borg check --archives-only`).",
    "  Results recorded before that (the staged, files-cached `borg create`) are the \"before\" of that cost.",
    "- Classification (`npx tsx bench/classify.ts`, results in `bench/results/classify.json`): the default-deny",
    "  classifier (scripts/lib/classify.awk) against the previous rules' find walk, on a home of 20,000 session",
    "  files, side by side in one run, and the whole `agent-backup --classify` an operator runs.",
    "- Tamper detection before maintenance writes (`npx tsx bench/maintain-detection.ts [--quick] [--runs N]`,",
    "  results in `bench/results/maintain-detection.json`): a 1 GiB repository with 100 daily archives (10,000",
    "  small files plus ~0.8 GiB of incompressible data, ~2 MiB new each day) built through the push key; then,",
    "  with the maintenance key, what agent-maintain runs before it may write: the archive listing,",
    "  `borg check --archives-only` (every referenced object exists, all metadata authenticates), the same with",
    "  `--verify-data` (every object read and authenticated: the default `OBJECT_CHECK=data`, the only way to",
    "  see an overwritten data chunk), the whole `--tamper-check` in both settings, the daily `--observe`, and",
    "  one `borg extract --dry-run` for scale.",
    "- The local drill with the real agent (`npx tsx bench/local-drill-agent.ts`, results in",
    "  `bench/results/local-drill-agent.json`): `npm run drill:local` with one tenant and the real agent",
    "  (hermes-agent 0.19.0 from the cached wheelhouse) next to `--agent standin`, caches warm, alternating pairs.",
    "- Everyday restores (`npx tsx bench/partial-restore.ts [--runs N]`, results in `bench/results/partial-restore.json`):",
    "  from the default-scale home's archive, agent-restore of one memory file, one profile, both in one command,",
    "  and the whole home (verified), each into a fresh folder, order rotated per run; medians and ratios to the whole.",
    "- The fleet ledger (`npx tsx bench/fleet-ledger.ts [--tenants N] [--runs N]`, results in `bench/results/fleet-ledger.json`):",
    "  `npm run fleet`'s reading, validation and aggregation for 500 tenants on 5 simulated boxes with a year of history",
    "  each, fresh Node process per run; `--scan` (root, sshd, borg): `agent-maintain --observe` per tenant on two",
    "  loopback boxes with 1 and 3 connections per box, side by side.",
    "",
  ];
  if (ours.length === 0) L.push("No results recorded yet.", "");
  for (const [f, r] of ours) L.push(...benchSection(r, f));
  for (const [f, d] of others) L.push(...otherSection(f, d));
  return L.join("\n");
}

export function writeReadme(): void {
  fs.writeFileSync(README, renderReadme());
}
