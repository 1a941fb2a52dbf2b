// Keys made for one drill run, in the run dir (removed with it): the control key that reaches the
// boxes as root, and per tenant one key per role (components/key-roles.ts) plus a passphrase.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { keyRoleNames, type KeyRoleName } from "../../components/key-roles";
import { run } from "./exec";

export interface KeyPair {
  privatePath: string;
  privateKey: string;
  /** "ssh-ed25519 AAAA..." without a comment. */
  publicKey: string;
}

export async function makeKeyPair(file: string, comment: string): Promise<KeyPair> {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  await run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", file]);
  const publicKey = fs.readFileSync(`${file}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
  return { privatePath: file, privateKey: fs.readFileSync(file, "utf8"), publicKey };
}

export interface TenantSecrets {
  tenant: string;
  keys: Record<KeyRoleName, KeyPair>;
  passphrase: string;
}

export async function makeTenantSecrets(runDir: string, tenant: string): Promise<TenantSecrets> {
  const keys = {} as Record<KeyRoleName, KeyPair>;
  for (const role of keyRoleNames) keys[role] = await makeKeyPair(path.join(runDir, "keys", tenant, role), `${role}@${tenant}`);
  return { tenant, keys, passphrase: crypto.randomBytes(24).toString("base64url") };
}
