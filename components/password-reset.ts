// Dead passwords. The Storage Box API requires a password for the box and for every sub-account,
// and each one is a full-access login (SSH and SFTP, both ports) that no forced command restricts
// and that cannot be switched off. The value Pulumi generated sits in the state, so right after
// creation it is reset through the API to a random value that exists only inside one short
// process: never stored, printed or logged. What the state keeps no longer logs in.
//
// The provider does not bring a live one back (terraform-provider-hcloud v1.68.0,
// internal/storagebox/resource.go and internal/storageboxsubaccount/resource.go): Read never sets
// `password` (the API does not return it), and Update calls reset_password only when the planned
// value differs from the state's; the resources also ignore changes to `password`.
import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

/**
 * The reset, run by `node -e` on the machine running Pulumi. Self-contained on purpose (no
 * imports, no closure): its source text is the command. Environment:
 *   HCLOUD_TOKEN        the Hetzner Console API token (the provider's own variable)
 *   STORAGE_BOX_ID      the box, digits
 *   SUBACCOUNT_ID       optional: reset this sub-account's password instead of the box's
 *   HETZNER_ENDPOINT    optional: the Storage Box API base (the provider's variable), https, or
 *                       http on loopback only (tests)
 *   RESET_POLL_MS       optional: wait between polls and retries, 1..10000 ms (default 2000)
 * Exit 0 when the API reports the reset action succeeded; 1 when it did not; 2 on bad input.
 * Nothing it prints contains the password or the token, also when it fails.
 */
