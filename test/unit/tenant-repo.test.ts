import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { beforeAll, describe, expect, test } from "vitest";
import { resetPasswordScript } from "../../components/password-reset";
import { TenantRepo, repoUrl, subaccountHome, subaccountName, tenantRepoName, authorizedKeysInterpreter, writeAuthorizedKeysEnv, writeAuthorizedKeysScript } from "../../components/tenant-repo";
import { storageBoxHostKeys } from "../../config/prod";
import { MockRun, isSecretValue, mockBox, mockSubaccountUser, plain, runMocked, valueOf } from "./prod-mocks";

const subType = "hcloud:index/storageBoxSubaccount:StorageBoxSubaccount";
const keyType = "tls:index/privateKey:PrivateKey";
const tenants = ["acme", "acme-labs", "globex"];
/** The component's name of a tenant's generation-1 repository on box "main". */
const n = (tenant: string, generation = 1) => tenantRepoName(tenant, "main", generation);
const sub1 = (tenant: string) => mockSubaccountUser(4242, n(tenant));

function makeRepo(tenant: string, generation = 1, retired = false): TenantRepo {
  return new TenantRepo(n(tenant, generation), {
    tenant,
    generation,
    retired,
    boxId: 4242,
    boxServer: mockBox.server,
    boxUser: mockBox.username,
    boxKnownHosts: `[${mockBox.server}]:23 ${storageBoxHostKeys[0]}\n`,
    adminPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nADMIN\n-----END OPENSSH PRIVATE KEY-----\n",
    port: 23,
    hostKeys: storageBoxHostKeys,
    remoteBorg: "borg-1.4",
    repoPathOnBox: "/home/borg",
    repoDirName: "borg",
  });
}

