// The SQLite copy comparison: each copy method, under a writer committing >= 200 times per second,
// timed and checked (integrity_check plus the writer's invariant) over N trials; then how well each
// method's copies deduplicate from one night to the next, measured with borg.
import { ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { addMessages } from "./day";
import { killTree, measure, median, progress, run } from "./measure";

const WRITER = path.join(__dirname, "ledger_writer.py");
/** Paths are spliced into SQL strings and shell commands: only plain ones. */
const SAFE_PATH = /^[A-Za-z0-9_./-]+$/;

export const METHODS = ["vacuum-into", "backup-api-one-step", "shell-backup", "shell-backup-read-txn", "checkpoint-cp"] as const;
export type Method = (typeof METHODS)[number];

/** The command each method runs to copy `src` to `dst`, as a user would type it. */
export function copyCommand(method: Method, src: string, dst: string): string[] {
  for (const p of [src, dst]) if (!SAFE_PATH.test(p)) throw new Error(`unsafe path for SQL: ${p}`);
  switch (method) {
    case "vacuum-into":
      return ["sqlite3", src, ".timeout 10000", `VACUUM INTO '${dst}'`];
    case "backup-api-one-step":
      // python3's sqlite3 module: sqlite3_backup_step(-1), the whole database in one step under
      // one read transaction (the sqlite3 shell cannot do this; its .backup steps 100 pages).
      return [
        "python3",
        "-c",
        "import sqlite3,sys\nsrc=sqlite3.connect(sys.argv[1],timeout=10)\ndst=sqlite3.connect(sys.argv[2])\nsrc.backup(dst,pages=-1)\ndst.close();src.close()",
        src,
        dst,
      ];
    case "shell-backup":
      return ["sqlite3", src, ".timeout 10000", `.backup '${dst}'`];
    case "shell-backup-read-txn":
      // Not one of the four: the shell's .backup from a connection that already holds a
      // read transaction sees one snapshot, so writers cannot restart it (a bash-only way to a
      // page-for-page copy, which deduplicates from night to night unlike VACUUM INTO).
      return ["sqlite3", src, ".timeout 10000", "BEGIN", "SELECT count(*) FROM sqlite_master", `.backup '${dst}'`, "COMMIT"];
    case "checkpoint-cp":
      return ["sh", "-c", 'sqlite3 "$1" ".timeout 10000" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null && cp "$1" "$2"', "sh", src, dst];
  }
}

export interface MethodResult {
  method: Method;
  command: string;
  trials: number;
  completed: number;
  /** Copies that completed but failed integrity_check or the writer's invariant. */
  inconsistent: number;
  /** Copy commands that exited non-zero (e.g. SQLITE_BUSY): no copy at all that night. */
  failed: number;
  timedOut: number;
  /** Set when the method was given up on (3 timeouts in a row) before all trials ran. */
  abandoned: boolean;
  medianSeconds: number;
  /** Writer commits per second while this method's copies ran (median over trials). */
  writerRateDuringCopy: number;
  medianCopyBytes: number;
  /** borg: new (deduplicated) bytes of the second night's copy / its original size. */
  nightToNightNewFraction: number;
  nightToNightNewBytes: number;
  examples: string[];
}

export interface SqliteCopyResult {
  dbBytes: number;
  sourceDescription: string;
  writerTargetRate: number;
  writerAchievedRate: number;
  writerCheckpointEvery: number;
  trialsPerMethod: number;
  timeoutSeconds: number;
  /** Messages the live writer added between the two nights (target: 1% of the store's). */
  dayRows: number;
  methods: MethodResult[];
  /** Method that agent-backup uses (read from scripts/agent-backup), if it could be told. */
  chosenMethod: Method | null;
  chosenMethodSource: string;
}

export interface SqliteCopyOptions {
  workDir: string;
  /** A realistic store to start from (copied, never touched). */
  sourceDb: string;
  sourceDescription: string;
  trials: number;
  writerRate: number;
  agentBackupScript: string;
}

function messageCount(db: string): number {
  return Number(run(["sqlite3", db, ".timeout 10000", "SELECT count(*) FROM messages"]).trim());
}

function commitsSoFar(db: string): number {
  return Number(run(["sqlite3", db, ".timeout 10000", "SELECT v FROM bench_meta WHERE k='commits'"]).trim());
}

interface Writer {
  child: ChildProcessWithoutNullStreams;
  done: Promise<{ commits: number; seconds: number; rate: number }>;
}

async function startWriter(db: string, rate: number, maxSeconds: number): Promise<Writer> {
  const child = spawn("python3", [WRITER, "--db", db, "--run", "--rate", String(rate), "--max-seconds", String(maxSeconds)]);
  let out = "";
  let err = "";
  child.stderr.on("data", (b: Buffer) => (err += b.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (b: Buffer) => {
      out += b.toString();
      if (out.startsWith("ready\n")) resolve();
    });
    child.on("exit", (code) => reject(new Error(`writer exited early (${code}): ${err}`)));
  });
  const done = new Promise<{ commits: number; seconds: number; rate: number }>((resolve, reject) => {
    child.on("close", (code) => {
      const last = out.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(last));
      } catch {
        reject(new Error(`writer ended without a summary (exit ${code}): ${err}`));
      }
    });
  });
  done.catch(() => undefined);
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("writer not ready in 60 s")), 60_000).unref());
  await Promise.race([ready, timeout]);
  return { child, done };
}

