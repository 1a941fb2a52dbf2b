// Mixed files through real parsers: config.yaml (and every copy of it) through yq and
// scripts/lib/redact.jq, the memory-provider JSON configs through jq and the same program; .env
// allowlists through a strict grammar. Table-driven: each YAML form is checked with the parser
// first (the canary is a parsed value), then no secret may survive and the settings must.
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import YAML from "yaml";
import { cleanupTemp, makeAgentHome, runScript, tempDir } from "../lib/agent-home";
import { repoRoot, startStorageBox, type StorageBox } from "../lib/storage-box";

const redactJq = path.join(repoRoot, "scripts", "lib", "redact.jq");
const C = "CANARYred4ct";

/** 32 valid-YAML forms of a secret; each holds the canary as a parsed value. */
const yamlForms: [string, string][] = [
  ["plain key", `api_key: ${C}1`],
  ["quoted key and value", `"api_key": "${C}2"`],
  ["single quotes", `'token': '${C}3'`],
  ["flow mapping", `model: {provider: x, api_key: ${C}4}`],
  ["JSON-style document", `{"model": {"api_key": "${C}5"}}`],
  ["nested at depth", `a:\n  b:\n    c:\n      secret: ${C}6`],
  ["literal block scalar", `private_key: |\n  -----BEGIN PRIVATE KEY-----\n  ${C}7\n  -----END PRIVATE KEY-----`],
  ["folded block scalar", `password: >\n  ${C}8\n  more`],
  ["multi-line plain scalar", `passphrase: first\n  ${C}9`],
  ["CRLF file", `x: 1\r\ntoken: ${C}10\r\n`],
  ["anchor and alias", `base: &b\n  password: ${C}11\nother: *b`],
  ["merge key", `base: &b {auth: ${C}12}\nchild:\n  <<: *b\n  name: c`],
  ["sequence of mappings", `providers:\n  - name: a\n    api_key: ${C}13`],
  ["flow sequence", `keys: [${C}14]\nname: n`.replace("keys", "api_keys")],
  ["key 'auth'", `auth: ${C}15`],
  ["key 'pass'", `pass: ${C}16`],
  ["key 'dsn'", `dsn: postgres://u:${C}17@db/x`],
  ["key 'webhook_url'", `webhook_url: https://hooks.example/${C}18`],
  ["MCP headers", `mcp_servers:\n  gh:\n    headers:\n      X-Custom: ${C}19`],
  ["MCP env", `mcp_servers:\n  gh:\n    env:\n      GITHUB_PAT: ${C}20`],
  ["MCP args flag value", `mcp_servers:\n  gh:\n    args: ["--token", "${C}21"]`],
  ["MCP args flag=value", `mcp_servers:\n  gh:\n    args:\n      - --api-key=${C}22`],
  ["bearer under any key", `note: Bearer ${C}23`],
  ["provider key prefix under any key", `value: sk-${C}24`],
  ["URL with credentials under any key", `endpoint: https://user:${C}25@api.example/v1`],
  ["JWT under any key", `session: eyJhbGciOiJIUzI1NiJ9.eyJ${C}26abcdef`],
  ["GitHub token under any key", `x: ghp_${C}27`],
  ["bot token under any key", `y: 123456789:${C}28AAAAAAAAAAAAAAAAAAAAAAAAA`],
  ["tagged string", `token: !!str ${C}29`],
  ["second document", `a: 1\n---\ncredentials: ${C}30`],
  ["number as a password", `database:\n  password: 4815162342${C.length}`],
  ["key in mixed case", `OPENAI_API_KEY: ${C}32`],
];

