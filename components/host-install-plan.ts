// What is installed on an agent host and how: the one place that says it. The prod stack's host
// component and the local drill both copy `files` and run `command`, so the drill proves exactly
// what production runs. Pure: no Pulumi resources, only files read from this repository.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { matchesPattern } from "../config/patterns";

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

/**
 * The files of scripts/ that a host needs, relative to scripts/. Executables get 0755. The
 * patterns and stores lists are data read by the scripts; the units are installed by agent-install.
 */
export const hostFiles: readonly { rel: string; executable: boolean }[] = [
  { rel: "agent-install", executable: true },
  { rel: "agent-backup", executable: true },
  { rel: "agent-restore", executable: true },
  { rel: "agent-verify", executable: true },
  { rel: "agent-drill", executable: true },
  { rel: "lib/common.sh", executable: false },
  { rel: "lib/value-patterns", executable: false },
  { rel: "backup-set.patterns", executable: false },
  { rel: "sqlite-stores", executable: false },
  { rel: "systemd/agent-backup.service", executable: false },
  { rel: "systemd/agent-backup.timer", executable: false },
];

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
  return hostFiles.map(({ rel, executable }) => {
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

  return { files, remoteSourceDir, command, contentHash: hash.digest("hex") };
}

/**
 * The stdin of the install command: KEY=VALUE lines with base64 values, so that no secret is ever
 * on a command line and agent-install can parse (never source) it.
 */
export function hostInstallStdin(secrets: HostInstallSecrets): string {
  const b64 = (s: string) => Buffer.from(s, "utf8").toString("base64");
  if (!secrets.sshPrivateKey.includes("PRIVATE KEY")) throw new Error("host install: sshPrivateKey is not a private key");
  if (secrets.passphrase.length === 0) throw new Error("host install: empty passphrase");
  if (secrets.knownHosts.trim().length === 0) throw new Error("host install: empty knownHosts");
  return [
    `SSH_KEY_B64=${b64(secrets.sshPrivateKey)}`,
    `PASSPHRASE_B64=${b64(secrets.passphrase)}`,
    `KNOWN_HOSTS_B64=${b64(secrets.knownHosts)}`,
  ].join("\n") + "\n";
}
