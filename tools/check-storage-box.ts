// check-storage-box: what cannot be tested without the real Storage Box, checked once by the
// operator against it. With each key role it tries what the role must and must not do, prints one
// line per check and exits 1 on any surprise (2 on bad usage). Runs on the operator's machine.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { isValidRepoUrl } from "../components/host-install-plan";
import { KeyRoleName, keyRoleNames, renderAuthorizedKeys } from "../components/key-roles";
import { matchesPattern } from "../config/patterns";

export const usage = `usage: check-storage-box --tenant T --repo ssh://USER@HOST:PORT/PATH --restrict-path ABS_PATH
         --remote-borg CMD --known-hosts FILE --passphrase-file FILE
         --push-key FILE --drill-key FILE --maintenance-key FILE
         [--other-repo ssh://OTHER_USER@HOST:PORT/PATH] [--authorized-keys FILE] [--timeout SECONDS]
         [--stored-password FILE]
         [--box-account USER@HOST [--box-stored-password FILE]
          [--admin-key FILE [--snapshot-dir ABS_PATH] [--snapshot-repo-path REL_PATH]]]
Tries, with each key role, what it must and must not do against the tenant's repository (which
must be initialised), prints one line per check, and exits 0 only when nothing surprised.
--stored-password and --box-stored-password: the sub-account's and the main account's password as
the Pulumi state holds them; each must no longer log in. --admin-key: the main account's key; the
snapshot directory (default /home/.zfs/snapshot) must list snapshots, the newest holding the
tenant's repository at --snapshot-repo-path (required with --admin-key: the tenant's repoPath
stack output, tenants/<tenant>/g<generation>/borg).`;

export interface CheckOptions {
  tenant: string;
  repo: string;
  /** The path the forced commands restrict to (config storage.repoPathOnBox). */
  restrictPath: string;
  remoteBorg: string;
  knownHosts: string;
  passphraseFile: string;
  keys: Record<KeyRoleName, string>;
  /** Another tenant's repository URL: this tenant's keys must not open it. */
  otherRepo?: string | undefined;
  /** A copy of the tenant's authorized_keys as found on the box, compared line by line. */
  authorizedKeys?: string | undefined;
  /** Per command, seconds. */
  timeout: number;
  /** The sub-account's password as the state holds it: it must not log in. */
  storedPassword?: string | undefined;
  /** The box's main account, USER@HOST (same port as the repository). */
  boxAccount?: { user: string; host: string } | undefined;
  /** The main account's password as the state holds it: it must not log in. */
  boxStoredPassword?: string | undefined;
  /** The main account's private key: reads the snapshot directory. */
  adminKey?: string | undefined;
  /** Where the main account sees the snapshots. */
  snapshotDir: string;
  /** The tenant's repository inside a snapshot, relative to it. */
  snapshotRepoPath: string;
}

export class UsageError extends Error {}