function redactYaml(text: string): { status: number | null; out: string; err: string } {
  const r = spawnSync("yq", ["-y", "--from-file", redactJq], { input: text, encoding: "utf8" });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** Every scalar of every document, as strings: what the parser reads. */
function scalars(text: string): string[] {
  const out: string[] = [];
  const walk = (v: unknown): void => {
    if (v === null || v === undefined) return;
    if (Array.isArray(v)) v.forEach(walk);
    else if (typeof v === "object") Object.values(v as object).forEach(walk);
    else out.push(String(v));
  };
  for (const doc of YAML.parseAllDocuments(text, { merge: true })) walk(doc.toJS({ maxAliasCount: 100 }));
  return out;
}

describe("config.yaml redaction through the YAML parser", () => {
  test("there are at least 30 forms", () => expect(yamlForms.length).toBeGreaterThanOrEqual(30));

  test.each(yamlForms)("%s: the secret is a parsed value, and it does not survive", (_name, text) => {
    const secret = _name === "number as a password" ? `4815162342${C.length}` : undefined;
    const values = scalars(text);
    const found = values.find((v) => v.includes(C) || (secret !== undefined && v === secret));
    expect(found, `the canary must be a value the parser reads: ${JSON.stringify(values)}`).toBeDefined();
    const r = redactYaml(text);
    expect(r.status, r.err).toBe(0);
    expect(r.out).not.toContain(C);
    if (secret) expect(r.out).not.toContain(secret);
    expect(r.out).toContain("REDACTED-BY-AGENT-BACKUP");
  });

  test("settings that are not secrets survive, re-serialised", () => {
    const r = redactYaml("model:\n  default: anthropic/claude-sonnet-4\n  base_url: https://openrouter.ai/api/v1\ntoolsets: [web, terminal]\nterminal: {timeout: 180}\n");
    expect(r.status, r.err).toBe(0);
    expect(YAML.parse(r.out)).toEqual({
      model: { default: "anthropic/claude-sonnet-4", base_url: "https://openrouter.ai/api/v1" },
      toolsets: ["web", "terminal"],
      terminal: { timeout: 180 },
    });
  });

  test("a file that does not parse fails (the backup then leaves it out)", () => {
    const r = redactYaml(`model: [unclosed\n  api_key: ${C}`);
    expect(r.status).not.toBe(0);
  });
});

describe("through agent-backup: copies of config.yaml, memory-provider JSON, .env allowlists, unclassified paths, extra rules", () => {
  let box: StorageBox;
  let extracted: string;
  let log: string;
  let home: string;
  let metricsDir: string;
  let manifest: { unclassified: { path: string; type: string; bytes: number }[]; unclassifiedCount: number };
  const allowlistForms: [string, string | null][] = [
    ["TELEGRAM_ALLOWED_USERS=111111,222222", "TELEGRAM_ALLOWED_USERS=111111,222222"],
    ["export DISCORD_ALLOWED_USERS=333333", "DISCORD_ALLOWED_USERS=333333"],
    ["SLACK_HOME_CHANNEL = C0123ABCD", "SLACK_HOME_CHANNEL=C0123ABCD"],
    ['MATRIX_ALLOWED_USERS="@alice:example.org, @bob:example.org"', "MATRIX_ALLOWED_USERS=@alice:example.org, @bob:example.org"],
    ["MATRIX_HOME_CHANNEL='!room123:example.org'", "MATRIX_HOME_CHANNEL=!room123:example.org"],
    ["GOOGLE_CHAT_HOME_CHANNEL=spaces/AAAA1234\r", "GOOGLE_CHAT_HOME_CHANNEL=spaces/AAAA1234"],
    ["WHATSAPP_ALLOWED_USERS=4915112345678@s.whatsapp.net", "WHATSAPP_ALLOWED_USERS=4915112345678@s.whatsapp.net"],
    [`TELEGRAM_ALLOWED_USERS_TOKEN=${C}e1`, null],
    [`DISCORD_ALLOWED_USERS=333333 # ${C}e2`, null],
    [`SLACK_HOME_CHANNEL=xoxb-${C}e3`, null],
    [`EVIL_ALLOWED_USERS=$(curl ${C}e4)`, null],
    [`OPENAI_API_KEY=${C}e5`, null],
  ];

  beforeAll(async () => {
    box = await startStorageBox({ tenants: ["acme"] });
    const agent = makeAgentHome(path.join(tempDir(), "home"), { sessions: 5, profiles: 1 });
    home = agent.home;
    // Unknown to the rules: a new top-level folder and a new file in a profile, each with a canary;
    // and one the tenant's extra rules make precious.
    fs.mkdirSync(path.join(home, "brand-new-store"));
    fs.writeFileSync(path.join(home, "brand-new-store", "data.json"), `{"key": "${C}u1"}`);
    fs.writeFileSync(path.join(home, "profiles", "profile1", "new-file.txt"), `${C}u2`);
    fs.mkdirSync(path.join(home, "research-notes"));
    fs.writeFileSync(path.join(home, "research-notes", "n.md"), "notes the operator classified");
    const extra = path.join(tempDir(), "extra.rules");
    fs.writeFileSync(extra, "precious home research-notes\n");
    metricsDir = path.join(tempDir(), "metrics");
    const forms = yamlForms.map(([, t]) => t);
    // Every form in a copy of config.yaml of its own; the JSON configs with keys at depth.
    forms.forEach((t, i) => fs.writeFileSync(path.join(agent.home, `config.yaml.bak.2026090${i % 10}_${String(i).padStart(6, "0")}`), t));
    fs.writeFileSync(path.join(agent.home, "supermemory.json"), JSON.stringify({ api_key: `${C}j1`, container: "c", nested: { headers: { Authorization: `${C}j2` } } }));
    fs.writeFileSync(path.join(agent.home, ".env"), allowlistForms.map(([l]) => l).join("\n") + "\n");
    fs.writeFileSync(path.join(agent.home, "config.yaml.bak.20260909_999999"), "broken: [yaml\n");
    spawnSync("chown", ["-R", `${fs.statSync(agent.home).uid}:${fs.statSync(agent.home).gid}`, agent.home]);
    const config = box.writeConfig("acme", { agentHome: agent.home, metricsDir, override: { EXTRA_RULES: extra } });
    expect(runScript("agent-backup", ["--config", config, "--init"], box.clientEnv).status).toBe(0);
    const r = runScript("agent-backup", ["--config", config], box.clientEnv);
    expect(r.status, r.stderr).toBe(0);
    log = r.stderr;
    extracted = tempDir();
    const name = box.borg("acme", "maintenance", ["list", "--short", "--last", "1"]).stdout.trim();
    const x = spawnSync("borg", ["extract", `::${name}`], { cwd: extracted, env: box.borgEnv("acme", "maintenance"), encoding: "utf8" });
    expect(x.status, x.stderr).toBe(0);
    manifest = JSON.parse(fs.readFileSync(path.join(extracted, ".agent-backup", "manifest.json"), "utf8"));
  });
  afterAll(async () => {
    await box?.stop();
    cleanupTemp();
  });

  test("no canary in any archived byte, and each copy of config.yaml is there, redacted", () => {
    const all = spawnSync("bash", ["-c", 'find . -type f -print0 | xargs -0 cat', "bash"], { cwd: extracted, encoding: "latin1", maxBuffer: 1 << 28 }).stdout;
    expect(all).not.toContain(C);
    const copies = fs.readdirSync(extracted).filter((f) => /^config\.yaml\.bak\.2026090\d_\d{6}$/.test(f) && f !== "config.yaml.bak.20260901_120000");
    expect(copies.length).toBe(yamlForms.length);
    expect(JSON.parse(fs.readFileSync(path.join(extracted, "supermemory.json"), "utf8"))).toEqual({
      api_key: "REDACTED-BY-AGENT-BACKUP", container: "c", nested: { headers: { Authorization: "REDACTED-BY-AGENT-BACKUP" } },
    });
  });

  test("a new top-level folder and a new file in a profile: left out, and reported in the log, the manifest, the metric and --classify", () => {
    for (const p of ["brand-new-store", "profiles/profile1/new-file.txt"]) {
      expect(fs.existsSync(path.join(extracted, p)), p).toBe(false);
      expect(log).toContain(`unclassified, left out: "${p}"`);
      expect(manifest.unclassified.map((u) => u.path)).toContain(p);
    }
    expect(manifest.unclassified.find((u) => u.path === "brand-new-store")).toMatchObject({ type: "d" });
    const prom = fs.readFileSync(path.join(metricsDir, "agent-backup-acme.prom"), "utf8");
    expect(prom).toMatch(new RegExp(`^agent_backup_unclassified_paths\\{archive_prefix="acme"\\} ${manifest.unclassifiedCount}$`, "m"));
    expect(manifest.unclassifiedCount).toBeGreaterThanOrEqual(2);
    const json = runScript("agent-backup", ["--classify", "--json", "--home", home], box.clientEnv);
    expect(json.status, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as { unclassified: { path: string }[]; top: { path: string; class: string }[] };
    expect(report.unclassified.map((u) => u.path)).toEqual(expect.arrayContaining(["brand-new-store", "profiles/profile1/new-file.txt", "research-notes"]));
    expect(report.top.find((t) => t.path === "SOUL.md")?.class).toBe("precious");
    const text = runScript("agent-backup", ["--classify", "--home", home], box.clientEnv);
    expect(text.stdout).toMatch(/Unclassified .*: \d+/);
    expect(text.stdout).toContain("brand-new-store/");
  });

  test("a path the tenant's extra rules classify precious is archived", () => {
    expect(fs.readFileSync(path.join(extracted, "research-notes", "n.md"), "utf8")).toBe("notes the operator classified");
    expect(manifest.unclassified.map((u) => u.path)).not.toContain("research-notes");
  });

  test("a copy that does not parse is left out and reported", () => {
    expect(fs.existsSync(path.join(extracted, "config.yaml.bak.20260909_999999"))).toBe(false);
    expect(log).toMatch(/not-parsed: "config.yaml.bak.20260909_999999"/);
  });

  test("every allowlist line survives; every line with a secret is dropped and reported by key name only", () => {
    const kept = fs.readFileSync(path.join(extracted, ".agent-backup", "allowlists.env"), "utf8").split("\n").filter((l) => l && !l.startsWith("#"));
    expect(kept.sort()).toEqual(allowlistForms.filter(([, k]) => k !== null).map(([, k]) => k!).sort());
    expect(log).toMatch(/allowlist-line-dropped: ".env": "DISCORD_ALLOWED_USERS: its value is not a list/);
    expect(log).not.toContain(C);
  });
});
