// What one tenant's push key can reach on the shared storage box: its own repository, and nothing
// else. Run on the tenant's agent host with its installed key, so it tests the real install.
import type { DrillCheck } from "../../components/drill-report";
import { hostBorg } from "./agent-host";
import type { Box } from "./box";
import { storageAddress } from "./netns";
import type { TenantAccount } from "./storage";

export async function isolationChecks(host: Box, own: TenantAccount, others: readonly TenantAccount[]): Promise<DrillCheck[]> {
  const checks: DrillCheck[] = [];
  const own1 = await hostBorg(host, ["list", "--short", own.repoUrl], { allowFailure: true });
  checks.push({ name: "isolation:own-repo", ok: own1.code === 0, detail: `push key lists its own repository: exit ${own1.code}` });

  // Expected refusals: each must fail, and the positive control above shows the key itself works.
  const refusals: { name: string; args: string[]; what: string }[] = [
    {
      name: "isolation:other-path",
      args: ["init", "--encryption=none", `ssh://${own.tenant}@${storageAddress}:22/home/${own.tenant}/elsewhere`],
      what: "create a repository outside its own",
    },
  ];
  for (const other of others) {
    refusals.push(
      { name: `isolation:${other.tenant}:read-via-own-account`, args: ["list", `ssh://${own.tenant}@${storageAddress}:22${other.repoPath}`], what: `read ${other.tenant}'s repository through its own account` },
      { name: `isolation:${other.tenant}:read-as-other`, args: ["list", other.repoUrl], what: `log in as ${other.tenant} to read its repository` },
      { name: `isolation:${other.tenant}:write-as-other`, args: ["create", `${other.repoUrl}::intruder`, "/etc/hostname"], what: `write an archive into ${other.tenant}'s repository` },
    );
  }
  for (const r of refusals) {
    const res = await hostBorg(host, r.args, { allowFailure: true });
    const why = res.stderr.trim().split("\n").filter(Boolean).pop() ?? "";
    checks.push({ name: r.name, ok: res.code !== 0, detail: `${own.tenant}'s push key tries to ${r.what}: ${res.code !== 0 ? "refused" : "ALLOWED"} (${why.slice(0, 160)})` });
  }
  return checks;
}
