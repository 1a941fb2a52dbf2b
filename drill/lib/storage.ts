// The drill's storage box: a box whose sshd holds one account per tenant, each account's
// authorized_keys rendered by components/key-roles.ts (push and drill append-only, maintenance
// full access), and a daily storage-layer snapshot the tenants cannot touch.
import * as fs from "fs";
import * as path from "path";
import { keyRoleNames, renderAuthorizedKeys, type KeyRoleName } from "../../components/key-roles";
import type { DrillCheck } from "../../components/drill-report";
import type { Box } from "./box";
import type { TenantSecrets } from "./keys";
import { storageAddress } from "./netns";

/** The drill's boxes carry Debian's borg; the Storage Box would say "borg-1.4". */
export const storageBorgCommand = "borg";
export const snapshotScript = "/usr/local/sbin/storage-snapshot";

export interface TenantAccount {
  tenant: string;
  repoPath: string;
  repoUrl: string;
}

export function tenantAccount(tenant: string): TenantAccount {
  const repoPath = `/home/${tenant}/repo`;
  return { tenant, repoPath, repoUrl: `ssh://${tenant}@${storageAddress}:22${repoPath}` };
}

/** The known_hosts line every box uses for the storage box. */
export function storageKnownHosts(storage: Box): string {
  return `${storageAddress} ${storage.hostPublicKey}\n`;
}

/** Accounts, keys and the snapshot timer on a booted storage box. */
export async function setUpStorage(storage: Box, tenants: readonly TenantSecrets[]): Promise<TenantAccount[]> {
  const accounts: TenantAccount[] = [];
  for (const t of tenants) {
    const account = tenantAccount(t.tenant);
    const home = `/home/${t.tenant}`;
    await storage.exec(["useradd", "--create-home", "--home-dir", home, "--shell", "/bin/sh", t.tenant]);
    // With UsePAM, a locked ("!") password still allows keys; "*" says "no password" plainly.
    await storage.exec(["usermod", "-p", "*", t.tenant]);
    await storage.exec(["chmod", "0700", home]);
    await storage.exec(["install", "-d", "-m", "0700", "-o", t.tenant, "-g", t.tenant, `${home}/.ssh`]);
    const publicKeys = Object.fromEntries(keyRoleNames.map((r) => [r, t.keys[r].publicKey])) as Record<KeyRoleName, string>;
    const authorizedKeys = renderAuthorizedKeys(t.tenant, publicKeys, storageBorgCommand, account.repoPath);
    await storage.writeFile(`${home}/.ssh/authorized_keys`, authorizedKeys, "0600", `${t.tenant}:${t.tenant}`);
    accounts.push(account);
  }
  await storage.writeFile(snapshotScript, fs.readFileSync(path.join(__dirname, "storage-snapshot")), "0755");
  await storage.writeFile(
    "/etc/systemd/system/storage-snapshot.service",
    "[Unit]\nDescription=Storage-layer snapshot of every tenant repository (drill stand-in)\n\n" +
      `[Service]\nType=oneshot\nExecStart=${snapshotScript}\n`,
    "0644",
  );
  await storage.writeFile(
    "/etc/systemd/system/storage-snapshot.timer",
    "[Unit]\nDescription=Daily storage-layer snapshot\n\n[Timer]\nOnCalendar=daily\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n",
    "0644",
  );
  await storage.exec(["systemctl", "daemon-reload"]);
  await storage.exec(["systemctl", "enable", "--now", "storage-snapshot.timer"]);
  return accounts;
}

/** Take a snapshot now (as the daily timer would) and return its directory. */
export async function takeSnapshot(storage: Box): Promise<string> {
  await storage.exec(["systemctl", "start", "storage-snapshot.service"], { timeoutMs: 300_000 });
  const r = await storage.exec(["sh", "-c", "ls -1d /srv/snapshots/20* | tail -n 1"]);
  const dir = r.stdout.trim();
  if (!/^\/srv\/snapshots\/[0-9T-]+$/.test(dir)) throw new Error(`no snapshot directory after storage-snapshot: ${JSON.stringify(dir)}`);
  return dir;
}

/** The snapshot holds the tenant's repository, root-owned, and the tenant cannot delete or alter it. */
export async function snapshotChecks(storage: Box, snapshot: string, account: TenantAccount): Promise<DrillCheck[]> {
  const dir = `${snapshot}/${account.tenant}`;
  const digest = async () =>
    (await storage.exec(["sh", "-c", `cd ${dir} && find . -printf '%p %m %U\\n' | sort && find . -type f -exec sha256sum {} + | sort`])).stdout;
  const owner = (await storage.exec(["stat", "-c", "%U", `${dir}/config`], { allowFailure: true })).stdout.trim();
  const before = await digest();
  const attempts = [
    ["rm", "-rf", dir],
    ["rm", "-f", `${dir}/config`],
    ["sh", "-c", `echo tampered >> ${dir}/config`],
    ["touch", `${dir}/new-file`],
  ];
  const allowed: string[] = [];
  for (const argv of attempts) {
    const r = await storage.exec(["runuser", "-u", account.tenant, "--", ...argv], { allowFailure: true });
    if (r.code === 0) allowed.push(argv.join(" "));
  }
  const after = await digest();
  return [
    { name: "snapshot:taken", ok: owner === "root", detail: `${dir} holds the repository (config owned by ${owner || "nobody"})` },
    {
      name: "snapshot:tenant-cannot-alter",
      ok: allowed.length === 0 && before === after,
      detail: allowed.length === 0 && before === after ? `as ${account.tenant}: rm, append and create all refused; contents unchanged` : `allowed: ${allowed.join("; ") || "-"}; changed: ${before !== after}`,
    },
  ];
}
