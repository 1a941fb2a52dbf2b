import { spawnSync } from "node:child_process";
import { describe, expect, test } from "vitest";
import { onCalendarProblems } from "../../config/common";
import { ConfigError } from "../../config/common";
import { RawProdConfig, boxLimitProblems, parseProdConfig, storageBoxHostKeys } from "../../config/prod";

const privateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
const agentHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDTa5sUAF6DO77KL8r2sspbOzivK3AxZHSI7hUkU0bQ5";

function tenant(name: string, box = "fsn-a"): Record<string, any> {
  return {
    name,
    box,
    host: { address: `${name}.agents.example.com`, user: "ubuntu", provider: "aws", agentHome: "/home/hermes/.hermes", hostKey: agentHostKey },
    schedule: "*-*-* 03:17:00",
  };
}

function good(): RawProdConfig & { storage: any; tenants: any[]; vault: any; hostPrivateKeys: any } {
  return {
    storage: {
      boxes: [
        { name: "fsn-a", location: "fsn1", boxType: "bx21", snapshots: { hour: 2, minute: 30, keep: 14 } },
        { name: "hel-b", location: "hel1", boxType: "bx11", snapshots: { hour: 3, minute: 0, keep: 7 } },
      ],
    },
    tenants: [tenant("acme"), tenant("globex", "hel-b")],
    vault: { replicaRegion: "eu-west-1" },
    hostPrivateKeys: { acme: privateKey, globex: privateKey },
    awsRegion: "eu-central-1",
  };
}

function problemsOf(raw: RawProdConfig): string[] {
  try {
    parseProdConfig(raw);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).problems];
  }
  throw new Error("config was accepted");
}

describe("a good config", () => {
  test("is accepted, with the documented defaults", () => {
    const c = parseProdConfig(good());
    expect(c.storage).toEqual({
      boxes: good().storage.boxes,
      remoteBorg: "borg-1.4", port: 23, repoPathOnBox: "/home/borg", hostKeys: storageBoxHostKeys,
    });
    expect(c.tenants[0]).toEqual({ ...tenant("acme"), generation: 1, retired: [], host: { ...tenant("acme").host, port: 22 }, retention: { daily: 7, weekly: 4, monthly: 6 } });
    expect(c.vault).toEqual({ replicaRegion: "eu-west-1", namePrefix: "agent-backups/" });
  });
  test("partial retention keeps the other defaults", () => {
    const raw = good();
    raw.tenants[0].retention = { daily: 14 };
    expect(parseProdConfig(raw).tenants[0]!.retention).toEqual({ daily: 14, weekly: 4, monthly: 6 });
  });
});