export async function resetPasswordProgram(): Promise<void> {
  const env = process.env;
  const say = (line: string) => process.stderr.write(`storage-box password reset: ${line}\n`);
  const token = env.HCLOUD_TOKEN ?? "";
  const boxId = env.STORAGE_BOX_ID ?? "";
  const subId = env.SUBACCOUNT_ID ?? "";
  const endpoint = (env.HETZNER_ENDPOINT ?? "https://api.hetzner.com/v1").replace(/\/+$/, "");
  const pollMs = Number(env.RESET_POLL_MS ?? "2000");
  const problems: string[] = [];
  if (token === "") problems.push("HCLOUD_TOKEN is not set (export the Hetzner Console API token before pulumi up)");
  if (!/^[0-9]{1,19}$/.test(boxId)) problems.push("STORAGE_BOX_ID must be digits");
  if (subId !== "" && !/^[0-9]{1,19}$/.test(subId)) problems.push("SUBACCOUNT_ID must be digits");
  // The token travels in a header: never in clear text except to this machine itself.
  if (!/^(https:\/\/[A-Za-z0-9.-]+(:[0-9]+)?|http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:[0-9]+)?)(\/[A-Za-z0-9._~/-]*)?$/.test(endpoint)) {
    problems.push("HETZNER_ENDPOINT must be an https URL (or http on loopback)");
  }
  if (!Number.isInteger(pollMs) || pollMs < 1 || pollMs > 10000) problems.push("RESET_POLL_MS must be 1..10000");
  if (problems.length > 0) {
    for (const p of problems) say(p);
    process.exitCode = 2;
    return;
  }

  // 32 characters, at least two of each class; the classes are inside the box's password policy.
  const classes = ["ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "0123456789", "-_.+="];
  const all = classes.join("");
  const randomBelow = (n: number): number => {
    // Rejection sampling: no modulo bias.
    const limit = 256 - (256 % n);
    const byte = new Uint8Array(1);
    for (;;) {
      globalThis.crypto.getRandomValues(byte);
      if ((byte[0] as number) < limit) return (byte[0] as number) % n;
    }
  };
  const chars: string[] = [];
  for (const c of classes) for (let i = 0; i < 2; i++) chars.push(c[randomBelow(c.length)] as string);
  while (chars.length < 32) chars.push(all[randomBelow(all.length)] as string);
  for (let i = chars.length - 1; i > 0; i--) {
    const j = randomBelow(i + 1);
    [chars[i], chars[j]] = [chars[j] as string, chars[i] as string];
  }
  const password = chars.join("");

  // Whatever the API says back is shown only with both secrets cut out of it.
  const clean = (text: string): string =>
    [password, token].reduce<string>((t, secret) => (secret ? t.split(secret).join("[redacted]") : t), text).slice(0, 300);
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  const what = subId === "" ? `storage box ${boxId}` : `sub-account ${subId} of storage box ${boxId}`;
  const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> => {
    const response = await fetch(`${endpoint}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = { error: { code: "not_json", message: text } };
    }
    return { status: response.status, json };
  };
  const apiError = (r: { status: number; json: any }): string =>
    clean(`HTTP ${r.status} ${String(r.json?.error?.code ?? "")}: ${String(r.json?.error?.message ?? "")}`);

  try {
    const path = subId === ""
      ? `/storage_boxes/${boxId}/actions/reset_password`
      : `/storage_boxes/${boxId}/subaccounts/${subId}/actions/reset_subaccount_password`;
    // Another action on the same box (a sub-account being created) holds its lock: retry a while.
    let started: { status: number; json: any } | undefined;
    for (let attempt = 1; attempt <= 60; attempt++) {
      const r = await call("POST", path, { password });
      const retry = r.status === 423 || r.status === 429 || r.status >= 500 || r.json?.error?.code === "locked" || r.json?.error?.code === "conflict";
      if (!retry || attempt === 60) {
        started = r;
        break;
      }
      await sleep(pollMs);
    }
    if (!started || started.status < 200 || started.status > 299 || typeof started.json?.action?.id !== "number") {
      throw new Error(`the API refused the reset of ${what}: ${started ? apiError(started) : "no answer"}`);
    }
    let action = started.json.action;
    for (let poll = 1; action.status === "running" && poll <= 150; poll++) {
      await sleep(pollMs);
      const r = await call("GET", `/storage_boxes/actions/${Number(action.id)}`);
      if (r.status < 200 || r.status > 299 || typeof r.json?.action?.status !== "string") throw new Error(`cannot follow action ${action.id}: ${apiError(r)}`);
      action = r.json.action;
    }
    if (action.status !== "success") {
      throw new Error(`action ${action.id} on ${what} ended ${clean(String(action.status))}: ${clean(`${action.error?.code ?? ""} ${action.error?.message ?? ""}`)}`);
    }
    say(`${what}: password reset to a random value that was never stored (action ${action.id})`);
  } catch (err) {
    say(clean(err instanceof Error ? err.message : String(err)));
    process.exitCode = 1;
  }
}

/** The command text: the program above, called. */
export const resetPasswordScript = `(${resetPasswordProgram.toString()})();\n`;
/** How it runs: the Node that runs Pulumi's nodejs programs is on PATH wherever `pulumi up` runs. */
export const resetPasswordInterpreter = ["node", "-e"];

export interface DeadPasswordArgs {
  /** The Storage Box's id. */
  boxId: pulumi.Input<string | number>;
  /** The sub-account's id (the provider's resource id); unset: the box's own password. */
  subaccountId?: pulumi.Input<string>;
  /** The resource that holds the password: the reset runs after it exists, again if it is replaced. */
  resource: pulumi.Resource & { id: pulumi.Output<string> };
}

/** The local command that makes one password dead, right after its resource is created. */
export function deadPassword(name: string, args: DeadPasswordArgs, opts: pulumi.CustomResourceOptions): command.local.Command {
  const digits = (what: string) => (v: string | number): string => {
    // The provider's id of a sub-account may come as "box/sub": the last part is its own.
    const id = String(v).split("/").pop() ?? "";
    if (!/^[0-9]{1,19}$/.test(id)) throw new Error(`password reset: refusing ${what} id ${JSON.stringify(String(v))}`);
    return id;
  };
  const environment: Record<string, pulumi.Input<string>> = { STORAGE_BOX_ID: pulumi.output(args.boxId).apply(digits("storage box")) };
  if (args.subaccountId !== undefined) environment.SUBACCOUNT_ID = pulumi.output(args.subaccountId).apply(digits("sub-account"));
  return new command.local.Command(
    name,
    {
      interpreter: resetPasswordInterpreter,
      create: resetPasswordScript,
      environment,
      // It prints one line of progress and never a secret; nothing of it is worth feeding back.
      logging: "stderr",
      addPreviousOutputInEnv: false,
      triggers: [args.resource.id],
    },
    { ...opts, dependsOn: [args.resource] },
  );
}
