// A disposable box: its own tree over the cached rootfs, booted with systemd-nspawn (systemd as PID 1) in
// a network namespace of this run. Reached with nsenter (setup chores) or over SSH (the install
// and the drill, as in production); powered off from inside, killed by PID if it does not stop.
import { spawn, type ChildProcess } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { run, sleep, waitFor, type RunOptions, type RunResult } from "./exec";
import type { Link } from "./netns";
import { removeTree, type Teardown } from "./teardown";

export interface BoxSpec {
  /** Machine name, unique per run (also the netns name). */
  name: string;
  /** Hostname inside the box. */
  hostname: string;
  /** The cached rootfs to copy. */
  rootfs: string;
  /** Directory of this run; the box's tree and its console log go below it. */
  runDir: string;
  /** Network namespace (a name under /run/netns) the box joins. */
  netns: string;
  /** Public key allowed to log in as root over SSH (the drill's control key). */
  controlPublicKey: string;
}

/** PATH and locale for commands run inside a box (not this machine's environment). */
const boxEnv = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", LANG: "C.UTF-8" };

export class Box {
  /** Box-side ssh host public key line ("ssh-ed25519 AAAA..."). */
  hostPublicKey = "";
  leaderPid = 0;
  link: Link | undefined;
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private exitedNow = true;

  private constructor(readonly spec: BoxSpec, readonly dir: string) {}

  /**
   * Give the box its own tree over the cached rootfs, its own identity, boot it, and wait until
   * systemd is up. The tree is an overlay (the cache is its read-only lower layer, the box writes
   * to its own upper layer) so that making and removing a box costs no copy of 300 MB; where
   * overlayfs is not available, a full copy (cp -a --reflink=auto) is made instead.
   */
  static async create(spec: BoxSpec, teardown: Teardown, log: (line: string) => void = () => undefined): Promise<Box> {
    const base = path.join(spec.runDir, "boxes", spec.name);
    const root = path.join(base, "root");
    fs.mkdirSync(base, { recursive: true, mode: 0o700 });
    // Registered before the mount: removeTree unmounts whatever is below it first.
    teardown.defer(`remove the tree of box ${spec.name}`, () => removeTree(base));
    const t0 = Date.now();
    let how = "overlay";
    for (const d of ["root", "upper", "work"]) fs.mkdirSync(path.join(base, d));
    const mounted = await run(
      ["mount", "-t", "overlay", "overlay", "-o", `lowerdir=${spec.rootfs},upperdir=${base}/upper,workdir=${base}/work`, root],
      { allowFailure: true },
    );
    if (mounted.code !== 0) {
      how = "copy";
      fs.rmdirSync(root);
      await run(["cp", "-a", "--reflink=auto", spec.rootfs, root], { timeoutMs: 600_000 });
    }
    const box = new Box(spec, root);
    await box.personalise();
    const t1 = Date.now();
    await box.boot(teardown, log);
    log(`  box ${spec.hostname}: tree (${how}) in ${((t1 - t0) / 1000).toFixed(1)}s, booted in ${((Date.now() - t1) / 1000).toFixed(1)}s`);
    return box;
  }

