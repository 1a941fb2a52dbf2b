// A disposable restore box on EC2 and the drills run on it: the cloud twin of the local drill's
// restore box. It gets the same host files, the same pinned agent and agent user, and runs
// scripts/agent-drill for each of its tenants in turn, with the command line built by drillCommand
// and the agent check both drills share; it powers itself off (and is terminated) when its time to
// live runs out.
import * as aws from "@pulumi/aws";
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { stringify } from "yaml";
import { drillAgentBin, drillAgentUser, drillAgentVenv, drillRestorePaths, drillRestoreRoot, pipInstallArgs, requirementsFile, requirementsHash } from "./drill-agent";
import { tenantDrillCommand, tenantDrillFiles } from "./drill-command";

export { tenantDrillFiles };
import { DrillReport, parseDrillReport } from "./drill-report";
import { hostFiles, remoteSourceDir, scriptsDir, unpackArchiveCommands, writeHostFilesArchive } from "./host-install-plan";
import { matchesPattern } from "../config/patterns";

/** The AWS account that publishes the official Debian images (wiki.debian.org/Cloud/AmazonEC2Image). */
export const debianImageOwner = "136693071363";
/** The login user of the official Debian images. */
export const drillBoxUser = "admin";
/** What agent-drill and the agent need on the box besides the scripts (util-linux gives flock, setpriv). */
export const drillBoxPackages = ["borgbackup", "sqlite3", "jq", "python3", "python3-venv"] as const;

/** Fixed paths on the box; nothing here comes from input. */
export const drillBoxPaths = {
  /** Where the login user receives the archive of the host files before it is unpacked as root. */
  archive: `/home/${drillBoxUser}/host-files.tar`,
  /** agent-drill as copied from this repository (the host install plan's layout). */
  program: `${remoteSourceDir}/agent-drill`,
  /** The agent's pinned requirements (hash-checked by pip), as copied to the box. */
  requirements: "/var/lib/agent-drill/hermes-agent-requirements.txt",
  /** Held by the tenant that is drilling: one box restores its tenants one after another. */
  lock: "/run/agent-drill.lock",
} as const;

/** The systemd unit that powers the box off when its time to live runs out. */
export const expiryUnit = "agent-drill-expiry";

/** Bounds for every wait on the box (seconds): boot, apt, the agent's pinned install. */
const waits = { boot: 900, apt: 900, agentInstall: 1800 } as const;

/** The newest official Debian 12 image for an architecture, looked up (never hard-coded). */
export function newestDebian12Image(architecture: "x86_64" | "arm64", opts?: pulumi.InvokeOptions): pulumi.Output<string> {
  const arch = architecture === "arm64" ? "arm64" : "amd64";
  return aws.ec2
    .getAmiOutput(
      {
        owners: [debianImageOwner],
        mostRecent: true,
        filters: [
          { name: "name", values: [`debian-12-${arch}-*`] },
          { name: "architecture", values: [architecture] },
          { name: "virtualization-type", values: ["hvm"] },
          { name: "root-device-type", values: ["ebs"] },
        ],
      },
      opts,
    )
    .apply((image) => image.id);
}

/** Where the box runs: a VPC, and a subnet of it unless the VPC's default subnet will do. */
export interface DrillNetwork {
  vpcId: string;
  subnetId?: string;
}

/**
 * The drill box's network: the given subnet and its VPC, or else the region's default VPC. Some
 * accounts have no default VPC; a security group without vpcId would fail there with the EC2
 * API's own words, so say what to set instead.
 */
export function drillNetwork(region: string, subnetId: string | undefined, opts?: pulumi.InvokeOptions): pulumi.Output<DrillNetwork> {
  if (subnetId !== undefined) {
    return aws.ec2.getSubnetOutput({ id: subnetId }, opts).apply((s) => ({ vpcId: s.vpcId, subnetId }));
  }
  return aws.ec2.getVpcsOutput({ filters: [{ name: "is-default", values: ["true"] }] }, opts).apply((v) => ({ vpcId: defaultVpcOf(region, v.ids) }));
}

