// The drill stack under Pulumi mocks: what it reads from the prod stack, what it creates, which
// values stay secret, and that the box runs exactly drillCommand's line from the host install plan's files.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "fs";
import { createRequire } from "module";
import * as os from "os";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDrillConfig } from "../../config/drill";
import { DrillBox, debianImageOwner, drillBoxPackages, drillBoxPaths, expiryUnit, installScriptsCommand, tenantDrillFiles } from "../../components/drill-box";
import { drillCommand } from "../../components/drill-command";
import { drillReportSchema, type DrillReport } from "../../components/drill-report";
import { hostFiles, hostFilesArchive, remoteSourceDir, writeHostFilesArchive } from "../../components/host-install-plan";
import { drillResources, pickTenant } from "../../stacks/drill";

const secretSig = "4dabf18193072939515e22adb298388d";
const prodStackName = "acme-org/agent-backups/prod";
const drillKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nZHJpbGwta2V5\n-----END OPENSSH PRIVATE KEY-----\n";
const passphrase = "correct horse battery staple";
const tenants = {
  acme: {
    repoUrl: "ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg",
    subaccountUser: "u1-sub1",
    storageHost: "u1-sub1.your-storagebox.de",
    storagePort: 23,
    remoteBorg: "borg-1.4",
    knownHosts: "[u1-sub1.your-storagebox.de]:23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs",
    keyFingerprints: { push: "SHA256:p", drill: "SHA256:d", maintenance: "SHA256:m" },
  },
  globex: {
    repoUrl: "ssh://u1-sub2@u1-sub2.your-storagebox.de:23/./borg",
    subaccountUser: "u1-sub2",
    storageHost: "u1-sub2.your-storagebox.de",
    storagePort: 23,
    remoteBorg: "borg-1.4",
    knownHosts: "[u1-sub2.your-storagebox.de]:23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs",
    keyFingerprints: { push: "SHA256:p", drill: "SHA256:d", maintenance: "SHA256:m" },
  },
};
const drillAccess = {
  acme: { drillPrivateKey: drillKey, passphrase },
  globex: { drillPrivateKey: "other", passphrase: "other" },
};
const report: DrillReport = drillReportSchema.parse({
  tenant: "acme",
  archive: "acme-2026-11-24T03:17:00",
  archiveAgeSeconds: 3600,
  bytes: 123456,
  backupSeconds: 12.5,
  restoreSeconds: 30.25,
  checks: [{ name: "restore", ok: true, detail: "extracted" }, { name: "verify:manifest", ok: true, detail: "no drift" }],
  healthy: true,
  startedAt: "2026-11-24T04:00:00Z",
  finishedAt: "2026-11-24T04:01:00Z",
});

interface Captured { type: string; name: string; inputs: Record<string, any> }
const created: Captured[] = [];
const invokes: { token: string; args: Record<string, any> }[] = [];

function promiseOf<T>(o: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => o.apply(resolve));
}
const isWrappedSecret = (v: unknown): boolean => typeof v === "object" && v !== null && secretSig in v;
const unwrap = (v: any): any => (isWrappedSecret(v) ? v.value : v);
const byType = (type: string) => created.filter((r) => r.type === type);
const one = (type: string, nameEnd = "") => {
  const found = created.filter((r) => r.type === type && r.name.endsWith(nameEnd));
  expect(found, `${type} ${nameEnd}`).toHaveLength(1);
  return found[0] as Captured;
};

// Which steps each box command waits for: recorded from its dependsOn option (mocks do not see it).
const dependsOnByName = new Map<string, string[]>();
const remoteCommandModule = createRequire(import.meta.url)("@pulumi/command/remote/command") as { Command: any };
const OriginalCommand = remoteCommandModule.Command;
remoteCommandModule.Command = class extends OriginalCommand {
  constructor(name: string, args: unknown, opts?: pulumi.CustomResourceOptions) {
    const deps = ([] as pulumi.Resource[]).concat((opts?.dependsOn ?? []) as pulumi.Resource[]);
    dependsOnByName.set(name, deps.map((d) => (d as unknown as { __name: string }).__name));
    super(name, args, opts);
  }
};

