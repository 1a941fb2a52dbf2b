// Shared pieces of the rekey and offboarding tests: an agent host's SSH on loopback (a real sshd
// that lets a test key in as root, the way Pulumi reaches a host), the vault's recovery document of
// a box tenant, the generation bump's freeze of an old repository (only the maintenance line left),
// a fake Storage Box API on loopback and a fake `aws` that keeps secrets per region.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as http from "node:http";
import * as net from "node:net";
import * as path from "node:path";
import { recoveryDocument } from "../../components/control-vault";
import { renderKeyLine } from "../../components/key-roles";
import { canConnect, freePort, sleep, type StorageBox } from "./storage-box";

export interface HostSsh {
  port: number;
  /** known_hosts pinning this sshd's host key. */
  knownHosts: string;
  /** The private key that logs in as root (Pulumi's hostPrivateKeys.<tenant>). */
  key: string;
  stop(): Promise<void>;
}

/** The agent host's sshd: root logs in with one key, on 127.0.0.1 only; stopped by its PID. */
export async function startHostSsh(dir: string, opts: { forceCommand?: string } = {}): Promise<HostSsh> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hostKey = path.join(dir, "host_ed25519_key");
  const key = path.join(dir, "operator_key");
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "ab-host", "-f", hostKey]);
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "operator", "-f", key]);
  const authorized = path.join(dir, "authorized_keys");
  fs.writeFileSync(authorized, fs.readFileSync(`${key}.pub`), { mode: 0o600 });
  let child: ChildProcess | undefined;
  let port = 0;
  for (let attempt = 1; attempt <= 5 && !child; attempt++) {
    port = await freePort();
    const config = path.join(dir, "sshd_config");
    fs.writeFileSync(
      config,
      [
        `Port ${port}`,
        "ListenAddress 127.0.0.1",
        `HostKey ${hostKey}`,
        `PidFile ${path.join(dir, "sshd.pid")}`,
        `AuthorizedKeysFile ${authorized}`,
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "AllowUsers root",
        // The key file lives under /var/tmp (world-writable): this stand-in host trusts its own dir.
        "StrictModes no",
        "AllowTcpForwarding no",
        "X11Forwarding no",
        "PrintMotd no",
        "LogLevel ERROR",
        // A stand-in that maps the host's well-known paths to the test's files.
        ...(opts.forceCommand ? [`ForceCommand ${opts.forceCommand}`] : []),
        "",
      ].join("\n"),
    );
    fs.mkdirSync("/run/sshd", { recursive: true });
    const log = fs.openSync(path.join(dir, "sshd.log"), "a");
    const c = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", config], { stdio: ["ignore", log, log] });
    fs.closeSync(log);
    for (let i = 0; i < 100 && c.exitCode === null; i++) {
      if (await canConnect(port)) {
        child = c;
        break;
      }
      await sleep(50);
    }
    if (!child && c.exitCode === null) c.kill("SIGTERM");
  }
  if (!child) throw new Error(`host sshd did not start: ${fs.readFileSync(path.join(dir, "sshd.log"), "utf8")}`);
  const knownHosts = path.join(dir, "known_hosts");
  const pub = fs.readFileSync(`${hostKey}.pub`, "utf8").trim().split(/\s+/).slice(0, 2).join(" ");
  fs.writeFileSync(knownHosts, `[127.0.0.1]:${port} ${pub}\n`);
  const running = child;
  const kill = () => {
    if (running.pid && running.exitCode === null) running.kill("SIGTERM");
  };
  process.once("exit", kill);
  return {
    port,
    knownHosts,
    key,
    async stop() {
      process.removeListener("exit", kill);
      if (running.pid && running.exitCode === null) {
        const exited = new Promise<void>((r) => running.once("exit", () => r()));
        running.kill("SIGTERM");
        await Promise.race([exited, sleep(5000)]);
      }
    },
  };
}

