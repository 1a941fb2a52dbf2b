// The systemd units: systemd-analyze verify passes with nothing on stderr, and the settings the
// issue asks for are there (oneshot, hardened, low priority, persistent randomized timer).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, describe, expect, test } from "vitest";
import { agentBackupPath, hostConfigPath } from "../../components/host-backup";
import { cleanupTemp, tempDir } from "../lib/agent-home";
import { scriptsDir } from "../lib/storage-box";

const unitDir = path.join(scriptsDir, "systemd");
const service = fs.readFileSync(path.join(unitDir, "agent-backup.service"), "utf8");
const timer = fs.readFileSync(path.join(unitDir, "agent-backup.timer"), "utf8");

afterAll(() => cleanupTemp());

/**
 * systemd-analyze verify on unit files in DIR. ExecStart must exist, so the installed path
 * (agentBackupPath) is provided in a private mount namespace of this call only.
 */
function verify(dir: string) {
  const script = `mount -t tmpfs tmpfs "$(dirname "$1")" && ln -s "$2" "$1" && cd "$3" && exec systemd-analyze verify ./agent-backup.service ./agent-backup.timer`;
  return spawnSync("unshare", ["-m", "--propagation", "private", "sh", "-c", script, "sh", agentBackupPath, path.join(scriptsDir, "agent-backup"), dir], {
    encoding: "utf8",
  });
}

function setting(unit: string, key: string): string[] {
  return [...unit.matchAll(new RegExp(`^${key}=(.*)$`, "gm"))].map((m) => m[1]!);
}

describe("systemd units", () => {
  test("systemd-analyze verify passes with no warnings", () => {
    expect(spawnSync("systemd-analyze", ["--version"]).status, "systemd-analyze is required").toBe(0);
    const r = verify(unitDir);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  test("the check catches a bad key and a bad schedule (it can fail)", () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, "agent-backup.service"), service.replace("Nice=19", "Nicee=19"));
    fs.writeFileSync(path.join(dir, "agent-backup.timer"), timer);
    expect(verify(dir).stderr).toMatch(/Nicee/);
    fs.writeFileSync(path.join(dir, "agent-backup.service"), service);
    fs.writeFileSync(path.join(dir, "agent-backup.timer"), timer.replace("OnCalendar=daily", "OnCalendar=every tuesday-ish"));
    const r = verify(dir);
    expect(r.status !== 0 || r.stderr !== "").toBe(true);
  });

  test("the service is a hardened, low-priority oneshot running the installed script on the host config", () => {
    expect(setting(service, "Type")).toEqual(["oneshot"]);
    expect(setting(service, "ExecStart")).toEqual([`${agentBackupPath} --config ${hostConfigPath}`]);
    expect(setting(service, "ProtectSystem")).toEqual(["strict"]);
    expect(setting(service, "ProtectHome")).toEqual(["read-only"]);
    expect(setting(service, "PrivateTmp")).toEqual(["yes"]);
    expect(setting(service, "NoNewPrivileges")).toEqual(["yes"]);
    expect(setting(service, "Nice")).toEqual(["19"]);
    expect(setting(service, "IOSchedulingClass")).toEqual(["idle"]);
    expect(setting(service, "CPUSchedulingPolicy")).toEqual(["idle"]);
    // Writable: only borg's cache and the staging area, the defaults of agent-backup.
    expect(setting(service, "StateDirectory")).toEqual(["agent-backup"]);
    const script = fs.readFileSync(path.join(scriptsDir, "agent-backup"), "utf8");
    expect(script).toContain("STAGING_DIR /var/lib/agent-backup/staging");
    expect(fs.readFileSync(path.join(scriptsDir, "lib", "common.sh"), "utf8")).toContain("BORG_BASE_DIR:-/var/lib/agent-backup/borg");
  });

  test("the timer is persistent with a randomized delay and a schedule systemd accepts", () => {
    expect(setting(timer, "Persistent")).toEqual(["true"]);
    expect(setting(timer, "RandomizedDelaySec").length).toBe(1);
    const [calendar] = setting(timer, "OnCalendar");
    expect(spawnSync("systemd-analyze", ["calendar", calendar!]).status).toBe(0);
    expect(timer).toMatch(/^\[Install\]\nWantedBy=timers\.target$/m);
  });
});
