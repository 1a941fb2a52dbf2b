// The dead-password command, run for real: `node -e` with the exact command text, against a
// stand-in for the Storage Box API on loopback that records what it was sent. The password it
// sets is random and strong, is sent only to the API, and appears in no output, not even when the
// API fails and echoes it back.
import { spawn, spawnSync } from "node:child_process";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { resetPasswordInterpreter, resetPasswordScript } from "../../components/password-reset";

const token = "hcloud-token-7f3a9c-never-printed";

interface Seen { method: string; url: string; auth: string | undefined; body: any }
type Reply = { status: number; body: unknown };

let server: http.Server | undefined;
afterEach(async () => {
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

/** A stand-in API: `reply` decides each answer from what was asked so far. */
async function api(reply: (req: Seen, seen: Seen[]) => Reply): Promise<{ endpoint: string; seen: Seen[] }> {
  const seen: Seen[] = [];
  server = http.createServer((req, res) => {
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => {
      const s: Seen = { method: req.method ?? "", url: req.url ?? "", auth: req.headers.authorization, body: data ? JSON.parse(data) : undefined };
      seen.push(s);
      const r = reply(s, seen);
      res.writeHead(r.status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(r.body));
    });
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
  return { endpoint: `http://127.0.0.1:${(server!.address() as AddressInfo).port}/v1`, seen };
}

/** The command exactly as the provider runs it: interpreter + create text, environment added. */
function runReset(env: Record<string, string>, script = resetPasswordScript): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = resetPasswordInterpreter as [string, ...string[]];
    const child = spawn(cmd, [...args, script], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", RESET_POLL_MS: "5", ...env } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const action = (id: number, status: string, error?: { code: string; message: string }) => ({ action: { id, status, command: "reset_password", progress: 0, error: error ?? null } });

/** A well-behaved API: starts the action, reports it running once, then done. */
function happy(req: Seen, seen: Seen[]): Reply {
  if (req.method === "POST") return { status: 201, body: action(7, "running") };
  const polls = seen.filter((s) => s.method === "GET").length;
  return { status: 200, body: action(7, polls < 2 ? "running" : "success") };
}

function sentPassword(seen: Seen[]): string {
  const post = seen.find((s) => s.method === "POST");
  expect(post).toBeDefined();
  return post!.body.password as string;
}

describe("the dead-password command", () => {
  test("resets the box's password through the API to a strong random value, waits for the action, prints neither secret", async () => {
    const { endpoint, seen } = await api(happy);
    const r = await runReset({ HCLOUD_TOKEN: token, STORAGE_BOX_ID: "4242", HETZNER_ENDPOINT: endpoint });
    expect(r.code, r.stderr).toBe(0);
    expect(seen.map((s) => `${s.method} ${s.url}`)).toEqual([
      "POST /v1/storage_boxes/4242/actions/reset_password",
      "GET /v1/storage_boxes/actions/7",
      "GET /v1/storage_boxes/actions/7",
    ]);
    for (const s of seen) expect(s.auth).toBe(`Bearer ${token}`);
    const password = sentPassword(seen);
    expect(Object.keys(seen[0]!.body)).toEqual(["password"]);
    expect(password).toMatch(/^[A-Za-z0-9._+=-]{32}$/);
    for (const cls of [/[A-Z]/g, /[a-z]/g, /[0-9]/g, /[._+=-]/g]) expect((password.match(cls) ?? []).length).toBeGreaterThanOrEqual(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe("storage-box password reset: storage box 4242: password reset to a random value that was never stored (action 7)\n");
    expect(r.stdout + r.stderr).not.toContain(password);
    expect(r.stdout + r.stderr).not.toContain(token);
  });

  test("the text as `pulumi up` makes it (ts-node, CommonJS) runs the same", async () => {
    const root = path.resolve(__dirname, "..", "..");
    const r = spawnSync(process.execPath, ["-e", `require("ts-node").register({ project: ${JSON.stringify(path.join(root, "tsconfig.json"))} });
      process.stdout.write(require(${JSON.stringify(path.join(root, "components", "password-reset.ts"))}).resetPasswordScript);`], { cwd: root, encoding: "utf8", timeout: 110_000 });
    expect(r.status, r.stderr).toBe(0);
    const { endpoint, seen } = await api(happy);
    const run = await runReset({ HCLOUD_TOKEN: token, STORAGE_BOX_ID: "4242", HETZNER_ENDPOINT: endpoint }, r.stdout);
    expect(run.code, run.stderr).toBe(0);
    expect(sentPassword(seen)).toMatch(/^[A-Za-z0-9._+=-]{32}$/);
  });

  test("a sub-account's password, through the sub-account action; a new value every time", async () => {
    const { endpoint, seen } = await api(happy);
    const env = { HCLOUD_TOKEN: token, STORAGE_BOX_ID: "4242", SUBACCOUNT_ID: "9", HETZNER_ENDPOINT: endpoint };
    expect((await runReset(env)).code).toBe(0);
    const first = sentPassword(seen);
    seen.length = 0;
    expect((await runReset(env)).code).toBe(0);
    expect(seen[0]?.url).toBe("/v1/storage_boxes/4242/subaccounts/9/actions/reset_subaccount_password");
    expect(sentPassword(seen)).not.toBe(first);
  });

  test("waits out a box that is locked by another action (bounded), then resets", async () => {
    const { endpoint, seen } = await api((req, all) => {
      if (req.method === "POST" && all.filter((s) => s.method === "POST").length <= 2) return { status: 423, body: { error: { code: "locked", message: "another action is running" } } };
      return req.method === "POST" ? { status: 201, body: action(8, "success") } : { status: 500, body: {} };
    });
    const r = await runReset({ HCLOUD_TOKEN: token, STORAGE_BOX_ID: "4242", HETZNER_ENDPOINT: endpoint });
    expect(r.code, r.stderr).toBe(0);
    expect(seen.filter((s) => s.method === "POST")).toHaveLength(3);
  });

  test("an API error that echoes the password and the token fails the command without showing either", async () => {
    let echoed = "";
    const { endpoint } = await api((req) => {
      echoed = `password ${String(req.body?.password)} refused for ${String(req.auth)}`;
      return { status: 422, body: { error: { code: "invalid_input", message: echoed } } };
    });
    const r = await runReset({ HCLOUD_TOKEN: token, STORAGE_BOX_ID: "4242", HETZNER_ENDPOINT: endpoint });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("the API refused the reset of storage box 4242: HTTP 422 invalid_input: password [redacted] refused for Bearer [redacted]");
    const password = echoed.split(" ")[1] as string;
    expect(password).toHaveLength(32);
    expect(r.stdout + r.stderr).not.toContain(password);
    expect(r.stdout + r.stderr).not.toContain(token);
  });

  test("an action that ends in error fails the command, naming the error", async () => {
    const { endpoint } = await api((req) =>
      req.method === "POST" ? { status: 201, body: action(9, "running") } : { status: 200, body: action(9, "error", { code: "action_failed", message: "could not reset" }) });
    const r = await runReset({ HCLOUD_TOKEN: token, STORAGE_BOX_ID: "4242", SUBACCOUNT_ID: "3", HETZNER_ENDPOINT: endpoint });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("action 9 on sub-account 3 of storage box 4242 ended error: action_failed could not reset");
  });

  test("refuses to start without a token, with a bad id, or with a clear-text endpoint off this machine: nothing is sent", async () => {
    const { endpoint, seen } = await api(happy);
    const noToken = await runReset({ STORAGE_BOX_ID: "4242", HETZNER_ENDPOINT: endpoint });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toContain("HCLOUD_TOKEN is not set");
    const badId = await runReset({ HCLOUD_TOKEN: token, STORAGE_BOX_ID: "4242; reboot", HETZNER_ENDPOINT: endpoint });
    expect(badId.code).toBe(2);
    expect(badId.stderr).toContain("STORAGE_BOX_ID must be digits");
    const clear = await runReset({ HCLOUD_TOKEN: token, STORAGE_BOX_ID: "4242", HETZNER_ENDPOINT: "http://api.example.com/v1" });
    expect(clear.code).toBe(2);
    expect(clear.stderr).toContain("HETZNER_ENDPOINT must be an https URL");
    expect(seen).toEqual([]);
  });
});
