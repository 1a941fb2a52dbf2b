// What is installed on an agent host and how: the one place that says it. The prod stack's host
// component and the local drill both copy `files` and run `command`, so the drill proves exactly
// what production runs. Pure: no Pulumi resources, only files read from this repository.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { extraRuleClasses, matchesPattern, type ExtraRules } from "../config/patterns";

export interface HostInstallInput {
  /** Tenant name; also the archive prefix on the host. */
  tenant: string;
  /** Absolute path of the agent's home on the host (e.g. /home/hermes/.hermes). */
  agentHome: string;
  /** Borg repository URL, `ssh://USER@HOST:PORT/PATH` (Storage Box form `ssh://u1-sub1@host:23/./borg`). */
  repoUrl: string;
  /** Server-side borg: "borg-1.4" on the Storage Box, "borg" on a plain sshd. */
  remoteBorg: string;
  /** systemd OnCalendar expression of the backup timer, e.g. "*-*-* 03:17:00". */
  schedule: string;
  /** Optional healthchecks.io-style URL pinged after each run. */
  healthcheckUrl?: string;
  /** Optional Prometheus textfile-collector directory. */
  metricsDir?: string;
  /** The tenant's own backup-set rules per class (globs relative to each home root). */
  extraRules?: ExtraRules;
}

/**
 * The tenant's extra rules in the syntax of scripts/backup-set.rules, read on the host before it:
 * secrets first, so that a path an operator lists twice is never archived. Each glob is refused
 * unless it matches the rules_glob pattern and names no `.` or `..` component.
 */
export function renderExtraRules(rules: ExtraRules | undefined): string {
  const lines: string[] = [];
  for (const cls of extraRuleClasses) {
    for (const glob of rules?.[cls] ?? []) {
      if (!matchesPattern("rules_glob", glob) || glob.split("/").some((c) => c === "." || c === "..")) {
        throw new Error(`host install: refusing extra ${cls} rule ${JSON.stringify(glob)}`);
      }
      lines.push(`${cls} home ${glob}`);
    }
  }
  return lines.length === 0 ? "" : `# The tenant's own rules (agent-backups:tenants[].extraRules)\n${lines.join("\n")}\n`;
}

export interface HostInstallSecrets {
  /** OpenSSH private key of the tenant's push role. */
  sshPrivateKey: string;
  /** borg repository passphrase. */
  passphrase: string;
  /** known_hosts lines for the storage host. */
  knownHosts: string;
}

export interface HostInstallFile {
  /** Absolute path in this repository. */
  localPath: string;
  /** Absolute path on the host, under remoteSourceDir. */
  remotePath: string;
  /** Octal mode to give the copy, e.g. "0755". */
  mode: string;
}

export interface HostInstallPlan {
  /** Every file agent-install needs, as a copy of the repository's scripts/ tree. */
  files: HostInstallFile[];
  /** Where the files are copied on the host before agent-install runs. */
  remoteSourceDir: string;
  /** The install command line, to run as root with hostInstallStdin(...) on stdin. No secrets. */
  command: string;
  /** sha256 over the files' contents and the input: the trigger that re-runs the install. */
  contentHash: string;
}

/** The repository's scripts/ directory: the tree that is copied to hosts. */
export const scriptsDir = path.join(__dirname, "..", "scripts");

/** Files of scripts/ that run on the operator's machine only and never go to a host. */
export const operatorOnlyFiles: readonly string[] = ["check-storage-box"];

/** One file of the host tree, relative to scripts/. */
export interface HostFile {
  rel: string;
  /** The local file has an x bit: it is installed 0755, else 0644. */
  executable: boolean;
}

/**
 * The files of scripts/ that a host gets: every regular file except the operator-only ones, sorted
 * by path, executable when the local file's mode has an x bit. Derived from the tree itself, so a
 * new host file (a lib/*.awk, a new command) is picked up without a change here. Python bytecode
 * caches are skipped (they differ from machine to machine); a symlink or any other non-regular
 * file, or a name outside the strict rel_path pattern, is refused: it would reach shell commands.
 */
