// A storage box on loopback for tests: a real sshd on 127.0.0.1 (own host key, own config, a free
// port), one Unix user per tenant (unique per run), and each tenant's authorized_keys rendered by
// components/key-roles.ts, so the forced commands under test are the very ones a real box gets.
// stop() kills sshd by its PID and removes the users and every file the box made.
import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as net from "node:net";
import * as path from "node:path";
import { keyRoleNames, renderAuthorizedKeys, type KeyRoleName } from "../../components/key-roles";

export const repoRoot = path.resolve(__dirname, "..", "..");
export const scriptsDir = path.join(repoRoot, "scripts");

export interface StorageBoxOptions {
  /** Tenant names (the value-patterns `tenant` rule). */
  tenants: string[];
  /** Server-side borg command in the forced command line (default "borg"). */
  borgCommand?: string;
  /**
   * Give every tenant user a password and let sshd take password logins, as the real box does
   * (a full login, no forced command): for tests of dead passwords. Off by default.
   */
  passwordLogin?: boolean;
}

export interface BoxTenant {
  tenant: string;
  /** The tenant's Unix user on the box (unique per run). */
  user: string;
  /** Absolute path of the tenant's repository on the box. */
  repoPath: string;
  /** ssh://USER@127.0.0.1:PORT/PATH */
  repoUrl: string;
  /** Private key file per role (push, drill, maintenance). */
  keys: Record<KeyRoleName, string>;
  /** The repository passphrase, in a 0600 file. */
  passphraseFile: string;
  /** With passwordLogin: the user's login password, in a 0600 file. */
  passwordFile?: string;
}

export interface ConfigOptions {
  agentHome: string;
  /** Which key the config uses (default push, as on an agent host). */
  role?: KeyRoleName;
  lockWait?: number;
  stagingDir?: string;
  metricsDir?: string;
  healthcheckUrl?: string;
  /** Replace or add raw KEY=VALUE lines (for bad-input tests); null drops a key. */
  override?: Record<string, string | null>;
}

export interface StorageBox {
  dir: string;
  port: number;
  knownHosts: string;
  tenants: Record<string, BoxTenant>;
  /** Environment for borg on the client side: BORG_BASE_DIR of this box's test run. */
  clientEnv: NodeJS.ProcessEnv;
  /** Environment to run borg directly with one role's key (BORG_RSH, BORG_PASSCOMMAND, BORG_REPO). */
  borgEnv(tenant: string, role: KeyRoleName): NodeJS.ProcessEnv;
  /** Run borg with one role's key; returns status and output. */
  borg(tenant: string, role: KeyRoleName, args: string[]): { status: number | null; stdout: string; stderr: string };
  /** Write an agent-backup config file (mode 0600) for a tenant; returns its path. */
  writeConfig(tenant: string, opts: ConfigOptions): string;
  /** The sshd process (for fault tests). */
  sshd: ChildProcess;
  stop(): Promise<void>;
}

