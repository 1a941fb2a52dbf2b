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
Tries, with each key role, what it must and must not do against the tenant's repository (which
must be initialised), prints one line per check, and exits 0 only when nothing surprised.`;

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
        ["tenant", "repo", "restrict-path", "remote-borg", "known-hosts", "passphrase-file", "push-key", "drill-key", "maintenance-key", "other-repo", "authorized-keys", "timeout"].map((o) => [o, { type: "string" as const }]),
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
  };
  if (problems.length > 0) throw new UsageError(problems.join("\n"));
  return opts;
}

export interface CheckResult {
  role: KeyRoleName | "all";
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

    // 3. Every role: no shell, no sftp, no other path, no snapshot directory, no other tenant.
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
      if (o.otherRepo) {
        const other = borg(role, ["list", o.otherRepo]);
        // Any failure to open it is what we want; only a success is a surprise.
        report({ role, what: "cannot open another tenant's repository", ok: other.status !== 0, detail: other.status !== 0 ? undefined : "it opened" });
      }
    }

    // 4. Maintenance has full access: it deletes the check archive for good (clean-up too).
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