/** Parses and strictly validates the command line; throws UsageError naming every bad value. */
export function parseCheckArgs(argv: string[]): CheckOptions {
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      options: Object.fromEntries(
        ["tenant", "repo", "restrict-path", "remote-borg", "known-hosts", "passphrase-file", "push-key", "drill-key", "maintenance-key", "other-repo", "authorized-keys", "timeout",
          "stored-password", "box-account", "box-stored-password", "admin-key", "snapshot-dir", "snapshot-repo-path"].map((o) => [o, { type: "string" as const }]),
      ),
    }) as { values: Record<string, string | undefined> });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const problems: string[] = [];
  const need = (name: string): string => {
    const v = values[name];
    if (v === undefined || v === "") problems.push(`--${name} is required`);
    return v ?? "";
  };
  const file = (name: string, required = true): string | undefined => {
    const v = required ? need(name) : values[name];
    if (v === undefined || v === "") return undefined;
    const abs = path.resolve(v);
    // Paths end up inside BORG_RSH and BORG_PASSCOMMAND: strict pattern, never quoted.
    if (!matchesPattern("abs_path", abs)) problems.push(`--${name}: refusing path ${JSON.stringify(v)} (letters, digits, ._- only)`);
    else if (!fs.existsSync(abs)) problems.push(`--${name}: no such file ${abs}`);
    return abs;
  };
  const tenant = need("tenant");
  if (tenant && !matchesPattern("tenant", tenant)) problems.push(`--tenant: refusing ${JSON.stringify(tenant)}`);
  const repo = need("repo");
  if (repo && !isValidRepoUrl(repo)) problems.push(`--repo: refusing ${JSON.stringify(repo)} (ssh://USER@HOST:PORT/PATH)`);
  const otherRepo = values["other-repo"];
  if (otherRepo !== undefined && !isValidRepoUrl(otherRepo)) problems.push(`--other-repo: refusing ${JSON.stringify(otherRepo)}`);
  const restrictPath = need("restrict-path");
  if (restrictPath && !matchesPattern("abs_path", restrictPath)) problems.push(`--restrict-path: refusing ${JSON.stringify(restrictPath)}`);
  const remoteBorg = need("remote-borg");
  if (remoteBorg && !matchesPattern("borg_command", remoteBorg)) problems.push(`--remote-borg: refusing ${JSON.stringify(remoteBorg)}`);
  const timeout = values.timeout === undefined ? 120 : Number(values.timeout);
  if (!Number.isInteger(timeout) || timeout < 5 || timeout > 3600) problems.push(`--timeout: expected seconds between 5 and 3600`);
  const boxAccountText = values["box-account"];
  let boxAccount: CheckOptions["boxAccount"];
  if (boxAccountText !== undefined) {
    const [u = "", h = "", extra] = boxAccountText.split("@");
    if (extra !== undefined || !matchesPattern("unix_user", u) || !matchesPattern("hostname", h)) problems.push(`--box-account: refusing ${JSON.stringify(boxAccountText)} (USER@HOST)`);
    else boxAccount = { user: u, host: h };
  }
  for (const needsBox of ["box-stored-password", "admin-key"]) {
    if (values[needsBox] !== undefined && boxAccountText === undefined) problems.push(`--${needsBox} needs --box-account`);
  }
  const snapshotDir = values["snapshot-dir"] ?? "/home/.zfs/snapshot";
  if (!matchesPattern("abs_path", snapshotDir)) problems.push(`--snapshot-dir: refusing ${JSON.stringify(snapshotDir)}`);
  // No default: the path holds the repository's generation, which only the stack knows.
  const snapshotRepoPath = values["snapshot-repo-path"] ?? "";
  if (values["admin-key"] !== undefined && snapshotRepoPath === "") problems.push(`--admin-key needs --snapshot-repo-path (the tenant's repoPath stack output, tenants/<tenant>/g<generation>/borg)`);
  if (snapshotRepoPath !== "" && (!matchesPattern("rel_path", snapshotRepoPath) || snapshotRepoPath.split("/").includes(".."))) problems.push(`--snapshot-repo-path: refusing ${JSON.stringify(snapshotRepoPath)}`);
  const opts: CheckOptions = {
    tenant,
    repo,
    restrictPath,
    remoteBorg,
    knownHosts: file("known-hosts") ?? "",
    passphraseFile: file("passphrase-file") ?? "",
    keys: { push: file("push-key") ?? "", drill: file("drill-key") ?? "", maintenance: file("maintenance-key") ?? "" },
    otherRepo,
    authorizedKeys: file("authorized-keys", false),
    timeout,
    storedPassword: file("stored-password", false),
    boxAccount,
    boxStoredPassword: file("box-stored-password", false),
    adminKey: file("admin-key", false),
    snapshotDir,
    snapshotRepoPath,
  };
  if (problems.length > 0) throw new UsageError(problems.join("\n"));
  return opts;
}

export interface CheckResult {
  /** A key role, "all" roles, or an account whose password or view is checked. */
  role: KeyRoleName | "all" | "sub-account" | "main";
  what: string;
  ok: boolean;
  detail?: string;
}

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The parts of ssh://USER@HOST:PORT/PATH (validated before). */
function splitRepo(url: string): { user: string; host: string; port: string; repoPath: string } {
  const m = /^ssh:\/\/([^@/]+)@([^:/]+):([0-9]+)(\/.*)$/.exec(url);
  if (!m) throw new Error(`not a repository URL: ${url}`);
  return { user: m[1] as string, host: m[2] as string, port: m[3] as string, repoPath: m[4] as string };
}