/** A TCP port on loopback that nothing listens on (at the time of asking). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    sock.once("connect", () => {
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => resolve(false));
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function requireTool(cmd: string, hint: string): void {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`]);
  if (r.status !== 0) throw new Error(`${cmd} is required for the storage box (${hint})`);
}

export async function startStorageBox(opts: StorageBoxOptions): Promise<StorageBox> {
  requireTool("/usr/sbin/sshd", "apt-get install openssh-server");
  requireTool("ssh-keygen", "apt-get install openssh-client");
  requireTool("borg", "apt-get install borgbackup");
  if (process.getuid?.() !== 0) throw new Error("the storage box creates Unix users: run the tests as root");
  const borgCommand = opts.borgCommand ?? "borg";

  // Not under /tmp itself: sshd's StrictModes wants no world-writable directory in a user's home.
  fs.mkdirSync("/var/tmp", { recursive: true });
  const dir = fs.mkdtempSync("/var/tmp/ab-box-");
  fs.chmodSync(dir, 0o755);
  const runId = randomBytes(3).toString("hex");
  const created: string[] = [];
  let sshd: ChildProcess | undefined;

  const cleanupSync = () => {
    if (sshd?.pid && sshd.exitCode === null) {
      try {
        process.kill(sshd.pid, "SIGTERM");
      } catch {
        /* already gone */
      }
    }
    for (const user of created) spawnSync("userdel", ["-f", user], { stdio: "ignore" });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", cleanupSync);

  try {
    const hostKey = path.join(dir, "ssh_host_ed25519_key");
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "ab-box", "-f", hostKey]);
    fs.mkdirSync(path.join(dir, "home"), { mode: 0o755 });
    fs.mkdirSync(path.join(dir, "client"), { mode: 0o700 });
    const clientEnv = { ...process.env, BORG_BASE_DIR: path.join(dir, "client", "borg") };

    const tenants: Record<string, BoxTenant> = {};
    const users: string[] = [];
    for (const tenant of opts.tenants) {
      const user = `abt${runId}${tenant.replace(/[^a-z0-9]/g, "").slice(0, 20)}`;
      const home = path.join(dir, "home", user);
      execFileSync("useradd", ["-M", "-d", home, "-s", "/bin/sh", user]);
      created.push(user);
      // A locked password ("!") blocks key logins when UsePAM is off; "*" only forbids passwords.
      execFileSync("usermod", ["-p", "*", user]);
      users.push(user);
      fs.mkdirSync(path.join(home, ".ssh"), { recursive: true, mode: 0o700 });
      const keyDir = path.join(dir, "client", tenant);
      fs.mkdirSync(keyDir, { mode: 0o700 });
      const keys = {} as Record<KeyRoleName, string>;
      const pubs = {} as Record<KeyRoleName, string>;
      for (const role of keyRoleNames) {
        const file = path.join(keyDir, role);
        execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", `${role}@${tenant}`, "-f", file]);
        keys[role] = file;
        pubs[role] = fs.readFileSync(`${file}.pub`, "utf8");
      }
      const repoPath = path.join(home, "repo");
      fs.writeFileSync(path.join(home, ".ssh", "authorized_keys"), renderAuthorizedKeys(tenant, pubs, borgCommand, repoPath), {
        mode: 0o600,
      });
      execFileSync("chown", ["-R", `${user}:${user}`, home]);
      fs.chmodSync(home, 0o700);
      const passphraseFile = path.join(keyDir, "passphrase");
      fs.writeFileSync(passphraseFile, `${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });
      tenants[tenant] = { tenant, user, repoPath, repoUrl: "", keys, passphraseFile };
      if (opts.passwordLogin) {
        const password = randomBytes(18).toString("base64url");
        execFileSync("chpasswd", [], { input: `${user}:${password}\n` });
        const passwordFile = path.join(keyDir, "password");
        fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
        tenants[tenant]!.passwordFile = passwordFile;
      }
    }

    const knownHosts = path.join(dir, "client", "known_hosts");
    const hostPub = fs.readFileSync(`${hostKey}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
    let port = 0;
    for (let attempt = 1; attempt <= 5 && !sshd; attempt++) {
      port = await freePort();
      const config = path.join(dir, "sshd_config");
      fs.writeFileSync(
        config,
        [
          `Port ${port}`,
          "ListenAddress 127.0.0.1",
          `HostKey ${hostKey}`,
          `PidFile ${path.join(dir, "sshd.pid")}`,
          "AuthorizedKeysFile .ssh/authorized_keys",
          "PubkeyAuthentication yes",
          opts.passwordLogin ? "PasswordAuthentication yes" : "PasswordAuthentication no",
          "KbdInteractiveAuthentication no",
          "UsePAM no",
          "PermitRootLogin no",
          `AllowUsers ${users.join(" ")}`,
          "StrictModes yes",
          "AllowTcpForwarding no",
          "X11Forwarding no",
          "PrintMotd no",
          "MaxStartups 100",
          "LogLevel ERROR",
          // The real box serves SFTP: without it, "no sftp for this key" checks would pass for
          // the wrong reason.
          "Subsystem sftp internal-sftp",
          "",
        ].join("\n"),
      );
      fs.mkdirSync("/run/sshd", { recursive: true });
      const log = fs.openSync(path.join(dir, "sshd.log"), "a");
      const child = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: ["ignore", log, log] });
      fs.closeSync(log);
      // Bounded wait for the listener: 100 tries of 50 ms.
      for (let i = 0; i < 100 && child.exitCode === null; i++) {
        if (await canConnect(port)) {
          sshd = child;
          break;
        }
        await sleep(50);
      }
      if (!sshd && child.exitCode === null) child.kill("SIGTERM");
    }
    if (!sshd) throw new Error(`sshd did not start: ${fs.readFileSync(path.join(dir, "sshd.log"), "utf8")}`);
    fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostPub}\n`, { mode: 0o644 });
    for (const t of Object.values(tenants)) t.repoUrl = `ssh://${t.user}@127.0.0.1:${port}${t.repoPath}`;

    const borgEnv = (tenant: string, role: KeyRoleName): NodeJS.ProcessEnv => {
      const t = tenants[tenant];
      if (!t) throw new Error(`no tenant ${tenant} on this box`);
      return {
        ...clientEnv,
        BORG_REPO: t.repoUrl,
        BORG_RSH: `ssh -i ${t.keys[role]} -o IdentitiesOnly=yes -o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes -o BatchMode=yes`,
        BORG_PASSCOMMAND: `cat ${t.passphraseFile}`,
      };
    };

    const box: StorageBox = {
      dir,
      port,
      knownHosts,
      tenants,
      clientEnv,
      sshd,
      borgEnv,
      borg(tenant, role, args) {
        const r = spawnSync("borg", args, { env: borgEnv(tenant, role), encoding: "utf8", timeout: 300_000 });
        return { status: r.status, stdout: r.stdout, stderr: r.stderr };
      },
      writeConfig(tenant, o) {
        const t = tenants[tenant];
        if (!t) throw new Error(`no tenant ${tenant} on this box`);
        const fields: Record<string, string | null> = {
          AGENT_HOME: o.agentHome,
          BORG_REPO: t.repoUrl,
          SSH_KEY: t.keys[o.role ?? "push"],
          KNOWN_HOSTS: knownHosts,
          PASSPHRASE_FILE: t.passphraseFile,
          ARCHIVE_PREFIX: tenant,
          REMOTE_BORG: borgCommand,
          LOCK_WAIT: String(o.lockWait ?? 30),
          STAGING_DIR: o.stagingDir ?? path.join(dir, "client", "staging"),
          ...(o.metricsDir ? { METRICS_DIR: o.metricsDir } : {}),
          ...(o.healthcheckUrl ? { HEALTHCHECK_URL: o.healthcheckUrl } : {}),
          ...o.override,
        };
        const file = path.join(dir, "client", `${tenant}-${randomBytes(3).toString("hex")}.conf`);
        const text = Object.entries(fields)
          .filter(([, v]) => v !== null)
          .map(([k, v]) => `${k}=${v}`)
          .join("\n");
        fs.writeFileSync(file, `# agent-backup config for ${tenant} (test)\n${text}\n`, { mode: 0o600 });
        return file;
      },
      async stop() {
        process.removeListener("exit", cleanupSync);
        const child = sshd;
        if (child?.pid && child.exitCode === null) {
          const exited = new Promise<void>((r) => child.once("exit", () => r()));
          child.kill("SIGTERM");
          await Promise.race([exited, sleep(5000)]);
        }
        // Connections still open (borg serve) end with their sshd child; give them a moment.
        for (const user of created) {
          for (let i = 0; i < 50; i++) {
            const r = spawnSync("userdel", ["-f", user], { encoding: "utf8" });
            if (r.status === 0 || /does not exist/.test(r.stderr)) break;
            await sleep(100);
          }
        }
        fs.rmSync(dir, { recursive: true, force: true });
      },
    };
    return box;
  } catch (err) {
    cleanupSync();
    process.removeListener("exit", cleanupSync);
    throw err;
  }
}
