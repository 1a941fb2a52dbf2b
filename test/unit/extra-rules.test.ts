// A tenant's own backup-set rules: validated strictly in the prod config, rendered in the syntax of
// scripts/backup-set.rules (secrets first), carried to the host on the install's stdin, and a change
// of them re-runs the install.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, test } from "vitest";
import { ConfigError } from "../../config/common";
import { parseProdConfig, type RawProdConfig } from "../../config/prod";
import { hostInstallPlan, hostInstallStdin, renderExtraRules } from "../../components/host-install-plan";

const privateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
const hostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDTa5sUAF6DO77KL8r2sspbOzivK3AxZHSI7hUkU0bQ5";

function config(extraRules: unknown): RawProdConfig {
  return {
    storage: { boxes: [{ name: "main", location: "fsn1", boxType: "bx21", snapshots: { hour: 2, minute: 30, keep: 14 } }] },
    tenants: [{ name: "acme", box: "main", host: { address: "acme.example.com", user: "ubuntu", provider: "aws", agentHome: "/home/hermes/.hermes", hostKey }, extraRules }],
    vault: { replicaRegion: "eu-west-1" },
    hostPrivateKeys: { acme: privateKey },
    awsRegion: "eu-central-1",
  } as RawProdConfig;
}

function problems(extraRules: unknown): string[] {
  try {
    parseProdConfig(config(extraRules));
    return [];
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return [...(e as ConfigError).problems];
  }
}

const input = { tenant: "acme", agentHome: "/home/hermes/.hermes", repoUrl: "ssh://u1@box.example:23/./borg", remoteBorg: "borg-1.4", schedule: "hourly" };

describe("extraRules in the prod config", () => {
  test("globs per class are accepted", () => {
    const c = parseProdConfig(config({ precious: ["research-notes", "cache/maps"], dangerous: ["tokens.d"] }));
    expect(c.tenants[0]!.extraRules).toEqual({ precious: ["research-notes", "cache/maps"], dangerous: ["tokens.d"] });
  });

  test.each([
    [{ secret: ["x"] }, /extraRules/],
    [{ precious: ["../etc"] }, /extraRules\.precious\[0\]/],
    [{ precious: ["a/./b"] }, /extraRules\.precious\[0\]/],
    [{ dead: ["x y"] }, /extraRules\.dead\[0\]/],
    [{ dead: ["/abs"] }, /extraRules\.dead\[0\]/],
    [{ runtime: ["x;rm -rf /"] }, /extraRules\.runtime\[0\]/],
    [{ precious: "notes" }, /extraRules\.precious/],
  ])("%j is refused, naming the field", (rules, field) => {
    const p = problems(rules);
    expect(p.length).toBeGreaterThan(0);
    expect(p.join("\n")).toMatch(field);
  });
});

describe("the rules on the host", () => {
  test("rendered in the rules syntax, secrets first, and accepted by the host's own classifier", () => {
    const text = renderExtraRules({ precious: ["notes"], dangerous: ["notes/private"], dead: ["big"] });
    expect(text.split("\n").filter((l) => l && !l.startsWith("#"))).toEqual(["dangerous home notes/private", "dead home big", "precious home notes"]);
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "ab-rules-")), "extra.rules");
    fs.writeFileSync(file, text);
    const scripts = path.join(__dirname, "..", "..", "scripts");
    const r = spawnSync("bash", ["-c", 'source "$1/lib/common.sh"; printf "f\\t1\\tnotes/private/k\\nf\\t1\\tnotes/a\\n" | classify_records "$2"', "bash", scripts, file], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0])).toEqual(["dangerous", "precious"]);
    fs.rmSync(path.dirname(file), { recursive: true });
  });

  test("a bad glob is refused even past the config", () => {
    expect(() => renderExtraRules({ precious: ["../x"] })).toThrow(/refusing extra precious rule/);
  });

  test("they travel on the install's stdin, and changing them re-runs the install", () => {
    const secrets = { sshPrivateKey: privateKey, passphrase: "p", knownHosts: "[box]:23 ssh-ed25519 AAAA" };
    const stdin = hostInstallStdin(secrets, { precious: ["notes"] });
    const line = stdin.split("\n").find((l) => l.startsWith("EXTRA_RULES_B64="))!;
    expect(Buffer.from(line.split("=")[1]!, "base64").toString()).toContain("precious home notes");
    expect(hostInstallStdin(secrets)).not.toContain("EXTRA_RULES_B64");
    const a = hostInstallPlan(input).contentHash;
    const b = hostInstallPlan({ ...input, extraRules: { precious: ["notes"] } }).contentHash;
    expect(b).not.toBe(a);
    expect(hostInstallPlan({ ...input, extraRules: { precious: ["notes"] } }).command).toBe(hostInstallPlan(input).command);
  });
});
