// Retention decided by the host's names and clocks: a compromised host adds an archive stamped
// later on the day of a good daily that a trusted run has already recorded (through its push key,
// within the backdate tolerance). borg prune by archive time would keep the newcomer as that day's
// daily and delete the good one. agent-maintain plans retention from what trusted runs observed:
// the good archive survives, on this run and after the newcomer is recorded too. Also: --observe
// records first sightings and writes nothing to the repository, and a run killed right after its
// deletion committed is not taken for tampering by the next one (the pending journal).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { startStorageBox, type StorageBox } from "../lib/storage-box";
import {
  archiveList,
  archiveName,
  archiveNewTree,
  createArchive,
  extractDigest,
  initRepo,
  repoSnapshot,
  runScript,
  writeMaintainConfig,
  writeSourceTree,
  type MaintainSetup,
} from "../lib/maintain-fixtures";

let box: StorageBox;
const DAY = 86_400_000;
const HOUR = 3_600_000;

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["steer", "observed", "journal", "ckpt"] });
  for (const t of ["steer", "observed", "journal", "ckpt"]) initRepo(box, t);
}, 300_000);

afterAll(async () => {
  await box?.stop();
});

interface StateArchive {
  name: string;
  first_seen: number;
  seen_after: number | null;
}
const state = (setup: MaintainSetup) =>
  JSON.parse(fs.readFileSync(setup.stateFile, "utf8")) as { version: number; seen_epoch: number; archives: StateArchive[] };

/** A source tree of its own for each archive; returns its digest. */
const makeArchive = (tenant: string, name: string, when: Date) =>
  archiveNewTree(box, tenant, name, when, Buffer.from(`# SOUL of ${name}\n`), 16 * 1024);