/** The default VPC among a region's lookup result, or the error that says which key to set. */
export function defaultVpcOf(region: string, ids: readonly string[] | undefined): string {
  const vpcId = ids?.[0];
  if (vpcId === undefined) {
    throw new Error(`region ${region} has no default VPC: set agent-backups:subnetId to a subnet with a route to the internet (pulumi config set -s drill subnetId subnet-...)`);
  }
  return vpcId;
}

/**
 * cloud-init user data: pins the box's SSH host key (so Pulumi can verify it is talking to this box
 * before it sends the drill key) and schedules the poweroff at the time to live. bootcmd runs early
 * in every boot; systemd-run needs no D-Bus, only PID 1.
 */
export function renderUserData(hostPrivateKey: string, hostPublicKey: string, ttlHours: number): string {
  const body = {
    ssh_deletekeys: true,
    ssh_keys: { ed25519_private: hostPrivateKey, ed25519_public: hostPublicKey.trim() },
    bootcmd: [
      ["systemd-run", `--unit=${expiryUnit}`, `--on-boot=${ttlHours * 60}min`,
        "--description=agent-drill: time to live ran out", "/usr/bin/systemctl", "poweroff"],
    ],
  };
  return `#cloud-config\n${stringify(body)}`;
}

/** sha256 over the copied files and their modes: re-installs and re-runs the drill when one changes. */
export function scriptsContentHash(sourceDir: string): string {
  const hash = crypto.createHash("sha256");
  for (const { rel, executable } of hostFiles(sourceDir)) {
    hash.update(`${rel}\0${executable ? "0755" : "0644"}\0`).update(fs.readFileSync(path.join(sourceDir, rel)));
  }
  return hash.digest("hex");
}

/**
 * Checks the uploaded archive and unpacks it as root into the host install plan's source
 * directory: the same layout and modes a prod host gets.
 */
export function installScriptsCommand(archiveSha256: string): string {
  const { verify, unpack } = unpackArchiveCommands(drillBoxPaths.archive, archiveSha256);
  return ["set -eu", verify, ...unpack.map((c) => `sudo ${c}`)].join("\n");
}

/** Writes stdin to one root-only file; the secret never appears on a command line. */
export function writeRootOnlyFileScript(file: string, dir: string): string {
  return `set -eu\nsudo install -d -m 0700 -o root -g root ${dir}\nsudo sh -c 'umask 077 && cat > ${file}'`;
}

/**
 * Installs the pinned agent (requirements on stdin) into its venv, `hermes` onto PATH, and makes the
 * agent's user, as the local drill's restore box has them. pip checks every wheel against its hash
 * and builds nothing. Prints the installed version last.
 */
export function agentInstallScript(): string {
  const venv = drillAgentVenv;
  return [
    "set -eu",
    `id -u ${drillAgentUser} >/dev/null 2>&1 || sudo useradd --create-home --shell /bin/bash ${drillAgentUser}`,
    `sudo install -d -m 0755 -o root -g root ${path.posix.dirname(drillBoxPaths.requirements)}`,
    `sudo sh -c 'umask 022 && cat > ${drillBoxPaths.requirements}'`,
    // A half-made venv of an earlier try is made again from scratch.
    `sudo rm -rf -- ${venv}`,
    `sudo python3 -m venv ${venv}`,
    `sudo timeout ${waits.agentInstall} ${venv}/bin/pip ${pipInstallArgs.join(" ")} -r ${drillBoxPaths.requirements} >&2`,
    `sudo ln -sfn ${venv}/bin/hermes ${drillAgentBin}`,
    `sudo ${remoteSourceDir}/agent-check-hermes --version`,
  ].join("\n");
}

/**
 * Runs one tenant's drill line as root, holding the box's drill lock (tenants restore one after
 * another; the wait is bounded by the box's time to live). The tenant's folder is made anew and
 * given to the agent's user, so the restored home is the user's and the agent check runs the agent
 * as that user. agent-drill's own stdout goes to stderr, and the report file, once written, is the
 * command's only stdout: a report is kept even when the drill is unhealthy, and the verdict is
 * taken from it. No report at all means the drill could not run: the command fails.
 */
