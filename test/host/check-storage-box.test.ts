// scripts/check-storage-box against the loopback storage box: a correctly set up box passes every
// check; each kind of misconfiguration it exists to catch makes it fail, naming the check.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import * as os from "node:os";
import { keyRoleNames, renderAuthorizedKeys, type KeyRoleName } from "../../components/key-roles";
import { authorizedKeysInterpreter, writeAuthorizedKeysEnv, writeAuthorizedKeysScript } from "../../components/tenant-repo";
import { startStorageBox, type StorageBox } from "../lib/storage-box";

const root = path.resolve(__dirname, "..", "..");
const wrapper = path.join(root, "scripts", "check-storage-box");

let box: StorageBox;
let authorizedKeysFile: string;
let original: string;

beforeAll(async () => {
  // Password logins on, as on the real box: the dead-password checks need a password that works.
  box = await startStorageBox({ tenants: ["acme", "globex"], passwordLogin: true });
  for (const t of ["acme", "globex"]) {
    const init = box.borg(t, "push", ["init", "-e", "repokey-blake2"]);
    expect(init.status, init.stderr).toBe(0);
  }
  const acme = box.tenants.acme!;
  authorizedKeysFile = path.join(path.dirname(acme.repoPath), ".ssh", "authorized_keys");
  original = fs.readFileSync(authorizedKeysFile, "utf8");
});
afterAll(async () => {
  await box?.stop();
});

function args(over: Record<string, string> = {}): string[] {
  const acme = box.tenants.acme!;
  const a: Record<string, string> = {
    tenant: "acme",
    repo: acme.repoUrl,
    "restrict-path": acme.repoPath,
    "remote-borg": "borg",
    "known-hosts": box.knownHosts,
    "passphrase-file": acme.passphraseFile,
    "push-key": acme.keys.push,
    "drill-key": acme.keys.drill,
    "maintenance-key": acme.keys.maintenance,
    "other-repo": box.tenants.globex!.repoUrl,
    "authorized-keys": authorizedKeysFile,
    ...over,
  };
  // An empty value leaves the option out.
  return Object.entries(a).filter(([, v]) => v !== "").flatMap(([k, v]) => [`--${k}`, v]);
}

function check(argv: string[]) {
  const r = spawnSync(wrapper, argv, { encoding: "utf8", env: { ...process.env, ...box.clientEnv }, timeout: 110_000 });
  const lines = r.stdout.split("\n").filter((l) => l !== "");
  return { status: r.status, lines, stderr: r.stderr, failed: lines.filter((l) => l.startsWith("FAIL")) };
}

