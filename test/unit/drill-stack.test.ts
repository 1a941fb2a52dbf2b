// The drill stack under Pulumi mocks: what it reads from the prod stack, what it creates, which
// values stay secret, that one box restores several tenants (one report each), and that the box
// runs exactly the local drill's agent-drill line, agent check included, from the host install
// plan's files.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "fs";
import { createRequire } from "module";
import * as os from "os";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseDrillConfig } from "../../config/drill";
import { agentInstallScript, DrillBox, debianImageOwner, drillBoxPackages, drillBoxPaths, expiryUnit, installScriptsCommand, runDrillScript, tenantDrillFiles } from "../../components/drill-box";
import { drillRestorePaths, requirementsFile, requirementsHash } from "../../components/drill-agent";
import { agentHealthCheck, drillCommand } from "../../components/drill-command";
import { localDrillCommand } from "../../drill/lib/restore";
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
  // On another box, reached on another port; and its borg is plain "borg" (as the local drill's).
  globex: {
    repoUrl: "ssh://u2-sub1@u2-sub1.your-storagebox.de:2222/./borg",
    subaccountUser: "u2-sub1",
    storageHost: "u2-sub1.your-storagebox.de",
    storagePort: 2222,
    remoteBorg: "borg",
    knownHosts: "[u2-sub1.your-storagebox.de]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs",
    keyFingerprints: { push: "SHA256:p", drill: "SHA256:d", maintenance: "SHA256:m" },
  },
};
const drillAccess = {
  acme: { drillPrivateKey: drillKey, passphrase },
  globex: { drillPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nZ2xvYmV4\n-----END OPENSSH PRIVATE KEY-----\n", passphrase: "globex passphrase" },
  initech: { drillPrivateKey: "not drilled", passphrase: "not drilled" },
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
  agent: { name: "hermes-agent", version: "0.19.0" },
  startedAt: "2026-11-24T04:00:00Z",
  finishedAt: "2026-11-24T04:01:00Z",
});
/** globex's drill finds its home unhealthy: its report still comes back, and fails the update. */
const globexReport: DrillReport = drillReportSchema.parse({
  ...report, tenant: "globex", archive: "globex-2026-11-24T03:20:00",
  checks: [{ name: "restore", ok: true, detail: "extracted" }, { name: "verify", ok: false, detail: "agent check failed" }], healthy: false,
});
const reportsByStep: Record<string, DrillReport> = { "drill-acme-drill": report, "drill-globex-drill": globexReport };

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
      if (args.type === "command:remote:Command") {
        state.stdout = reportsByStep[args.name] ? JSON.stringify(reportsByStep[args.name]) : args.name === "drill-agent-install" ? "hermes-agent 0.19.0\n" : "";
      }
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
    prodStack: prodStackName, tenants: '["acme","globex"]', region: "eu-central-1", sshCidr: "203.0.113.7/32", ttlHours: "3",
  });
  outputs = drillResources(config, { createdAt, sourceDir: tree, archiveDir });
  await promiseOf(outputs.reports);
  await promiseOf(outputs.reportFiles);
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

  it("keeps each tenant's drill key and passphrase secret on their way to the box", async () => {
    for (const tenant of ["acme", "globex"] as const) {
      for (const [step, expected] of [["drill-key", drillAccess[tenant].drillPrivateKey], ["passphrase", drillAccess[tenant].passphrase]] as const) {
        const cmd = one("command:remote:Command", `-${tenant}-${step}`);
        expect(isWrappedSecret(cmd.inputs.stdin), `${tenant} ${step} stdin is secret`).toBe(true);
        expect(unwrap(cmd.inputs.stdin)).toBe(expected);
        expect(cmd.inputs.logging).toBe("none");
        // Never on a command line.
        expect(cmd.inputs.create).not.toContain(expected);
      }
      const knownHosts = one("command:remote:Command", `-${tenant}-known-hosts`);
      expect(unwrap(knownHosts.inputs.stdin)).toBe(`${tenants[tenant].knownHosts}\n`);
      for (const r of created) expect(JSON.stringify(unwrap(r.inputs.create) ?? "")).not.toContain(drillAccess[tenant].passphrase);
    }
    // A tenant of the prod stack that is not drilled has nothing on the box.
    expect(created.some((r) => r.name.includes("initech"))).toBe(false);
  });

  it("keeps the box's login key secret and the reports plain", async () => {
    expect(await pulumi.isSecret(outputs.boxLoginKey)).toBe(true);
    expect(await pulumi.isSecret(outputs.reports)).toBe(false);
  });

  it("names the missing tenant and the tenants the prod stack has", () => {
    expect(pickTenant(tenants, "acme", "tenants", prodStackName)).toBe(tenants.acme);
    expect(() => pickTenant(tenants, "initech", "tenants", prodStackName)).toThrow(
      'tenant "initech" is not in output tenants of acme-org/agent-backups/prod (tenants there: acme, globex)');
    expect(() => pickTenant(undefined, "acme", "drillAccess", prodStackName)).toThrow("(tenants there: none)");
  });
});

