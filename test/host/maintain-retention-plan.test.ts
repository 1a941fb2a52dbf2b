// agent-maintain's retention plan (retention_plan in scripts/lib/maintain.sh) is a function of the
// trusted observations and the time of the run, so it is tested here at any time of the year:
// with every archive first seen by one run it is exactly borg prune's plan (borg itself is the
// oracle, on a local repository); across runs, an archive seen later never displaces one seen
// earlier in its day, week or month, whatever time it claims; the host's clock only orders
// archives first seen by the same run (the observation interval); claimed times are clamped into
// the window in which the archive appeared.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { scriptsUnderTest } from "../lib/maintain-fixtures";

interface Observed {
  name: string;
  id: string;
  time: string;
  first_seen: number;
  seen_after: number | null;
}
interface Planned extends Observed {
  t: number;
  why?: string;
}
interface Policy {
  within: string;
  daily: number;
  weekly: number;
  monthly: number;
}

const NAME_RE = "^acme-[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.checkpoint(\\.[0-9]+)?)?$";
const HOUR = 3600;
const DAY = 86400;
const unitSeconds: Record<string, number> = { H: HOUR, d: DAY, w: 7 * DAY, m: 31 * DAY, y: 365 * DAY };
const withinSeconds = (w: string) => Number(w.slice(0, -1)) * unitSeconds[w.slice(-1)]!;

