import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { agentHealthCheck, defaultDrillProgram, drillCommand, type DrillCommandArgs } from "../../components/drill-command";
import { hostInstallPlan } from "../../components/host-install-plan";

const args: DrillCommandArgs = {
  repoUrl: "ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg",
  sshKeyFile: "/etc/agent-drill/ssh_key",
  knownHostsFile: "/etc/agent-drill/known_hosts",
  passphraseFile: "/etc/agent-drill/passphrase",
  remoteBorg: "borg-1.4",
  tenant: "acme",
  target: "/srv/agents/acme/.hermes",
  reportFile: "/var/lib/agent-drill/acme.json",
};

describe("drillCommand", () => {
  it("builds the agent-drill command line of docs/ARCHITECTURE.md", () => {
    expect(drillCommand(args)).toBe(
      `${defaultDrillProgram} --repo ssh://u1-sub1@u1-sub1.your-storagebox.de:23/./borg --ssh-key /etc/agent-drill/ssh_key` +
        " --known-hosts /etc/agent-drill/known_hosts --passphrase-file /etc/agent-drill/passphrase --remote-borg borg-1.4" +
        " --tenant acme --archive latest --target /srv/agents/acme/.hermes --report /var/lib/agent-drill/acme.json",
    );
  });

  it("passes a named archive, another program and the agent check (quoted as one word)", () => {
    const cmd = drillCommand({ ...args, archive: "acme-2026-11-25T10:00:00", program: "/opt/ab/agent-drill", agentCheck: "/usr/bin/hermes doctor --quiet" });
    expect(cmd.startsWith("/opt/ab/agent-drill --repo ")).toBe(true);
    expect(cmd).toContain(" --archive acme-2026-11-25T10:00:00 ");
    expect(cmd).toContain(" --agent-check '/usr/bin/hermes doctor --quiet' --report ");
  });

  it("omits --remote-borg when not given", () => {
    const { remoteBorg: _r, ...rest } = args;
    expect(drillCommand(rest)).not.toContain("--remote-borg");
  });

  it("refuses values with shell syntax instead of escaping them", () => {
    const bad: Partial<DrillCommandArgs>[] = [
      { tenant: "acme;id" },
      { target: "/srv/$(id)" },
      { repoUrl: "ssh://u1@h:23/./b orc" },
      { agentCheck: "hermes doctor; rm -rf /" },
      { agentCheck: "hermes 'x'" },
      { archive: "../x" },
      { program: "agent-drill" },
      { remoteBorg: "borg;id" },
      { reportFile: "report.json" },
    ];
    for (const b of bad) expect(() => drillCommand({ ...args, ...b }), JSON.stringify(b)).toThrow(/refusing invalid/);
  });

  it("has one agent check for every drill: the agent's own checks, as the host install plan copies them", () => {
    // What the local drill passes, and what the cloud drill stack passes: plain words agent-verify runs.
    const cmd = drillCommand({ ...args, agentCheck: agentHealthCheck });
    expect(cmd).toContain(` --agent-check '${agentHealthCheck}' --report `);
    const plan = hostInstallPlan({ tenant: "acme", agentHome: "/home/hermes/.hermes", repoUrl: args.repoUrl, remoteBorg: "borg-1.4", schedule: "*-*-* 03:17:00" });
    const copied = plan.files.find((f) => f.remotePath === agentHealthCheck);
    expect(copied, `${agentHealthCheck} is not among the files copied to hosts and drill boxes`).toBeDefined();
    expect(copied?.mode).toBe("0755");
    expect(path.basename(copied?.localPath ?? "")).toBe("agent-check-hermes");
    expect(fs.readFileSync(copied?.localPath ?? "", "utf8")).toMatch(/^#!\/usr\/bin\/env bash\n/);
  });
});
