// Secrets and command output, over every @pulumi/command resource the prod and the drill programs
// create. On failure the provider puts the command text and all of its stdout and stderr into the
// error, whatever `logging` says, and addPreviousOutputInEnv (default true) sends the previous
// output again as environment (provider/pkg/provider/{local,remote}/commandOutputs.go, v1.2.1).
// So: no command sends its output on, no secret is in any text an error shows, and only the key
// export prints one, as its very last step (its failures are run for real in host-backup.test.ts).
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { writeRootOnlyFileScript } from "../../components/drill-box";
import { drillReportSchema } from "../../components/drill-report";
import { keyExportCommand } from "../../components/host-backup";
import { loadDrillConfig } from "../../config/drill";
import { loadProdConfig } from "../../config/prod";
import { drillResources } from "../../stacks/drill";
import { prodStack } from "../../stacks/prod";
import { MockRun, fixtureScriptsDir, isSecretValue, mockKeyExport, plain, prodConfig, runMocked, valueOf } from "./prod-mocks";

const scriptsDir = fixtureScriptsDir();
const archiveDir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-archive-"));
afterAll(() => {
  fs.rmSync(scriptsDir, { recursive: true, force: true });
  fs.rmSync(archiveDir, { recursive: true, force: true });
});

const commandTypes = ["command:remote:Command", "command:local:Command"];
const drillKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nZHJpbGwta2V5LWZvci10aGUtZHJpbGw=\n-----END OPENSSH PRIVATE KEY-----\n";
const drillPassphrase = "drill-passphrase-9b1e77";
const report = drillReportSchema.parse({
  tenant: "acme", archive: "acme-2026-11-24T03:17:00", archiveAgeSeconds: 60, bytes: 10, backupSeconds: 1, restoreSeconds: 2,
  checks: [{ name: "restore", ok: true, detail: "ok" }], healthy: true, agent: { name: "hermes-agent", version: "0.19.0" },
  startedAt: "2026-11-24T04:00:00Z", finishedAt: "2026-11-24T04:01:00Z",
});

let prod: MockRun<unknown>;
let drill: MockRun<unknown>;
beforeAll(async () => {
  prod = await runMocked(() => prodStack(loadProdConfig(), { scriptsDir, archiveDir }).then(async (o) => { await valueOf(o.vaultSecretArns); return o; }), {
    config: prodConfig(["acme", "globex"]),
    secretKeys: ["agent-backups:hostPrivateKeys"],
  });
  drill = await runMocked(() => {
    const outputs = drillResources(loadDrillConfig(), { sourceDir: scriptsDir, archiveDir, createdAt: new Date("2026-11-25T10:00:00Z") });
    return valueOf(outputs.reports).then(() => outputs);
  }, {
    stack: "drill",
    config: {
      "agent-backups:prodStack": "acme-org/agent-backups/prod", "agent-backups:tenant": "acme", "agent-backups:region": "eu-central-1",
      "agent-backups:sshCidr": "203.0.113.7/32", "agent-backups:agentCheck": "env HERMES_HOME=/root/.hermes hermes doctor",
    },
    state: (type, name) => {
      if (type === "pulumi:pulumi:StackReference") {
        return {
          outputs: {
            tenants: { acme: { repoUrl: "ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg", storagePort: 23, remoteBorg: "borg-1.4", knownHosts: "[u1-sub1.your-storagebox.de]:23 ssh-ed25519 AAAA" } },
            drillAccess: { acme: { drillPrivateKey: drillKey, passphrase: drillPassphrase } },
          },
          secretOutputNames: ["drillAccess"],
        };
      }
      if (type === "aws:ec2/instance:Instance") return { publicIp: "198.51.100.10" };
      if (type === "command:remote:Command" && name.endsWith("-drill")) return { stdout: JSON.stringify(report) };
      return undefined;
    },
    call: (token, inputs) => {
      if (token === "aws:ec2/getAmi:getAmi") return { ...inputs, id: "ami-0123456789abcdef0" };
      if (token === "aws:ec2/getVpcs:getVpcs") return { ...inputs, ids: ["vpc-0123456789abcdef0"] };
      return undefined;
    },
  });
});

const commands = () => [...prod.resources, ...drill.resources].filter((r) => commandTypes.includes(r.type));

