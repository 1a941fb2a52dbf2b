// agent-maintain refuses bad usage and bad config with exit 2 before it contacts anything or
// creates its state directory: every value that reaches borg, ssh or a path is checked strictly.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { runScript } from "../lib/maintain-fixtures";
import { scriptsDir } from "../lib/storage-box";

let dir: string;
let files: Record<string, string>;

function config(lines: Record<string, string | null>, mode = 0o600): string {
  const base: Record<string, string | null> = {
    BORG_REPO: "ssh://u123-sub1@127.0.0.1:2222/./borg",
    SSH_KEY: files.key!,
    KNOWN_HOSTS: files.knownHosts!,
    PASSPHRASE_FILE: files.passphrase!,
    ARCHIVE_PREFIX: "acme",
    STATE_DIR: path.join(dir, "state"),
    ...lines,
  };
  const file = path.join(dir, `c${Math.random().toString(16).slice(2)}.conf`);
  const text = Object.entries(base)
    .filter(([, v]) => v !== null)
    .map(([k, v]) => `${k}=${v}`)
    .join("\n");
  fs.writeFileSync(file, `${text}\n`, { mode });
  fs.chmodSync(file, mode);
  return file;
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "ab-maint-config-"));
  files = {};
  for (const name of ["key", "knownHosts", "passphrase"]) {
    files[name] = path.join(dir, name);
    fs.writeFileSync(files[name]!, "x\n", { mode: 0o600 });
  }
});

afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe("agent-maintain refuses bad input with exit 2", () => {
  const cases: [string, () => string[], RegExp][] = [
    ["no --config", () => [], /--config FILE is required/],
    ["an unknown argument", () => ["--config", config({}), "--prune-everything"], /unknown argument/],
    ["a config readable by others", () => ["--config", config({}, 0o644)], /lets others read it/],
    ["an unknown key", () => ["--config", config({ KEEP_HOURLY: "3" })], /unknown key KEEP_HOURLY/],
    ["a missing required key", () => ["--config", config({ STATE_DIR: null })], /missing required key STATE_DIR/],
    ["a repository URL with a shell command", () => ["--config", config({ BORG_REPO: "ssh://u@h:22/x;touch /tmp/pwned" })], /refusing/],
    ["a repository that is not ssh://", () => ["--config", config({ BORG_REPO: "/srv/repo" })], /expected ssh:\/\/USER@HOST:PORT\/PATH/],
    ["an archive prefix with a glob", () => ["--config", config({ ARCHIVE_PREFIX: "acme*" })], /ARCHIVE_PREFIX/],
    ["a relative state dir", () => ["--config", config({ STATE_DIR: "state" })], /STATE_DIR/],
    ["a missing ssh key", () => ["--config", config({ SSH_KEY: path.join(dir, "nope") })], /SSH_KEY: .* is not a readable file/],
    ["a negative daily count", () => ["--config", config({ KEEP_DAILY: "-1" })], /KEEP_DAILY/],
    ["a policy that keeps nothing", () => ["--config", config({ KEEP_DAILY: "0", KEEP_WEEKLY: "0", KEEP_MONTHLY: "0" })], /would prune every archive/],
    ["a bad keep-within unit", () => ["--config", config({ KEEP_WITHIN: "2x" })], /KEEP_WITHIN/],
    ["a keep-within without a number", () => ["--config", config({ KEEP_WITHIN: "d" })], /KEEP_WITHIN/],
    ["a zero check budget", () => ["--config", config({ CHECK_BUDGET_SECONDS: "0" })], /CHECK_BUDGET_SECONDS must be at least 1/],
    ["a remote borg with spaces", () => ["--config", config({ REMOTE_BORG: "borg serve --append-only" })], /REMOTE_BORG/],
    ["a missing key escrow file", () => ["--config", config({ KEY_EXPORT_FILE: path.join(dir, "nope") })], /KEY_EXPORT_FILE/],
    ["two modes at once", () => ["--config", config({}), "--observe", "--adopt"], /--observe and --adopt exclude each other/],
    ["an unknown object check", () => ["--config", config({ OBJECT_CHECK: "none" })], /OBJECT_CHECK: expected archives or data/],
    ["a keep-within of zero", () => ["--config", config({ KEEP_WITHIN: "0d" })], /KEEP_WITHIN must be at least 1/],
    ["a ledger tenant that is not a tenant name", () => ["--config", config({ TENANT: "Acme;rm" })], /TENANT: refusing/],
    ["a shrink percentage of 0", () => ["--config", config({ SHRINK_ROWS_PERCENT: "0" })], /SHRINK_ROWS_PERCENT must be between 1 and 100/],
    ["a shrink percentage above 100", () => ["--config", config({ SHRINK_BYTES_PERCENT: "101" })], /SHRINK_BYTES_PERCENT must be between 1 and 100/],
    ["a shrink minimum with a unit", () => ["--config", config({ SHRINK_MIN_BYTES: "1k" })], /SHRINK_MIN_BYTES/],
    ["a negative shrink minimum", () => ["--config", config({ SHRINK_MIN_ROWS: "-1" })], /SHRINK_MIN_ROWS/],
    ["a tiny manifest bound", () => ["--config", config({ MANIFEST_MAX_BYTES: "100" })], /MANIFEST_MAX_BYTES must be at least 4096/],
    ["--release-pin without an archive", () => ["--config", config({}), "--release-pin"], /--release-pin needs an archive name/],
    ["--release-pin of a path", () => ["--config", config({}), "--release-pin", "../state.json"], /--release-pin: refusing/],
    ["--release-pin with another mode", () => ["--config", config({}), "--observe", "--release-pin", "acme-2026-01-01T00:00:00"], /exclude each other/],
  ];
  test.each(cases)("%s", (_what, args, message) => {
    const r = runScript("agent-maintain", args());
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(fs.existsSync(path.join(dir, "state"))).toBe(false);
  });

  test("--help documents every config key it accepts", () => {
    const r = runScript("agent-maintain", ["--help"]);
    expect(r.status).toBe(0);
    const script = fs.readFileSync(path.join(scriptsDir, "agent-maintain"), "utf8");
    const keys = [...script.matchAll(/^readonly (?:REQUIRED|OPTIONAL)_KEYS="([^"]+)"$/gm)].flatMap((m) => m[1]!.split(" "));
    expect(keys.length).toBeGreaterThan(10);
    for (const key of keys) {
      expect(r.stdout).toMatch(new RegExp(`^  ${key} `, "m"));
    }
  });
});