  private async personalise(): Promise<void> {
    const p = (rel: string) => path.join(this.dir, rel);
    fs.writeFileSync(p("etc/hostname"), this.spec.hostname + "\n");
    fs.writeFileSync(p("etc/machine-id"), crypto.randomBytes(16).toString("hex") + "\n");
    await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `root@${this.spec.hostname}`, "-f", p("etc/ssh/ssh_host_ed25519_key")]);
    this.hostPublicKey = fs.readFileSync(p("etc/ssh/ssh_host_ed25519_key.pub"), "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
    fs.writeFileSync(
      p("etc/ssh/sshd_config.d/agent-backups-drill.conf"),
      "# The drill's boxes: keys only, one host key made for this box.\n" +
        "HostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n",
    );
    fs.mkdirSync(p("root/.ssh"), { recursive: true, mode: 0o700 });
    fs.writeFileSync(p("root/.ssh/authorized_keys"), this.spec.controlPublicKey.trim() + " drill-control\n", { mode: 0o600 });
  }

  private async boot(teardown: Teardown, log: (line: string) => void): Promise<void> {
    const consoleLog = fs.openSync(path.join(this.spec.runDir, `${this.spec.name}.console.log`), "a");
    const args = [
      "-D", this.dir, `--machine=${this.spec.name}`, "--boot", "--register=no", "--keep-unit", "--console=passive",
      `--network-namespace-path=/run/netns/${this.spec.netns}`,
    ];
    // Its own process group: a Ctrl-C on the terminal reaches the drill, which powers the box off,
    // instead of reaching nspawn (which would reboot the box).
    const child = spawn("systemd-nspawn", args, { stdio: ["ignore", consoleLog, consoleLog], detached: true });
    fs.closeSync(consoleLog);
    this.child = child;
    this.exitedNow = false;
    this.exited = new Promise((resolve) => child.once("exit", () => {
      this.exitedNow = true;
      resolve();
    }));
    child.once("error", () => {
      this.exitedNow = true;
    });
    teardown.defer(`power off box ${this.spec.name}`, () => this.powerOff());
    if (child.pid === undefined) throw new Error(`systemd-nspawn did not start for ${this.spec.name}`);
    const nspawnPid = child.pid;
    this.leaderPid = await waitFor(`box ${this.spec.name} to start systemd`, 100, 100, async () => {
      if (this.exitedNow) throw new Error(`systemd-nspawn for ${this.spec.name} exited early; see ${this.spec.runDir}/${this.spec.name}.console.log`);
      const children = readChildren(nspawnPid);
      return children.find((pid) => readComm(pid) === "systemd");
    });
    const state = await waitFor(`box ${this.spec.name} to finish booting`, 120, 250, async () => {
      const r = await this.exec(["systemctl", "is-system-running"], { allowFailure: true, timeoutMs: 10_000 });
      const s = r.stdout.trim();
      return s === "running" || s === "degraded" ? s : undefined;
    });
    if (state === "degraded") await this.retryFailedUnits(log);
  }

  /**
   * Now and then (a few boots in a hundred, under load) one early oneshot unit of a box fails
   * (seen: systemd-sysusers, systemd-tmpfiles-setup-dev, systemd-user-sessions). Say which and
   * why, start them once more, and go on only when the box is then fully up.
   */
  private async retryFailedUnits(log: (line: string) => void): Promise<void> {
    const listed = await this.exec(["systemctl", "list-units", "--failed", "--no-legend", "--plain"], { allowFailure: true });
    const units = listed.stdout.split("\n").map((l) => l.trim().split(/\s+/)[0] ?? "").filter((u) => /^[A-Za-z0-9@._-]+$/.test(u));
    for (const unit of units) {
      const why = await this.exec(["journalctl", "-u", unit, "-n", "5", "--no-pager", "-o", "cat"], { allowFailure: true });
      log(`  box ${this.spec.hostname}: ${unit} failed at boot (${why.stdout.trim().split("\n").join(" | ").slice(0, 300)}); starting it again`);
    }
    await this.exec(["systemctl", "reset-failed"], { allowFailure: true });
    for (const unit of units) await this.exec(["systemctl", "start", unit], { allowFailure: true, timeoutMs: 30_000 });
    const state = (await this.exec(["systemctl", "is-system-running"], { allowFailure: true })).stdout.trim();
    if (state !== "running") {
      const failed = await this.exec(["systemctl", "--failed", "--no-legend", "--plain"], { allowFailure: true });
      throw new Error(`box ${this.spec.name} is ${state} after a retry: ${failed.stdout.trim()}`);
    }
  }

  /** Run a command inside the box (all its namespaces), as root. */
  exec(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    if (this.leaderPid <= 0) throw new Error(`box ${this.spec.name} is not running`);
    return run(["nsenter", "-t", String(this.leaderPid), "-a", "--", ...argv], { env: boxEnv, ...opts });
  }

  /** Write a file inside the box (content on stdin: never on a command line), atomically. */
  async writeFile(boxPath: string, content: string | Buffer, mode: string, owner = "root:root"): Promise<void> {
    const script = 'set -eu; umask 077; mkdir -p "$(dirname "$1")"; t="$1.drill-tmp"; cat >"$t"; chown "$2" "$t"; chmod "$3" "$t"; mv -f "$t" "$1"';
    await this.exec(["sh", "-c", script, "sh", boxPath, owner, mode], { input: content });
  }

  /** systemctl poweroff inside; if the box is not gone in time, kill its PID 1, then nspawn. */
  async powerOff(): Promise<void> {
    if (this.exitedNow || !this.child?.pid) return;
    if (this.leaderPid > 0) {
      await this.exec(["systemctl", "poweroff"], { allowFailure: true, timeoutMs: 10_000 }).catch(() => undefined);
    }
    if (await this.waitExit(30_000)) return;
    // Killing PID 1 of the box's PID namespace ends every process in it.
    if (this.leaderPid > 0) killPid(this.leaderPid);
    if (await this.waitExit(10_000)) return;
    killPid(this.child.pid);
    if (!(await this.waitExit(10_000))) throw new Error(`box ${this.spec.name} (nspawn pid ${this.child.pid}) did not stop`);
  }

  private async waitExit(ms: number): Promise<boolean> {
    await Promise.race([this.exited, sleep(ms)]);
    return this.exitedNow;
  }
}

function killPid(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

function readChildren(pid: number): number[] {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

function readComm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return "";
  }
}