export function hostFiles(sourceDir: string = scriptsDir): HostFile[] {
  const found: HostFile[] = [];
  const walk = (dir: string, prefix: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      throw new Error(`host install: cannot read ${dir} (${(err as Error).message})`);
    }
    for (const e of entries) {
      const rel = prefix === "" ? e.name : `${prefix}/${e.name}`;
      if (e.isDirectory() && e.name === "__pycache__") continue;
      if (!matchesPattern("rel_path", rel)) throw new Error(`host install: refusing file name ${JSON.stringify(rel)} under ${sourceDir}`);
      if (e.isDirectory()) walk(path.join(dir, e.name), rel);
      else if (e.isFile()) {
        if (operatorOnlyFiles.includes(rel)) continue;
        found.push({ rel, executable: (fs.statSync(path.join(dir, e.name)).mode & 0o111) !== 0 });
      } else throw new Error(`host install: refusing ${path.join(dir, e.name)}: not a regular file or directory`);
    }
  };
  walk(sourceDir, "");
  if (!found.some((f) => f.rel === "agent-install")) throw new Error(`host install: missing ${path.join(sourceDir, "agent-install")} (the install command runs it)`);
  return found.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/** Where the copied tree lands on the host (root-owned, outside world-writable /tmp). */
export const remoteSourceDir = "/var/lib/agent-backup/install-source";

/**
 * A borg repository URL as the host scripts accept it: ssh://USER@HOST:PORT/PATH where PATH is
 * absolute or the Storage Box's home-relative "/./x". Each part must match its strict pattern.
 */
export function isValidRepoUrl(url: string): boolean {
  const m = /^ssh:\/\/([^@/]+)@([^:/]+):([0-9]+)(\/.*)$/.exec(url);
  if (!m) return false;
  const [, user = "", host = "", port = "", repoPath = ""] = m;
  const pathOk = repoPath.startsWith("/./")
    ? matchesPattern("abs_path", repoPath.slice(2))
    : matchesPattern("abs_path", repoPath);
  return (
    matchesPattern("unix_user", user) &&
    matchesPattern("hostname", host) &&
    matchesPattern("port", port) &&
    Number(port) <= 65535 &&
    pathOk
  );
}

function validateInput(input: HostInstallInput): void {
  const checks: [string, boolean][] = [
    ["tenant", matchesPattern("tenant", input.tenant)],
    ["agentHome", matchesPattern("abs_path", input.agentHome)],
    ["repoUrl", isValidRepoUrl(input.repoUrl)],
    ["remoteBorg", matchesPattern("borg_command", input.remoteBorg)],
    ["schedule", matchesPattern("on_calendar", input.schedule)],
  ];
  if (input.healthcheckUrl !== undefined) checks.push(["healthcheckUrl", matchesPattern("url", input.healthcheckUrl)]);
  if (input.metricsDir !== undefined) checks.push(["metricsDir", matchesPattern("abs_path", input.metricsDir)]);
  const bad = checks.filter(([, ok]) => !ok).map(([name]) => name);
  if (bad.length > 0) {
    const values = bad.map((name) => `${name}=${JSON.stringify(input[name as keyof HostInstallInput])}`);
    throw new Error(`host install: refusing invalid ${values.join(", ")}`);
  }
}

/** Single quotes for word grouping only: every value was validated and none may contain a quote. */
function quoteValidated(value: string): string {
  if (value.includes("'")) throw new Error(`host install: unexpected quote in ${JSON.stringify(value)}`);
  return /^[A-Za-z0-9._/:@=+-]+$/.test(value) ? value : `'${value}'`;
}

/**
 * The files every host gets, read from `sourceDir`: the same for every tenant, so a caller can copy
 * them before the tenant's repository URL is known. Throws naming a missing file.
 */