describe("retention is not steered by the host's names or clocks", () => {
  test("an archive stamped later on the day of a recorded daily never displaces it", () => {
    const t0 = Date.now();
    // The host's time for the steering archive: within the day of backdate tolerance of the last
    // trusted run, and an hour after the good archive on the same UTC day.
    let steerAt = t0 - 22 * HOUR;
    if (steerAt % DAY < 2 * HOUR) steerAt += 2 * HOUR;
    const goodAt = steerAt - HOUR;
    const oldest = archiveName("steer", new Date(t0 - 10 * DAY));
    const good = archiveName("steer", new Date(goodAt));
    const steering = archiveName("steer", new Date(steerAt));
    makeArchive("steer", oldest, new Date(t0 - 10 * DAY));
    const goodDigest = makeArchive("steer", good, new Date(goodAt));

    // KEEP_WITHIN 1H: the good daily is kept only as its day's daily.
    const setup = writeMaintainConfig(box, "steer", { KEEP_WITHIN: "1H", KEEP_DAILY: "7", KEEP_WEEKLY: "4", KEEP_MONTHLY: "6" });
    const adopt = runScript("agent-maintain", ["--config", setup.config, "--adopt"]);
    expect(adopt.status, adopt.stderr).toBe(0);

    // The attack: borg create --timestamp through the push key, after the trusted run.
    makeArchive("steer", steering, new Date(steerAt));
    expect(steering > good && steering.slice(0, 16) === good.slice(0, 16)).toBe(true);

    const first = runScript("agent-maintain", ["--config", setup.config]);
    expect(first.status, first.stderr).toBe(0);
    expect(archiveList(box, "steer").map((a) => a.name)).toContain(good);
    expect(first.stderr).toMatch(new RegExp(`keep {4}${good} {2}\\(daily #`));
    // The newcomer's own time was clamped into the window in which it appeared.
    const s1 = state(setup);
    const seen = s1.archives.find((a) => a.name === steering)!;
    expect(seen.seen_after).not.toBeNull();
    expect(seen.first_seen).toBeGreaterThan(seen.seen_after!);

    // Now the steering archive is recorded too: it still does not take the good one's place.
    const second = runScript("agent-maintain", ["--config", setup.config]);
    expect(second.status, second.stderr).toBe(0);
    expect(archiveList(box, "steer").map((a) => a.name)).toContain(good);
    expect(extractDigest(box, "steer", good)).toEqual(goodDigest);
  });

  test("--observe records first sightings, writes nothing to the repository, and refuses what the tamper check refuses", () => {
    const setup = writeMaintainConfig(box, "observed");
    makeArchive("observed", archiveName("observed", new Date(Date.now() - 2 * DAY)), new Date(Date.now() - 2 * DAY));
    expect(runScript("agent-maintain", ["--config", setup.config, "--adopt"]).status).toBe(0);
    const adopted = state(setup);
    const promFile = path.join(setup.metricsDir, "agent-maintain-observed.prom");
    const promBefore = fs.readFileSync(promFile, "utf8");

    const newcomer = archiveName("observed", new Date(Date.now() - HOUR));
    makeArchive("observed", newcomer, new Date(Date.now() - HOUR));
    const repoDir = box.tenants.observed!.repoPath;
    const before = repoSnapshot(repoDir);
    const startedAt = Math.floor(Date.now() / 1000);
    const r = runScript("agent-maintain", ["--config", setup.config, "--observe"]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/observed: 1 archive\(s\) seen for the first time, 2 recorded/);
    expect(r.stderr).not.toMatch(/borg check|retention|compact/);
    expect(repoSnapshot(repoDir)).toEqual(before);
    expect(fs.readFileSync(promFile, "utf8")).toBe(promBefore);
    const observed = state(setup);
    const seen = observed.archives.find((a) => a.name === newcomer)!;
    expect(seen.seen_after).toBe(adopted.seen_epoch);
    expect(seen.first_seen).toBeGreaterThanOrEqual(startedAt);
    expect(observed.seen_epoch).toBe(seen.first_seen);

    // A foreign name: refused, state untouched.
    const src = path.join(box.dir, "client", "src-odd");
    writeSourceTree(src, Buffer.from("odd"), 1024);
    createArchive(box, "observed", src, "notes", new Date());
    const stateBefore = fs.readFileSync(setup.stateFile);
    const refused = runScript("agent-maintain", ["--config", setup.config, "--observe"]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/TAMPER: unexpected archive name: notes/);
    expect(fs.readFileSync(setup.stateFile).equals(stateBefore)).toBe(true);
  });

  test("a stale checkpoint is removed, and a checkpoint replaced by its finished backup is no tampering", () => {
    const t0 = Date.now();
    for (const d of [3, 2]) makeArchive("ckpt", archiveName("ckpt", new Date(t0 - d * DAY)), new Date(t0 - d * DAY));
    // Left by a backup interrupted five days ago.
    const stale = `${archiveName("ckpt", new Date(t0 - 5 * DAY))}.checkpoint`;
    makeArchive("ckpt", stale, new Date(t0 - 5 * DAY));
    const setup = writeMaintainConfig(box, "ckpt", { KEEP_WITHIN: "1H" });
    expect(runScript("agent-maintain", ["--config", setup.config, "--adopt"]).status).toBe(0);

    // A long backup is running: its checkpoint is the newest archive when the trusted run comes.
    const running = archiveName("ckpt", new Date(t0 - 10 * 60_000));
    makeArchive("ckpt", `${running}.checkpoint`, new Date(t0 - 10 * 60_000));
    const first = runScript("agent-maintain", ["--config", setup.config]);
    expect(first.status, first.stderr).toBe(0);
    let names = archiveList(box, "ckpt").map((a) => a.name);
    expect(names).not.toContain(stale);
    expect(names).toContain(`${running}.checkpoint`);

    // The backup finishes: borg replaces the checkpoint by the archive (here by hand, same result).
    const drop = box.borg("ckpt", "push", ["delete", `::${running}.checkpoint`]);
    expect(drop.status, drop.stderr).toBe(0);
    makeArchive("ckpt", running, new Date(t0 - 10 * 60_000));
    const second = runScript("agent-maintain", ["--config", setup.config]);
    expect(second.status, second.stderr).toBe(0);
    expect(second.stderr).not.toMatch(/TAMPER/);
    names = archiveList(box, "ckpt").map((a) => a.name);
    expect(names).toContain(running);
    expect(names.filter((n) => n.includes(".checkpoint"))).toEqual([]);
  });

  test("a run killed right after its deletion committed is not taken for tampering by the next run", () => {
    const t0 = Date.now();
    const names: string[] = [];
    // Two archives a day for five days: retention keeps one a day, so each run deletes some.
    for (let d = 5; d >= 1; d--) {
      for (const h of [2, 1]) {
        const when = new Date(t0 - d * DAY - h * HOUR);
        names.push(archiveName("journal", when));
        makeArchive("journal", names.at(-1)!, when);
      }
    }
    const setup = writeMaintainConfig(box, "journal", { KEEP_WITHIN: "1H" });
    expect(runScript("agent-maintain", ["--config", setup.config, "--adopt"]).status).toBe(0);

    // borg, as agent-maintain calls it, but the run is stopped (SIGTERM, as a cancelled CI job)
    // the moment borg has committed a deletion.
    const bin = path.join(box.dir, "client", "killing-borg");
    fs.mkdirSync(bin, { recursive: true });
    const realBorg = spawnSync("sh", ["-c", "command -v borg"], { encoding: "utf8" }).stdout.trim();
    fs.writeFileSync(
      path.join(bin, "borg"),
      // (prune: how agent-maintain deleted before it planned retention itself; not its dry run)
      `#!/bin/bash\nset -uo pipefail\n"${realBorg}" "$@"\nrc=$?\nif [[ $rc == 0 && ($1 == delete || ($1 == prune && " $* " != *" --dry-run "*)) ]]; then kill -TERM "$PPID"; fi\nexit "$rc"\n`,
      { mode: 0o755 },
    );
    const killed = runScript("agent-maintain", ["--config", setup.config], { PATH: `${bin}:${process.env.PATH}` });
    expect(killed.status).not.toBe(0);
    expect(killed.stderr).not.toMatch(/retention will remove 0 /);
    expect(fs.existsSync(path.join(setup.stateDir, "prune-pending.json"))).toBe(true);
    const left = archiveList(box, "journal").map((a) => a.name);
    expect(left.length).toBeLessThan(names.length);

    const next = runScript("agent-maintain", ["--config", setup.config]);
    expect(next.status, next.stderr).toBe(0);
    expect(next.stderr).not.toMatch(/TAMPER/);
    expect(fs.existsSync(path.join(setup.stateDir, "prune-pending.json"))).toBe(false);
    expect(state(setup).archives.map((a) => a.name).sort()).toEqual(archiveList(box, "journal").map((a) => a.name).sort());
  });
});