export function runDrillScript(
  tenant: string, drillLine: string, reportPath: string, lockWaitSeconds: number,
  where: { lock: string; restoreRoot: string; user: string } = { lock: drillBoxPaths.lock, restoreRoot: drillRestoreRoot, user: drillAgentUser },
): string {
  drillRestorePaths(tenant); // refuses a bad tenant name
  // drillRestorePaths(tenant).dir on the box; a test puts it elsewhere.
  const dir = `${where.restoreRoot}/${tenant}`;
  if (!Number.isInteger(lockWaitSeconds) || lockWaitSeconds <= 0) throw new Error(`drill box: refusing lock wait ${lockWaitSeconds}`);
  return [
    "rc=0",
    `sudo flock --wait ${lockWaitSeconds} ${where.lock} sh -s >&2 <<'DRILL' || rc=$?`,
    "set -eu",
    `rm -f ${reportPath}`,
    `rm -rf --one-file-system -- ${dir}`,
    `install -d -m 0755 -o root -g root ${where.restoreRoot}`,
    `install -d -m 0755 -o ${where.user} -g ${where.user} ${dir}`,
    `${drillLine} >&2`,
    "DRILL",
    `if ! sudo test -s ${reportPath}; then`,
    `  echo "agent-drill for ${tenant} exited $rc and wrote no report" >&2`,
    '  [ "$rc" -ne 0 ] || rc=1',
    '  exit "$rc"',
    "fi",
    `sudo cat ${reportPath}`,
  ].join("\n");
}

/**
 * Writes the report where `pulumi up` runs (CI uploads it), then fails the update when the drill
 * is not healthy. The report was validated by its schema, so check names are shell-safe.
 */
export function reportVerdictScript(report: DrillReport): string {
  const lines = ["set -eu", "umask 077", 'mkdir -p "$(dirname "$DRILL_REPORT_FILE")"', 'cat > "$DRILL_REPORT_FILE"'];
  if (!report.healthy) {
    const failed = report.checks.filter((c) => !c.ok).map((c) => c.name).join(", ");
    lines.push(`echo 'drill of ${report.tenant} (${report.archive}) is not healthy; failed checks: ${failed}' >&2`,
      'echo "report: $DRILL_REPORT_FILE" >&2', "exit 1");
  }
  return lines.join("\n");
}

/** The tenant's repository, as the prod stack's `tenants` output describes it (plain values). */
export interface DrillRepoAccess {
  repoUrl: string;
  remoteBorg: string;
  storagePort: number;
  /** known_hosts lines of the storage host. */
  knownHosts: string;
}

/** One tenant the box restores. */
export interface DrillTenant {
  tenant: string;
  /** The tenant's repository (from the prod stack's `tenants` output). */
  repo: pulumi.Input<DrillRepoAccess>;
  /** OpenSSH private key of the tenant's drill role (secret). */
  drillPrivateKey: pulumi.Input<string>;
  /** The repository passphrase (secret). */
  passphrase: pulumi.Input<string>;
  /** Where this tenant's report is written on the machine running `pulumi up`. */
  reportFile: string;
}

export interface DrillBoxArgs {
  /** The tenants whose archives are restored, one after another, each with its own report. */
  tenants: DrillTenant[];
  /** Archive name (only with one tenant), or "latest". */
  archive: string;
  /** The image to boot (normally newestDebian12Image). */
  imageId: pulumi.Input<string>;
  instanceType: string;
  /** The only IPv4 CIDR allowed to reach the box over SSH. */
  sshCidr: string;
  /** Hours from boot until the box powers itself off, which terminates it. */
  ttlHours: number;
  /** When the drill was started: the expiry tag says createdAt + ttlHours. */
  createdAt: Date;
  /** Size of the encrypted root volume. */
  rootVolumeGiB: number;
  /** The agent check agent-verify runs on each restored home (agentHealthCheck unless told otherwise). */
  agentCheck: string;
  /** The local scripts/ tree to copy; this repository's unless a test says otherwise. */
  sourceDir?: string;
  /** Where the archive of the host files is written locally (default: this repository's .cache/). */
  archiveDir?: string;
  /** The VPC (and subnet) of the box: drillNetwork. */
  network: pulumi.Input<DrillNetwork>;
}

