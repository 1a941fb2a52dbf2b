// The real agent on a restore box, one definition for every drill (the local drill's boxes and the
// cloud drill box): the pinned package and how it is installed, its non-root user, and where a
// tenant's home is restored so that the agent check runs the agent as that user, never as root.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { matchesPattern } from "../config/patterns";

export const agentPackage = "hermes-agent";
/** Every package of the agent, pinned with its hashes: the only place the agent's version is set. */
export const requirementsFile = path.join(__dirname, "..", "test", "fixtures", "hermes-agent-requirements.txt");
/** pip install arguments: exactly the pinned wheels, each checked against its hash, nothing built. */
export const pipInstallArgs = ["install", "--no-deps", "--require-hashes", "--only-binary=:all:", "--no-input", "--disable-pip-version-check"];

/** The agent's user on a restore box: it owns each restored home, and the agent check runs as it. */
export const drillAgentUser = "hermes";
/** The agent's venv on a restore box; `hermes` is linked onto PATH from it. */
export const drillAgentVenv = "/opt/hermes-agent";
/** Where `hermes` is on PATH on a restore box (agent-check-hermes and agent-drill find it there). */
export const drillAgentBin = "/usr/local/bin/hermes";
/** Parent of every tenant's restored home on a restore box. */
export const drillRestoreRoot = "/srv/agents";

/** The pinned agent version, read from the requirements file. */
export function agentVersion(file = requirementsFile): string {
  const m = /^hermes-agent==([0-9][0-9A-Za-z.+-]*)\s/m.exec(fs.readFileSync(file, "utf8"));
  if (!m?.[1]) throw new Error(`${file} pins no ${agentPackage}==VERSION`);
  return m[1];
}

/** Short hash of the requirements file: caches and installs made from other pins are redone. */
export function requirementsHash(file = requirementsFile): string {
  return crypto.createHash("sha256").update(fs.readFileSync(file)).digest("hex").slice(0, 12);
}

/** The tenant's folder on a restore box (owned by the agent's user) and the home restored into it. */
export function drillRestorePaths(tenant: string): { dir: string; target: string } {
  if (!matchesPattern("tenant", tenant)) throw new Error(`drill: refusing tenant ${JSON.stringify(tenant)}`);
  const dir = `${drillRestoreRoot}/${tenant}`;
  return { dir, target: `${dir}/.hermes` };
}
