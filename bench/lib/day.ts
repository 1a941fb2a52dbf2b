// A realistic day in the agent's life between two nightly backups: new sessions and 1% more rows
// in every store (the project's live writer, test/fixtures/agent-writer, for state.db; one
// generic INSERT per table for the smaller stores), a few new session snapshots, edited memories.
import * as fs from "node:fs";
import * as path from "node:path";
import { mustMeasure, run } from "./measure";
import { REPO_ROOT } from "./home";

const AGENT_WRITER = path.join(REPO_ROOT, "test", "fixtures", "agent-writer");
const SQLITE_MAGIC = "SQLite format 3\0";
const SAFE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface DayResult {
  stores: { file: string; rowsBefore: number; rowsAdded: number }[];
  sessionFilesAdded: number;
  memoriesEdited: string[];
}

export function isSqlite(file: string): boolean {
  const fd = fs.openSync(file, "r");
  try {
    const buf = Buffer.alloc(16);
    return fs.readSync(fd, buf, 0, 16, 0) === 16 && buf.toString("latin1") === SQLITE_MAGIC;
  } finally {
    fs.closeSync(fd);
  }
}

function sql(db: string, query: string): string {
  return run(["sqlite3", "-bail", db, ".timeout 10000", query]).trim();
}

/** Plain tables of a store (no FTS shadow or virtual tables, no sqlite_ internals). */
function plainTables(db: string): string[] {
  return sql(db, "SELECT name FROM sqlite_master WHERE type='table' AND sql NOT LIKE 'CREATE VIRTUAL%' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '%_fts%'")
    .split("\n")
    .filter((t) => SAFE_NAME.test(t));
}

function rowCount(db: string): number {
  return plainTables(db).reduce((n, t) => n + Number(sql(db, `SELECT count(*) FROM "${t}"`)), 0);
}

/** Adds 1% (at least one row) to each plain table by re-inserting existing rows under new keys. */
function growGenerically(db: string): void {
  for (const t of plainTables(db)) {
    const n = Number(sql(db, `SELECT count(*) FROM "${t}"`));
    if (n === 0) continue;
    const info = sql(db, `SELECT name || '|' || pk || '|' || type FROM pragma_table_info('${t}')`)
      .split("\n")
      .map((l) => l.split("|"));
    const rowidKey = ([, pk, type]: string[]): boolean => pk === "1" && /^INTEGER$/i.test(type ?? "");
    // A copied row would clash on any other key (TEXT PRIMARY KEY, composite): leave such tables.
    if (info.some((c) => c[1] !== "0" && !rowidKey(c))) continue;
    const cols = info.filter((c) => !rowidKey(c) && SAFE_NAME.test(c[0] ?? ""));
    if (cols.length === 0) continue;
    const list = cols.map(([c]) => `"${c}"`).join(", ");
    sql(db, `INSERT INTO "${t}" (${list}) SELECT ${list} FROM "${t}" ORDER BY rowid LIMIT ${Math.max(1, Math.ceil(n / 100))}`);
  }
}

/**
 * Runs the project's live writer on the home (the directory of a state.db) until `rows` more
 * messages landed; returns how many did (it may overshoot by up to a second of writes).
 */
export async function addMessages(home: string, rows: number): Promise<number> {
  const db = path.join(home, "state.db");
  const count = (): number => Number(sql(db, "SELECT count(*) FROM messages"));
  const start = count();
  for (let round = 0; round < 20; round++) {
    const left = rows - (count() - start);
    if (left <= 0) return count() - start;
    const seconds = Math.max(1, Math.ceil(left / 200));
    // It reaches about half its --rate on two busy cores (it forks per commit): aim at twice.
    const rate = Math.min(1000, Math.max(1, Math.ceil((2 * left) / seconds)));
    await mustMeasure(["bash", AGENT_WRITER, "--home", home, "--rate", String(rate), "--duration", String(seconds)]);
  }
  throw new Error(`agent-writer did not add ${rows} messages to ${db} in 20 rounds`);
}

/**
 * Applies one day to the home. `stores` are the SQLite files the backup keeps (relative paths);
 * homes holding a state.db (the root, each profile) get their day from the live writer.
 */
export async function liveADay(home: string, stores: string[], day: number): Promise<DayResult> {
  const result: DayResult = { stores: [], sessionFilesAdded: 0, memoriesEdited: [] };
  for (const rel of stores) {
    const db = path.join(home, rel);
    const before = rowCount(db);
    if (path.basename(rel) === "state.db") {
      await addMessages(path.dirname(db), Math.max(1, Math.ceil(Number(sql(db, "SELECT count(*) FROM messages")) / 100)));
    }
    else growGenerically(db);
    result.stores.push({ file: rel, rowsBefore: before, rowsAdded: rowCount(db) - before });
  }
  const sessions = path.join(home, "sessions");
  if (fs.existsSync(sessions)) {
    const existing = fs.readdirSync(sessions).filter((f) => /^session_.*\.json$/.test(f)).length;
    const add = Math.max(1, Math.ceil(existing / 100));
    for (let i = 1; i <= add; i++) {
      const id = `day${day}-${String(i).padStart(6, "0")}`;
      fs.writeFileSync(
        path.join(sessions, `session_${id}.json`),
        JSON.stringify({ session_id: id, messages: [{ role: "user", content: `what changed on day ${day}?` }] }) + "\n",
        { mode: 0o600 },
      );
    }
    result.sessionFilesAdded = add;
  }
  for (const rel of ["memories/MEMORY.md", "memories/USER.md"]) {
    const f = path.join(home, rel);
    if (!fs.existsSync(f)) continue;
    fs.appendFileSync(f, `- learned on day ${day}: the user asked for a summary at 9:00\n`);
    result.memoriesEdited.push(rel);
  }
  return result;
}