export function hostInstallFiles(sourceDir: string = scriptsDir): (HostInstallFile & { content: Buffer })[] {
  return hostFiles(sourceDir).map(({ rel, executable }) => {
    const localPath = path.join(sourceDir, rel);
    let content: Buffer;
    try {
      content = fs.readFileSync(localPath);
    } catch (err) {
      throw new Error(`host install: missing ${localPath} (${(err as Error).message})`);
    }
    return { localPath, remotePath: `${remoteSourceDir}/${rel}`, mode: executable ? "0755" : "0644", content };
  });
}

// --- one archive instead of one SSH session per file ---------------------------------------------

/** Where the archive of the host files is uploaded, in a directory the SSH user owns. */
export const remoteUploadDir = "/var/lib/agent-backup/install-upload";
export const remoteArchivePath = `${remoteUploadDir}/host-files.tar`;

/** One 512-byte ustar header; numbers are octal, NUL-terminated. */
function ustarHeader(name: string, mode: number, size: number, type: "0" | "5"): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`host install: path too long for the archive: ${name}`);
  const h = Buffer.alloc(512);
  const put = (value: string, offset: number, length: number) => h.write(value, offset, length, "ascii");
  const octal = (n: number, length: number) => n.toString(8).padStart(length - 1, "0");
  put(name, 0, 100);
  put(octal(mode, 8), 100, 8);
  put(octal(0, 8), 108, 8); // uid root
  put(octal(0, 8), 116, 8); // gid root
  put(octal(size, 12), 124, 12);
  put(octal(0, 12), 136, 12); // mtime: fixed, so equal trees give equal archives
  put(" ".repeat(8), 148, 8); // checksum field counts as spaces while summing
  put(type, 156, 1);
  put("ustar\0", 257, 6);
  put("00", 263, 2);
  put("root", 265, 32);
  put("root", 297, 32);
  let sum = 0;
  for (const byte of h) sum += byte;
  put(`${octal(sum, 7)}\0 `, 148, 8);
  return h;
}

/**
 * The host files as one uncompressed ustar archive: directories 0755, files with their plan mode,
 * owned by root, mtime 0, in sorted order. The same tree always gives the same bytes.
 */
export function hostFilesArchive(sourceDir: string = scriptsDir): Buffer {
  const files = hostInstallFiles(sourceDir);
  const parts: Buffer[] = [];
  const dirs = new Set<string>();
  for (const f of files) {
    const rel = f.remotePath.slice(remoteSourceDir.length + 1);
    const segments = rel.split("/").slice(0, -1);
    for (let i = 1; i <= segments.length; i++) {
      const dir = segments.slice(0, i).join("/");
      if (!dirs.has(dir)) {
        dirs.add(dir);
        parts.push(ustarHeader(`${dir}/`, 0o755, 0, "5"));
      }
    }
    parts.push(ustarHeader(rel, parseInt(f.mode, 8), f.content.length, "0"), f.content);
    const pad = (512 - (f.content.length % 512)) % 512;
    if (pad > 0) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024)); // end of archive: two zero blocks
  return Buffer.concat(parts);
}

/** Where archives are kept for the copy: this repository's ignored .cache/, owned by its user. */
export const defaultArchiveCacheDir = path.join(__dirname, "..", ".cache", "host-files");

/**
 * The archive written to `cacheDir` under its own sha256, so an unchanged tree keeps the same
 * path and content from run to run (a copy is made only when it changed). Written atomically.
 */
