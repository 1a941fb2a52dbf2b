// Pulumi mocks for the prod stack's unit tests and benchmark: realistic provider outputs (real
// ed25519 public keys, Storage Box users and servers), every resource's resolved inputs from the
// mock and its options from a stack transformation, which runs in-process even under mocks.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { hostFiles } from "../../components/host-install-plan";

export interface Recorded {
  type: string;
  name: string;
  /** Inputs as the engine would receive them (secrets wrapped, see isSecretValue). */
  inputs: Record<string, any>;
  /** Resource options as given (protect, retainOnDelete, ignoreChanges, parent, ...). */
  opts: pulumi.CustomResourceOptions & pulumi.ComponentResourceOptions;
  /** Type of the parent resource, or undefined for a root resource. */
  parentType: string | undefined;
  custom: boolean;
  /** The mock provider's outputs for it. */
  state: Record<string, any>;
}

/** Pulumi's marker of a secret value inside serialized inputs. */
const secretSig = "4dabf18193072939515e22adb298388d";

export function isSecretValue(v: unknown): boolean {
  return typeof v === "object" && v !== null && (v as Record<string, unknown>)[secretSig] === "1b47061264138c4ac30d75fd1eb44270";
}

/** The plain value of a possibly secret-wrapped input. */
export function plain<T = any>(v: unknown): T {
  return (isSecretValue(v) ? (v as { value: unknown }).value : v) as T;
}

function sshString(b: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

/** 32 bytes derived from a name: mock values that depend on the resource alone, not on the run. */
function seedOf(name: string, purpose: string): Buffer {
  return crypto.createHash("sha256").update(`${purpose}\0${name}`).digest();
}

/**
 * A real ed25519 key pair in the formats @pulumi/tls outputs; from `seed` when given (the same seed,
 * the same key: a resource keeps its key from one mocked run to the next, as in a real state).
 */
export function ed25519Key(seed?: string): { publicKeyOpenssh: string; privateKeyOpenssh: string; publicKeyFingerprintSha256: string } {
  const publicKey =
    seed === undefined
      ? crypto.generateKeyPairSync("ed25519").publicKey
      : crypto.createPublicKey(crypto.createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seedOf(seed, "key")]), format: "der", type: "pkcs8" }));
  const raw = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  const blob = Buffer.concat([sshString(Buffer.from("ssh-ed25519")), sshString(raw)]);
  const fingerprint = crypto.createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
  return {
    publicKeyOpenssh: `ssh-ed25519 ${blob.toString("base64")}\n`,
    privateKeyOpenssh: `-----BEGIN OPENSSH PRIVATE KEY-----\n${(seed === undefined ? crypto.randomBytes(96) : Buffer.concat([seedOf(seed, "private"), seedOf(seed, "private2"), seedOf(seed, "private3")])).toString("base64")}\n-----END OPENSSH PRIVATE KEY-----\n`,
    publicKeyFingerprintSha256: `SHA256:${fingerprint}`,
  };
}

/**
 * What the mock API gives a Storage Box: an id, main user and server derived from the box's name,
 * so that they do not depend on the order resources are registered in (as in a real stack, where
 * they come from the state).
 */
export function mockBoxFor(name: string): { id: string; username: string; server: string } {
  const id = name === "agent-backups" ? "4242" : String(10000 + (parseInt(crypto.createHash("sha256").update(name).digest("hex").slice(0, 8), 16) % 90000));
  return { id, username: `u${id}`, server: `u${id}.your-storagebox.de` };
}
/** The box the single-box tests use (Hetzner name "agent-backups"). */
export const mockBox = mockBoxFor("agent-backups");

/** A sub-account's user, derived from its box and its resource name (stable, like the state's). */
export function mockSubaccountUser(boxId: string | number, resourceName: string): string {
  return `u${boxId}-sub${parseInt(crypto.createHash("sha256").update(resourceName).digest("hex").slice(0, 8), 16)}`;
}
/** What the mock says of every Storage Box type (the real numbers are the API's, per type). */
export const mockBoxTypeLimits = { automaticSnapshotLimit: 20, subaccountsLimit: 100, snapshotLimit: 20 };
export const mockKeyExport = "BORG_KEY 0123456789abcdef\nhqlhbGdvcml0aG2mc2hhMjU2\n";

