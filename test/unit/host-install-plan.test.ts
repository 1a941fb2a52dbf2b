import { spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  hostFiles,
  hostFilesArchive,
  hostInstallPlan,
  hostInstallStdin,
  isValidRepoUrl,
  remoteSourceDir,
  scriptsDir,
  unpackArchiveCommands,
  writeHostFilesArchive,
  type HostInstallInput,
} from "../../components/host-install-plan";

const input: HostInstallInput = {
  tenant: "acme",
  agentHome: "/home/hermes/.hermes",
  repoUrl: "ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg",
  remoteBorg: "borg-1.4",
  schedule: "*-*-* 03:17:00",
};

/** A scripts/ tree of our own: executables (x bit) and data files, the operator-only wrapper, a bytecode cache. */
const treeFiles: [string, number][] = [
  ["agent-install", 0o755], ["agent-backup", 0o755], ["agent-restore", 0o755], ["agent-verify", 0o755], ["agent-drill", 0o755],
  ["agent-maintain", 0o700], ["lib/common.sh", 0o644], ["lib/value-patterns", 0o644], ["backup-set.patterns", 0o644],
  ["sqlite-stores", 0o644], ["systemd/agent-backup.service", 0o644], ["systemd/agent-backup.timer", 0o644],
  ["check-storage-box", 0o755], ["lib/__pycache__/x.cpython-311.pyc", 0o644],
];
const hostRels = treeFiles.map(([rel]) => rel).filter((rel) => rel !== "check-storage-box" && !rel.includes("__pycache__")).sort();

let tree: string;
beforeEach(() => {
  // Known contents, so the plan's hashing and the archive are tested against what we wrote.
  tree = fs.mkdtempSync(path.join(os.tmpdir(), "host-install-plan-"));
  for (const [rel, mode] of treeFiles) {
    fs.mkdirSync(path.dirname(path.join(tree, rel)), { recursive: true });
    fs.writeFileSync(path.join(tree, rel), `content of ${rel}\n`, { mode });
  }
});
afterEach(() => fs.rmSync(tree, { recursive: true, force: true }));

describe("hostFiles: derived from the scripts/ tree", () => {
  it("lists every regular file but the operator-only check-storage-box and bytecode caches, sorted, x bit = executable", () => {
    const files = hostFiles(tree);
    expect(files.map((f) => f.rel)).toEqual(hostRels);
    const mode = Object.fromEntries(files.map((f) => [f.rel, f.executable]));
    expect(mode["agent-install"]).toBe(true);
    expect(mode["agent-maintain"]).toBe(true);
    expect(mode["lib/common.sh"]).toBe(false);
    expect(mode["systemd/agent-backup.timer"]).toBe(false);
  });

  it("picks up a new host file, in a new directory too, without a code change", () => {
    fs.writeFileSync(path.join(tree, "lib", "classify.awk"), "{ print }\n", { mode: 0o644 });
    fs.mkdirSync(path.join(tree, "agent-side"));
    fs.writeFileSync(path.join(tree, "agent-side", "collect"), "#!/bin/bash\n", { mode: 0o755 });
    const files = hostFiles(tree);
    expect(files).toContainEqual({ rel: "lib/classify.awk", executable: false });
    expect(files).toContainEqual({ rel: "agent-side/collect", executable: true });
    expect(hostInstallPlan(input, tree).files.map((f) => f.remotePath)).toContain(`${remoteSourceDir}/agent-side/collect`);
  });

  it("refuses a symlink (it could point anywhere) and a name that is not a strict rel_path", () => {
    fs.symlinkSync("/etc/shadow", path.join(tree, "lib", "shadow"));
    expect(() => hostFiles(tree)).toThrow(/refusing .*lib\/shadow: not a regular file/);
    fs.rmSync(path.join(tree, "lib", "shadow"));
    fs.writeFileSync(path.join(tree, "lib", "a b; reboot"), "");
    expect(() => hostFiles(tree)).toThrow(/refusing file name "lib\/a b; reboot"/);
  });

  it("the repository's own tree: the commands are in, the operator wrapper is out, x bits as on disk", () => {
    const files = hostFiles(scriptsDir);
    const rels = files.map((f) => f.rel);
    // The commands of the host interface (docs/ARCHITECTURE.md); data files come and go with their owners.
    for (const rel of ["agent-install", "agent-backup", "agent-restore", "agent-verify", "agent-drill", "lib/common.sh", "lib/value-patterns"]) {
      expect(rels, rel).toContain(rel);
    }
    expect(rels).not.toContain("check-storage-box");
    expect(rels).toEqual([...rels].sort());
    for (const f of files) expect(f.executable, f.rel).toBe((fs.statSync(path.join(scriptsDir, f.rel)).mode & 0o111) !== 0);
  });
});