const createdAt = new Date("2026-11-25T10:00:00Z");
const defaultVpc = "vpc-0123456789abcdef0";
let tree: string;
let archiveDir: string;
let outputs: ReturnType<typeof drillResources>;

beforeAll(async () => {
  // A scripts/ tree of our own with known contents and the real tree's names and x bits.
  tree = fs.mkdtempSync(path.join(os.tmpdir(), "drill-stack-"));
  archiveDir = fs.mkdtempSync(path.join(os.tmpdir(), "drill-stack-archive-"));
  for (const { rel, executable } of hostFiles()) {
    fs.mkdirSync(path.dirname(path.join(tree, rel)), { recursive: true });
    fs.writeFileSync(path.join(tree, rel), `content of ${rel}\n`, { mode: executable ? 0o755 : 0o644 });
  }
  await pulumi.runtime.setMocks({
    newResource(args) {
      created.push({ type: args.type, name: args.name, inputs: args.inputs });
      const state: Record<string, unknown> = { ...args.inputs };
      if (args.type === "pulumi:pulumi:StackReference") {
        state.outputs = { tenants, drillAccess, vaultSecretArns: {} };
        state.secretOutputNames = ["drillAccess"];
      }
      if (args.type === "tls:index/privateKey:PrivateKey") {
        state.privateKeyOpenssh = `-----BEGIN OPENSSH PRIVATE KEY-----\n${args.name}\n-----END OPENSSH PRIVATE KEY-----\n`;
        state.publicKeyOpenssh = `ssh-ed25519 AAAA${args.name}\n`;
      }
      if (args.type === "aws:ec2/instance:Instance") state.publicIp = "198.51.100.10";
      if (args.type === "aws:ec2/keyPair:KeyPair") state.keyName = `${args.name}-keyname`;
      if (args.type === "command:remote:Command") state.stdout = args.name.endsWith("-drill") ? JSON.stringify(report) : "";
      return { id: `${args.name}-id`, state };
    },
    call(args) {
      invokes.push({ token: args.token, args: args.inputs });
      if (args.token === "aws:ec2/getAmi:getAmi") return { id: "ami-0123456789abcdef0", ...args.inputs };
      if (args.token === "aws:ec2/getVpcs:getVpcs") return { ...args.inputs, ids: [defaultVpc] };
      return args.inputs;
    },
  }, "agent-backups", "drill", false);

  const config = parseDrillConfig({
    prodStack: prodStackName, tenant: "acme", region: "eu-central-1", sshCidr: "203.0.113.7/32", ttlHours: "3",
    agentCheck: "env HERMES_HOME=/root/.hermes hermes doctor",
  });
  outputs = drillResources(config, { createdAt, sourceDir: tree, archiveDir });
  await promiseOf(outputs.report);
  await promiseOf(outputs.reportFile);
});
afterAll(() => {
  fs.rmSync(tree, { recursive: true, force: true });
  fs.rmSync(archiveDir, { recursive: true, force: true });
  remoteCommandModule.Command = OriginalCommand;
});