describe("drill stack: one box for several tenants", () => {
  it("boots the newest official Debian 12 image, looked up by owner", () => {
    const lookup = invokes.find((i) => i.token === "aws:ec2/getAmi:getAmi");
    expect(lookup?.args.owners).toEqual([debianImageOwner]);
    expect(lookup?.args.mostRecent).toBe(true);
    expect(lookup?.args.filters).toContainEqual({ name: "name", values: ["debian-12-amd64-*"] });
    expect(lookup?.args.filters).toContainEqual({ name: "architecture", values: ["x86_64"] });
    expect(one("aws:ec2/instance:Instance").inputs.ami).toBe("ami-0123456789abcdef0");
  });

  it("is one box, with one key pair and one security group, for both tenants", () => {
    expect(byType("aws:ec2/instance:Instance")).toHaveLength(1);
    expect(byType("aws:ec2/keyPair:KeyPair")).toHaveLength(1);
    expect(byType("aws:ec2/securityGroup:SecurityGroup")).toHaveLength(1);
    expect(byType("command:remote:CopyToRemote")).toHaveLength(1);
    for (const step of ["-boot", "-packages", "-scripts", "-agent-install"]) one("command:remote:Command", `drill${step}`);
  });

  it("allows SSH in only from the configured CIDR, and out only to apt, the package index and each tenant's storage port", () => {
    const sg = one("aws:ec2/securityGroup:SecurityGroup");
    expect(sg.inputs.ingress).toHaveLength(1);
    expect(sg.inputs.ingress[0]).toMatchObject({ protocol: "tcp", fromPort: 22, toPort: 22, cidrBlocks: ["203.0.113.7/32"] });
    const egressPorts = sg.inputs.egress.map((e: { fromPort: number }) => e.fromPort).sort((a: number, b: number) => a - b);
    expect(egressPorts).toEqual([23, 80, 443, 2222]);
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
    expect(keyPair.inputs.publicKey).toMatch(/^ssh-ed25519 AAAAdrill-login/);
    expect(instance.keyName).toBe(`${keyPair.name}-keyname`);
    expect(instance.rootBlockDevice).toMatchObject({ encrypted: true, deleteOnTermination: true, volumeSize: 16 });
    expect(instance.metadataOptions).toMatchObject({ httpTokens: "required", httpEndpoint: "enabled", httpPutResponseHopLimit: 1 });
  });

  it("terminates itself at its time to live and says when, and for whom, in its tags", async () => {
    const instance = one("aws:ec2/instance:Instance").inputs;
    expect(instance.instanceInitiatedShutdownBehavior).toBe("terminate");
    expect(instance.tags).toEqual({ Name: "agent-drill acme globex", tenants: "acme globex", drill: "drill", expiry: "2026-11-25T13:00:00.000Z" });
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
    expect(connection.hostKey).toBe("ssh-ed25519 AAAAdrill-host");
    expect(cloudConfig.ssh_deletekeys).toBe(true);
    expect(connection).toMatchObject({ host: "198.51.100.10", user: "admin" });
    // The login key makes the connection secret.
    expect(isWrappedSecret(rawConnection) || isWrappedSecret(connection.privateKey)).toBe(true);
    expect(unwrap(connection.privateKey)).toContain("drill-login");
  });

  it("needs nothing from the box to be destroyed: no step has a delete command", () => {
    const onBox = [...byType("command:remote:Command"), ...byType("command:remote:CopyToRemote"), ...byType("command:local:Command")];
    expect(onBox.length).toBeGreaterThan(10);
    for (const r of onBox) expect(r.inputs.delete, r.name).toBeUndefined();
  });

  it("refuses values that would reach a shell unchecked when built directly, and a tenant list it cannot drill", () => {
    const tenant = { tenant: "acme", repo: tenants.acme, drillPrivateKey: drillKey, passphrase, reportFile: "drill-reports/acme.json" };
    const args = {
      tenants: [tenant], archive: "latest", imageId: "ami-0123456789abcdef0",
      instanceType: "t3.small", sshCidr: "203.0.113.7/32", ttlHours: 1, createdAt, rootVolumeGiB: 16,
      agentCheck: agentHealthCheck, sourceDir: tree, archiveDir, network: { vpcId: defaultVpc },
    };
    expect(() => new DrillBox("bad-report", { ...args, tenants: [{ ...tenant, reportFile: "a b; rm" }] })).toThrow(/refusing report file/);
    expect(() => new DrillBox("bad-tenant", { ...args, tenants: [{ ...tenant, tenant: "../etc" }] })).toThrow(/refusing tenant/);
    expect(() => new DrillBox("no-tenant", { ...args, tenants: [] })).toThrow(/no tenant/);
    expect(() => new DrillBox("twice", { ...args, tenants: [tenant, tenant] })).toThrow(/listed twice/);
    expect(() => new DrillBox("named", { ...args, archive: "acme-2026-11-24T03:17:00", tenants: [tenant, { ...tenant, tenant: "globex" }] }))
      .toThrow(/named archive needs exactly one tenant/);
  });

  it("installs borg, sqlite3, jq and python3 with its venv", () => {
    const create = one("command:remote:Command", "-packages").inputs.create as string;
    expect(create).toContain(`apt-get -q install -y --no-install-recommends ${drillBoxPackages.join(" ")}`);
    expect([...drillBoxPackages]).toEqual(["borgbackup", "sqlite3", "jq", "python3", "python3-venv"]);
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
    expect(dependsOnByName.get("drill-scripts")).toEqual(["drill-host-files"]);
  });

  it("installs the pinned agent from its hash-pinned requirements, once for all tenants, and exports its version", async () => {
    const install = one("command:remote:Command", "drill-agent-install").inputs;
    expect(install.create).toBe(agentInstallScript());
    expect(install.stdin).toBe(fs.readFileSync(requirementsFile, "utf8"));
    expect(install.stdin).toMatch(/^hermes-agent==0\.19\.0 \\$/m);
    expect(install.triggers).toEqual([requirementsHash()]);
    expect(dependsOnByName.get("drill-agent-install")?.sort()).toEqual(["drill-packages", "drill-scripts"]);
    expect(await promiseOf(outputs.agent)).toBe("hermes-agent 0.19.0");
  });

  it("renders, for each tenant, exactly the local drill's agent-drill line: the same agent check, target and files", async () => {
    const lines = await promiseOf(outputs.drillCommands);
    expect(Object.keys(lines).sort()).toEqual(["acme", "globex"]);
    // The same tenant and repository in the local drill (whose loopback box runs plain borg).
    expect(lines.globex).toBe(localDrillCommand({ tenant: "globex", repoUrl: tenants.globex.repoUrl }, "real"));
    expect(lines.acme).toBe(localDrillCommand({ tenant: "acme", repoUrl: tenants.acme.repoUrl }, "real", "borg-1.4"));
    expect(lines.acme).toContain(` --agent-check '${agentHealthCheck}' `);
    expect(lines.acme).toContain(` --target ${drillRestorePaths("acme").target} `);
    expect(drillRestorePaths("acme").target).toBe("/srv/agents/acme/.hermes");
    expect(lines.acme).toBe(drillCommand({
      program: `${remoteSourceDir}/agent-drill`,
      repoUrl: tenants.acme.repoUrl,
      sshKeyFile: "/etc/agent-drill/acme/ssh_key",
      knownHostsFile: "/etc/agent-drill/acme/known_hosts",
      passphraseFile: "/etc/agent-drill/acme/passphrase",
      remoteBorg: "borg-1.4",
      tenant: "acme",
      archive: "latest",
      target: "/srv/agents/acme/.hermes",
      agentCheck: agentHealthCheck,
      reportFile: "/var/lib/agent-drill/acme-report.json",
    }));
    for (const tenant of ["acme", "globex"] as const) {
      const create = one("command:remote:Command", `-${tenant}-drill`).inputs.create as string;
      expect(create).toBe(runDrillScript(tenant, lines[tenant]!, tenantDrillFiles(tenant).report, 3 * 3600));
      // The secret files are written where the command line points.
      for (const [step, file] of [["drill-key", "ssh_key"], ["passphrase", "passphrase"], ["known-hosts", "known_hosts"]]) {
        expect(one("command:remote:Command", `-${tenant}-${step}`).inputs.create).toContain(`cat > /etc/agent-drill/${tenant}/${file}'`);
      }
    }
  });

  it("runs each tenant's drill only after the scripts, its own secrets and the agent are in place, each in turn on the box", () => {
    for (const tenant of ["acme", "globex"]) {
      const drill = one("command:remote:Command", `-${tenant}-drill`);
      expect(drill.inputs.triggers).toHaveLength(2);
      expect(dependsOnByName.get(`drill-${tenant}-drill`)?.sort()).toEqual([
        "drill-agent-install", `drill-${tenant}-drill-key`, `drill-${tenant}-known-hosts`, `drill-${tenant}-passphrase`, "drill-packages", "drill-scripts",
      ].sort());
      // In turn: the box's drill lock, held for the whole drill, waited for at most the time to live.
      expect(drill.inputs.create).toContain(`sudo flock --wait ${3 * 3600} ${drillBoxPaths.lock} sh -s`);
    }
    expect(dependsOnByName.get("drill-packages")).toEqual(["drill-boot"]);
    expect(dependsOnByName.get("drill-boot")).toEqual(["drill-box"]);
  });

  it("exports one report per tenant, parsed by the report schema, each written where pulumi runs", async () => {
    expect(await promiseOf(outputs.reports)).toEqual({ acme: report, globex: globexReport });
    expect(await promiseOf(outputs.reportFiles)).toEqual({ acme: "drill-reports/acme.json", globex: "drill-reports/globex.json" });
    const acme = one("command:local:Command", "-acme-verdict").inputs;
    expect(JSON.parse(acme.stdin)).toEqual(report);
    expect(acme.environment).toEqual({ DRILL_REPORT_FILE: "drill-reports/acme.json" });
    expect(acme.create).not.toContain("exit 1");
    // An unhealthy tenant fails its own verdict (and so the update); the other's report stands.
    const globex = one("command:local:Command", "-globex-verdict").inputs;
    expect(JSON.parse(globex.stdin)).toEqual(globexReport);
    expect(globex.create).toContain("exit 1");
    expect(await promiseOf(outputs.healthy)).toBe(false);
    expect(outputs.tenants).toEqual(["acme", "globex"]);
  });
});