function mockState(type: string, name: string, inputs: Record<string, any>): { id: string; state: Record<string, any> } {
  switch (type) {
    case "hcloud:index/storageBox:StorageBox": {
      const box = mockBoxFor(String(inputs.name));
      return { id: box.id, state: { ...inputs, username: box.username, server: box.server } };
    }
    case "hcloud:index/storageBoxSubaccount:StorageBoxSubaccount": {
      const user = mockSubaccountUser(inputs.storageBoxId, name);
      return { id: `${inputs.storageBoxId}/${user.split("-sub")[1]}`, state: { ...inputs, username: user, server: `${user}.your-storagebox.de` } };
    }
    case "tls:index/privateKey:PrivateKey":
      return { id: `${name}-id`, state: { ...inputs, ...ed25519Key(name) } };
    case "random:index/randomPassword:RandomPassword":
      return { id: `${name}-id`, state: { ...inputs, result: seedOf(name, "password").subarray(0, 24).toString("hex") } };
    case "command:remote:Command":
      return { id: `${name}-id`, state: { ...inputs, stdout: name.endsWith("-key-export") ? mockKeyExport : "", stderr: "" } };
    case "aws:secretsmanager/secret:Secret":
      return { id: `${name}-id`, state: { ...inputs, arn: `arn:aws:secretsmanager:eu-central-1:123456789012:secret:${inputs.name}-AbCdEf` } };
    default:
      return { id: `${name}-id`, state: { ...inputs } };
  }
}

export interface MockRun<T> {
  resources: Recorded[];
  /** Every provider function the program called (token and arguments). */
  invokes: { token: string; inputs: Record<string, any> }[];
  result: T;
  byType(type: string): Recorded[];
  one(type: string, name: string): Recorded;
}

/**
 * Runs `program` as a Pulumi stack under mocks with the given config (full keys, JSON values as
 * strings) and returns every resource it registered plus the program's result.
 */
export async function runMocked<T>(
  program: () => T | Promise<T>,
  opts: {
    stack?: string;
    config?: Record<string, string>;
    secretKeys?: string[];
    boxTypeLimits?: Record<string, number>;
    /** More provider state for some resources (merged over the defaults). */
    state?: (type: string, name: string, inputs: Record<string, any>) => Record<string, any> | undefined;
    /** Answers of provider functions beyond the Storage Box type (undefined: echo the inputs). */
    call?: (token: string, inputs: Record<string, any>) => Record<string, any> | undefined;
  } = {},
): Promise<MockRun<T>> {
  const invokes: MockRun<T>["invokes"] = [];
  const inputs = new Map<string, { inputs: Record<string, any>; custom: boolean; state: Record<string, any> }>();
  await pulumi.runtime.setMocks(
    {
      newResource: (args) => {
        const result = mockState(args.type, args.name, args.inputs);
        result.state = { ...result.state, ...opts.state?.(args.type, args.name, args.inputs) };
        inputs.set(`${args.type}::${args.name}`, { inputs: args.inputs, custom: args.custom ?? true, state: result.state });
        return result;
      },
      call: (args) => {
        invokes.push({ token: args.token, inputs: args.inputs });
        if (args.token === "hcloud:index/getStorageBoxType:getStorageBoxType") return { ...args.inputs, ...(opts.boxTypeLimits ?? mockBoxTypeLimits) };
        return opts.call?.(args.token, args.inputs) ?? args.inputs;
      },
    },
    "agent-backups",
    opts.stack ?? "prod",
    false,
  );
  pulumi.runtime.setAllConfig(opts.config ?? {}, opts.secretKeys ?? []);
  const optsByKey = new Map<string, { opts: Recorded["opts"]; parentType: string | undefined }>();
  let result: T | undefined;
  await pulumi.runtime.runInPulumiStack(async () => {
    pulumi.runtime.registerStackTransformation((a) => {
      const parent = a.opts.parent as (pulumi.Resource & { __pulumiType?: string }) | undefined;
      const parentType = parent && !(parent instanceof pulumi.runtime.Stack) ? parent.__pulumiType : undefined;
      optsByKey.set(`${a.type}::${a.name}`, { opts: a.opts as Recorded["opts"], parentType });
      return undefined;
    });
    result = await program();
    return {};
  });
  // Let every registration and apply settle (waitForRPCs is internal, but exported at runtime).
  await (pulumi.runtime as unknown as { waitForRPCs(): Promise<void> }).waitForRPCs();
  const resources: Recorded[] = [];
  for (const [key, o] of optsByKey) {
    const [type = "", name = ""] = key.split("::");
    const i = inputs.get(key);
    resources.push({ type, name, inputs: i?.inputs ?? {}, opts: o.opts, parentType: o.parentType, custom: i?.custom ?? false, state: i?.state ?? {} });
  }
  return {
    resources,
    invokes,
    result: result as T,
    byType: (type) => resources.filter((r) => r.type === type),
    one: (type, name) => {
      const r = resources.find((x) => x.type === type && x.name === name);
      if (!r) throw new Error(`no ${type} named ${name}; have: ${resources.map((x) => `${x.type}::${x.name}`).join(", ")}`);
      return r;
    },
  };
}