/** Every secret value the two programs handle: generated keys and passwords, config keys, the drill access. */
function secrets(): string[] {
  const values: string[] = [mockKeyExport, drillKey, drillPassphrase];
  for (const r of [...prod.resources, ...drill.resources]) {
    if (r.type === "tls:index/privateKey:PrivateKey") values.push(r.state.privateKeyOpenssh as string);
    if (r.type === "random:index/randomPassword:RandomPassword") values.push(r.state.result as string);
  }
  values.push(...Object.values(JSON.parse(prodConfig(["acme"])["agent-backups:hostPrivateKeys"]!) as Record<string, string>));
  // Each secret by its lines too: a private key leaks as much through one of its lines.
  return [...new Set(values.flatMap((v) => [v, ...v.split("\n").filter((l) => l.length >= 16 && !l.startsWith("-----"))]))];
}

describe("every command resource of the prod and drill programs", () => {
  test("there are commands in both programs to check", () => {
    expect(prod.resources.filter((r) => commandTypes.includes(r.type)).length).toBeGreaterThanOrEqual(9);
    expect(drill.resources.filter((r) => commandTypes.includes(r.type)).length).toBeGreaterThanOrEqual(8);
  });

  test("sets addPreviousOutputInEnv to false: no earlier output travels again as environment", () => {
    for (const c of commands()) expect(plain(c.inputs.addPreviousOutputInEnv), c.name).toBe(false);
  });

  test("holds no secret in any text an error or a log shows: the command, interpreter, environment, triggers", () => {
    const all = secrets();
    expect(all.length).toBeGreaterThan(20);
    for (const c of commands()) {
      const shown = JSON.stringify([c.inputs.create, c.inputs.update, c.inputs.delete, c.inputs.interpreter, c.inputs.environment, c.inputs.triggers].map(plain));
      for (const s of all) expect(shown.includes(s), `${c.name} shows a secret`).toBe(false);
    }
  });

  test("takes secrets only on stdin, kept secret", () => {
    const all = secrets();
    for (const c of commands()) {
      const stdin = plain<string | undefined>(c.inputs.stdin);
      if (stdin !== undefined && all.some((s) => stdin.includes(s))) expect(isSecretValue(c.inputs.stdin), `${c.name} stdin`).toBe(true);
    }
  });

  test("only the key export prints a secret, and it is the step that prints it last", () => {
    // Marked secret because they print one: exactly the key exports. (install keeps its output
    // secret as a precaution; agent-install prints progress only.)
    const printing = commands().filter((c) => (c.opts.additionalSecretOutputs ?? []).includes("stdout"));
    expect(printing.map((c) => c.name).sort()).toEqual(["host-acme-install", "host-acme-key-export", "host-globex-install", "host-globex-key-export"]);
    for (const c of printing.filter((x) => x.name.endsWith("-key-export"))) {
      expect(c.inputs.create).toBe(keyExportCommand("ubuntu"));
      expect(c.inputs.logging).toBe("none");
      expect((c.inputs.create as string).trim().split("\n").pop()).toBe(`printf '%s\\n' "$key_export"`);
    }
    // What every other command printed under the mocks holds no secret (the mock prints what the real steps would: nothing secret).
    const all = secrets();
    for (const c of commands().filter((x) => !x.name.endsWith("-key-export"))) {
      const out = `${c.state.stdout ?? ""}${c.state.stderr ?? ""}`;
      for (const s of all) expect(out.includes(s), c.name).toBe(false);
    }
  });

  test("the drill box's secret files: a failing write prints nothing of the secret it was given", () => {
    const files = drill.resources.filter((r) => r.type === "command:remote:Command" && isSecretValue(r.inputs.stdin));
    expect(files.map((f) => f.name).sort()).toEqual(["drill-acme-drill-key", "drill-acme-passphrase"]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-secret-file-"));
    try {
      fs.mkdirSync(path.join(dir, "bin"));
      fs.writeFileSync(path.join(dir, "bin", "sudo"), '#!/bin/sh\nexec "$@"\n', { mode: 0o755 });
      // The target's directory is a file: install -d and the write both fail.
      fs.writeFileSync(path.join(dir, "not-a-dir"), "");
      for (const f of files) {
        const secret = plain<string>(f.inputs.stdin);
        const script = writeRootOnlyFileScript(path.join(dir, "not-a-dir", "secret"), path.join(dir, "not-a-dir"));
        const r = spawnSync("bash", ["-c", script], { input: secret, encoding: "utf8", env: { PATH: `${dir}/bin:/usr/bin:/bin` } });
        expect(r.status, f.name).not.toBe(0);
        for (const line of secret.split("\n").filter((l) => l.length > 8)) expect(r.stdout + r.stderr, f.name).not.toContain(line);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