/** AWS allows 256 characters in a tag value. */
function tagValue(v: string): string {
  return v.length <= 256 ? v : `${v.slice(0, 252)} ...`;
}

/** A disposable EC2 restore box that restores its tenants in turn and reports on each. */
export class DrillBox extends pulumi.ComponentResource {
  public readonly instanceId: pulumi.Output<string>;
  public readonly publicIp: pulumi.Output<string>;
  /** ISO time after which the box is gone: its expiry tag, fixed when it was created. */
  public readonly expiresAt: pulumi.Output<string>;
  /** The installed agent as agent-check-hermes names it ("hermes-agent 0.19.0"). */
  public readonly agent: pulumi.Output<string>;
  /** Per tenant: the exact agent-drill command line run as root on the box. */
  public readonly drillCommandLines: pulumi.Output<Record<string, string>>;
  /** Per tenant: the drill report, validated by the drill-report schema. */
  public readonly reports: pulumi.Output<Record<string, DrillReport>>;
  /** Per tenant: where its report was written on the machine running `pulumi up`. */
  public readonly reportFiles: pulumi.Output<Record<string, string>>;
  /** The box's SSH login key, to debug a failed drill by hand (secret). */
  public readonly loginPrivateKey: pulumi.Output<string>;
  /** The box's pinned SSH host key, for a known_hosts line. */
  public readonly hostPublicKey: pulumi.Output<string>;