/** The vault's recovery document of a box tenant, in the vault's own format, mode 0600. */
export function writeRecovery(box: StorageBox, boxTenant: string, tenant: string, file: string): void {
  const t = box.tenants[boxTenant];
  if (!t) throw new Error(`no tenant ${boxTenant} on the box`);
  const exportFile = `${file}.key-export`;
  const r = box.borg(boxTenant, "maintenance", ["key", "export", t.repoUrl, exportFile]);
  if (r.status !== 0) throw new Error(`borg key export: ${r.stderr}`);
  const read = (f: string) => fs.readFileSync(f, "utf8");
  fs.writeFileSync(
    file,
    recoveryDocument({
      tenant,
      repoUrl: t.repoUrl,
      knownHosts: read(box.knownHosts),
      remoteBorg: "borg",
      passphrase: read(t.passphraseFile).trim(),
      maintenancePrivateKey: read(t.keys.maintenance),
      drillPrivateKey: read(t.keys.drill),
      repoKeyExport: read(exportFile).trimEnd(),
      retention: { daily: 7, weekly: 4, monthly: 6 },
    }),
    { mode: 0o600 },
  );
  fs.rmSync(exportFile);
}

/** What the generation bump leaves in a retired repository's authorized_keys: the maintenance line only. */
export function freezeRepository(box: StorageBox, boxTenant: string, tenant: string): void {
  const t = box.tenants[boxTenant]!;
  const line = renderKeyLine({
    role: "maintenance",
    publicKey: fs.readFileSync(`${t.keys.maintenance}.pub`, "utf8"),
    borgCommand: "borg",
    repoPath: t.repoPath,
    comment: `maintenance@${tenant}`,
  });
  const file = path.join(path.dirname(t.repoPath), ".ssh", "authorized_keys");
  fs.writeFileSync(file, `${line}\n`);
  execFileSync("chown", [`${t.user}:${t.user}`, file]);
}

// --- the Storage Box API, faked on loopback --------------------------------------------------------

export interface FakeApiRequest {
  method: string;
  path: string;
  authorized: boolean;
}

export interface FakeApi {
  url: string;
  requests: FakeApiRequest[];
  stop(): Promise<void>;
}

export interface FakeApiOptions {
  token: string;
  boxId: number;
  /** Sub-accounts of the box: id, username; onDelete runs when the API deletes one. */
  subaccounts: { id: number; username: string; onDelete?: () => void }[];
  snapshotPlan: { max_snapshots: number; minute: number; hour: number; day_of_week: number | null; day_of_month: number | null } | null;
  snapshots: { id: number; name: string; created: string; is_automatic: boolean }[];
}

/**
 * The few Storage Box API calls offboarding makes (GET box, GET sub-accounts, GET snapshots, DELETE a
 * sub-account, GET its action), with the real API's paths and JSON shapes; a wrong token gets 401.
 * Runs in the test's own process: the scripts under test must be spawned asynchronously.
 */