describe("TenantRepo component", () => {
  let run: MockRun<TenantRepo[]>;
  beforeAll(async () => {
    run = await runMocked(() => tenants.map((t) => makeRepo(t)));
    for (const r of run.result) await valueOf(r.repoUrl);
  });

  const pub = (tenant: string, role: string) => run.one(keyType, `${n(tenant)}-${role}-key`).state.publicKeyOpenssh.trim() as string;

  test("authorized_keys: exactly one forced, restricted line per key role", async () => {
    const acme = run.result[0]!;
    const expected =
      `command="borg-1.4 serve --append-only --restrict-to-repository /home/borg",restrict ${pub("acme", "push")} push@acme\n` +
      `command="borg-1.4 serve --append-only --restrict-to-repository /home/borg",restrict ${pub("acme", "drill")} drill@acme\n` +
      `command="borg-1.4 serve --restrict-to-repository /home/borg",restrict ${pub("acme", "maintenance")} maintenance@acme\n`;
    expect((await valueOf(acme.authorizedKeys)).value).toBe(expected);
  });

  test("the file is written through the main account over SFTP, with the admin key on stdin as a secret", async () => {
    const cmd = run.one("command:local:Command", `${n("acme")}-authorized-keys`);
    const acme = run.result[0]!;
    expect(cmd.inputs.environment).toEqual({
      BOX_USER: "u4242", BOX_HOST: mockBox.server, BOX_PORT: "23", HOME_DIR: "tenants/acme/g1",
      AUTHORIZED_KEYS: (await valueOf(acme.authorizedKeys)).value,
      KNOWN_HOSTS: `[${mockBox.server}]:23 ${storageBoxHostKeys[0]}\n`,
    });
    expect(isSecretValue(cmd.inputs.stdin)).toBe(true);
    expect(plain(cmd.inputs.stdin)).toContain("ADMIN");
    expect(cmd.inputs.interpreter).toEqual(["/bin/bash", "--norc", "--noprofile", "-c"]);
    expect(cmd.inputs.create).toContain("sftp");
    expect(cmd.inputs.create).toContain("chmod 600 $HOME_DIR/.ssh/authorized_keys");
    expect(cmd.inputs.create).toContain("chmod 700 $HOME_DIR/.ssh");
    expect(cmd.inputs.create).not.toMatch(/PRIVATE KEY/);
    expect(cmd.opts.additionalSecretOutputs).toContain("stdin");
    expect(cmd.inputs.addPreviousOutputInEnv).toBe(false);
    const sub = run.one(subType, n("acme"));
    expect((cmd.opts.dependsOn as unknown[]).length).toBe(1);
    expect(cmd.parentType).toBe("agent-backups:storage:TenantRepo");
    expect(sub.parentType).toBe("agent-backups:storage:TenantRepo");
  });

  test("sub-account: own home, SSH reachable from outside, protected and retained, secret password, password changes ignored", () => {
    const sub = run.one(subType, n("acme"));
    expect(sub.inputs).toMatchObject({ storageBoxId: 4242, name: "acme-g1", homeDirectory: "tenants/acme/g1", labels: { "managed-by": "pulumi", tenant: "acme", generation: "1" } });
    expect(sub.inputs.accessSettings).toEqual({ sshEnabled: true, reachableExternally: true, readonly: false, sambaEnabled: false, webdavEnabled: false });
    expect(sub.opts.protect).toBe(true);
    expect(sub.opts.retainOnDelete).toBe(true);
    expect(sub.opts.ignoreChanges).toEqual(["password"]);
    expect(isSecretValue(sub.inputs.password)).toBe(true);
  });

  test("each sub-account's password is made dead right after the sub-account exists", () => {
    tenants.forEach((tenant) => {
      const reset = run.one("command:local:Command", `${n(tenant)}-password-reset`);
      const sub = run.one(subType, n(tenant));
      // The provider's id of the mock sub-account is "box/n": the reset takes its own part.
      const own = sub1(tenant).split("-sub")[1];
      expect(reset.inputs.environment).toEqual({ STORAGE_BOX_ID: "4242", SUBACCOUNT_ID: own });
      expect(reset.inputs.triggers).toEqual([`4242/${own}`]);
      expect(reset.inputs.create).toBe(resetPasswordScript);
      expect(reset.inputs.addPreviousOutputInEnv).toBe(false);
      expect(reset.opts.dependsOn).toEqual([expect.anything()]);
      expect(JSON.stringify(reset.inputs)).not.toContain(plain(sub.inputs.password));
    });
  });

  test("sub-account homes are siblings: none is inside another", () => {
    const homes = run.byType(subType).map((s) => s.inputs.homeDirectory as string);
    expect(homes).toEqual(["tenants/acme/g1", "tenants/acme-labs/g1", "tenants/globex/g1"]);
    // With later generations of the same tenants, still no home inside another.
    const all = [...homes, subaccountHome("acme", 2), subaccountHome("acme", 10), subaccountHome("acme-labs", 3)];
    for (const a of all) for (const b of all) if (a !== b) expect(b.startsWith(`${a}/`), `${b} inside ${a}`).toBe(false);
    expect(() => subaccountHome("acme/nested", 1)).toThrow(/refusing tenant/);
    expect(() => subaccountHome("..", 1)).toThrow(/refusing tenant/);
    expect(() => subaccountHome("acme", 0)).toThrow(/refusing repository generation/);
    expect(() => subaccountHome("acme", 1.5)).toThrow(/refusing repository generation/);
  });

  test("ed25519 keys for push, drill and maintenance; fingerprints exported, private keys secret", async () => {
    expect(run.byType(keyType).filter((k) => k.name.startsWith(`${n("acme")}-`)).map((k) => [k.name, k.inputs.algorithm])).toEqual([
      [`${n("acme")}-push-key`, "ED25519"], [`${n("acme")}-drill-key`, "ED25519"], [`${n("acme")}-maintenance-key`, "ED25519"],
    ]);
    const acme = run.result[0]!;
    const fps = await valueOf(acme.keyFingerprints);
    expect(fps.secret).toBe(false);
    expect(fps.value.push).toBe(run.one(keyType, `${n("acme")}-push-key`).state.publicKeyFingerprintSha256);
    for (const role of ["push", "drill", "maintenance"] as const) expect((await valueOf(acme.privateKey(role))).secret).toBe(true);
  });

  test("passphrase from random, protected, secret", async () => {
    const p = run.one("random:index/randomPassword:RandomPassword", `${n("acme")}-passphrase`);
    expect(p.inputs.length).toBeGreaterThanOrEqual(32);
    expect(p.opts.protect).toBe(true);
    const v = await valueOf(run.result[0]!.passphrase);
    expect(v.secret).toBe(true);
    expect(v.value).toBe(p.state.result);
  });

  test("repository URL in the Storage Box form, known_hosts for the sub-account's server", async () => {
    const u = sub1("acme");
    expect((await valueOf(run.result[0]!.repoUrl)).value).toBe(`ssh://${u}@${u}.your-storagebox.de:23/./borg`);
    expect((await valueOf(run.result[0]!.knownHosts)).value).toBe(`[${u}.your-storagebox.de]:23 ${storageBoxHostKeys[0]}\n`);
    expect((await valueOf(run.result[0]!.subaccountUser)).value).toBe(u);
    expect(run.result[0]!.repoPathFromBox).toBe("tenants/acme/g1/borg");
  });
});