/** Which method agent-backup uses, read from its source (the one place that decides it). */
export function chosenMethod(agentBackupScript: string): { method: Method | null; source: string } {
  if (!fs.existsSync(agentBackupScript)) return { method: null, source: `${agentBackupScript} missing` };
  // Its code only: comments may name the methods it does not use.
  const text = fs
    .readFileSync(agentBackupScript, "utf8")
    .split("\n")
    .filter((l) => !/^\s*#/.test(l))
    .join("\n");
  const name = path.basename(agentBackupScript);
  if (/VACUUM INTO/i.test(text)) return { method: "vacuum-into", source: `${name} runs VACUUM INTO` };
  if (/\.backup\(|pages=-1|backup_step\(.*-1/.test(text)) return { method: "backup-api-one-step", source: `${name} uses the backup API` };
  if (/\.backup /.test(text) && /'BEGIN'|\bBEGIN;/.test(text)) {
    return { method: "shell-backup-read-txn", source: `${name} runs .backup inside BEGIN ... COMMIT` };
  }
  if (/\.backup /.test(text)) return { method: "shell-backup", source: `${name} runs .backup` };
  return { method: null, source: `no copy method recognised in ${agentBackupScript}` };
}

export async function sqliteCopyBench(o: SqliteCopyOptions): Promise<SqliteCopyResult> {
  const workDir = path.resolve(o.workDir);
  const live = path.join(workDir, "live", "state.db");
  const copies = path.join(workDir, "copies");
  const cleanUp = (): void => {
    fs.rmSync(copies, { recursive: true, force: true });
    fs.rmSync(path.dirname(live), { recursive: true, force: true });
  };
  cleanUp();
  fs.mkdirSync(path.dirname(live), { recursive: true });
  fs.mkdirSync(copies, { recursive: true });
  try {
    return await trialsAndNights(o, live, copies);
  } finally {
    cleanUp();
  }
}

async function trialsAndNights(o: SqliteCopyOptions, live: string, copies: string): Promise<SqliteCopyResult> {
  run(["sqlite3", o.sourceDb, ".timeout 10000", `VACUUM INTO '${live}'`]);
  run(["python3", WRITER, "--db", live, "--init"]);
  const dbBytes = fs.statSync(live).size;

  // Bound each copy: 10x a quiet VACUUM INTO, at least 20 s (beyond 2x the goal is moot anyway).
  const quiet = await measure(copyCommand("vacuum-into", live, path.join(copies, "quiet.db")));
  fs.rmSync(path.join(copies, "quiet.db"), { force: true });
  const timeoutSeconds = Math.max(20, Math.ceil(10 * quiet.wallSeconds));

  const results = new Map<Method, { secs: number[]; rates: number[]; bytes: number[]; timeoutsInARow: number; r: MethodResult }>();
  for (const m of METHODS) {
    results.set(m, {
      secs: [],
      rates: [],
      bytes: [],
      timeoutsInARow: 0,
      r: {
        method: m,
        command: copyCommand(m, "live/state.db", "copies/state.db").join(" "),
        trials: 0,
        completed: 0,
        inconsistent: 0,
        failed: 0,
        timedOut: 0,
        abandoned: false,
        medianSeconds: NaN,
        writerRateDuringCopy: NaN,
        medianCopyBytes: NaN,
        nightToNightNewFraction: NaN,
        nightToNightNewBytes: NaN,
        examples: [],
      },
    });
  }

  // Generous bound on the writer's life: every trial timing out, plus the night-to-night phase.
  const writerBound = METHODS.length * o.trials * (timeoutSeconds + 10) + 1200;
  const writer = await startWriter(live, o.writerRate, writerBound);
  const dayRows = Math.max(20, Math.ceil(0.01 * messageCount(live)));
  let dayRowsAdded = 0;
  let summary = { commits: 0, seconds: 0, rate: NaN };
  try {
    for (let t = 0; t < o.trials; t++) {
      // Rotate the order so no method always runs right after another's checkpoint.
      const order = METHODS.map((_, i) => METHODS[(i + t) % METHODS.length]!);
      for (const m of order) {
        const s = results.get(m)!;
        if (s.r.abandoned) continue;
        const dst = path.join(copies, `${m}.db`);
        fs.rmSync(dst, { force: true });
        const before = commitsSoFar(live);
        const res = await measure(copyCommand(m, live, dst), { timeoutSeconds });
        const after = commitsSoFar(live);
        s.r.trials++;
        s.timeoutsInARow = res.exitCode === 124 ? s.timeoutsInARow + 1 : 0;
        if (res.exitCode === 124) {
          s.r.timedOut++;
          s.r.abandoned = s.timeoutsInARow >= 3;
        } else if (res.exitCode !== 0) {
          s.r.failed++;
          if (s.r.examples.length < 3) s.r.examples.push(`copy failed: ${res.stderr.trim().slice(0, 200)}`);
        } else {
          s.r.completed++;
          s.secs.push(res.wallSeconds);
          s.rates.push((after - before) / res.wallSeconds);
          s.bytes.push(fs.statSync(dst).size);
          const check = await measure(["python3", WRITER, "--db", dst, "--check"]);
          if (check.exitCode !== 0) {
            s.r.inconsistent++;
            if (s.r.examples.length < 3) s.r.examples.push(check.stdout.trim().slice(0, 300));
          }
        }
        for (const f of [dst, `${dst}-wal`, `${dst}-shm`]) fs.rmSync(f, { force: true });
      }
      progress(`sqlite copy: trial ${t + 1}/${o.trials} done`);
    }

    // Night to night: copy with each method, let a day of the agent's writes land (the project's
    // live writer adding 1% of the messages, with their FTS rows), copy again, ask borg what is new.
    killTree(writer.child.pid, "SIGTERM");
    summary = await writer.done;
    progress(`sqlite copy: night-to-night dedup (a day: ${dayRows} new messages between nights)`);
    const nights: Record<string, string[]> = {};
    for (const night of [1, 2]) {
      if (night === 2) {
        dayRowsAdded = await addMessages(path.dirname(live), dayRows);
      }
      for (const m of METHODS) {
        if (results.get(m)!.r.abandoned) continue;
        const dir = path.join(copies, `night${night}`, m);
        fs.mkdirSync(dir, { recursive: true });
        const res = await measure(copyCommand(m, live, path.join(dir, "state.db")), { timeoutSeconds });
        if (res.exitCode === 0) (nights[m] ??= []).push(dir);
      }
    }
    for (const m of METHODS) {
      const dirs = nights[m];
      if (!dirs || dirs.length !== 2) continue;
      const repo = path.join(copies, `repo-${m}`);
      const env = { ...process.env, BORG_BASE_DIR: path.join(copies, "borg-base"), BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "yes" };
      run(["borg", "init", "--encryption=none", repo], { env });
      let second: { original_size: number; deduplicated_size: number } | undefined;
      for (const [i, dir] of dirs.entries()) {
        const out = run(["borg", "create", "--json", `${repo}::night${i + 1}`, "."], { cwd: dir, env });
        second = JSON.parse(out).archive.stats;
      }
      const r = results.get(m)!.r;
      r.nightToNightNewBytes = second!.deduplicated_size;
      r.nightToNightNewFraction = second!.deduplicated_size / second!.original_size;
    }
  } finally {
    killTree(writer.child.pid, "SIGTERM");
  }
  const chosen = chosenMethod(o.agentBackupScript);
  return {
    dbBytes,
    sourceDescription: o.sourceDescription,
    writerTargetRate: o.writerRate,
    writerAchievedRate: summary.rate,
    writerCheckpointEvery: 50,
    trialsPerMethod: o.trials,
    timeoutSeconds,
    dayRows: dayRowsAdded,
    methods: METHODS.map((m) => {
      const s = results.get(m)!;
      return { ...s.r, medianSeconds: median(s.secs), writerRateDuringCopy: median(s.rates), medianCopyBytes: median(s.bytes) };
    }),
    chosenMethod: chosen.method,
    chosenMethodSource: chosen.source,
  };
}
