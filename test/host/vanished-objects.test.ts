// Objects deleted through the append-only key (`borg debug delete-obj`) leave the archive list
// byte-identical, and the host's own chunk cache still lists them: a next archive would reference
// missing data while agent-backup reports success. agent-backup checks that the objects of the
// newest archive, and of the archive it just made, exist; it refuses to add an archive on top of a
// repository whose objects vanished, and says so.
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { cleanupTemp, makeAgentHome, runScript, tempDir } from "../lib/agent-home";
import { startStorageBox, type StorageBox } from "../lib/storage-box";

let box: StorageBox;
let config: string;

beforeAll(async () => {
  box = await startStorageBox({ tenants: ["acme"] });
  const home = makeAgentHome(path.join(tempDir(), "home"), { sessions: 10, profiles: 0 }).home;
  config = box.writeConfig("acme", { agentHome: home });
  for (const args of [["--init"], []]) {
    const r = runScript("agent-backup", ["--config", config, ...args], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
  }
});
afterAll(async () => {
  await box?.stop();
  cleanupTemp();
});

const archives = () => box.borg("acme", "maintenance", ["list", "--short"]).stdout.split("\n").filter(Boolean);

/** The ids of the data chunks of one archive member, from borg's own item metadata. */
function chunkIds(archive: string, member: string): string[] {
  const dir = tempDir();
  const dump = spawnSync("borg", ["debug", "dump-archive-items", `::${archive}`], { cwd: dir, env: box.borgEnv("acme", "maintenance"), encoding: "utf8" });
  expect(dump.status, dump.stderr).toBe(0);
  // borg's own Python has msgpack (borg depends on it).
  const py = `
import glob, msgpack, sys
for f in sorted(glob.glob(sys.argv[1] + "/*.items")):
    for item in msgpack.Unpacker(open(f, "rb"), raw=True):
        if isinstance(item, dict) and item.get(b"path") == sys.argv[2].encode():
            print("\\n".join(c[0].hex() for c in item.get(b"chunks", [])))
`;
  const r = spawnSync("/usr/bin/python3", ["-c", py, dir, member], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout.split("\n").filter(Boolean);
}

describe("agent-backup and objects deleted through the append-only key", () => {
  test("the push key deletes the chunks of the newest archive: the next run refuses and commits nothing", () => {
    const before = archives();
    const newest = before[before.length - 1]!;
    const ids = chunkIds(newest, "state.db");
    expect(ids.length).toBeGreaterThan(0);
    // The compromised host, with the append-only key: the archive list stays byte-identical.
    const listBefore = box.borg("acme", "push", ["list"]).stdout;
    const del = box.borg("acme", "push", ["debug", "delete-obj", box.tenants.acme!.repoUrl, ...ids]);
    expect(del.status, del.stderr).toBe(0);
    expect(box.borg("acme", "push", ["list"]).stdout).toBe(listBefore);

    const r = runScript("agent-backup", ["--config", config], box.clientEnv);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/objects of the newest archive vanished from the repository/);
    expect(archives()).toEqual(before);
  });
});