describe("drill stack: the prod stack's outputs", () => {
  it("reads the configured prod stack by StackReference", () => {
    expect(one("pulumi:pulumi:StackReference").inputs.name).toBe(prodStackName);
  });

  it("keeps drill key and passphrase secret on their way to the box", async () => {
    for (const [step, expected] of [["-drill-key", drillKey], ["-passphrase", passphrase]] as const) {
      const cmd = one("command:remote:Command", step);
      expect(isWrappedSecret(cmd.inputs.stdin), `${step} stdin is secret`).toBe(true);
      expect(unwrap(cmd.inputs.stdin)).toBe(expected);
      expect(cmd.inputs.logging).toBe("none");
      // Never on a command line.
      expect(cmd.inputs.create).not.toContain(expected);
    }
    const knownHosts = one("command:remote:Command", "-known-hosts");
    expect(unwrap(knownHosts.inputs.stdin)).toBe(`${tenants.acme.knownHosts}\n`);
    for (const r of created) expect(JSON.stringify(unwrap(r.inputs.create) ?? "")).not.toContain(passphrase);
  });

  it("keeps the box's login key secret and the report plain", async () => {
    expect(await pulumi.isSecret(outputs.boxLoginKey)).toBe(true);
    expect(await pulumi.isSecret(outputs.report)).toBe(false);
  });

  it("names the missing tenant and the tenants the prod stack has", () => {
    expect(pickTenant(tenants, "acme", "tenants", prodStackName)).toBe(tenants.acme);
    expect(() => pickTenant(tenants, "initech", "tenants", prodStackName)).toThrow(
      'tenant "initech" is not in output tenants of acme-org/agent-backups/prod (tenants there: acme, globex)');
    expect(() => pickTenant(undefined, "acme", "drillAccess", prodStackName)).toThrow("(tenants there: none)");
  });
});