describe("a retired repository", () => {
  let run: MockRun<{ current: TenantRepo; retired: TenantRepo }>;
  beforeAll(async () => {
    run = await runMocked(() => ({ retired: makeRepo("acme", 1, true), current: makeRepo("acme", 2) }));
    await valueOf(run.result.retired.authorizedKeys);
    await valueOf(run.result.current.authorizedKeys);
  });

  test("keeps only the maintenance key: its authorized_keys is one line, forced to its own repository without --append-only", async () => {
    const r = run.result.retired;
    expect(r.roles).toEqual(["maintenance"]);
    expect(run.byType(keyType).filter((k) => k.name.startsWith(`${n("acme", 1)}-`)).map((k) => k.name)).toEqual([`${n("acme", 1)}-maintenance-key`]);
    const maintenance = run.one(keyType, `${n("acme", 1)}-maintenance-key`).state.publicKeyOpenssh.trim();
    expect((await valueOf(r.authorizedKeys)).value).toBe(`command="borg-1.4 serve --restrict-to-repository /home/borg",restrict ${maintenance} maintenance@acme\n`);
    const write = run.one("command:local:Command", `${n("acme", 1)}-authorized-keys`);
    expect(write.inputs.environment.AUTHORIZED_KEYS).toBe((await valueOf(r.authorizedKeys)).value);
    expect(write.inputs.environment.HOME_DIR).toBe("tenants/acme/g1");
    expect(Object.keys((await valueOf(r.keyFingerprints)).value)).toEqual(["maintenance"]);
    expect(() => r.privateKey("push")).toThrow(/no push key/);
    expect(() => r.privateKey("drill")).toThrow(/no drill key/);
    expect((await valueOf(r.privateKey("maintenance"))).secret).toBe(true);
  });

  test("keeps its sub-account (same inputs as when it was current), its protected passphrase and its dead password", () => {
    const sub = run.one(subType, n("acme", 1));
    expect(sub.inputs).toMatchObject({ name: "acme-g1", homeDirectory: "tenants/acme/g1" });
    expect(sub.inputs.accessSettings).toEqual({ sshEnabled: true, reachableExternally: true, readonly: false, sambaEnabled: false, webdavEnabled: false });
    expect(sub.opts).toMatchObject({ protect: true, retainOnDelete: true });
    expect(run.one("random:index/randomPassword:RandomPassword", `${n("acme", 1)}-passphrase`).opts.protect).toBe(true);
    run.one("command:local:Command", `${n("acme", 1)}-password-reset`);
  });

  test("the next generation is a sibling repository with its own sub-account, keys and passphrase", async () => {
    const c = run.result.current;
    expect(c.roles).toEqual(["push", "drill", "maintenance"]);
    expect(run.one(subType, n("acme", 2)).inputs).toMatchObject({ name: "acme-g2", homeDirectory: "tenants/acme/g2" });
    const [p1, p2] = [1, 2].map((g) => run.one("random:index/randomPassword:RandomPassword", `${n("acme", g)}-passphrase`).state.result);
    expect(p1).not.toBe(p2);
    const m1 = run.one(keyType, `${n("acme", 1)}-maintenance-key`).state.publicKeyOpenssh;
    expect(run.one(keyType, `${n("acme", 2)}-maintenance-key`).state.publicKeyOpenssh).not.toBe(m1);
    expect((await valueOf(c.repoUrl)).value).not.toBe((await valueOf(run.result.retired.repoUrl)).value);
  });
});