function plan(archives: Observed[], now: number, p: Policy, pinnedIds: string[] = []): { keep: Planned[]; delete: Planned[] } {
  const lib = path.join(scriptsUnderTest, "lib", "maintain.sh");
  const r = spawnSync(
    "bash",
    ["-c", 'set -euo pipefail; source "$1"; shift; retention_plan "$@"', "plan", lib, JSON.stringify(archives), String(now),
      String(withinSeconds(p.within)), String(p.daily), String(p.weekly), String(p.monthly), NAME_RE, JSON.stringify(pinnedIds)],
    { encoding: "utf8", env: { ...process.env, TZ: "UTC" } },
  );
  if (r.status !== 0) throw new Error(`retention_plan failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
const iso = (epoch: number) => new Date(epoch * 1000).toISOString().slice(0, 19);
const name = (epoch: number) => `acme-${iso(epoch)}`;
let ids = 0;
function archive(time: number, firstSeen: number, seenAfter: number | null, archiveName = name(time)): Observed {
  ids += 1;
  return { name: archiveName, id: ids.toString(16).padStart(64, "0"), time: `${iso(time)}.000000`, first_seen: firstSeen, seen_after: seenAfter };
}
const kept = (p: { keep: Planned[] }) => p.keep.map((a) => a.name).sort();

describe("with every archive first seen by one trusted run, the plan is borg prune's", () => {
  let dir: string;
  let repo: string;
  let now: number;
  let list: { name: string; id: string; time: string }[];
  const env = () => ({ ...process.env, TZ: "UTC", BORG_BASE_DIR: path.join(dir, "base"), BORG_PASSPHRASE: "plan-test" });
  const borg = (args: string[], cwd?: string) => {
    const r = spawnSync("borg", args, { cwd, env: env(), encoding: "utf8", timeout: 120_000 });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`borg ${args.join(" ")} failed: ${r.stderr}`);
    return { stdout: r.stdout, stderr: r.stderr };
  };

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-plan-"));
    repo = path.join(dir, "repo");
    borg(["init", "--encryption=repokey-blake2", repo]);
    const src = path.join(dir, "src");
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, "SOUL.md"), "persona\n");
    now = Math.floor(Date.now() / 1000);
    // 50 archives over 200 days (several on some days), deterministic; two checkpoints.
    const times = new Set<number>();
    let x = 12345;
    const next = () => (x = (x * 1103515245 + 12345) % 2 ** 31);
    while (times.size < 44) times.add(now - (next() % (200 * DAY)));
    for (let i = 0; i < 4; i++) times.add(now - 2 * DAY + i * 5 * HOUR);
    for (const t of [...times].sort()) borg(["create", "--timestamp", iso(t), `${repo}::${name(t)}`, "."], src);
    borg(["create", "--timestamp", iso(now - 30 * DAY), `${repo}::${name(now - 30 * DAY)}.checkpoint`, "."], src);
    borg(["create", "--timestamp", iso(now - 600), `${repo}::${name(now - 600)}.checkpoint.1`, "."], src);
    list = JSON.parse(borg(["list", "--json", "--consider-checkpoints", repo]).stdout).archives;
    expect(list.filter((a) => a.name.includes(".checkpoint"))).toHaveLength(2);
  }, 300_000);

  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const policies: Policy[] = [
    { within: "2d", daily: 7, weekly: 4, monthly: 6 },
    { within: "1H", daily: 7, weekly: 4, monthly: 6 },
    { within: "1H", daily: 3, weekly: 0, monthly: 0 },
    { within: "1H", daily: 0, weekly: 2, monthly: 0 },
    { within: "1H", daily: 0, weekly: 0, monthly: 12 },
    { within: "10d", daily: 5, weekly: 5, monthly: 5 },
    { within: "1H", daily: 100, weekly: 0, monthly: 0 },
  ];
  test.each(policies)("keep-within $within, daily $daily, weekly $weekly, monthly $monthly", (p) => {
    const seen = now + 60;
    const observed = list.map((a) => ({ ...a, first_seen: seen, seen_after: null }));
    // borg prune --list logs its plan on stderr.
    const out = borg(["prune", "--dry-run", "--list", "--keep-within", p.within, "--keep-daily", String(p.daily),
      "--keep-weekly", String(p.weekly), "--keep-monthly", String(p.monthly), repo]).stderr;
    const borgKept = [...out.matchAll(/^Keeping (?:checkpoint )?archive(?: \(rule: ([a-z]+)[^)]*\))?: +(\S+)/gm)].map((m) => `${m[2]} ${m[1] ?? "checkpoint"}`).sort();
    const borgPruned = [...out.matchAll(/^Would prune: +(\S+)/gm)].map((m) => m[1]).sort();
    // borg prune's keep-within counts from its own clock: plan at the same moment.
    const ours = plan(observed, Math.floor(Date.now() / 1000), p);
    expect(ours.keep.map((a) => `${a.name} ${a.why!.startsWith("newest checkpoint") ? "checkpoint" : a.why!.split(/[ #[]/)[0]}`).sort()).toEqual(borgKept);
    expect(ours.delete.map((a) => a.name).sort()).toEqual(borgPruned);
    expect(borgPruned.length).toBeGreaterThan(0);
  });
});

describe("across trusted runs", () => {
  // Trusted runs at r0 < r1 < r2 < r3 (one a day at 02:43); the day under attack is D.
  const D = Date.UTC(2026, 2, 11) / 1000; // a Wednesday
  const r0 = D - DAY + 2 * HOUR + 43 * 60;
  const r1 = D + 2 * HOUR + 43 * 60;
  const r2 = D + DAY + 2 * HOUR + 43 * 60;
  const r3 = D + 2 * DAY + 2 * HOUR + 43 * 60;
  const policy: Policy = { within: "1H", daily: 7, weekly: 4, monthly: 6 };
  const older = () => [archive(D - 20 * DAY, r0, null), archive(D - 40 * DAY, r0, null)];
  // The next day's archive, seen at r3: the newest, which is always kept.
  const nextDay = () => archive(D + DAY + 3 * HOUR, r3, r2);

  test("a recorded daily is not displaced by an archive seen later that claims a later time of its day", () => {
    // The good archive of day D, made 01:00, recorded by the run at r1 (02:43 the same day).
    const good = archive(D + HOUR, r1, r0);
    // The host's archive appears before r2 and claims 23:00 on day D.
    const steer = archive(D + 23 * HOUR, r2, r1);
    const first = plan([...older(), good, steer], r2 + 60, policy);
    expect(kept(first)).toContain(good.name);
    expect(first.keep.find((a) => a.name === good.name)!.why).toMatch(/^daily #/);
    // A week later, both long recorded: still the one seen first.
    const later = plan([...older(), good, steer, nextDay()], r3 + 7 * DAY, policy);
    expect(kept(later)).toContain(good.name);
    expect(later.delete.map((a) => a.name)).toContain(steer.name);
  });

  test("the same holds for the week and the month: the period keeps the archive seen first", () => {
    const weekly: Policy = { within: "1H", daily: 0, weekly: 1, monthly: 0 };
    const good = archive(D + HOUR, r1, r0);
    const steer = archive(D + 3 * DAY, r2, r1); // claims Saturday of the same ISO week
    const newest = archive(D + 40 * DAY, r3 + 40 * DAY, r3 + 39 * DAY);
    const week = plan([good, steer, newest], r3 + 50 * DAY, weekly);
    expect(week.keep.map((a) => [a.name, a.why])).toEqual([[newest.name, "weekly #1"]]);
    const twoWeeks = plan([good, steer, newest], r3 + 50 * DAY, { ...weekly, weekly: 2 });
    expect(twoWeeks.keep.map((a) => [a.name, a.why])).toEqual([[newest.name, "weekly #1"], [good.name, "weekly #2"]]);
    const monthly: Policy = { within: "1H", daily: 0, weekly: 0, monthly: 2 };
    const months = plan([good, steer, newest], r3 + 50 * DAY, monthly);
    expect(months.keep.map((a) => [a.name, a.why])).toEqual([[newest.name, "monthly #1"], [good.name, "monthly #2"]]);
    expect(months.delete.map((a) => a.name)).toEqual([steer.name]);
  });

  test("archives first seen by the same run are ordered by the host's clock: the observation interval", () => {
    // Both appeared between r1 and r2: the trusted side cannot tell them apart, the claim decides.
    const good = archive(D + 12 * HOUR, r2, r1);
    const steer = archive(D + 23 * HOUR, r2, r1);
    const unobserved = plan([...older(), good, steer, nextDay()], r3 + 7 * DAY, policy);
    expect(unobserved.delete.map((a) => a.name)).toContain(good.name);
    // With an observation between the two (--observe), the good one was seen first and stays.
    const observedGood = archive(D + 12 * HOUR, D + 13 * HOUR, r1);
    const steerAfter = archive(D + 23 * HOUR, r2, D + 13 * HOUR);
    const observed = plan([...older(), observedGood, steerAfter, nextDay()], r3 + 7 * DAY, policy);
    expect(kept(observed)).toContain(observedGood.name);
    expect(observed.delete.map((a) => a.name)).toContain(steerAfter.name);
  });

  test("a claimed time is clamped into the window in which the archive appeared", () => {
    const backdated = archive(D - 5 * DAY, r2, r1); // claims a day five days before it appeared
    const future = archive(D + 9 * DAY, r2, r1); // claims a time after the run that saw it
    const p = plan([...older(), backdated, future], r2 + 60, { within: "1H", daily: 7, weekly: 4, monthly: 6 });
    const t = Object.fromEntries([...p.keep, ...p.delete].map((a) => [a.name, a.t]));
    expect(t[backdated.name]).toBe(r1);
    expect(t[future.name]).toBe(r2);
  });

  test("the newest archive is always kept, and a checkpoint only while it is the newest", () => {
    const recorded = archive(D + HOUR, r1, r0);
    const latest = archive(D + 5 * HOUR, r2, r1);
    const staleCheckpoint = archive(D + 30 * 60, r2, r1, `${name(D + 30 * 60)}.checkpoint`);
    // daily 1: day D's representative is the recorded archive; the newer one is kept as the newest.
    const p = plan([recorded, latest, staleCheckpoint], r3 + 7 * DAY, { within: "1H", daily: 1, weekly: 0, monthly: 0 });
    expect(p.keep.map((a) => [a.name, a.why])).toEqual([
      [latest.name, "newest"],
      [recorded.name, "daily #1"],
    ]);
    expect(p.delete.map((a) => a.name)).toEqual([staleCheckpoint.name]);
    const freshCheckpoint = archive(D + 6 * HOUR, r2, r1, `${name(D + 6 * HOUR)}.checkpoint.2`);
    const q = plan([recorded, latest, freshCheckpoint], r3, { within: "1H", daily: 1, weekly: 0, monthly: 0 });
    expect(q.keep.find((a) => a.name === freshCheckpoint.name)?.why).toBe("newest checkpoint");
  });

  test("a pinned archive (the shrink guard's) is kept, and takes no period's place: the rest of the plan is unchanged", () => {
    const days = [6, 5, 4, 3, 2, 1].map((d) => archive(D - d * DAY + HOUR, r0, null));
    const daily2 = { within: "1H", daily: 2, weekly: 0, monthly: 0 };
    const unpinned = plan(days, r1, daily2);
    const doomed = unpinned.delete.map((a) => a.name);
    expect(doomed).toContain(days[2]!.name);
    const pinned = plan(days, r1, daily2, [days[2]!.id, "f".repeat(64)]);
    expect(pinned.keep.find((a) => a.name === days[2]!.name)?.why).toBe("pinned");
    expect(pinned.keep.filter((a) => a.why !== "pinned")).toEqual(unpinned.keep);
    expect(pinned.delete.map((a) => a.name)).toEqual(doomed.filter((n) => n !== days[2]!.name));
  });

  test("names that are not of the strict form are never planned for deletion", () => {
    const odd = archive(D - 100 * DAY, r0, null, "notes");
    const p = plan([...older(), odd], r3, { within: "1H", daily: 1, weekly: 0, monthly: 0 });
    expect([...p.keep, ...p.delete].map((a) => a.name)).not.toContain("notes");
    expect(p.delete.length).toBeGreaterThan(0);
  });
});
