// Before anything is created: root, and every tool the drill runs on this machine. A clear message
// names what is missing and how to install it; nothing has been started yet, so nothing is left.
import * as fs from "fs";
import * as path from "path";

/** The machine-side tools of the drill and the Debian package that provides each. */
export const requiredTools: readonly { tool: string; pkg: string }[] = [
  { tool: "systemd-nspawn", pkg: "systemd-container" },
  { tool: "debootstrap", pkg: "debootstrap" },
  { tool: "ip", pkg: "iproute2" },
  { tool: "nsenter", pkg: "util-linux" },
  { tool: "ssh", pkg: "openssh-client" },
  { tool: "ssh-keygen", pkg: "openssh-client" },
  { tool: "tar", pkg: "tar" },
];

export class PreflightError extends Error {}

function onPath(tool: string, pathEnv: string): boolean {
  return pathEnv.split(":").some((dir) => {
    if (!dir) return false;
    try {
      fs.accessSync(path.join(dir, tool), fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** What the real agent needs on this machine: a Python with venv, to download its wheels once. */
export const realAgentTools: readonly { tool: string; pkg: string }[] = [{ tool: "python3", pkg: "python3-venv" }];

/** Problems that stop the drill before it starts, as lines of advice; empty when all is well. */
export function preflightProblems(env: NodeJS.ProcessEnv = process.env, uid: number = process.getuid?.() ?? -1, agent: "real" | "standin" = "real"): string[] {
  const problems: string[] = [];
  if (uid !== 0) {
    problems.push("must run as root (it creates network namespaces and systemd-nspawn boxes): sudo npm run drill:local");
  }
  const pathEnv = env.PATH ?? "";
  const missing = [...requiredTools, ...(agent === "real" ? realAgentTools : [])].filter(({ tool }) => !onPath(tool, pathEnv));
  for (const { tool, pkg } of missing) problems.push(`missing ${tool}: apt-get install -y ${pkg}`);
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map((m) => m.pkg))].join(" ");
    problems.push(`(or install everything the drill needs with: bash .ci/setup; just the missing ones: apt-get install -y ${pkgs})`);
    if (missing.some((m) => realAgentTools.includes(m))) problems.push("(or run the stand-in agent instead of the real one: --agent standin)");
  }
  return problems;
}