describe("names of a repository", () => {
  test("no two (tenant, box, generation) share a component name or a sub-account name", () => {
    expect(tenantRepoName("acme", "fsn-a", 1)).toBe("repo-acme@fsn-a.g1");
    expect(tenantRepoName("ab-cd", "ef", 1)).not.toBe(tenantRepoName("ab", "cd-ef", 1));
    expect(tenantRepoName("ab", "cd", 11)).not.toBe(tenantRepoName("ab", "cd", 1));
    expect(subaccountName("acme", 2)).toBe("acme-g2");
    // "-g<N>" is always the last part: tenant "acme-g1" at generation 1 is not tenant "acme" at any generation.
    expect(subaccountName("acme-g1", 1)).toBe("acme-g1-g1");
  });
  test.each([["acme", "fsn.a", 1], ["acme@x", "bb", 1], ["acme", "bb", 0], ["acme", "bb", -1], ["ACME", "bb", 1], ["acme", "bb", 10000]])("tenantRepoName refuses %j %j %j", (t, b, g) => {
    expect(() => tenantRepoName(t, b, g)).toThrow(/refusing/);
  });
});

describe("pure helpers refuse injection", () => {
  test("repoUrl", () => {
    expect(repoUrl("u1-sub1", "u1-sub1.your-storagebox.de", 23, "borg")).toBe("ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg");
    expect(() => repoUrl("u1;rm", "h", 23, "borg")).toThrow(/refusing/);
    expect(() => repoUrl("u1", "h", 23, "../other")).toThrow(/refusing/);
  });
  test.each([
    ["user", { boxUser: "u1 -oProxyCommand=x" }],
    ["host", { boxHost: "h$(id)" }],
    ["port", { port: 0 }],
    ["home", { homeDir: "tenants/../other" }],
    ["home with newline (an sftp batch command)", { homeDir: "tenants/a\nrm x" }],
  ])("writeAuthorizedKeysEnv refuses a bad %s", (_what, bad) => {
    const ok = { boxUser: "u1", boxHost: "u1.your-storagebox.de", port: 23, homeDir: "tenants/acme", authorizedKeys: "", knownHosts: "" };
    expect(() => writeAuthorizedKeysEnv(ok)).not.toThrow();
    expect(() => writeAuthorizedKeysEnv({ ...ok, ...bad })).toThrow(/refusing to write authorized_keys/);
  });
});

