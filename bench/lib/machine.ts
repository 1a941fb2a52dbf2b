// What the numbers were measured on, recorded next to them.
import { spawnSync } from "node:child_process";
import * as os from "node:os";

export interface MachineInfo {
  hostname: string;
  kernel: string;
  os: string;
  cpuModel: string;
  cores: number;
  memoryGb: number;
  loadAverageAtStart: number[];
  versions: Record<string, string>;
}

function firstLine(argv: string[]): string {
  const [cmd, ...args] = argv;
  const r = spawnSync(cmd!, args, { encoding: "utf8" });
  return ((r.stdout || r.stderr || "").trim().split("\n")[0] ?? "").trim() || "unknown";
}

export function machineInfo(): MachineInfo {
  const osRelease = spawnSync("sh", ["-c", '. /etc/os-release 2>/dev/null && printf %s "$PRETTY_NAME"'], { encoding: "utf8" });
  return {
    hostname: os.hostname(),
    kernel: `${os.type()} ${os.release()}`,
    os: osRelease.stdout || "unknown",
    cpuModel: os.cpus()[0]?.model ?? "unknown",
    cores: os.cpus().length,
    memoryGb: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
    versions: {
      node: process.version,
      borg: firstLine(["borg", "--version"]),
      sqlite3: firstLine(["sqlite3", "--version"]).split(" ")[0] ?? "unknown",
      python3: firstLine(["python3", "--version"]),
      tar: firstLine(["tar", "--version"]),
      gzip: firstLine(["gzip", "--version"]),
    },
  };
}