type Mutate = (c: ReturnType<typeof good>) => void;
// Each bad config: what is wrong, how, the field the error must name, and a word the message must hold.
const badConfigs: [string, Mutate, string, RegExp][] = [
  ["storage missing", (c) => { c.storage = undefined; }, "agent-backups:storage", /missing/],
  ["storage in the old one-box shape", (c) => { c.storage = { location: "fsn1", boxType: "bx21", snapshots: { hour: 2, minute: 30, keep: 14 } }; }, "agent-backups:storage.boxes", /missing/],
  ["no boxes", (c) => { c.storage.boxes = []; }, "agent-backups:storage.boxes", /at least one Storage Box/],
  ["a box's location missing", (c) => { delete c.storage.boxes[1].location; }, "agent-backups:storage.boxes[1].location", /missing/],
  ["a box name with a dot", (c) => { c.storage.boxes[0].name = "fsn.a"; }, "agent-backups:storage.boxes[0].name", /refusing/],
  ["duplicate box names", (c) => { c.storage.boxes[1].name = "fsn-a"; }, "agent-backups:storage.boxes[1].name", /duplicate box name "fsn-a"/],
  ["snapshot hour a string", (c) => { c.storage.boxes[0].snapshots.hour = "3"; }, "agent-backups:storage.boxes[0].snapshots.hour", /expected number/],
  ["snapshot minute out of range", (c) => { c.storage.boxes[1].snapshots.minute = 60; }, "agent-backups:storage.boxes[1].snapshots.minute", /59/],
  ["snapshot day field set (not daily)", (c) => { c.storage.boxes[0].snapshots.dayOfWeek = 3; }, "agent-backups:storage.boxes[0].snapshots.dayOfWeek", /unknown field/],
  ["a tenant without a box", (c) => { delete c.tenants[1].box; }, "agent-backups:tenants[1].box", /required: the name of the tenant's Storage Box/],
  ["a tenant on a box that is not configured", (c) => { c.tenants[0].box = "nbg-c"; }, "agent-backups:tenants[0].box", /no box named "nbg-c" in agent-backups:storage.boxes \(boxes: fsn-a, hel-b\)/],
  ["a retired repository on a box that is not configured", (c) => { c.tenants[0].retired = [{ box: "old", generation: 1 }]; }, "agent-backups:tenants[0].retired[0].box", /no box named "old"/],
  ["generation 0", (c) => { c.tenants[0].generation = 0; }, "agent-backups:tenants[0].generation", />=1|too small/i],
  ["generation not an integer", (c) => { c.tenants[0].generation = 1.5; }, "agent-backups:tenants[0].generation", /int/i],
  ["the current repository also listed as retired", (c) => { c.tenants[0].retired = [{ box: "fsn-a", generation: 1 }]; }, "agent-backups:tenants[0].retired[0]", /box "fsn-a" generation 1 is already the current repository/],
  ["one retired repository listed twice", (c) => { c.tenants[0].generation = 3; c.tenants[0].retired = [{ box: "fsn-a", generation: 1 }, { box: "fsn-a", generation: 1 }]; }, "agent-backups:tenants[0].retired[1]", /already retired\[0\]/],
  ["the current generation below a retired one on the same box", (c) => { c.tenants[0].retired = [{ box: "fsn-a", generation: 2 }]; }, "agent-backups:tenants[0].generation", /generation 1 on box "fsn-a" is below retired generation 2 there: a generation never goes back \(use 3 or more\)/],
  ["a retired entry with a typo", (c) => { c.tenants[0].retired = [{ box: "hel-b", generaton: 1 }]; }, "agent-backups:tenants[0].retired[0].generaton", /unknown field/],
  ["remote borg with a shell command", (c) => { c.storage.remoteBorg = "borg-1.4; sh"; }, "agent-backups:storage.remoteBorg", /refusing/],
  ["repo path with ..", (c) => { c.storage.repoPathOnBox = "/home/../borg"; }, "agent-backups:storage.repoPathOnBox", /refusing/],
  ["host key with an option smuggled in", (c) => { c.storage.hostKeys = [`command="sh" ${storageBoxHostKeys[0]}`]; }, "agent-backups:storage.hostKeys[0]", /refusing/],
  ["tenants not a list", (c) => { c.tenants = { acme: {} } as any; }, "agent-backups:tenants", /expected array/],
  ["no tenants", (c) => { c.tenants = []; c.hostPrivateKeys = {}; }, "agent-backups:tenants", /at least one/],
  ["tenant name with quotes", (c) => { c.tenants[0].name = "acme'"; c.hostPrivateKeys = { "acme'": privateKey, globex: privateKey }; }, "agent-backups:tenants[0].name", /refusing/],
  ["tenant name with $()", (c) => { c.tenants[1].name = "a$(id)"; c.hostPrivateKeys = { acme: privateKey, "a$(id)": privateKey }; }, "agent-backups:tenants[1].name", /refusing/],
  ["duplicate tenant names", (c) => { c.tenants[1].name = "acme"; c.hostPrivateKeys = { acme: privateKey }; }, "agent-backups:tenants[1].name", /duplicate/],
  ["host address with ;", (c) => { c.tenants[1].host.address = "10.0.0.1;reboot"; }, "agent-backups:tenants[1].host.address", /refusing/],
  ["host address with a newline", (c) => { c.tenants[0].host.address = "a.example\nb"; }, "agent-backups:tenants[0].host.address", /refusing/],
  ["host at Hetzner", (c) => { c.tenants[1].host.provider = "hetzner"; }, "agent-backups:tenants[1].host.provider", /storage provider/],
  ["host at a Hetzner address", (c) => { c.tenants[0].host.address = "static.1.2.3.4.clients.your-server.de"; }, "agent-backups:tenants[0].host.address", /storage provider/],
  ["SSH user with a space", (c) => { c.tenants[0].host.user = "root -oProxyCommand=x"; }, "agent-backups:tenants[0].host.user", /refusing/],
  ["SSH port a string", (c) => { c.tenants[0].host.port = "22"; }, "agent-backups:tenants[0].host.port", /expected number/],
  ["SSH port out of range", (c) => { c.tenants[0].host.port = 65536; }, "agent-backups:tenants[0].host.port", /65535/],
  ["agent home relative", (c) => { c.tenants[0].host.agentHome = "hermes/.hermes"; }, "agent-backups:tenants[0].host.agentHome", /refusing/],
  ["agent home with a space", (c) => { c.tenants[0].host.agentHome = "/home/a b"; }, "agent-backups:tenants[0].host.agentHome", /refusing/],
  ["agent home missing", (c) => { delete c.tenants[1].host.agentHome; }, "agent-backups:tenants[1].host.agentHome", /missing/],
  ["provider missing", (c) => { delete c.tenants[1].host.provider; }, "agent-backups:tenants[1].host.provider", /missing/],
  ["OnCalendar hour out of range", (c) => { c.tenants[0].schedule = "*-*-* 25:00"; }, "agent-backups:tenants[0].schedule", /hour 25 out of range/],
  ["OnCalendar nonsense word", (c) => { c.tenants[0].schedule = "sometimes"; }, "agent-backups:tenants[0].schedule", /invalid OnCalendar/],
  ["OnCalendar with a shell substitution", (c) => { c.tenants[0].schedule = "daily $(reboot)"; }, "agent-backups:tenants[0].schedule", /refusing/],
  ["retention negative", (c) => { c.tenants[0].retention = { daily: -1 }; }, "agent-backups:tenants[0].retention.daily", />=0|too small/i],
  ["retention not an integer", (c) => { c.tenants[0].retention = { weekly: 1.5 }; }, "agent-backups:tenants[0].retention.weekly", /int/i],
  ["healthcheck URL with a quote", (c) => { c.tenants[0].healthcheckUrl = "https://hc.example/'x"; }, "agent-backups:tenants[0].healthcheckUrl", /refusing/],
  ["healthcheck URL not http", (c) => { c.tenants[0].healthcheckUrl = "file:///etc/passwd"; }, "agent-backups:tenants[0].healthcheckUrl", /refusing/],
  ["typo in a tenant field", (c) => { c.tenants[0].schedul = "daily"; }, "agent-backups:tenants[0].schedul", /unknown field/],
  ["host key of the agent host with options", (c) => { c.tenants[0].host.hostKey = `no-pty ${storageBoxHostKeys[0]}`; }, "agent-backups:tenants[0].host.hostKey", /refusing/],
  ["host key of the agent host missing", (c) => { delete c.tenants[1].host.hostKey; }, "agent-backups:tenants[1].host.hostKey", /required: the agent host's own SSH host key/],
  ["vault replica in the primary region", (c) => { c.vault.replicaRegion = "eu-central-1"; }, "agent-backups:vault.replicaRegion", /second region/],
  ["vault missing", (c) => { c.vault = undefined; }, "agent-backups:vault", /missing/],
  ["host private keys missing", (c) => { c.hostPrivateKeys = undefined; }, "agent-backups:hostPrivateKeys", /missing/],
  ["a tenant's host private key missing", (c) => { delete c.hostPrivateKeys.globex; }, "agent-backups:hostPrivateKeys.globex", /missing/],
  ["a host private key that is not a key", (c) => { c.hostPrivateKeys.acme = "hunter2"; }, "agent-backups:hostPrivateKeys.acme", /not an OpenSSH private key/],
];

describe("bad configs are refused, each error naming the stack key and field", () => {
  test("the table has at least 20 cases", () => expect(badConfigs.length).toBeGreaterThanOrEqual(20));
  test.each(badConfigs)("%s", (_what, mutate, field, message) => {
    const raw = good();
    mutate(raw);
    const problems = problemsOf(raw);
    const hit = problems.find((p) => p.startsWith(`${field}: `));
    expect(hit, `no problem names ${field}; got:\n${problems.join("\n")}`).toBeDefined();
    expect(hit).toMatch(message);
  });

  test("every problem is reported at once, one line each", () => {
    const raw = good();
    raw.tenants[0].host.provider = "hetzner";
    raw.tenants[1].schedule = "*-*-* 02:61";
    raw.storage.boxes[0].snapshots.keep = 0;
    const problems = problemsOf(raw);
    expect(problems).toHaveLength(3);
    for (const p of problems) expect(p).not.toContain("\n");
  });

  test("a missing host key is one clear line, naming the field", () => {
    const raw = good();
    delete raw.tenants[0].host.hostKey;
    expect(problemsOf(raw)).toEqual([
      "agent-backups:tenants[0].host.hostKey: required: the agent host's own SSH host key (ssh-ed25519 AAAA...), read on the host itself (README, Operator guide: reading a host's key)",
    ]);
  });

  test("a secret is never quoted in an error", () => {
    const raw = good();
    raw.hostPrivateKeys.acme = "-----BEGIN RSA PRIVATE KEY-----\nSECRETSTUFF\n";
    expect(problemsOf(raw).join("\n")).not.toContain("SECRETSTUFF");
  });
});

describe("the config against each box type's limits", () => {
  const config = () => parseProdConfig(good());
  const roomy = { automaticSnapshotLimit: 20, subaccountsLimit: 100 };
  test("fits: no problem", () => {
    expect(boxLimitProblems(config(), { bx21: { automaticSnapshotLimit: 14, subaccountsLimit: 1 }, bx11: { automaticSnapshotLimit: 7, subaccountsLimit: 1 } })).toEqual([]);
  });
  test("a box over its type's limits is named, one line per problem; the other box passes", () => {
    expect(boxLimitProblems(config(), { bx21: { automaticSnapshotLimit: 10, subaccountsLimit: 0 }, bx11: roomy })).toEqual([
      'agent-backups:storage.boxes[0].snapshots.keep: box "fsn-a": 14 automatic snapshots, but box type bx21 keeps at most 10',
      'agent-backups:storage.boxes[0]: box "fsn-a": 1 repository needs as many sub-accounts (1 current, 0 retired), but box type bx21 allows at most 0',
    ]);
  });
  test("retired repositories count against their box's sub-accounts, tenants on other boxes do not", () => {
    const raw = good();
    raw.tenants.push(tenant("initech"));
    raw.hostPrivateKeys.initech = privateKey;
    // acme moved from hel-b to fsn-a; its old repository stays on hel-b, frozen.
    raw.tenants[0].retired = [{ box: "hel-b", generation: 1 }];
    const c = parseProdConfig(raw);
    expect(boxLimitProblems(c, { bx21: { automaticSnapshotLimit: 20, subaccountsLimit: 2 }, bx11: { automaticSnapshotLimit: 20, subaccountsLimit: 1 } })).toEqual([
      'agent-backups:storage.boxes[1]: box "hel-b": 2 repositories need as many sub-accounts (1 current, 1 retired), but box type bx11 allows at most 1',
    ]);
    expect(boxLimitProblems(c, { bx21: { automaticSnapshotLimit: 20, subaccountsLimit: 2 }, bx11: { automaticSnapshotLimit: 20, subaccountsLimit: 2 } })).toEqual([]);
  });
  test("no limits from the API for a type is a problem naming the box, not a pass", () => {
    expect(boxLimitProblems(config(), { bx21: roomy })).toEqual(['agent-backups:storage.boxes[1].boxType: box "hel-b": the API gave no limits for box type bx11']);
    expect(boxLimitProblems(config(), { bx21: roomy, bx11: {} as never })).toEqual(['agent-backups:storage.boxes[1].boxType: box "hel-b": the API gave no limits for box type bx11']);
  });
});

describe("repository generations in the config", () => {
  test("a rekey: generation 2 current, generation 1 retired on the same box", () => {
    const raw = good();
    raw.tenants[0].generation = 2;
    raw.tenants[0].retired = [{ box: "fsn-a", generation: 1 }];
    const t = parseProdConfig(raw).tenants[0]!;
    expect([t.box, t.generation, t.retired]).toEqual(["fsn-a", 2, [{ box: "fsn-a", generation: 1 }]]);
  });
  test("a retired generation above the current one is fine on another box (a move back)", () => {
    const raw = good();
    raw.tenants[0].generation = 2;
    raw.tenants[0].retired = [{ box: "fsn-a", generation: 1 }, { box: "hel-b", generation: 5 }];
    expect(parseProdConfig(raw).tenants[0]!.retired).toHaveLength(2);
  });
  test("a move: the same generation number on another box is another repository", () => {
    const raw = good();
    raw.tenants[1].box = "fsn-a";
    raw.tenants[1].retired = [{ box: "hel-b", generation: 1 }];
    expect(parseProdConfig(raw).tenants[1]!.retired).toEqual([{ box: "hel-b", generation: 1 }]);
  });
});

describe("OnCalendar validator", () => {
  test.each([
    "daily", "hourly", "weekly", "monthly", "minutely", "Daily", "daily UTC",
    "*-*-* 03:17:00", "*-*-* 03:17", "03:17", "*:0/15", "Mon..Fri 02:00", "Sat,Sun *-*-* 04:00:00",
    "2026-11-25 13:05:00", "*-*-01 00:00", "*-01,07-01 12:00", "Mon *-*-* 0..6/2:30", "Mon *-*-1..7 00:00", "11-25 08:00",
  ])("accepts %j, as systemd does", (expr) => {
    expect(onCalendarProblems(expr)).toEqual([]);
    // The real parser agrees (systemd-analyze is part of systemd, on every host and test machine).
    const sd = spawnSync("systemd-analyze", ["calendar", expr], { encoding: "utf8" });
    expect(sd.error).toBeUndefined();
    expect(sd.status, sd.stderr).toBe(0);
  });
  test.each([
    ["", /empty/],
    ["Mon", /date or a time/],
    ["*-*-* 24:00", /hour 24 out of range/],
    ["*-*-* 12:60", /minute 60 out of range/],
    ["*-*-* 12:00:61", /second 61 out of range/],
    ["*-13-01 00:00", /month 13 out of range/],
    ["*-*-32 00:00", /day 32 out of range/],
    ["1969-01-01 00:00", /year 1969 out of range/],
    ["Funday 00:00", /bad weekday/],
    ["*-*-* 5..2:00", /runs backwards/],
    ["*:0/0", /repetition/],
    ["*-*-* 12:00 Europe/Berlin", /unexpected/],
    ["*-*-* 1:2:3:4", /bad time/],
    ["*-*~01 00:00", /not a number/],
    ["sometimes", /bad weekday/],
  ])("refuses %j", (expr, why) => {
    const problems = onCalendarProblems(expr);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.join("; ")).toMatch(why);
  });
  // Values that systemd itself refuses: the validator must never be looser than systemd.
  test.each(["*-*-* 24:00", "*-*-* 12:60", "*-13-01 00:00", "*-*-32 00:00", "*-*-* 5..2:00", "*:0/0", "Funday 00:00", "*-*-* 1:2:3:4"])(
    "refuses %j, as systemd does",
    (expr) => {
      expect(onCalendarProblems(expr).length).toBeGreaterThan(0);
      const sd = spawnSync("systemd-analyze", ["calendar", expr], { encoding: "utf8" });
      expect(sd.error).toBeUndefined();
      expect(sd.status).not.toBe(0);
    },
  );
});