/** The first line of output that says something, for one-line reports. */
function gist(r: Run): string {
  const line = `${r.stderr}\n${r.stdout}`.split("\n").map((l) => l.trim()).find((l) => l !== "" && !l.startsWith("Remote: using builtin") && !/^usage:/.test(l));
  return `exit ${r.status ?? "timeout"}${line ? `: ${line.slice(0, 160)}` : ""}`;
}

export function runChecks(o: CheckOptions, log: (line: string) => void = (l) => console.log(l)): CheckResult[] {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "check-storage-box-"));
  const results: CheckResult[] = [];
  const report = (r: CheckResult) => {
    results.push(r);
    log(`${r.ok ? "ok  " : "FAIL"}  ${r.role.padEnd(11)}  ${r.what}${r.detail ? ` (${r.detail})` : ""}`);
  };
  try {
    const { user, host, port, repoPath } = splitRepo(o.repo);
    const sshArgs = (role: KeyRoleName) => ["-i", o.keys[role], "-o", "IdentitiesOnly=yes", "-o", `UserKnownHostsFile=${o.knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20"];
    const run = (cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, input = "", cwd = work): Run => {
      const r = spawnSync(cmd, args, { cwd, env, input, encoding: "utf8", timeout: o.timeout * 1000, maxBuffer: 16 * 1024 * 1024 });
      if (r.error && (r.error as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`${cmd} is required (apt-get install ${cmd === "borg" ? "borgbackup" : "openssh-client"})`);
      return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    };
    const borg = (role: KeyRoleName, args: string[], cwd = work): Run =>
      run("borg", args, {
        ...process.env,
        BORG_REPO: o.repo,
        BORG_RSH: ["ssh", ...sshArgs(role)].join(" "),
        BORG_PASSCOMMAND: `cat ${o.passphraseFile}`,
        BORG_BASE_DIR: path.join(work, "borg"),
        BORG_RELOCATED_REPO_ACCESS_IS_OK: "no",
        BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: "no",
      }, "", cwd);
    const withPath = (p: string) => `ssh://${user}@${host}:${port}${p}`;
    const notAllowed = (r: Run) => r.status !== 0 && /not allowed/i.test(r.stderr);
    // Why borg failed to talk to the forced command: a missing remote borg shows as "not found", or
    // (when sshd closes first) only as a closed connection after a successful login.
    const remoteHint = (r: Run): string =>
      /not found/i.test(r.stderr)
        ? `remote borg command ${o.remoteBorg} not found on the box: ${gist(r)}`
        : /Connection closed by remote host/.test(r.stderr) && !/Permission denied/.test(r.stderr)
          ? `the box closed the connection: is the remote borg command ${o.remoteBorg} right? ${gist(r)}`
          : gist(r);

    // 0. The deployed authorized_keys is exactly what the tenant-repo component renders.
    if (o.authorizedKeys) {
      const pubs = Object.fromEntries(keyRoleNames.map((role) => [role, run("ssh-keygen", ["-y", "-f", o.keys[role]]).stdout.trim()])) as Record<KeyRoleName, string>;
      let expected: string;
      try {
        expected = renderAuthorizedKeys(o.tenant, pubs, o.remoteBorg, o.restrictPath);
      } catch (e) {
        expected = `(cannot render: ${(e as Error).message})`;
      }
      const actual = fs.readFileSync(o.authorizedKeys, "utf8");
      const diff = actual.split("\n").filter((l) => l !== "" && !expected.split("\n").includes(l));
      report({ role: "all", what: "authorized_keys holds exactly one forced, restricted line per role", ok: actual === expected, detail: actual === expected ? undefined : `${diff.length} unexpected line(s), first: ${(diff[0] ?? "(lines missing)").slice(0, 100)}` });
    }

    // 1. Push: borg runs behind the forced command and can create an archive.
    const marker = path.join(work, "payload");
    fs.mkdirSync(marker);
    const token = `check-storage-box ${new Date().toISOString()}\n`;
    fs.writeFileSync(path.join(marker, "check.txt"), token);
    const archive = `check-storage-box-${new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "")}`;
    const info = borg("push", ["info"]);
    report({ role: "push", what: `the repository answers through the forced command (${o.remoteBorg} serve)`, ok: info.status === 0, detail: info.status === 0 ? undefined : remoteHint(info) });
    const created = borg("push", ["create", `::${archive}`, "check.txt"], marker);
    report({ role: "push", what: "creates an archive", ok: created.status === 0, detail: created.status === 0 ? archive : gist(created) });

    // 2. Drill: lists and extracts what push wrote.
    const list = borg("drill", ["list", "--short"]);
    report({ role: "drill", what: "lists the archives", ok: list.status === 0 && list.stdout.split("\n").includes(archive), detail: list.status === 0 ? undefined : gist(list) });
    const out = path.join(work, "extract");
    fs.mkdirSync(out);
    const extracted = borg("drill", ["extract", `::${archive}`], out);
    const got = fs.existsSync(path.join(out, "check.txt")) ? fs.readFileSync(path.join(out, "check.txt"), "utf8") : "";
    report({ role: "drill", what: "extracts an archive, byte for byte", ok: extracted.status === 0 && got === token, detail: extracted.status === 0 ? undefined : gist(extracted) });

    // 3. The snapshots, as the main account sees them: the runbook copies a repository out of the
    //    newest one (docs/RESTORE.md, section 11). Listed over SFTP, as the runbook reads them.
    let newestSnapshot: string | undefined;
    if (o.adminKey && o.boxAccount) {
      const adminSftp = (batch: string) =>
        run("sftp", ["-b", "-", "-P", port, "-i", o.adminKey as string, "-o", "IdentitiesOnly=yes", "-o", `UserKnownHostsFile=${o.knownHosts}`,
          "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", `${o.boxAccount!.user}@${o.boxAccount!.host}`], process.env, batch);
      const names = (r: Run) => r.stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("sftp>")).map((l) => path.posix.basename(l));
      const listing = adminSftp(`ls -1 ${o.snapshotDir}\n`);
      const snapshots = listing.status === 0 ? names(listing).filter((n) => /^[A-Za-z0-9][A-Za-z0-9._:+-]*$/.test(n)).sort() : [];
      newestSnapshot = snapshots[snapshots.length - 1];
      report({
        role: "main", what: `the snapshot directory ${o.snapshotDir} is shown and lists snapshots`, ok: newestSnapshot !== undefined,
        detail: listing.status !== 0 ? gist(listing) : newestSnapshot === undefined ? "no snapshot yet: run again after the first daily snapshot" : `${snapshots.length}, newest ${newestSnapshot}`,
      });
      if (newestSnapshot !== undefined) {
        const inside = adminSftp(`ls -1 ${o.snapshotDir}/${newestSnapshot}/${o.snapshotRepoPath}\n`);
        const entries = inside.status === 0 ? names(inside) : [];
        const ok = entries.includes("config") && entries.includes("data");
        report({ role: "main", what: `the newest snapshot holds this tenant's repository (${o.snapshotRepoPath})`, ok, detail: ok ? undefined : inside.status !== 0 ? gist(inside) : `found: ${entries.join(" ") || "nothing"}` });
      }
    }

    // 4. Passwords: the values the state holds were reset right after creation; neither may log in.
    const passwordLogin = (user: string, hostName: string, passwordFile: string): Run => {
      // ssh reads the password from an askpass helper, never from a command line or the terminal.
      const askpass = path.join(work, `askpass-${user}`);
      fs.writeFileSync(askpass, `#!/bin/sh\nexec cat ${passwordFile}\n`, { mode: 0o700 });
      return run("ssh", ["-p", port, "-F", "/dev/null", "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive", "-o", "NumberOfPasswordPrompts=1", "-o", "BatchMode=no",
        "-o", `UserKnownHostsFile=${o.knownHosts}`, "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=20", "-T", `${user}@${hostName}`, "ls"],
        { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force" }, "");
    };
    const passwordChecks: [CheckResult["role"], string, string, string | undefined][] = [
      ["sub-account", user, host, o.storedPassword],
      ["main", o.boxAccount?.user ?? "", o.boxAccount?.host ?? "", o.boxStoredPassword],
    ];
    for (const [role, account, hostName, file] of passwordChecks) {
      if (!file) continue;
      const r = passwordLogin(account, hostName, file);
      const refused = r.status === 255 && /Permission denied/.test(r.stderr);
      report({
        role, what: `the password in the Pulumi state no longer logs in (${account})`, ok: refused,
        detail: refused ? undefined : r.status === 255 ? `could not tell: ${gist(r)}` : "it logged in: reset the password through the API (pulumi up runs the reset)",
      });
    }

    // 5. Every role: no shell, no sftp, no other path, no snapshot directory, no other tenant.
    const parent = repoPath.startsWith("/./") ? "/." : path.posix.dirname(repoPath);
    for (const role of keyRoleNames) {
      const shell = run("ssh", [...sshArgs(role), "-p", port, `${user}@${host}`, "echo", "SHELL-MARKER-7f3a"]);
      report({ role, what: "gets no shell", ok: !shell.stdout.includes("SHELL-MARKER-7f3a"), detail: shell.stdout.includes("SHELL-MARKER-7f3a") ? "a command ran" : undefined });
      const sftp = run("sftp", ["-b", "-", "-P", port, ...sshArgs(role), `${user}@${host}`], process.env, "ls\n");
      report({ role, what: "gets no sftp", ok: sftp.status !== 0, detail: sftp.status === 0 ? "sftp listed files" : undefined });
      const sibling = borg(role, ["list", withPath(`${repoPath}-check-sibling`)]);
      report({ role, what: "is refused a sibling path (--restrict-to-repository)", ok: notAllowed(sibling), detail: notAllowed(sibling) ? undefined : gist(sibling) });
      const up = borg(role, ["list", withPath(`${repoPath}/../check-outside`)]);
      report({ role, what: "is refused a path outside via ..", ok: notAllowed(up), detail: notAllowed(up) ? undefined : gist(up) });
      const snap = borg(role, ["init", "-e", "repokey-blake2", withPath(`${parent}/.zfs/snapshot/check-storage-box`)]);
      report({ role, what: "cannot write into the snapshot directory", ok: snap.status !== 0, detail: snap.status !== 0 ? undefined : "init in .zfs/snapshot succeeded" });
      // What a sub-account's key sees of the snapshots: nothing, not even its own repository there.
      const snapRead = borg(role, ["list", withPath(`${parent}/.zfs/snapshot/${newestSnapshot ?? "check-storage-box"}/${path.posix.basename(repoPath)}`)]);
      report({ role, what: "is refused its repository inside a snapshot (reads only the live one)", ok: notAllowed(snapRead), detail: notAllowed(snapRead) ? undefined : gist(snapRead) });
      if (o.otherRepo) {
        const other = borg(role, ["list", o.otherRepo]);
        // Any failure to open it is what we want; only a success is a surprise.
        report({ role, what: "cannot open another tenant's repository", ok: other.status !== 0, detail: other.status !== 0 ? undefined : "it opened" });
      }
    }

    // 6. Maintenance has full access: it deletes the check archive for good (clean-up too).
    const del = borg("maintenance", ["delete", `::${archive}`]);
    const compact = del.status === 0 ? borg("maintenance", ["compact"]) : del;
    const after = borg("maintenance", ["list", "--short"]);
    const gone = after.status === 0 && !after.stdout.split("\n").includes(archive);
    report({ role: "maintenance", what: "deletes and compacts (full access)", ok: del.status === 0 && compact.status === 0 && gone, detail: del.status !== 0 ? gist(del) : compact.status !== 0 ? gist(compact) : undefined });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const failed = results.filter((r) => !r.ok).length;
  log(failed === 0 ? `all ${results.length} checks passed` : `${failed} of ${results.length} checks failed`);
  return results;
}

function main(): number {
  let opts: CheckOptions;
  try {
    opts = parseCheckArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`check-storage-box: ${e.message.split("\n").join("\ncheck-storage-box: ")}\n${usage}`);
      return 2;
    }
    throw e;
  }
  try {
    return runChecks(opts).every((r) => r.ok) ? 0 : 1;
  } catch (e) {
    console.error(`check-storage-box: ${(e as Error).message}`);
    return 1;
  }
}

if (require.main === module) process.exitCode = main();