describe("writeAuthorizedKeysScript, run by bash with an sftp stand-in that records what it was given", () => {
  test("pins the box's host key, reads the admin key from stdin into a 0600 file, puts the file with root-only modes, leaves nothing behind", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-akw-"));
    try {
      const bin = path.join(dir, "bin");
      const rec = path.join(dir, "rec");
      fs.mkdirSync(bin);
      fs.mkdirSync(rec);
      // The stand-in keeps copies of every file it is pointed at, before the script removes them.
      fs.writeFileSync(
        path.join(bin, "sftp"),
        `#!/bin/bash
set -euo pipefail
printf '%s\\n' "$@" >"${rec}/args"
cat >"${rec}/batch"
while (($#)); do
  case $1 in
    -i) cp "$2" "${rec}/key"; stat -c %a "$2" >"${rec}/key.mode"; shift ;;
    -o) if [[ $2 == UserKnownHostsFile=* ]]; then cp "\${2#UserKnownHostsFile=}" "${rec}/known_hosts"; fi; shift ;;
  esac
  shift
done
src=$(awk '$1 == "put" { print $2 }' "${rec}/batch")
cp "$src" "${rec}/authorized_keys"
dirname "$src" >"${rec}/workdir"
`,
        { mode: 0o755 },
      );
      const env = writeAuthorizedKeysEnv({ boxUser: "u4242", boxHost: mockBox.server, port: 23, homeDir: "tenants/acme", authorizedKeys: "line1\nline2\n", knownHosts: `[${mockBox.server}]:23 ${storageBoxHostKeys[0]}\n` });
      const r = spawnSync(authorizedKeysInterpreter[0] as string, [...authorizedKeysInterpreter.slice(1), writeAuthorizedKeysScript], {
        env: { PATH: `${bin}:/usr/bin:/bin`, ...env },
        input: "ADMIN PRIVATE KEY\n",
        encoding: "utf8",
      });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(`authorized_keys written to tenants/acme/.ssh on ${mockBox.server}\n`);
      const args = fs.readFileSync(path.join(rec, "args"), "utf8").trim().split("\n");
      expect(args).toEqual(expect.arrayContaining(["-b", "-", "-P", "23", "IdentitiesOnly=yes", "BatchMode=yes", "StrictHostKeyChecking=yes", `u4242@${mockBox.server}`]));
      expect(fs.readFileSync(path.join(rec, "key"), "utf8")).toBe("ADMIN PRIVATE KEY\n");
      expect(fs.readFileSync(path.join(rec, "key.mode"), "utf8").trim()).toBe("600");
      expect(fs.readFileSync(path.join(rec, "known_hosts"), "utf8")).toBe(env.KNOWN_HOSTS);
      expect(fs.readFileSync(path.join(rec, "authorized_keys"), "utf8")).toBe("line1\nline2\n");
      const work = fs.readFileSync(path.join(rec, "workdir"), "utf8").trim();
      expect(fs.readFileSync(path.join(rec, "batch"), "utf8")).toBe(
        `-mkdir tenants\n-mkdir tenants/acme\n-mkdir tenants/acme/.ssh\nchmod 700 tenants/acme/.ssh\nput ${work}/authorized_keys tenants/acme/.ssh/authorized_keys\nchmod 600 tenants/acme/.ssh/authorized_keys\n`,
      );
      expect(fs.existsSync(work)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a failing sftp fails the command, and the key still does not stay on disk", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-akw-"));
    try {
      fs.mkdirSync(path.join(dir, "bin"));
      fs.writeFileSync(path.join(dir, "bin", "sftp"), `#!/bin/bash\nfor a; do [[ $a == UserKnownHostsFile=* ]] && dirname "\${a#UserKnownHostsFile=}" >"${dir}/workdir"; done\necho "Host key verification failed." >&2\nexit 255\n`, { mode: 0o755 });
      const env = writeAuthorizedKeysEnv({ boxUser: "u1", boxHost: "u1.your-storagebox.de", port: 23, homeDir: "tenants/acme", authorizedKeys: "x\n", knownHosts: "y\n" });
      const r = spawnSync(authorizedKeysInterpreter[0] as string, [...authorizedKeysInterpreter.slice(1), writeAuthorizedKeysScript], { env: { PATH: `${dir}/bin:/usr/bin:/bin`, ...env }, input: "KEY\n", encoding: "utf8" });
      expect(r.status).toBe(255);
      expect(r.stderr).toContain("Host key verification failed.");
      expect(fs.existsSync(fs.readFileSync(path.join(dir, "workdir"), "utf8").trim())).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
