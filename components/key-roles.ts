// The key roles of a tenant repository: the one place that says which key may do what.
// Every authorized_keys line on a storage box (real or the local drill's) is rendered here.
import { matchesPattern } from "../config/patterns";

export interface KeyRole {
  /** Where the private key lives. */
  readonly holder: string;
  /** borg serve --append-only: deletions are only recorded, never made permanent. */
  readonly appendOnly: boolean;
  /**
   * Kept in a retired (frozen) repository's authorized_keys. Only the trusted side's key stays, so
   * retention can age the repository out; no key that adds archives (push, drill) can reach it.
   */
  readonly keptWhenRetired: boolean;
}

export const keyRoles = {
  push: { holder: "the tenant's agent host", appendOnly: true, keptWhenRetired: false },
  drill: { holder: "the drill stack (restore boxes)", appendOnly: true, keptWhenRetired: false },
  maintenance: { holder: "the control vault and the maintenance CI job", appendOnly: false, keptWhenRetired: true },
} as const satisfies Record<string, KeyRole>;

export type KeyRoleName = keyof typeof keyRoles;
export const keyRoleNames = Object.keys(keyRoles) as KeyRoleName[];
/** The roles whose keys a retired repository keeps (in role order). */
export const retiredKeyRoleNames = keyRoleNames.filter((r) => keyRoles[r].keptWhenRetired);

/**
 * True only for the roles defined above. `role in keyRoles` would also accept inherited names
 * (`toString`, `constructor`, `__proto__`): callers may pass strings from outside the type system.
 */
export function isKeyRoleName(role: unknown): role is KeyRoleName {
  return typeof role === "string" && Object.hasOwn(keyRoles, role);
}

export interface KeyLineArgs {
  role: KeyRoleName;
  /** OpenSSH public key, "ssh-ed25519 AAAA..." (a trailing comment or newline is dropped). */
  publicKey: string;
  /** Server-side borg command: "borg-1.4" on the Storage Box, "borg" in local tests. */
  borgCommand: string;
  /** Absolute path of the repository as the storage box's sshd sees it. */
  repoPath: string;
  /** Comment written after the key, e.g. "push@acme". */
  comment: string;
}

/** The forced command for one role, exactly as it appears inside command="...". */
export function forcedCommand(role: KeyRoleName, borgCommand: string, repoPath: string): string {
  if (!isKeyRoleName(role)) throw new Error(`refusing forced command for role ${JSON.stringify(role)}`);
  const serve = [borgCommand, "serve"];
  if (keyRoles[role].appendOnly) serve.push("--append-only");
  serve.push("--restrict-to-repository", repoPath);
  return serve.join(" ");
}

/**
 * One authorized_keys line: the key forced to `borg serve` on one repository, with `restrict`
 * (no pty, no forwarding, no agent, no X11, no user rc). Every value is checked against a strict
 * pattern and refused (never escaped) when it does not match.
 */
export function renderKeyLine(args: KeyLineArgs): string {
  // Refused first: everything below reads keyRoles[role].
  if (!isKeyRoleName(args.role)) throw new Error(`refusing to render an authorized_keys line: invalid role ${JSON.stringify(args.role)}`);
  const [type, blob] = args.publicKey.trim().split(/\s+/);
  const key = `${type} ${blob}`;
  const checks: [string, boolean][] = [
    [`public key for ${args.role}`, matchesPattern("ssh_pubkey", key)],
    [`borg command ${JSON.stringify(args.borgCommand)}`, matchesPattern("borg_command", args.borgCommand)],
    [`repository path ${JSON.stringify(args.repoPath)}`, matchesPattern("abs_path", args.repoPath)],
    [`key comment ${JSON.stringify(args.comment)}`, /^[A-Za-z0-9._@-]{1,64}$/.test(args.comment)],
  ];
  const bad = checks.filter(([, ok]) => !ok).map(([what]) => what);
  if (bad.length > 0) throw new Error(`refusing to render an authorized_keys line: invalid ${bad.join(", ")}`);
  return `command="${forcedCommand(args.role, args.borgCommand, args.repoPath)}",restrict ${key} ${args.comment}`;
}

/**
 * The whole authorized_keys file of one tenant repository: one line per role of `roles` (every role
 * for the current repository, retiredKeyRoleNames for a retired one), in role order.
 */
export function renderAuthorizedKeys(
  tenant: string,
  publicKeys: Partial<Record<KeyRoleName, string>>,
  borgCommand: string,
  repoPath: string,
  roles: readonly KeyRoleName[] = keyRoleNames,
): string {
  if (!matchesPattern("tenant", tenant)) throw new Error(`refusing tenant name ${JSON.stringify(tenant)}`);
  if (roles.length === 0) throw new Error("refusing an authorized_keys file without any key");
  const missing = roles.filter((role) => !isKeyRoleName(role) || typeof publicKeys[role] !== "string");
  if (missing.length > 0) throw new Error(`refusing authorized_keys of ${tenant}: no public key for ${missing.map((r) => JSON.stringify(r)).join(", ")}`);
  return (
    keyRoleNames
      .filter((role) => roles.includes(role))
      .map((role) => renderKeyLine({ role, publicKey: publicKeys[role] as string, borgCommand, repoPath, comment: `${role}@${tenant}` }))
      .join("\n") + "\n"
  );
}