  constructor(name: string, args: DrillBoxArgs, opts?: pulumi.ComponentResourceOptions) {
    super("agent-backups:drill:DrillBox", name, {}, opts);
    const parent = { parent: this };
    const sourceDir = args.sourceDir ?? scriptsDir;
    const tenantNames = args.tenants.map((t) => t.tenant);
    if (tenantNames.length === 0) throw new Error("drill box: no tenant to restore");
    if (new Set(tenantNames).size !== tenantNames.length) throw new Error(`drill box: a tenant is listed twice: ${tenantNames.join(", ")}`);
    if (args.archive !== "latest" && tenantNames.length > 1) throw new Error("drill box: a named archive needs exactly one tenant");
    // These reach shell commands here; config/drill.ts checked them, a direct caller may not have.
    for (const t of args.tenants) {
      tenantDrillFiles(t.tenant);
      if (!matchesPattern("rel_path", t.reportFile) && !matchesPattern("abs_path", t.reportFile)) {
        throw new Error(`drill box: refusing report file ${JSON.stringify(t.reportFile)}`);
      }
    }
    const contentHash = scriptsContentHash(sourceDir);
    const archive = writeHostFilesArchive(sourceDir, args.archiveDir);
    const network = pulumi.output(args.network);
    const expiry = new Date(args.createdAt.getTime() + args.ttlHours * 3600_000).toISOString();
    const tags = { Name: tagValue(`agent-drill ${tenantNames.join(" ")}`), tenants: tagValue(tenantNames.join(" ")), drill: name, expiry };

    // --- the box -------------------------------------------------------------------------------
    const loginKey = new tls.PrivateKey(`${name}-login`, { algorithm: "ED25519" }, parent);
    const hostKey = new tls.PrivateKey(`${name}-host`, { algorithm: "ED25519" }, parent);
    const keyPair = new aws.ec2.KeyPair(`${name}-login`, { publicKey: loginKey.publicKeyOpenssh, tags }, parent);
    const storagePorts = pulumi.all(args.tenants.map((t) => pulumi.output(t.repo).apply((r) => r.storagePort)))
      .apply((ports) => [...new Set(ports)].sort((a, b) => a - b));
    const securityGroup = new aws.ec2.SecurityGroup(`${name}-ssh`, {
      vpcId: network.vpcId,
      description: `agent-drill: SSH from ${args.sshCidr} only`,
      ingress: [{ description: "SSH from the drill operator", protocol: "tcp", fromPort: 22, toPort: 22, cidrBlocks: [args.sshCidr] }],
      // Out: apt and the agent's pinned packages over HTTP(S), and the storage boxes. The VPC
      // resolver is not subject to security groups.
      egress: storagePorts.apply((ports) => [
        { description: "HTTP (apt)", protocol: "tcp", fromPort: 80, toPort: 80, cidrBlocks: ["0.0.0.0/0"] },
        { description: "HTTPS (apt, the agent's pinned packages)", protocol: "tcp", fromPort: 443, toPort: 443, cidrBlocks: ["0.0.0.0/0"] },
        ...ports.filter((p) => p !== 80 && p !== 443).map((p) => (
          { description: "borg over SSH to the storage box", protocol: "tcp", fromPort: p, toPort: p, cidrBlocks: ["0.0.0.0/0"] })),
      ]),
      tags,
    }, parent);
    const userData = pulumi
      .all([hostKey.privateKeyOpenssh, hostKey.publicKeyOpenssh])
      .apply(([priv, pub]) => renderUserData(priv, pub, args.ttlHours));
    const instance = new aws.ec2.Instance(`${name}-box`, {
      ami: args.imageId,
      instanceType: args.instanceType,
      keyName: keyPair.keyName,
      vpcSecurityGroupIds: [securityGroup.id],
      subnetId: network.apply((n) => n.subnetId),
      associatePublicIpAddress: true,
      // A poweroff from inside (the time to live) terminates the box: nothing is left running.
      instanceInitiatedShutdownBehavior: "terminate",
      metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
      rootBlockDevice: { encrypted: true, volumeType: "gp3", volumeSize: args.rootVolumeGiB, deleteOnTermination: true, tags },
      userData: pulumi.secret(userData),
      userDataReplaceOnChange: true,
      tags,
    }, {
      ...parent,
      // The expiry is fixed when the box is created; a later `up` must not rewrite it.
      ignoreChanges: ["tags.expiry", "rootBlockDevice.tags.expiry"],
    });

    const connection: command.types.input.remote.ConnectionArgs = {
      host: instance.publicIp,
      user: drillBoxUser,
      privateKey: loginKey.privateKeyOpenssh,
      hostKey: hostKey.publicKeyOpenssh.apply((k) => k.trim()),
      // The box takes a minute or two to boot: 40 dials of at most 15 s each.
      dialErrorLimit: 40,
      perDialTimeout: 15,
    };
    // addPreviousOutputInEnv: a step's earlier output must not travel to the box again (SSH setenv).
    const onBox = (step: string, create: pulumi.Input<string>, extra: Partial<command.remote.CommandArgs>, dependsOn: pulumi.Resource[]) =>
      new command.remote.Command(`${name}-${step}`, { connection, create, ...extra, addPreviousOutputInEnv: false }, { ...parent, dependsOn });

    // --- prepare the box (once for every tenant) ------------------------------------------------
    const booted = onBox("boot", [
      "rc=0",
      `sudo timeout ${waits.boot} cloud-init status --wait >/dev/null || rc=$?`,
      // 2: finished with recoverable errors (e.g. deprecated keys), which the drill can live with.
      'if [ "$rc" -ne 0 ] && [ "$rc" -ne 2 ]; then echo "cloud-init did not finish (exit $rc)" >&2; exit 1; fi',
      `systemctl is-active --quiet ${expiryUnit}.timer || { echo "the time-to-live timer is not armed" >&2; exit 1; }`,
    ].join("\n"), {}, [instance]);
    const packages = onBox("packages", [
      "set -eu",
      `sudo timeout ${waits.apt} apt-get -q update`,
      `sudo env DEBIAN_FRONTEND=noninteractive timeout ${waits.apt} apt-get -q install -y --no-install-recommends ${drillBoxPackages.join(" ")}`,
    ].join("\n"), {}, [booted]);
    // The host files as one archive in one SSH session, unpacked as root where the plan puts them.
    const copy = new command.remote.CopyToRemote(`${name}-host-files`, {
      connection,
      source: new pulumi.asset.FileAsset(archive.localPath),
      remotePath: drillBoxPaths.archive,
      triggers: [contentHash],
    }, { ...parent, dependsOn: [booted] });
    const scripts = onBox("scripts", installScriptsCommand(archive.sha256), { triggers: [contentHash] }, [copy]);
    // The pinned agent, as the local drill's restore box has it: its version comes back as stdout.
    const requirements = fs.readFileSync(requirementsFile, "utf8");
    const agentInstall = onBox("agent-install", agentInstallScript(), { stdin: requirements, triggers: [requirementsHash()] }, [packages, scripts]);
    this.agent = agentInstall.stdout.apply((out) => out.trim().split("\n").pop() ?? "");

    // --- the drills, one tenant after another ----------------------------------------------------
    const lines: Record<string, pulumi.Output<string>> = {};
    const reports: Record<string, pulumi.Output<DrillReport>> = {};
    const reportFiles: Record<string, pulumi.Output<string>> = {};
    for (const t of args.tenants) {
      const files = tenantDrillFiles(t.tenant);
      const step = (s: string) => `${t.tenant}-${s}`;
      const repo = pulumi.output(t.repo);
      const withNewline = (v: string) => (v.endsWith("\n") ? v : `${v}\n`);
      const secretFiles: [string, string, pulumi.Input<string>][] = [
        ["drill-key", files.sshKey, pulumi.secret(pulumi.output(t.drillPrivateKey).apply(withNewline))],
        ["passphrase", files.passphrase, pulumi.secret(t.passphrase)],
        ["known-hosts", files.knownHosts, repo.apply((r) => withNewline(r.knownHosts))],
      ];
      const secrets = secretFiles.map(([s, file, content]) =>
        onBox(step(s), writeRootOnlyFileScript(file, files.dir), { stdin: content, logging: "none" }, [booted]));

      // The same line as the local drill's for this tenant (tenantDrillCommand, shared).
      const line = repo.apply((r) => tenantDrillCommand({
        tenant: t.tenant, repoUrl: r.repoUrl, remoteBorg: r.remoteBorg, archive: args.archive, agentCheck: args.agentCheck,
      }));
      const drill = onBox(step("drill"), line.apply((l) => runDrillScript(t.tenant, l, files.report, args.ttlHours * 3600)),
        { triggers: [contentHash, requirementsHash()] }, [packages, scripts, agentInstall, ...secrets]);
      const report = drill.stdout.apply(parseDrillReport);
      const verdict = new command.local.Command(`${name}-${step("verdict")}`, {
        create: report.apply(reportVerdictScript),
        stdin: report.apply((r) => `${JSON.stringify(r, null, 2)}\n`),
        environment: { DRILL_REPORT_FILE: t.reportFile },
        addPreviousOutputInEnv: false,
      }, parent);
      lines[t.tenant] = line;
      reports[t.tenant] = report;
      reportFiles[t.tenant] = verdict.environment.apply((env) => env?.DRILL_REPORT_FILE ?? t.reportFile);
    }
    this.drillCommandLines = pulumi.output(lines);
    this.reports = pulumi.output(reports);
    this.reportFiles = pulumi.output(reportFiles);

    // From the instance's state, not from this run's clock: a later `up` keeps the first expiry.
    this.expiresAt = instance.tags.apply((t) => t?.expiry ?? expiry);
    this.instanceId = instance.id;
    this.publicIp = instance.publicIp;
    this.loginPrivateKey = pulumi.secret(loginKey.privateKeyOpenssh);
    this.hostPublicKey = hostKey.publicKeyOpenssh;
    this.registerOutputs({
      instanceId: this.instanceId,
      publicIp: this.publicIp,
      expiresAt: this.expiresAt,
      agent: this.agent,
      drillCommandLines: this.drillCommandLines,
      reports: this.reports,
      reportFiles: this.reportFiles,
      loginPrivateKey: this.loginPrivateKey,
      hostPublicKey: this.hostPublicKey,
    });
  }
}
