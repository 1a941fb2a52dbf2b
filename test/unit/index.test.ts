// index.ts as the Pulumi nodejs runtime loads it: CommonJS through ts-node with the project's
// tsconfig (type-checked), the exported function run under mocks for a given stack name.
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { describe, expect, test } from "vitest";
import { prodConfig } from "./prod-mocks";

const root = path.resolve(__dirname, "..", "..");

// Runs in a child node: registers ts-node like the runtime, sets mocks, runs the program.
const harness = `
require("ts-node").register({ project: ${JSON.stringify(path.join(root, "tsconfig.json"))} });
const pulumi = require("@pulumi/pulumi");
(async () => {
  const types = [];
  await pulumi.runtime.setMocks({
    newResource: (a) => { types.push(a.type); return { id: a.type.startsWith("hcloud:") ? "4242" : a.name + "-id", state: { ...a.inputs, username: "u1-sub1", server: "u1-sub1.your-storagebox.de",
      publicKeyOpenssh: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs\\n", privateKeyOpenssh: "-----BEGIN OPENSSH PRIVATE KEY-----\\nx\\n-----END OPENSSH PRIVATE KEY-----\\n",
      publicKeyFingerprintSha256: "SHA256:x", result: "secret", stdout: "", arn: "arn:x" } }; },
    call: (a) => a.token === "hcloud:index/getStorageBoxType:getStorageBoxType" ? { ...a.inputs, automaticSnapshotLimit: 20, subaccountsLimit: 100 } : a.inputs,
  }, "agent-backups", process.env.AB_STACK, false);
  pulumi.runtime.setAllConfig(JSON.parse(process.env.AB_CONFIG), ["agent-backups:hostPrivateKeys"]);
  const program = require(${JSON.stringify(path.join(root, "index.ts"))});
  if (typeof program !== "function") throw new Error("index.ts does not export a function but " + typeof program);
  const outputs = await pulumi.runtime.runInPulumiStack(program);
  await pulumi.runtime.waitForRPCs();
  console.log(JSON.stringify({ outputs: Object.keys(outputs ?? {}).sort(), types: [...new Set(types)].sort() }));
})().catch((e) => { console.error("PROGRAM ERROR: " + (e && e.message)); process.exit(3); });
`;

function runIndex(stack: string, config: Record<string, string>) {
  const r = spawnSync(process.execPath, ["-e", harness], {
    cwd: root,
    encoding: "utf8",
    env: { ...process.env, AB_STACK: stack, AB_CONFIG: JSON.stringify(config) },
    timeout: 110_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("index.ts under ts-node (CommonJS), as `pulumi up` runs it", () => {
  test("stack prod: runs the prod program and exports exactly boxes, tenants, drillAccess, vaultSecretArns", () => {
    const r = runIndex("prod", prodConfig(["acme"]));
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split("\n").pop() as string);
    expect(out.outputs).toEqual(["boxes", "drillAccess", "tenants", "vaultSecretArns"]);
    expect(out.types).toContain("hcloud:index/storageBox:StorageBox");
    expect(out.types).not.toContain("aws:ec2/instance:Instance");
  });

  test("stack prod with bad config: the config error, naming the field", () => {
    const config = prodConfig(["acme"]);
    config["agent-backups:vault"] = JSON.stringify({ replicaRegion: "eu-central-1" });
    const r = runIndex("prod", config);
    expect(r.status).toBe(3);
    expect(r.stderr).toContain("agent-backups:vault.replicaRegion: same as aws:region eu-central-1");
  });

  test("other stack names are refused", () => {
    const r = runIndex("staging", prodConfig(["acme"]));
    expect(r.status).toBe(3);
    expect(r.stderr).toContain('unknown stack "staging": expected "prod", "drill" or a name starting with "drill-"');
  });

  test("stack drill-<x> loads the drill stack, never the prod program", () => {
    const r = runIndex("drill-acme", prodConfig(["acme"]));
    // Whatever the drill stack makes of this (prod) config, it did not run the prod program.
    expect(r.stdout + r.stderr).not.toContain("hcloud:index/storageBox:StorageBox");
    expect(r.stderr).not.toContain('unknown stack');
  });
});