export function writeHostFilesArchive(sourceDir: string = scriptsDir, cacheDir: string = defaultArchiveCacheDir): { localPath: string; sha256: string } {
  const archive = hostFilesArchive(sourceDir);
  const sha256 = crypto.createHash("sha256").update(archive).digest("hex");
  const localPath = path.join(cacheDir, `host-files-${sha256}.tar`);
  const current = fs.existsSync(localPath) ? fs.readFileSync(localPath) : undefined;
  if (!current || !current.equals(archive)) {
    fs.mkdirSync(cacheDir, { recursive: true, mode: 0o700 });
    const tmp = `${localPath}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, archive, { mode: 0o600 });
    fs.renameSync(tmp, localPath);
  }
  return { localPath, sha256 };
}

/**
 * Checks the uploaded archive against the sha256 it was built with (`verify`, needs no root), then
 * unpacks it into a fresh remoteSourceDir (`unpack`, as root), so that files dropped from scripts/
 * disappear from the host too.
 */
export function unpackArchiveCommands(archivePath: string, sha256: string): { verify: string; unpack: string[] } {
  if (!matchesPattern("abs_path", archivePath) || !/^[0-9a-f]{64}$/.test(sha256)) throw new Error("host install: refusing archive path or checksum");
  return {
    verify: `printf '%s  %s\\n' ${sha256} ${archivePath} | sha256sum --check --quiet --strict`,
    unpack: [
      `rm -rf ${remoteSourceDir}`,
      `install -d -m 0700 ${remoteSourceDir}`,
      `tar -x --no-same-owner -f ${archivePath} -C ${remoteSourceDir}`,
    ],
  };
}

/**
 * The install plan for one host: files to copy, the command to run, and its re-run trigger.
 * `sourceDir` is the local scripts/ tree to read (this repository's unless a test says otherwise).
 */
export function hostInstallPlan(input: HostInstallInput, sourceDir: string = scriptsDir): HostInstallPlan {
  validateInput(input);
  const hash = crypto.createHash("sha256");
  const files = hostInstallFiles(sourceDir).map(({ content, ...file }) => {
    const rel = file.remotePath.slice(remoteSourceDir.length + 1);
    hash.update(`file\0${rel}\0${file.mode}\0${content.length}\0`).update(content);
    return file;
  });

  const args: [string, string | undefined][] = [
    ["--source", remoteSourceDir],
    ["--tenant", input.tenant],
    ["--agent-home", input.agentHome],
    ["--repo", input.repoUrl],
    ["--remote-borg", input.remoteBorg],
    ["--schedule", input.schedule],
    ["--healthcheck-url", input.healthcheckUrl],
    ["--metrics-dir", input.metricsDir],
  ];
  const words = ["bash", `${remoteSourceDir}/agent-install`];
  for (const [flag, value] of args) if (value !== undefined) words.push(flag, quoteValidated(value));
  const command = words.join(" ");
  hash.update(`command\0${command}`);
  // The rules travel on stdin; a change of them must re-run the install too.
  hash.update(`rules\0${renderExtraRules(input.extraRules)}`);

  return { files, remoteSourceDir, command, contentHash: hash.digest("hex") };
}

/**
 * The stdin of the install command: KEY=VALUE lines with base64 values, so that no secret is ever
 * on a command line and agent-install can parse (never source) it.
 */
export function hostInstallStdin(secrets: HostInstallSecrets, extraRules?: ExtraRules): string {
  const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
  if (!secrets.sshPrivateKey.includes("PRIVATE KEY")) throw new Error("host install: sshPrivateKey is not a private key");
  if (secrets.passphrase.length === 0) throw new Error("host install: empty passphrase");
  if (secrets.knownHosts.trim().length === 0) throw new Error("host install: empty knownHosts");
  return [
    `SSH_KEY_B64=${b64(secrets.sshPrivateKey)}`,
    `PASSPHRASE_B64=${b64(secrets.passphrase)}`,
    `KNOWN_HOSTS_B64=${b64(secrets.knownHosts)}`,
    ...(renderExtraRules(extraRules) === "" ? [] : [`EXTRA_RULES_B64=${b64(renderExtraRules(extraRules))}`]),
  ].join("\n") + "\n";
}