describe("the host files as one archive", () => {
  const tar = (args: string[], cwd?: string) => {
    const r = spawnSync("tar", args, { encoding: "utf8", cwd });
    if (r.error) throw r.error;
    return r;
  };

  it("is a tar that GNU tar unpacks into exactly the host files, with their contents and modes, owned by root", () => {
    const file = path.join(tree, "..", `${path.basename(tree)}.tar`);
    fs.writeFileSync(file, hostFilesArchive(tree));
    try {
      const listing = tar(["-tvf", file]);
      expect(listing.status, listing.stderr).toBe(0);
      for (const line of listing.stdout.trim().split("\n")) expect(line).toMatch(/^[d-]rw.* root\/root /);
      const out = fs.mkdtempSync(path.join(os.tmpdir(), "host-files-out-"));
      try {
        expect(tar(["-x", "--no-same-owner", "-f", file, "-C", out]).status).toBe(0);
        const found = spawnSync("find", [".", "-type", "f", "-printf", "%P %m\n"], { cwd: out, encoding: "utf8" }).stdout.trim().split("\n").sort();
        expect(found).toEqual(hostFiles(tree).map((f) => `${f.rel} ${f.executable ? 755 : 644}`).sort());
        for (const rel of hostRels) expect(fs.readFileSync(path.join(out, rel), "utf8")).toBe(`content of ${rel}\n`);
        expect(fs.statSync(path.join(out, "lib")).mode & 0o777).toBe(0o755);
      } finally {
        fs.rmSync(out, { recursive: true, force: true });
      }
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it("is the same bytes for the same tree, and written once under its sha256", () => {
    expect(hostFilesArchive(tree).equals(hostFilesArchive(tree))).toBe(true);
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), "host-files-cache-"));
    try {
      const first = writeHostFilesArchive(tree, cache);
      expect(first.localPath).toBe(path.join(cache, `host-files-${first.sha256}.tar`));
      expect(crypto.createHash("sha256").update(fs.readFileSync(first.localPath)).digest("hex")).toBe(first.sha256);
      const mtime = fs.statSync(first.localPath).mtimeMs;
      expect(writeHostFilesArchive(tree, cache)).toEqual(first);
      expect(fs.statSync(first.localPath).mtimeMs).toBe(mtime);
      fs.chmodSync(path.join(tree, "sqlite-stores"), 0o755);
      expect(writeHostFilesArchive(tree, cache).sha256).not.toBe(first.sha256);
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });

  it("is checked against its sha256 and unpacked into a fresh directory (files dropped from scripts/ go too)", () => {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "host-files-unpack-"));
    try {
      const { localPath, sha256 } = writeHostFilesArchive(tree, path.join(work, "cache"));
      const source = path.join(work, "install-source");
      fs.mkdirSync(source);
      fs.writeFileSync(path.join(source, "stale-file"), "from an older install\n");
      const { verify, unpack } = unpackArchiveCommands(localPath, sha256);
      const script = ["set -e", verify, ...unpack].join("\n").replaceAll(remoteSourceDir, source);
      const ok = spawnSync("bash", ["-c", script], { encoding: "utf8" });
      expect(ok.status, ok.stderr).toBe(0);
      expect(fs.existsSync(path.join(source, "stale-file"))).toBe(false);
      expect(fs.readFileSync(path.join(source, "agent-install"), "utf8")).toBe("content of agent-install\n");
      expect(fs.statSync(source).mode & 0o777).toBe(0o700);

      // A damaged or swapped upload is refused before the old tree is touched.
      fs.writeFileSync(path.join(source, "marker"), "");
      fs.appendFileSync(localPath, "x");
      const bad = spawnSync("bash", ["-c", script], { encoding: "utf8" });
      expect(bad.status).not.toBe(0);
      expect(fs.existsSync(path.join(source, "marker"))).toBe(true);
      expect(() => unpackArchiveCommands("/tmp/a b", sha256)).toThrow(/refusing/);
      expect(() => unpackArchiveCommands(localPath, "abc")).toThrow(/refusing/);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
  });
});

describe("hostInstallPlan", () => {
  it("copies every host file under the remote source dir with its mode", () => {
    const plan = hostInstallPlan(input, tree);
    expect(plan.remoteSourceDir).toBe(remoteSourceDir);
    expect(plan.files.map((f) => f.remotePath)).toEqual(hostRels.map((rel) => `${remoteSourceDir}/${rel}`));
    expect(plan.files.map((f) => f.localPath)).toEqual(hostRels.map((rel) => path.join(tree, rel)));
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

  it("names the installer when the scripts tree has none, and the tree when there is none", () => {
    fs.rmSync(path.join(tree, "agent-install"));
    expect(() => hostInstallPlan(input, tree)).toThrow(/missing .*agent-install \(the install command runs it\)/);
    expect(() => hostInstallPlan(input, path.join(tree, "nonexistent"))).toThrow(/cannot read .*nonexistent/);
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
