// `pulumi up -s drill` as the Pulumi nodejs runtime runs it: index.ts through ts-node (CommonJS,
// the project's tsconfig, type-checked), with the committed Pulumi.drill.yaml, this repository's
// real scripts/ tree, and mocks standing in for the engine and the prod stack.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { describe, expect, it } from "vitest";

const root = path.resolve(__dirname, "..", "..");
const stackConfig = (parseYaml(fs.readFileSync(path.join(root, "Pulumi.drill.yaml"), "utf8")) as { config: Record<string, unknown> }).config;
// As the Pulumi CLI hands the values over: strings, a structured value as its JSON text.
const config = Object.fromEntries(Object.entries(stackConfig).map(([k, v]) => [k, typeof v === "object" ? JSON.stringify(v) : String(v)]));
const tenant = (stackConfig["agent-backups:tenants"] as string[])[0] as string;

const report = {
  tenant, archive: `${tenant}-2026-11-24T03:17:00`, archiveAgeSeconds: 60, bytes: 1, backupSeconds: 1, restoreSeconds: 1,
  checks: [{ name: "restore", ok: true, detail: "ok" }], healthy: true, agent: { name: "hermes-agent", version: "0.19.0" },
  startedAt: "2026-11-24T04:00:00Z", finishedAt: "2026-11-24T04:01:00Z",
};
const prodOutputs = {
  tenants: { [tenant]: {
    repoUrl: "ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg", subaccountUser: "u1-sub1", storageHost: "u1-sub1.your-storagebox.de",
    storagePort: 23, remoteBorg: "borg-1.4", knownHosts: "[u1-sub1.your-storagebox.de]:23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs",
    keyFingerprints: { push: "SHA256:p", drill: "SHA256:d", maintenance: "SHA256:m" },
  } },
  drillAccess: { [tenant]: { drillPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n", passphrase: "p" } },
  vaultSecretArns: { [tenant]: "arn:x" },
};

const harness = `
require("ts-node").register({ project: ${JSON.stringify(path.join(root, "tsconfig.json"))} });
const pulumi = require("@pulumi/pulumi");
(async () => {
  const created = [];
  await pulumi.runtime.setMocks({
    newResource: (a) => {
      created.push({ type: a.type, name: a.name });
      const state = { ...a.inputs, publicIp: "198.51.100.10", keyName: a.name,
        privateKeyOpenssh: "-----BEGIN OPENSSH PRIVATE KEY-----\\nx\\n-----END OPENSSH PRIVATE KEY-----\\n", publicKeyOpenssh: "ssh-ed25519 AAAAx\\n" };
      if (a.type === "pulumi:pulumi:StackReference") { state.outputs = JSON.parse(process.env.AB_PROD); state.secretOutputNames = ["drillAccess"]; }
      if (a.type === "command:remote:Command") state.stdout = a.name.endsWith("-drill") ? process.env.AB_REPORT : "";
      return { id: a.name + "-id", state };
    },
    // The AMI lookup and the region's default VPC (the committed config names no subnet).
    call: (a) =>
      a.token === "aws:ec2/getAmi:getAmi"
        ? { ...a.inputs, id: "ami-0123456789abcdef0" }
        : a.token === "aws:ec2/getVpcs:getVpcs"
          ? { ...a.inputs, ids: ["vpc-0123456789abcdef0"] }
          : a.inputs,
  }, "agent-backups", "drill", false);
  pulumi.runtime.setAllConfig(JSON.parse(process.env.AB_CONFIG), []);
  const program = require(${JSON.stringify(path.join(root, "index.ts"))});
  const outputs = await pulumi.runtime.runInPulumiStack(program);
  await pulumi.runtime.waitForRPCs();
  const plain = {};
  for (const [k, v] of Object.entries(outputs)) plain[k] = await new Promise((r) => pulumi.output(v).apply(r));
  console.log(JSON.stringify({ outputs: plain, created }));
})().catch((e) => { console.error("PROGRAM ERROR: " + (e && e.stack)); process.exit(3); });
`;

describe("index.ts, stack drill", () => {
  it("runs the drill stack with the committed config and exports the tenant's report", () => {
    const r = spawnSync(process.execPath, ["-e", harness], {
      cwd: root,
      encoding: "utf8",
      env: { ...process.env, AB_CONFIG: JSON.stringify(config), AB_PROD: JSON.stringify(prodOutputs), AB_REPORT: JSON.stringify(report) },
      timeout: 110_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const { outputs, created } = JSON.parse(r.stdout.trim().split("\n").pop() as string) as {
      outputs: Record<string, unknown>; created: { type: string; name: string }[];
    };
    expect(outputs.reports).toEqual({ [tenant]: report });
    expect(outputs.reportFiles).toEqual({ [tenant]: `drill-reports/${tenant}.json` });
    expect(outputs.healthy).toBe(true);
    expect(outputs.tenants).toEqual([tenant]);
    const line = String((outputs.drillCommands as Record<string, string>)[tenant]);
    expect(line).toMatch(/^\/var\/lib\/agent-backup\/install-source\/agent-drill --repo ssh:\/\/u1-sub1@/);
    expect(line).toContain(" --agent-check '/var/lib/agent-backup/install-source/agent-check-hermes' ");
    // The drill stack only: no storage box, no vault, no host install.
    const types = new Set(created.map((c) => c.type));
    for (const t of ["aws:ec2/instance:Instance", "aws:ec2/securityGroup:SecurityGroup", "aws:ec2/keyPair:KeyPair", "command:local:Command"]) {
      expect(types.has(t), t).toBe(true);
    }
    expect([...types].some((t) => t.startsWith("hcloud:") || t.startsWith("aws:secretsmanager"))).toBe(false);
  });
});
