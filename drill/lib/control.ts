// The drill's operator side: SSH from the storage namespace (the only one linked to every box)
// to a box's sshd, as root with the run's control key, checking the box's own host key.
import * as fs from "fs";
import * as path from "path";
import type { Box } from "./box";
import { run, type RunOptions, type RunResult } from "./exec";
import type { KeyPair } from "./keys";

export class Control {
  private readonly knownHosts: string;

  constructor(private readonly runDir: string, private readonly storageNs: string, private readonly key: KeyPair) {
    this.knownHosts = path.join(runDir, "control_known_hosts");
    fs.writeFileSync(this.knownHosts, "", { mode: 0o600 });
  }

  /** Trust a box's host key at its link address. */
  trust(box: Box): void {
    if (!box.link) throw new Error(`box ${box.spec.name} has no link`);
    fs.appendFileSync(this.knownHosts, `${box.link.boxAddress} ${box.hostPublicKey}\n`);
  }

  /** Run a remote command line (validated values only) on a box over SSH. */
  ssh(box: Box, remoteCommand: string, opts: RunOptions = {}): Promise<RunResult> {
    if (!box.link) throw new Error(`box ${box.spec.name} has no link`);
    return run(
      [
        "ip", "netns", "exec", this.storageNs,
        "ssh", "-i", this.key.privatePath, "-o", "IdentitiesOnly=yes", "-o", `UserKnownHostsFile=${this.knownHosts}`,
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
        `root@${box.link.boxAddress}`, remoteCommand,
      ],
      opts,
    );
  }

  /** Copy local files to absolute paths on a box in one SSH session (a tar stream of files only). */
  async copyFiles(box: Box, files: readonly { localPath: string; remotePath: string; mode: string }[]): Promise<void> {
    const stage = fs.mkdtempSync(path.join(this.runDir, "stage-"));
    try {
      for (const f of files) {
        const dest = path.join(stage, f.remotePath);
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        fs.copyFileSync(f.localPath, dest);
        fs.chmodSync(dest, parseInt(f.mode, 8));
      }
      // Only files are in the archive (no directory entries), so no directory's mode is touched.
      const rel = files.map((f) => f.remotePath.replace(/^\//, ""));
      const tar = await run(["tar", "-C", stage, "--owner=0", "--group=0", "-cf", "-", ...rel], { timeoutMs: 60_000 });
      await this.ssh(box, "tar -C / -xpf -", { input: tar.stdoutBytes });
    } finally {
      fs.rmSync(stage, { recursive: true, force: true });
    }
  }
}
