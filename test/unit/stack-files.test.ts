// The committed project and stack files: what the real Pulumi CLI reads.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { ConfigError } from "../../config/common";
import { parseProdConfig } from "../../config/prod";
import { mockHostPrivateKey } from "./prod-mocks";

const root = path.resolve(__dirname, "..", "..");
const readYaml = (f: string) => parse(fs.readFileSync(path.join(root, f), "utf8"));

describe("Pulumi.yaml", () => {
  test("nodejs runtime with TypeScript; the program is package.json main, loaded as CommonJS", () => {
    const project = readYaml("Pulumi.yaml");
    expect(project.name).toBe("agent-backups");
    expect(project.runtime).toEqual({ name: "nodejs", options: { packagemanager: "npm", typescript: true } });
    const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
    expect(pkg.main).toBe("index.ts");
    // The runtime runs ts-node in CommonJS mode: an ESM package or module setting would break it.
    expect(pkg.type).toBeUndefined();
    const tsconfig = JSON.parse(fs.readFileSync(path.join(root, "tsconfig.json"), "utf8"));
    expect(tsconfig.compilerOptions.module).toBe("node16");
    expect(tsconfig.compilerOptions.strict).toBe(true);
  });
});

describe("Pulumi.prod.yaml", () => {
  const config = readYaml("Pulumi.prod.yaml").config as Record<string, unknown>;
  const raw = {
    storage: config["agent-backups:storage"],
    tenants: config["agent-backups:tenants"],
    vault: config["agent-backups:vault"],
    awsRegion: config["aws:region"] as string,
  };

  test("the worked example is valid once the operator has set the host keys", () => {
    const c = parseProdConfig({ ...raw, hostPrivateKeys: { acme: mockHostPrivateKey } });
    expect(c.tenants.map((t) => t.name)).toEqual(["acme"]);
    expect(c.storage.remoteBorg).toBe("borg-1.4");
  });

  test("as committed it names the one missing secret and how to set it", () => {
    expect(() => parseProdConfig({ ...raw, hostPrivateKeys: config["agent-backups:hostPrivateKeys"] })).toThrow(ConfigError);
    expect(() => parseProdConfig({ ...raw, hostPrivateKeys: undefined })).toThrow(/agent-backups:hostPrivateKeys: required secret is missing \(set it with: pulumi config set --secret/);
  });

  test("only keys the prod config knows", () => {
    expect(Object.keys(config).sort()).toEqual(["agent-backups:storage", "agent-backups:tenants", "agent-backups:vault", "aws:region"]);
  });
});
