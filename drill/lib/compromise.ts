// The compromised-host scenario (--scenario compromised-host).
import type { DrillCheck } from "../../components/drill-report";
import type { Box } from "./box";
import type { Control } from "./control";
import type { TenantSecrets } from "./keys";
import type { Progress } from "./progress";
import type { TenantAccount } from "./storage";

export interface CompromiseArgs {
  storage: Box;
  host: Box;
  restoreBox: Box;
  control: Control;
  account: TenantAccount;
  secrets: TenantSecrets;
  knownHosts: string;
  snapshot: string;
  progress: Progress;
}

export async function compromisedHost(_args: CompromiseArgs): Promise<DrillCheck[]> {
  throw new Error("the compromised-host scenario is not available yet");
}
