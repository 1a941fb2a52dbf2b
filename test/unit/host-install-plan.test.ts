import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  hostFiles,
  hostInstallPlan,
  hostInstallStdin,
  isValidRepoUrl,
  remoteSourceDir,
  type HostInstallInput,
} from "../../components/host-install-plan";

const input: HostInstallInput = {
  tenant: "acme",
  agentHome: "/home/hermes/.hermes",
  repoUrl: "ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg",
  remoteBorg: "borg-1.4",
  schedule: "*-*-* 03:17:00",
};

let tree: string;
beforeEach(() => {
  // A scripts/ tree of our own, so the plan's hashing is tested against known contents.
  tree = fs.mkdtempSync(path.join(os.tmpdir(), "host-install-plan-"));
  for (const { rel } of hostFiles) {
    fs.mkdirSync(path.dirname(path.join(tree, rel)), { recursive: true });
    fs.writeFileSync(path.join(tree, rel), `content of ${rel}\n`);
  }
});
afterEach(() => fs.rmSync(tree, { recursive: true, force: true }));

describe("hostInstallPlan", () => {
  it("copies every host file under the remote source dir with its mode", () => {
    const plan = hostInstallPlan(input, tree);
    expect(plan.remoteSourceDir).toBe(remoteSourceDir);
    expect(plan.files.map((f) => f.remotePath)).toEqual(hostFiles.map((f) => `${remoteSourceDir}/${f.rel}`));
    expect(plan.files.map((f) => f.localPath)).toEqual(hostFiles.map((f) => path.join(tree, f.rel)));
    const mode = (rel: string) => plan.files.find((f) => f.remotePath.endsWith(`/${rel}`))?.mode;
    expect(mode("agent-install")).toBe("0755");
    expect(mode("agent-backup")).toBe("0755");
    expect(mode("lib/common.sh")).toBe("0644");
    expect(mode("systemd/agent-backup.timer")).toBe("0644");
    // The installer and everything it installs are in the plan.
    for (const rel of ["agent-install", "agent-backup", "agent-restore", "agent-verify", "agent-drill", "backup-set.patterns", "sqlite-stores"]) {
      expect(mode(rel)).toBeDefined();
    }
  });

  it("builds the agent-install command from the input, quoting only what has spaces", () => {
    const plan = hostInstallPlan({ ...input, healthcheckUrl: "https://hc-ping.com/abc-123", metricsDir: "/var/lib/node_exporter" }, tree);
    expect(plan.command).toBe(
      `bash ${remoteSourceDir}/agent-install --source ${remoteSourceDir} --tenant acme --agent-home /home/hermes/.hermes` +
        ` --repo ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg --remote-borg borg-1.4 --schedule '*-*-* 03:17:00'` +
        ` --healthcheck-url https://hc-ping.com/abc-123 --metrics-dir /var/lib/node_exporter`,
    );
    expect(hostInstallPlan(input, tree).command).not.toContain("--healthcheck-url");
  });

  it("changes its content hash when a file or an input changes, and only then", () => {
    const base = hostInstallPlan(input, tree).contentHash;
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    expect(hostInstallPlan({ ...input }, tree).contentHash).toBe(base);
    expect(hostInstallPlan({ ...input, schedule: "daily" }, tree).contentHash).not.toBe(base);
    expect(hostInstallPlan({ ...input, metricsDir: "/var/lib/m" }, tree).contentHash).not.toBe(base);
    fs.appendFileSync(path.join(tree, "backup-set.patterns"), "- fm:*.new\n");
    expect(hostInstallPlan(input, tree).contentHash).not.toBe(base);
  });

  it("refuses values that would reach a shell or a path unvalidated", () => {
    const bad: Partial<HostInstallInput>[] = [
      { tenant: "Acme" },
      { tenant: "a;b" },
      { agentHome: "relative/.hermes" },
      { agentHome: "/home/x/../etc" },
      { repoUrl: "ssh://u1@host:23/./borg;rm -rf /" },
      { repoUrl: "ssh://u1@host:99999/./borg" },
      { repoUrl: "file:///srv/borg" },
      { remoteBorg: "borg serve --x" },
      { schedule: "daily'; reboot" },
      { healthcheckUrl: "javascript:alert(1)" },
      { metricsDir: "/var/$(id)" },
    ];
    for (const b of bad) {
      expect(() => hostInstallPlan({ ...input, ...b }, tree), JSON.stringify(b)).toThrow(/refusing invalid/);
    }
  });

  it("names the missing file when the scripts tree is incomplete", () => {
    fs.rmSync(path.join(tree, "agent-verify"));
    expect(() => hostInstallPlan(input, tree)).toThrow(/missing .*agent-verify/);
  });
});

describe("isValidRepoUrl", () => {
  it("accepts the Storage Box and plain absolute forms", () => {
    expect(isValidRepoUrl("ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg")).toBe(true);
    expect(isValidRepoUrl("ssh://acme@10.77.1.1:22/home/acme/repo")).toBe(true);
    expect(isValidRepoUrl("ssh://acme@10.77.1.1/home/acme/repo")).toBe(false);
    expect(isValidRepoUrl("ssh://acme@10.77.1.1:22/home/../repo")).toBe(false);
  });
});

describe("hostInstallStdin", () => {
  it("emits the three secrets as base64 KEY=VALUE lines that round-trip", () => {
    const secrets = {
      sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
      passphrase: "p4ss with spaces='and quotes'\n$(x)",
      knownHosts: "[10.77.1.1]:22 ssh-ed25519 AAAA\n",
    };
    const stdin = hostInstallStdin(secrets);
    const lines = stdin.trimEnd().split("\n");
    expect(lines.map((l) => l.split("=")[0])).toEqual(["SSH_KEY_B64", "PASSPHRASE_B64", "KNOWN_HOSTS_B64"]);
    for (const line of lines) expect(line).toMatch(/^[A-Z_0-9]+=[A-Za-z0-9+/]*={0,2}$/);
    const decoded = Object.fromEntries(lines.map((l) => {
      const i = l.indexOf("=");
      return [l.slice(0, i), Buffer.from(l.slice(i + 1), "base64").toString("utf8")];
    }));
    expect(decoded).toEqual({ SSH_KEY_B64: secrets.sshPrivateKey, PASSPHRASE_B64: secrets.passphrase, KNOWN_HOSTS_B64: secrets.knownHosts });
    expect(stdin).not.toContain("p4ss");
  });

  it("refuses empty or malformed secrets", () => {
    const ok = { sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\n", passphrase: "x", knownHosts: "h k" };
    expect(() => hostInstallStdin({ ...ok, sshPrivateKey: "ssh-ed25519 AAAA" })).toThrow(/private key/);
    expect(() => hostInstallStdin({ ...ok, passphrase: "" })).toThrow(/passphrase/);
    expect(() => hostInstallStdin({ ...ok, knownHosts: "\n" })).toThrow(/knownHosts/);
  });
});