describe("drill stack: the box", () => {
  it("boots the newest official Debian 12 image, looked up by owner", () => {
    const lookup = invokes.find((i) => i.token === "aws:ec2/getAmi:getAmi");
    expect(lookup?.args.owners).toEqual([debianImageOwner]);
    expect(lookup?.args.mostRecent).toBe(true);
    expect(lookup?.args.filters).toContainEqual({ name: "name", values: ["debian-12-amd64-*"] });
    expect(lookup?.args.filters).toContainEqual({ name: "architecture", values: ["x86_64"] });
    expect(one("aws:ec2/instance:Instance").inputs.ami).toBe("ami-0123456789abcdef0");
  });

  it("allows SSH in only from the configured CIDR", () => {
    const sg = one("aws:ec2/securityGroup:SecurityGroup");
    expect(sg.inputs.ingress).toHaveLength(1);
    expect(sg.inputs.ingress[0]).toMatchObject({ protocol: "tcp", fromPort: 22, toPort: 22, cidrBlocks: ["203.0.113.7/32"] });
    const egressPorts = sg.inputs.egress.map((e: { fromPort: number }) => e.fromPort).sort((a: number, b: number) => a - b);
    expect(egressPorts).toEqual([23, 80, 443]);
    expect(one("aws:ec2/instance:Instance").inputs.vpcSecurityGroupIds).toEqual([`${sg.name}-id`]);
  });

  it("runs in the region's default VPC when no subnet is configured, looked up, never assumed", () => {
    const lookup = invokes.find((i) => i.token === "aws:ec2/getVpcs:getVpcs");
    expect(lookup?.args.filters).toEqual([{ name: "is-default", values: ["true"] }]);
    expect(one("aws:ec2/securityGroup:SecurityGroup").inputs.vpcId).toBe(defaultVpc);
    expect(one("aws:ec2/instance:Instance").inputs.subnetId).toBeUndefined();
  });

  it("has its own key pair, an encrypted root volume and metadata v2 only", () => {
    const instance = one("aws:ec2/instance:Instance").inputs;
    const keyPair = one("aws:ec2/keyPair:KeyPair");
    expect(keyPair.inputs.publicKey).toMatch(/^ssh-ed25519 AAAAdrill-acme-login/);
    expect(instance.keyName).toBe(`${keyPair.name}-keyname`);
    expect(instance.rootBlockDevice).toMatchObject({ encrypted: true, deleteOnTermination: true, volumeSize: 16 });
    expect(instance.metadataOptions).toMatchObject({ httpTokens: "required", httpEndpoint: "enabled", httpPutResponseHopLimit: 1 });
  });

  it("terminates itself at its time to live and says when in its tags", async () => {
    const instance = one("aws:ec2/instance:Instance").inputs;
    expect(instance.instanceInitiatedShutdownBehavior).toBe("terminate");
    expect(instance.tags).toEqual({ Name: "agent-drill-acme", tenant: "acme", drill: "drill-acme", expiry: "2026-11-25T13:00:00.000Z" });
    expect(await promiseOf(outputs.expiresAt)).toBe("2026-11-25T13:00:00.000Z");
    expect(isWrappedSecret(instance.userData), "user data holds the host key: secret").toBe(true);
    const userData = unwrap(instance.userData) as string;
    expect(userData.startsWith("#cloud-config\n")).toBe(true);
    const cloudConfig = parseYaml(userData);
    expect(cloudConfig.bootcmd).toEqual([["systemd-run", `--unit=${expiryUnit}`, "--on-boot=180min",
      "--description=agent-drill: time to live ran out", "/usr/bin/systemctl", "poweroff"]]);
    // The box refuses to run a drill when the poweroff is not armed.
    expect(one("command:remote:Command", "-boot").inputs.create).toContain(`systemctl is-active --quiet ${expiryUnit}.timer`);
  });

  it("pins the SSH host key that its user data installs", () => {
    const instance = one("aws:ec2/instance:Instance").inputs;
    const cloudConfig = parseYaml(unwrap(instance.userData) as string);
    const rawConnection = one("command:remote:Command", "-boot").inputs.connection;
    const connection = unwrap(rawConnection);
    expect(connection.hostKey).toBe(cloudConfig.ssh_keys.ed25519_public);
    expect(connection.hostKey).toBe("ssh-ed25519 AAAAdrill-acme-host");
    expect(cloudConfig.ssh_deletekeys).toBe(true);
    expect(connection).toMatchObject({ host: "198.51.100.10", user: "admin" });
    // The login key makes the connection secret.
    expect(isWrappedSecret(rawConnection) || isWrappedSecret(connection.privateKey)).toBe(true);
    expect(unwrap(connection.privateKey)).toContain("drill-acme-login");
  });

  it("needs nothing from the box to be destroyed: no step has a delete command", () => {
    const onBox = [...byType("command:remote:Command"), ...byType("command:remote:CopyToRemote"), ...byType("command:local:Command")];
    expect(onBox.length).toBeGreaterThan(5);
    for (const r of onBox) expect(r.inputs.delete, r.name).toBeUndefined();
  });

  it("refuses values that would reach a shell unchecked when built directly", () => {
    const args = {
      tenant: "acme", repo: tenants.acme, drillPrivateKey: drillKey, passphrase, archive: "latest", imageId: "ami-0123456789abcdef0",
      instanceType: "t3.small", sshCidr: "203.0.113.7/32", ttlHours: 1, createdAt, rootVolumeGiB: 16, target: "/root/.hermes",
      agentInstallUrl: "https://example.com/install.sh", reportFile: "drill-report.json", sourceDir: tree, archiveDir,
      network: { vpcId: defaultVpc },
    };
    expect(() => new DrillBox("bad-url", { ...args, agentInstallUrl: "https://x/$(reboot)" })).toThrow(/refusing agent installer URL/);
    expect(() => new DrillBox("bad-report", { ...args, reportFile: "a b; rm" })).toThrow(/refusing report file/);
    expect(() => new DrillBox("bad-tenant", { ...args, tenant: "../etc" })).toThrow(/refusing tenant/);
  });

  it("installs borg, sqlite3 and jq", () => {
    const create = one("command:remote:Command", "-packages").inputs.create as string;
    expect(create).toContain(`apt-get -q install -y --no-install-recommends ${drillBoxPackages.join(" ")}`);
    expect([...drillBoxPackages]).toEqual(["borgbackup", "sqlite3", "jq"]);
  });
});