/** Replace the authorized_keys line of one role (owner and mode stay, the file is rewritten in place). */
function withKeyLine(role: KeyRoleName, line: (pub: string) => string): void {
  const pub = fs.readFileSync(`${box.tenants.acme!.keys[role]}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
  const lines = original.split("\n").map((l) => (l.endsWith(` ${role}@acme`) ? line(pub) : l));
  fs.writeFileSync(authorizedKeysFile, lines.join("\n"));
}

describe("check-storage-box against the loopback storage box", () => {
  test("a correctly set up box: every check passes, one line each, exit 0", () => {
    const r = check(args());
    expect(r.status, r.lines.join("\n") + r.stderr).toBe(0);
    expect(r.failed).toEqual([]);
    const checks = r.lines.filter((l) => /^(ok|FAIL) /.test(l));
    // authorized_keys, push info+create, drill list+extract, 7 per role, maintenance delete.
    expect(checks).toHaveLength(1 + 2 + 2 + 7 * keyRoleNames.length + 1);
    expect(r.lines).toContain("all 27 checks passed");
    for (const what of ["gets no shell", "gets no sftp", "is refused a sibling path", "cannot open another tenant's repository", "cannot write into the snapshot directory", "is refused its repository inside a snapshot"]) {
      for (const role of keyRoleNames) expect(checks.some((l) => l.startsWith("ok") && l.includes(role) && l.includes(what)), `${role} ${what}`).toBe(true);
    }
    // The check archive was removed by the maintenance key.
    const list = box.borg("acme", "maintenance", ["list", "--short"]);
    expect(list.stdout.trim()).toBe("");
  });

  test("a push key without a forced command (a shell) is caught", () => {
    withKeyLine("push", (pub) => `${pub} push@acme`);
    try {
      const r = check(args());
      expect(r.status).toBe(1);
      expect(r.failed.some((l) => /push\s+gets no shell/.test(l))).toBe(true);
      expect(r.failed.some((l) => /push\s+gets no sftp \(sftp listed files\)/.test(l)), r.failed.join("\n")).toBe(true);
      expect(r.failed.some((l) => /authorized_keys holds exactly/.test(l))).toBe(true);
    } finally {
      fs.writeFileSync(authorizedKeysFile, original);
    }
  });

  test("a push key without --append-only is caught in the deployed authorized_keys", () => {
    withKeyLine("push", (pub) => `command="borg serve --restrict-to-repository ${box.tenants.acme!.repoPath}",restrict ${pub} push@acme`);
    try {
      const r = check(args());
      expect(r.status).toBe(1);
      // Append-only cannot be observed from a client: the deployed line is what tells.
      expect(r.failed, r.failed.join("\n")).toHaveLength(1);
      expect(r.failed[0]).toMatch(/authorized_keys holds exactly one forced, restricted line per role \(1 unexpected line\(s\), first: command="borg serve --restrict/);
    } finally {
      fs.writeFileSync(authorizedKeysFile, original);
    }
  });

  test("a wrong remote borg command on the box is named", () => {
    const pubs = Object.fromEntries(keyRoleNames.map((r) => [r, fs.readFileSync(`${box.tenants.acme!.keys[r]}.pub`, "utf8")])) as Record<KeyRoleName, string>;
    fs.writeFileSync(authorizedKeysFile, renderAuthorizedKeys("acme", pubs, "borg-9.9", box.tenants.acme!.repoPath));
    try {
      const r = check(args({ "remote-borg": "borg-9.9" }));
      expect(r.status).toBe(1);
      expect(r.failed.some((l) => /answers through the forced command \(borg-9\.9 serve\) \((remote borg command borg-9\.9 not found|the box closed the connection: is the remote borg command borg-9\.9 right)/.test(l)), r.lines.join("\n")).toBe(true);
      expect(r.failed.some((l) => /drill\s+extracts/.test(l))).toBe(true);
    } finally {
      fs.writeFileSync(authorizedKeysFile, original);
    }
  });

  test("a restrict path that is not the repository's is caught", () => {
    const r = check(args({ "restrict-path": "/home/borg" }));
    expect(r.status).toBe(1);
    expect(r.failed, r.failed.join("\n")).toHaveLength(1);
    expect(r.failed[0]).toMatch(/authorized_keys holds exactly/);
  });

  test("keys that open another tenant's repository are caught", () => {
    // Pretend acme's repo is "the other tenant": the keys open it, which must count as a surprise.
    const r = check(args({ "other-repo": box.tenants.acme!.repoUrl }));
    expect(r.status).toBe(1);
    expect(r.failed.filter((l) => /cannot open another tenant's repository/.test(l))).toHaveLength(3);
  });

  test("a password the state still holds and that still logs in is caught; a dead one passes", () => {
    const acme = box.tenants.acme!;
    const dead = path.join(path.dirname(acme.passphraseFile), "stored-password-dead");
    fs.writeFileSync(dead, "the-value-pulumi-generated-before-the-reset\n", { mode: 0o600 });
    try {
      const ok = check(args({ "stored-password": dead }));
      expect(ok.status, ok.lines.join("\n") + ok.stderr).toBe(0);
      expect(ok.lines.some((l) => /^ok\s+sub-account\s+the password in the Pulumi state no longer logs in/.test(l))).toBe(true);
      // The loopback box really takes password logins: the live password gets in, and is caught.
      const live = check(args({ "stored-password": acme.passwordFile! }));
      expect(live.status).toBe(1);
      expect(live.failed).toEqual([expect.stringMatching(/sub-account\s+the password in the Pulumi state no longer logs in .*\(it logged in: reset the password/)]);
    } finally {
      fs.rmSync(dead, { force: true });
    }
  });

  describe("the main account's view: snapshots and its password", () => {
    let tmp: string;
    let adminKey: string;
    let snapshots: string;
    beforeAll(() => {
      const acme = box.tenants.acme!;
      tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ab-main-"));
      adminKey = path.join(tmp, "admin");
      // Stand-in for the box's main account: an unrestricted key of the acme user.
      spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "admin", "-f", adminKey]);
      fs.writeFileSync(authorizedKeysFile, `${original}${fs.readFileSync(`${adminKey}.pub`, "utf8")}`);
      // Two read-only snapshots of the box as the main account sees them: <name>/<home>/<repo>.
      snapshots = path.join(box.dir, "zfs", "snapshot");
      for (const name of ["2026-11-23T03-00-00", "2026-11-24T03-00-00"]) {
        const into = path.join(snapshots, name, acme.user);
        fs.mkdirSync(into, { recursive: true, mode: 0o755 });
        expect(spawnSync("cp", ["-a", acme.repoPath, path.join(into, "repo")]).status).toBe(0);
      }
      spawnSync("chmod", ["-R", "a+rX", path.join(box.dir, "zfs")]);
    });
    afterAll(() => {
      fs.writeFileSync(authorizedKeysFile, original);
      fs.rmSync(path.join(box.dir, "zfs"), { recursive: true, force: true });
      fs.rmSync(tmp, { recursive: true, force: true });
    });
    const mainArgs = (over: Record<string, string> = {}) => args({
      "box-account": `${box.tenants.acme!.user}@127.0.0.1`, "admin-key": adminKey, "snapshot-dir": snapshots,
      // The stand-in's extra key is in authorized_keys, which the real box's sub-account never has.
      "snapshot-repo-path": `${box.tenants.acme!.user}/repo`, "authorized-keys": "", ...over,
    });

    test("the snapshot directory lists snapshots and the newest holds the tenant's repository", () => {
      const r = check(mainArgs());
      expect(r.status, r.lines.join("\n") + r.stderr).toBe(0);
      expect(r.lines.some((l) => /^ok\s+main\s+the snapshot directory .* is shown and lists snapshots \(2, newest 2026-11-24T03-00-00\)/.test(l)), r.lines.join("\n")).toBe(true);
      expect(r.lines.some((l) => /^ok\s+main\s+the newest snapshot holds this tenant's repository/.test(l))).toBe(true);
    });

    test("a hidden or empty snapshot directory, or a snapshot without the repository, is caught", () => {
      const empty = path.join(tmp, "empty");
      fs.mkdirSync(empty, { mode: 0o755 });
      fs.chmodSync(tmp, 0o755);
      const none = check(mainArgs({ "snapshot-dir": empty }));
      expect(none.status).toBe(1);
      expect(none.failed).toEqual([expect.stringMatching(/main\s+the snapshot directory .* lists snapshots \(no snapshot yet/)]);
      const hidden = check(mainArgs({ "snapshot-dir": path.join(box.dir, "no-such-dir") }));
      expect(hidden.status).toBe(1);
      expect(hidden.failed[0]).toMatch(/main\s+the snapshot directory/);
      const elsewhere = check(mainArgs({ "snapshot-repo-path": "tenants/acme/borg" }));
      expect(elsewhere.status).toBe(1);
      expect(elsewhere.failed).toEqual([expect.stringMatching(/main\s+the newest snapshot holds this tenant's repository \(tenants\/acme\/borg\)/)]);
    });

    test("the main account's stored password: dead passes, live is caught", () => {
      const dead = path.join(tmp, "box-password");
      fs.writeFileSync(dead, "not-the-live-one\n", { mode: 0o600 });
      const ok = check(mainArgs({ "box-stored-password": dead }));
      expect(ok.status, ok.lines.join("\n")).toBe(0);
      expect(ok.lines.some((l) => /^ok\s+main\s+the password in the Pulumi state no longer logs in/.test(l))).toBe(true);
      const live = check(mainArgs({ "box-stored-password": box.tenants.acme!.passwordFile! }));
      expect(live.status).toBe(1);
      expect(live.failed).toEqual([expect.stringMatching(/main\s+the password in the Pulumi state no longer logs in/)]);
    });
  });

  test("bad usage: exit 2, every problem named, nothing run", () => {
    const r = check(args({ tenant: "acme;reboot", "push-key": "/nonexistent/key", repo: "ssh://u@h:23/./borg x", "box-account": "u1@h;x", "snapshot-repo-path": "../other" }));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--box-account: refusing "u1@h;x"');
    expect(r.stderr).toContain('--snapshot-repo-path: refusing "../other"');
    expect(r.stderr).toContain('--tenant: refusing "acme;reboot"');
    expect(r.stderr).toContain("--push-key: no such file /nonexistent/key");
    expect(r.stderr).toContain("--repo: refusing");
    expect(r.lines).toEqual([]);
  });

  test("--admin-key without --snapshot-repo-path: refused, since only the stack knows the generation", () => {
    const r = check(args({ "box-account": "u1@127.0.0.1", "admin-key": "/nonexistent/admin" }));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("--admin-key needs --snapshot-repo-path");
    expect(r.lines).toEqual([]);
  });
});

describe("the tenant-repo authorized_keys writer over real SFTP", () => {
  test("writes <home>/.ssh/authorized_keys with 0700/0600 through an account's own key, pinning the host key", () => {
    const acme = box.tenants.acme!;
    const home = path.dirname(acme.repoPath);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ab-admin-"));
    try {
      // Stand-in for the box's main account: an unrestricted key of the acme user.
      spawnSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "admin", "-f", path.join(tmp, "admin")]);
      fs.writeFileSync(authorizedKeysFile, `${original}${fs.readFileSync(path.join(tmp, "admin.pub"), "utf8")}`);
      const pubs = Object.fromEntries(keyRoleNames.map((r) => [r, fs.readFileSync(`${acme.keys[r]}.pub`, "utf8")])) as Record<KeyRoleName, string>;
      const wanted = renderAuthorizedKeys("globex", pubs, "borg-1.4", "/home/borg");
      const env = writeAuthorizedKeysEnv({ boxUser: acme.user, boxHost: "127.0.0.1", port: box.port, homeDir: "tenants/globex", authorizedKeys: wanted, knownHosts: fs.readFileSync(box.knownHosts, "utf8") });
      const r = spawnSync(authorizedKeysInterpreter[0] as string, [...authorizedKeysInterpreter.slice(1), writeAuthorizedKeysScript], {
        env: { PATH: process.env.PATH, ...env },
        input: fs.readFileSync(path.join(tmp, "admin"), "utf8"),
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(r.status, r.stderr).toBe(0);
      const written = path.join(home, "tenants", "globex", ".ssh", "authorized_keys");
      expect(fs.readFileSync(written, "utf8")).toBe(wanted);
      expect((fs.statSync(written).mode & 0o777).toString(8)).toBe("600");
      expect((fs.statSync(path.dirname(written)).mode & 0o777).toString(8)).toBe("700");

      // A second run (a key rotated) overwrites in place.
      const again = spawnSync(authorizedKeysInterpreter[0] as string, [...authorizedKeysInterpreter.slice(1), writeAuthorizedKeysScript], {
        env: { PATH: process.env.PATH, ...env, AUTHORIZED_KEYS: wanted.split("\n")[0] + "\n" },
        input: fs.readFileSync(path.join(tmp, "admin"), "utf8"),
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(again.status, again.stderr).toBe(0);
      expect(fs.readFileSync(written, "utf8")).toBe(wanted.split("\n")[0] + "\n");

      // A box whose host key is not the pinned one is refused before anything is written.
      const wrongKey = `[127.0.0.1]:${box.port} ${pubs.push.trim().split(/\s+/).slice(0, 2).join(" ")}\n`;
      const mitm = spawnSync(authorizedKeysInterpreter[0] as string, [...authorizedKeysInterpreter.slice(1), writeAuthorizedKeysScript], {
        env: { PATH: process.env.PATH, ...env, KNOWN_HOSTS: wrongKey, HOME_DIR: "tenants/other" },
        input: fs.readFileSync(path.join(tmp, "admin"), "utf8"),
        encoding: "utf8",
        timeout: 60_000,
      });
      expect(mitm.status).not.toBe(0);
      expect(mitm.stderr).toMatch(/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
      expect(fs.existsSync(path.join(home, "tenants", "other"))).toBe(false);
    } finally {
      fs.writeFileSync(authorizedKeysFile, original);
      fs.rmSync(path.join(home, "tenants"), { recursive: true, force: true });
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