export async function startFakeApi(o: FakeApiOptions): Promise<FakeApi> {
  const requests: FakeApiRequest[] = [];
  const subs = [...o.subaccounts];
  const actions = new Map<number, string>();
  let nextAction = 9000;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    const authorized = req.headers.authorization === `Bearer ${o.token}`;
    requests.push({ method: req.method ?? "", path: url.pathname, authorized });
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "Content-Type": "application/json" });
      res.end(JSON.stringify(body));
    };
    if (!authorized) return send(401, { error: { code: "unauthorized", message: "unable to authenticate" } });
    const box = `/v1/storage_boxes/${o.boxId}`;
    let m: RegExpExecArray | null;
    if (req.method === "GET" && url.pathname === box) {
      return send(200, { storage_box: { id: o.boxId, name: "agent-backups", snapshot_plan: o.snapshotPlan } });
    }
    if (req.method === "GET" && url.pathname === `${box}/subaccounts`) {
      return send(200, { subaccounts: subs.map(({ id, username }) => ({ id, username, home_directory: `tenants/${username}` })) });
    }
    if (req.method === "GET" && url.pathname === `${box}/snapshots`) {
      return send(200, { snapshots: o.snapshots.map((s) => ({ ...s, description: "", stats: { size: 0, size_filesystem: 0 }, labels: {} })) });
    }
    if (req.method === "DELETE" && (m = new RegExp(`^${box}/subaccounts/([0-9]+)$`).exec(url.pathname))) {
      const i = subs.findIndex((s) => s.id === Number(m![1]));
      if (i < 0) return send(404, { error: { code: "not_found", message: "subaccount not found" } });
      const [gone] = subs.splice(i, 1);
      gone!.onDelete?.();
      const id = nextAction++;
      actions.set(id, "success");
      return send(201, { action: { id, command: "delete_subaccount", status: "running" } });
    }
    if (req.method === "GET" && (m = /^\/v1\/storage_boxes\/actions\/([0-9]+)$/.exec(url.pathname))) {
      const status = actions.get(Number(m[1]));
      if (!status) return send(404, { error: { code: "not_found", message: "action not found" } });
      return send(200, { action: { id: Number(m[1]), status, error: null } });
    }
    return send(404, { error: { code: "not_found", message: `no route ${req.method} ${url.pathname}` } });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const addr = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${addr.port}/v1`,
    requests,
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

// --- a fake aws CLI ------------------------------------------------------------------------------

/**
 * A fake `aws` in DIR/bin: records every call's arguments (one JSON array per line in DIR/calls)
 * and keeps each secret per region as a file under DIR/secrets/<region>/, with the real service's
 * rule that a primary secret with replicas cannot be deleted.
 */
export function fakeAws(dir: string, secretId: string, regions: { primary: string; replica: string }): { bin: string; calls: () => string[][]; exists: (region: string) => boolean } {
  const bin = path.join(dir, "bin");
  const state = path.join(dir, "secrets");
  fs.mkdirSync(bin, { recursive: true });
  const key = secretId.replace(/[^A-Za-z0-9]/g, "_");
  for (const r of [regions.primary, regions.replica]) {
    fs.mkdirSync(path.join(state, r), { recursive: true });
    fs.writeFileSync(path.join(state, r, key), r === regions.primary ? `primary ${regions.replica}\n` : "replica\n");
  }
  const script = `#!/usr/bin/env bash
set -euo pipefail
jq -cn '$ARGS.positional' --args -- "$@" >>${JSON.stringify(path.join(dir, "calls"))}
region='' id='' op="$1 $2"; shift 2
while (($#)); do case $1 in --region) region=$2; shift 2 ;; --secret-id) id=$2; shift 2 ;; --remove-replica-regions) rr=$2; shift 2 ;; *) shift ;; esac; done
f=${JSON.stringify(state)}/$region/$(printf '%s' "$id" | tr -c 'A-Za-z0-9' _)
notfound() { echo "An error occurred (ResourceNotFoundException) when calling the $1 operation: Secrets Manager can't find the specified secret." >&2; exit 254; }
case $op in
  "secretsmanager describe-secret")
    [[ -f $f ]] || notfound DescribeSecret
    if grep -q '^primary' "$f"; then
      jq -n --arg n "$id" --arg r "$(cut -d' ' -f2 "$f")" '{Name: $n, PrimaryRegion: null, ReplicationStatus: (if $r == "" then [] else [{Region: $r, Status: "InSync"}] end)}'
    else jq -n --arg n "$id" '{Name: $n}'; fi ;;
  "secretsmanager remove-regions-from-replication")
    [[ -f $f ]] || notfound RemoveRegionsFromReplication
    rm -f ${JSON.stringify(state)}/"$rr"/"$(basename "$f")"
    printf 'primary\\n' >"$f"
    echo '{"ReplicationStatus": []}' ;;
  "secretsmanager delete-secret")
    [[ -f $f ]] || notfound DeleteSecret
    if grep -q '^replica' "$f" || [[ -n $(cut -s -d' ' -f2 "$f") ]]; then
      echo "An error occurred (InvalidRequestException) when calling the DeleteSecret operation: You can't delete a secret that is replicated to other Regions." >&2; exit 254
    fi
    rm -f "$f"; jq -n --arg n "$id" '{Name: $n, DeletionDate: "now"}' ;;
  *) echo "fake aws: unexpected $op" >&2; exit 2 ;;
esac
`;
  fs.writeFileSync(path.join(bin, "aws"), script, { mode: 0o755 });
  return {
    bin,
    calls: () => (fs.existsSync(path.join(dir, "calls")) ? fs.readFileSync(path.join(dir, "calls"), "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as string[]) : []),
    exists: (region: string) => fs.existsSync(path.join(state, region, key)),
  };
}