describe("drill stack: the same drill as the local one", () => {
  it("copies exactly the host install plan's files, as one archive, and unpacks them where the plan puts them", async () => {
    const copies = byType("command:remote:CopyToRemote");
    expect(copies).toHaveLength(1);
    const local = await copies[0]!.inputs.source.path;
    expect(fs.readFileSync(local).equals(hostFilesArchive(tree))).toBe(true);
    expect(copies[0]!.inputs.remotePath).toBe(drillBoxPaths.archive);
    expect(one("command:remote:Command", "-scripts").inputs.create).toBe(installScriptsCommand(writeHostFilesArchive(tree, archiveDir).sha256));
    expect(drillBoxPaths.program).toBe(`${remoteSourceDir}/agent-drill`);
    expect(dependsOnByName.get("drill-acme-scripts")).toEqual(["drill-acme-host-files"]);
  });

  it("runs exactly drillCommand's line, as root, with the restore and verify arguments", async () => {
    const expected = drillCommand({
      program: `${remoteSourceDir}/agent-drill`,
      repoUrl: tenants.acme.repoUrl,
      sshKeyFile: "/etc/agent-drill/acme/ssh_key",
      knownHostsFile: "/etc/agent-drill/acme/known_hosts",
      passphraseFile: "/etc/agent-drill/acme/passphrase",
      remoteBorg: "borg-1.4",
      tenant: "acme",
      archive: "latest",
      target: "/root/.hermes",
      agentCheck: "env HERMES_HOME=/root/.hermes hermes doctor",
      reportFile: "/var/lib/agent-drill/acme-report.json",
    });
    expect(await promiseOf(outputs.drillCommand)).toBe(expected);
    const create = one("command:remote:Command", "-drill").inputs.create as string;
    expect(create.split("\n")).toContain(`sudo ${expected} >&2 || rc=$?`);
    expect(tenantDrillFiles("acme").sshKey).toBe("/etc/agent-drill/acme/ssh_key");
    // The secret files are written where the command line points.
    for (const [step, file] of [["-drill-key", "ssh_key"], ["-passphrase", "passphrase"], ["-known-hosts", "known_hosts"]]) {
      expect(one("command:remote:Command", step).inputs.create).toContain(`cat > /etc/agent-drill/acme/${file}'`);
    }
  });

  it("runs the drill only after the scripts, the secrets and the agent are in place", () => {
    const drill = one("command:remote:Command", "-drill");
    expect(drill.inputs.triggers).toHaveLength(1);
    const agentInstall = one("command:remote:Command", "-agent-install").inputs.create as string;
    expect(agentInstall).toContain("curl -fsSL --max-time 120 https://hermes-agent.nousresearch.com/install.sh");
    expect(agentInstall).toContain(`HERMES_HOME=${drillBoxPaths.installerHome}`);
    expect(dependsOnByName.get("drill-acme-drill")?.sort()).toEqual([
      "drill-acme-agent-install", "drill-acme-drill-key", "drill-acme-known-hosts", "drill-acme-packages",
      "drill-acme-passphrase", "drill-acme-scripts",
    ]);
    expect(dependsOnByName.get("drill-acme-packages")).toEqual(["drill-acme-boot"]);
    expect(dependsOnByName.get("drill-acme-boot")).toEqual(["drill-acme-box"]);
  });

  it("exports the report, parsed by the report schema, and writes it where pulumi runs", async () => {
    expect(await promiseOf(outputs.report)).toEqual(report);
    expect(await promiseOf(outputs.healthy)).toBe(true);
    expect(await promiseOf(outputs.reportFile)).toBe("drill-report.json");
    const verdict = one("command:local:Command", "-verdict").inputs;
    expect(JSON.parse(verdict.stdin)).toEqual(report);
    expect(verdict.environment).toEqual({ DRILL_REPORT_FILE: "drill-report.json" });
    expect(verdict.create).not.toContain("exit 1");
  });
});
