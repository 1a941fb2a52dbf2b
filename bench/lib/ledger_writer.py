#!/usr/bin/env python3
"""Concurrent writer for the SQLite copy benchmark.

Keeps committing to a WAL database the way the agent does (short BEGIN IMMEDIATE transactions, a
TRUNCATE checkpoint every 50 commits, like hermes_state.py) while maintaining an invariant that a
torn copy breaks:

  * bench_ledger: ACCOUNTS rows whose balances always sum to ACCOUNTS * 1000 (every commit moves
    an amount between two random accounts, so pages all over the table change);
  * bench_journal: one row per commit, and bench_meta.commits equals its row count.

Usage:
  ledger_writer.py --db PATH --init [--accounts N]      create the tables (idempotent), exit
  ledger_writer.py --db PATH --check                    integrity_check + the invariant as JSON,
                                                         exit 0 only if both hold
  ledger_writer.py --db PATH --run --rate R --max-seconds S [--max-commits N]
      commit at about R per second until SIGTERM, S seconds or N commits; prints "ready" once,
      then a JSON summary {commits, seconds, rate} on exit.

Why not test/fixtures/agent-writer (the project's live writer, used for the day between nights):
it is bash forking per commit and peaks near 260 commits/s here, too close to the 200/s floor
once copies compete for the two cores; this one holds its rate and touches pages everywhere.
"""
import argparse
import json
import os
import random
import signal
import sqlite3
import sys
import time

START_BALANCE = 1000
CHECKPOINT_EVERY = 50  # hermes_state.py checkpoints (TRUNCATE) every 50 writes


def connect(path):
    # timeout=1.0 as hermes_state.py: a TRUNCATE checkpoint waits at most 1 s for a reader (a long
    # copy) and then gives up (busy=1), instead of stalling the writer for the whole copy.
    con = sqlite3.connect(path, timeout=1.0, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    # The writer must sustain >= 200 commits/s on shared CI disks; NORMAL is WAL's usual setting.
    con.execute("PRAGMA synchronous=NORMAL")
    return con


def init(con, accounts):
    con.execute("BEGIN IMMEDIATE")
    con.execute("CREATE TABLE IF NOT EXISTS bench_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
    con.execute(
        "CREATE TABLE IF NOT EXISTS bench_ledger (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad BLOB)"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS bench_journal (id INTEGER PRIMARY KEY, src INTEGER, dst INTEGER,"
        " amount INTEGER, at REAL, body TEXT)"
    )
    have = con.execute("SELECT count(*) FROM bench_ledger").fetchone()[0]
    if have == 0:
        con.execute("INSERT INTO bench_meta VALUES ('accounts', ?), ('commits', 0)", (accounts,))
        # A 300-byte pad spreads the ledger over many pages, so transfers touch pages everywhere.
        con.executemany(
            "INSERT INTO bench_ledger VALUES (?, ?, randomblob(300))",
            ((i, START_BALANCE) for i in range(1, accounts + 1)),
        )
    con.execute("COMMIT")


def check(con):
    accounts = con.execute("SELECT v FROM bench_meta WHERE k='accounts'").fetchone()[0]
    commits = con.execute("SELECT v FROM bench_meta WHERE k='commits'").fetchone()[0]
    total, rows = con.execute("SELECT sum(balance), count(*) FROM bench_ledger").fetchone()
    journal = con.execute("SELECT count(*) FROM bench_journal").fetchone()[0]
    ok = total == accounts * START_BALANCE and rows == accounts and journal == commits
    return {"ok": ok, "accounts": accounts, "rows": rows, "sum": total, "commits": commits, "journal": journal}


def run(con, rate, max_seconds, max_commits):
    stop = {"now": False}

    def on_term(_signum, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    accounts = con.execute("SELECT v FROM bench_meta WHERE k='accounts'").fetchone()[0]
    rng = random.Random(os.getpid())
    body = "x" * 400  # about the size of a short chat message
    print("ready", flush=True)
    start = time.monotonic()
    commits = 0
    while not stop["now"]:
        elapsed = time.monotonic() - start
        if elapsed >= max_seconds or (max_commits and commits >= max_commits):
            break
        src, dst = rng.randint(1, accounts), rng.randint(1, accounts)
        amount = rng.randint(1, 50)
        for attempt in range(15):  # hermes_state.py retries BEGIN IMMEDIATE 15 times
            try:
                con.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError:
                if attempt == 14:
                    raise
                time.sleep(rng.uniform(0.02, 0.15))
        con.execute("UPDATE bench_ledger SET balance = balance - ? WHERE id = ?", (amount, src))
        con.execute("UPDATE bench_ledger SET balance = balance + ? WHERE id = ?", (amount, dst))
        con.execute(
            "INSERT INTO bench_journal (src, dst, amount, at, body) VALUES (?, ?, ?, ?, ?)",
            (src, dst, amount, time.time(), body),
        )
        con.execute("UPDATE bench_meta SET v = v + 1 WHERE k = 'commits'")
        con.execute("COMMIT")
        commits += 1
        if commits % CHECKPOINT_EVERY == 0:
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.OperationalError:
                pass  # another checkpoint holds the lock; the next one will do

        if rate > 0:
            ahead = commits / rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
    seconds = time.monotonic() - start
    print(json.dumps({"commits": commits, "seconds": seconds, "rate": commits / seconds if seconds else 0}), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--init", action="store_true")
    mode.add_argument("--check", action="store_true")
    mode.add_argument("--run", action="store_true")
    p.add_argument("--accounts", type=int, default=20000)
    p.add_argument("--rate", type=float, default=250.0)
    p.add_argument("--max-seconds", type=float, default=600.0)
    p.add_argument("--max-commits", type=int, default=0)
    a = p.parse_args()
    if a.check:
        # Copies are throw-away: open read-write (a read-only open of a WAL file without -shm fails).
        con = sqlite3.connect(a.db)
        try:
            integrity = [r[0] for r in con.execute("PRAGMA integrity_check")]
            result = check(con)
            result["integrity"] = integrity[:5]
            result["ok"] = result["ok"] and integrity == ["ok"]
        except sqlite3.Error as e:
            result = {"ok": False, "error": str(e)}
        print(json.dumps(result))
        sys.exit(0 if result["ok"] else 1)
    con = connect(a.db)
    if a.init:
        init(con, a.accounts)
    else:
        run(con, a.rate, a.max_seconds, a.max_commits)
    con.close()


if __name__ == "__main__":
    main()
