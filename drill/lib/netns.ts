// Network namespaces for the drill: one per box, named after the run so that runs never collide.
// Each box namespace is linked to the storage namespace by its own veth pair and /24; the storage
// box also answers on one fixed address (on its loopback) that every box routes to, like the one
// storage host name in production. Nothing routes between boxes, and nothing leaves the machine.
import { run } from "./exec";
import type { Teardown } from "./teardown";

/** The storage box's address, the same from every box. */
export const storageAddress = "10.77.255.1";

export interface Link {
  /** Index of the link: its /24 is 10.77.<index>.0. */
  index: number;
  /** The box's address on this link. */
  boxAddress: string;
  /** The storage namespace's address on this link. */
  storageSideAddress: string;
}

/** Prefix of every namespace and veth of a run: how leftovers are recognised. */
export function runPrefix(runId: string): { netns: string; veth: string } {
  if (!/^[0-9a-f]{6}$/.test(runId)) throw new Error(`bad run id ${runId}`);
  return { netns: `abd-${runId}-`, veth: `ab${runId}` };
}

export function netnsName(runId: string, role: string): string {
  if (!/^[a-z][a-z0-9]{0,5}$/.test(role)) throw new Error(`bad box role ${role}`);
  return runPrefix(runId).netns + role;
}

export async function createNetns(name: string, teardown: Teardown): Promise<string> {
  await run(["ip", "netns", "add", name]);
  teardown.defer(`remove network namespace ${name}`, async () => {
    await run(["ip", "netns", "del", name]);
  });
  await run(["ip", "-n", name, "link", "set", "lo", "up"]);
  return name;
}

/** The storage namespace, with the storage address on its loopback. */
export async function createStorageNetns(runId: string, teardown: Teardown): Promise<string> {
  const ns = await createNetns(netnsName(runId, "st"), teardown);
  await run(["ip", "-n", ns, "addr", "add", `${storageAddress}/32`, "dev", "lo"]);
  return ns;
}

/**
 * Link a box namespace to the storage namespace. The veth pair lives and dies with the
 * namespaces; its removal is still registered so that nothing named by the run stays behind.
 */
export async function linkToStorage(runId: string, storageNs: string, boxNs: string, index: number, teardown: Teardown): Promise<Link> {
  if (!Number.isInteger(index) || index < 1 || index > 250) throw new Error(`link index ${index} out of range`);
  const { veth } = runPrefix(runId);
  const storageEnd = `${veth}l${index}s`;
  const boxEnd = `${veth}l${index}b`;
  const link: Link = { index, boxAddress: `10.77.${index}.2`, storageSideAddress: `10.77.${index}.1` };
  await run(["ip", "link", "add", storageEnd, "type", "veth", "peer", "name", boxEnd]);
  teardown.defer(`remove veth ${storageEnd}`, async () => {
    // Usually gone with its namespace already; look everywhere it could be.
    for (const where of [["-n", storageNs], ["-n", boxNs], []]) {
      await run(["ip", ...where, "link", "del", storageEnd], { allowFailure: true });
      await run(["ip", ...where, "link", "del", boxEnd], { allowFailure: true });
    }
  });
  await run(["ip", "link", "set", storageEnd, "netns", storageNs]);
  await run(["ip", "link", "set", boxEnd, "netns", boxNs]);
  await run(["ip", "-n", storageNs, "addr", "add", `${link.storageSideAddress}/24`, "dev", storageEnd]);
  await run(["ip", "-n", boxNs, "addr", "add", `${link.boxAddress}/24`, "dev", boxEnd]);
  await run(["ip", "-n", storageNs, "link", "set", storageEnd, "up"]);
  await run(["ip", "-n", boxNs, "link", "set", boxEnd, "up"]);
  await run(["ip", "-n", boxNs, "route", "add", `${storageAddress}/32`, "via", link.storageSideAddress]);
  return link;
}
