// The committed project and stack files: what the real Pulumi CLI reads.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, test } from "vitest";
import { parse } from "yaml";
import { ConfigError } from "../../config/common";
import { parseProdConfig } from "../../config/prod";
import { mockAgentHostKey, mockHostPrivateKey } from "./prod-mocks";

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

  /** The example's tenants with the host's own key filled in, as the operator does. */
  const withHostKey = () => (raw.tenants as { host: Record<string, unknown> }[]).map((t) => ({ ...t, host: { ...t.host, hostKey: mockAgentHostKey } }));

  test("the worked example is valid once the operator has set the host's key and the private key", () => {
    const c = parseProdConfig({ ...raw, tenants: withHostKey(), hostPrivateKeys: { acme: mockHostPrivateKey } });
    expect(c.tenants.map((t) => t.name)).toEqual(["acme"]);
    expect(c.tenants[0]!.host.hostKey).toBe(mockAgentHostKey);
    expect(c.storage.remoteBorg).toBe("borg-1.4");
  });

  test("as committed it names exactly what the operator must set: the host's own key and the private key", () => {
    let problems: readonly string[] = [];
    try {
      parseProdConfig({ ...raw, hostPrivateKeys: config["agent-backups:hostPrivateKeys"] });
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      problems = (e as ConfigError).problems;
    }
    expect(problems).toHaveLength(2);
    expect(problems[0]).toMatch(/^agent-backups:tenants\[0\]\.host\.hostKey: required: the agent host's own SSH host key/);
    expect(problems[1]).toMatch(/^agent-backups:hostPrivateKeys: required secret is missing \(set it with: pulumi config set --secret/);
  });

  test("only keys the prod config knows", () => {
    expect(Object.keys(config).sort()).toEqual(["agent-backups:storage", "agent-backups:tenants", "agent-backups:vault", "aws:region"]);
  });
});