/** The value of an Output (and whether it is secret). */
export async function valueOf<T>(o: pulumi.Output<T>): Promise<{ value: T; secret: boolean }> {
  const value = await new Promise<T>((resolve) => o.apply((v) => { resolve(v); return v; }));
  return { value, secret: await pulumi.isSecret(o) };
}

/**
 * A throwaway scripts/ tree with every file the install plan copies from the real one (same names,
 * same x bits, known contents), plus the operator-only check-storage-box; removed by the caller.
 */
export function fixtureScriptsDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-scripts-"));
  for (const f of [...hostFiles(), { rel: "check-storage-box", executable: true }]) {
    fs.mkdirSync(path.dirname(path.join(dir, f.rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, f.rel), `# fixture ${f.rel}\n`, { mode: f.executable ? 0o755 : 0o644 });
  }
  return dir;
}

/** An agent host's own SSH host key, as an operator reads it on the host. */
export const mockAgentHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDTa5sUAF6DO77KL8r2sspbOzivK3AxZHSI7hUkU0bQ5";

/** A syntactically valid host private key for config. */
export const mockHostPrivateKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";

/** A tenant of a test config: a name (on the first box), or the name with its repository fields. */
export type MockTenant = string | { name: string; box?: string; generation?: number; retired?: { box: string; generation: number }[] };
/** A box of a test config. */
export interface MockBoxConfig { name: string; location?: string; boxType?: string; keep?: number }

/**
 * A valid prod stack config (full keys, JSON values) for `tenants` on `boxes` (default: one box,
 * "agent-backups"); a tenant given by name alone lives on the first box. hostPrivateKeys is the secret key.
 */
export const prodConfig = (tenants: MockTenant[], boxes: MockBoxConfig[] = [{ name: "agent-backups" }]): Record<string, string> => {
  const ts = tenants.map((t) => (typeof t === "string" ? { name: t } : t));
  return {
    "aws:region": "eu-central-1",
    "agent-backups:storage": JSON.stringify({
      boxes: boxes.map((b) => ({ name: b.name, location: b.location ?? "fsn1", boxType: b.boxType ?? "bx21", snapshots: { hour: 2, minute: 30, keep: b.keep ?? 14 } })),
    }),
    "agent-backups:tenants": JSON.stringify(
      ts.map((t) => ({
        name: t.name,
        box: t.box ?? boxes[0]!.name,
        ...(t.generation === undefined ? {} : { generation: t.generation }),
        ...(t.retired === undefined ? {} : { retired: t.retired }),
        host: { address: `${t.name}.agents.example.com`, user: "ubuntu", provider: "aws", agentHome: "/home/hermes/.hermes", hostKey: mockAgentHostKey },
        schedule: "*-*-* 03:17:00",
      })),
    ),
    "agent-backups:vault": JSON.stringify({ replicaRegion: "eu-west-1" }),
    "agent-backups:hostPrivateKeys": JSON.stringify(Object.fromEntries(ts.map((t) => [t.name, mockHostPrivateKey]))),
  };
};
