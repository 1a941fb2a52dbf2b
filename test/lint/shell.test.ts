// Every bash file the project ships or runs (host scripts, their library, test fixtures, CI) must
// be shellcheck clean and start with strict mode. The list is found, not written down, so a new
// script is covered the moment it lands.
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, test } from "vitest";

const root = path.resolve(__dirname, "..", "..");

function bashFiles(): string[] {
  const tracked = execFileSync("git", ["ls-files", "-co", "--exclude-standard", "scripts", "test/fixtures", ".ci", "drill", "bench"], {
    cwd: root,
    encoding: "utf8",
  })
    .split("\n")
    .filter(Boolean);
  return tracked.filter((f) => {
    const abs = path.join(root, f);
    if (!fs.existsSync(abs) || !fs.statSync(abs).isFile()) return false;
    const head = fs.readFileSync(abs, "utf8").slice(0, 200);
    return /^#!.*\b(ba)?sh\b/.test(head) || /^# shellcheck shell=bash/m.test(head);
  });
}

describe("shell scripts", () => {
  const files = bashFiles();

  test("there are shell scripts to check", () => {
    expect(files.length).toBeGreaterThan(0);
  });

  test("shellcheck is installed", () => {
    const r = spawnSync("shellcheck", ["--version"], { encoding: "utf8" });
    expect(r.status, "shellcheck is required: apt-get install shellcheck").toBe(0);
  });

  test.each(files)("%s is shellcheck clean", (file) => {
    const r = spawnSync("shellcheck", ["-x", "-P", "SCRIPTDIR", file], { cwd: root, encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  test.each(files.filter((f) => !f.endsWith(".sh") && !f.includes("/lib/")))("%s runs in strict mode", (file) => {
    const text = fs.readFileSync(path.join(root, file), "utf8");
    expect(text).toMatch(/^set -euo pipefail$/m);
  });
});
