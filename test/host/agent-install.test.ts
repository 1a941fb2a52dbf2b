// agent-install's refusals, run for real: every bad argument or stdin line is refused with exit 2
// before anything on the machine changes. (The install itself runs in the local drill's e2e test,
// inside a systemd box, twice: the second run must change nothing.)
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { hostInstallStdin, scriptsDir } from "../../components/host-install-plan";

const installer = path.join(scriptsDir, "agent-install");
const goodArgs = [
  "--source", scriptsDir, "--tenant", "acme", "--agent-home", "/home/hermes/.hermes",
  "--repo", "ssh://acme@10.77.255.1:22/home/acme/repo", "--remote-borg", "borg", "--schedule", "*-*-* 03:17:00",
];
const goodStdin = hostInstallStdin({
  sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
  passphrase: "correct horse",
  knownHosts: "10.77.255.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs\n",
});

function install(args: string[], stdin: string) {
  const r = spawnSync("bash", [installer, ...args], { input: stdin, encoding: "utf8" });
  if (r.error) throw r.error;
  return r;
}

const with_ = (flag: string, value: string) => {
  const a = [...goodArgs];
  a[a.indexOf(flag) + 1] = value;
  return a;
};

describe("agent-install refuses bad input (exit 2, nothing written)", () => {
  const before = fs.existsSync("/etc/agent-backup");

  it.each([
    ["--tenant", "Acme;id", /--tenant: refusing/],
    ["--agent-home", "relative/home", /--agent-home: refusing/],
    ["--repo", "ssh://acme@host:22/x y", /--repo: refusing/],
    ["--repo", "file:///srv/repo", /--repo: refusing/],
    ["--remote-borg", "borg serve", /--remote-borg: refusing/],
    ["--schedule", "daily; reboot", /--schedule: refusing/],
    ["--schedule", "not a calendar", /--schedule: systemd does not accept/],
  ])("%s %s", (flag, value, message) => {
    const r = install(with_(flag, value), goodStdin);
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
  });

  it("refuses an unknown option and a missing required one", () => {
    expect(install([...goodArgs, "--passphrase", "x"], goodStdin)).toMatchObject({ status: 2, stderr: expect.stringMatching(/unknown option --passphrase/) });
    expect(install(goodArgs.slice(2), goodStdin)).toMatchObject({ status: 2, stderr: expect.stringMatching(/missing --source/) });
  });

  it.each([
    ["a missing secret", goodStdin.split("\n").slice(0, 2).join("\n") + "\n", /missing KNOWN_HOSTS_B64/],
    ["an unknown key", goodStdin + "EXTRA_B64=AAAA\n", /stdin line 4: expected/],
    ["a sourced-looking line", goodStdin + "$(reboot)\n", /stdin line 4: expected/],
    ["a duplicate key", goodStdin + goodStdin.split("\n")[1] + "\n", /duplicate PASSPHRASE_B64/],
    ["a public key as the private key", goodStdin.replace(/^SSH_KEY_B64=.*$/m, `SSH_KEY_B64=${Buffer.from("ssh-ed25519 AAAA").toString("base64")}`), /not an OpenSSH private key/],
    ["a passphrase with a newline", goodStdin.replace(/^PASSPHRASE_B64=.*$/m, `PASSPHRASE_B64=${Buffer.from("a\nb").toString("base64")}`), /one line/],
    ["a known_hosts line with an option", goodStdin.replace(/^KNOWN_HOSTS_B64=.*$/m, `KNOWN_HOSTS_B64=${Buffer.from('@cert-authority * ssh-ed25519 AAAA\n').toString("base64")}`), /not 'HOST TYPE KEY'/],
  ])("stdin with %s", (_what, stdin, message) => {
    const r = install(goodArgs, stdin);
    expect(r.stderr).toMatch(message);
    expect(r.status).toBe(2);
  });

  it("left /etc/agent-backup as it was", () => {
    expect(fs.existsSync("/etc/agent-backup")).toBe(before);
  });
});
