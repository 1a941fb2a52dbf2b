// The local drill's pure parts: where the rootfs comes from, its cache key, and the preflight.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { preflightProblems, realAgentTools, requiredTools } from "../../drill/lib/preflight";
import { debianMirror, defaultRecipe, recipeHash, rootfsPackages } from "../../drill/lib/rootfs";

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "drill-local-"));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe("debianMirror", () => {
  it("reads the suite's mirror from deb822 .sources, skipping other suites and types", () => {
    fs.mkdirSync(path.join(dir, "sources.list.d"));
    fs.writeFileSync(
      path.join(dir, "sources.list.d", "debian.sources"),
      "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n" +
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n\n" +
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n",
    );
    expect(debianMirror("bookworm", dir)).toBe("http://mirror.example/debian");
  });

  it("falls back to a one-line sources.list, with options", () => {
    fs.writeFileSync(path.join(dir, "sources.list"), "# c\ndeb [arch=amd64] http://old.example/debian bookworm main\n");
    expect(debianMirror("bookworm", dir)).toBe("http://old.example/debian");
  });

  it("says what to add when there is no mirror for the suite", () => {
    fs.writeFileSync(path.join(dir, "sources.list"), "deb http://old.example/debian bullseye main\n");
    expect(() => debianMirror("bookworm", dir)).toThrow(/no Debian mirror for bookworm.*deb http:\/\/deb.debian.org\/debian bookworm main/);
  });
});

describe("rootfs recipe", () => {
  it("includes every tool the boxes need and keys the cache by its whole content", () => {
    for (const p of ["systemd", "borgbackup", "sqlite3", "jq", "openssh-server", "iproute2", "python3-venv"]) expect(rootfsPackages).toContain(p);
    // Boxes have no route to a mirror: every package agent-install would fetch must be in the rootfs.
    const tools = /^readonly TOOLS=\(([^)]*)\)/m.exec(fs.readFileSync(path.join(__dirname, "..", "..", "scripts", "agent-install"), "utf8"))?.[1];
    const essential = ["util-linux", "tar", "coreutils"];
    const needed = (tools ?? "").split(/\s+/).filter(Boolean).map((t) => t.split(":")[1] ?? "").filter((p) => !essential.includes(p));
    expect(needed.length).toBeGreaterThan(3);
    for (const p of needed) expect(rootfsPackages, `agent-install needs ${p}`).toContain(p);
    const r = { ...defaultRecipe(), mirror: "http://m.example/debian" };
    expect(recipeHash(r)).toMatch(/^[0-9a-f]{16}$/);
    expect(recipeHash({ ...r })).toBe(recipeHash(r));
    expect(recipeHash({ ...r, packages: [...r.packages, "curl"] })).not.toBe(recipeHash(r));
    expect(recipeHash({ ...r, mirror: "http://other.example/debian" })).not.toBe(recipeHash(r));
    expect(recipeHash({ ...r, adjustments: r.adjustments + 1 })).not.toBe(recipeHash(r));
  });
});

describe("preflight", () => {
  function binWith(tools: string[]): string {
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin, { recursive: true });
    for (const t of tools) {
      fs.writeFileSync(path.join(bin, t), "#!/bin/sh\n");
      fs.chmodSync(path.join(bin, t), 0o755);
    }
    return bin;
  }

  const allTools = () => [...requiredTools, ...realAgentTools].map((t) => t.tool);

  it("passes as root with every tool", () => {
    expect(preflightProblems({ PATH: binWith(allTools()) }, 0)).toEqual([]);
  });

  it("needs python3 (with venv) for the real agent, and not for the stand-in", () => {
    const path_ = binWith(requiredTools.map((t) => t.tool));
    const problems = preflightProblems({ PATH: path_ }, 0, "real").join("\n");
    expect(problems).toContain("missing python3: apt-get install -y python3-venv");
    expect(problems).toContain("--agent standin");
    expect(preflightProblems({ PATH: path_ }, 0, "standin")).toEqual([]);
  });

  it("names each missing tool with the package to install", () => {
    const path_ = binWith(requiredTools.map((t) => t.tool).filter((t) => t !== "systemd-nspawn" && t !== "debootstrap"));
    const problems = preflightProblems({ PATH: path_ }, 0).join("\n");
    expect(problems).toContain("missing systemd-nspawn: apt-get install -y systemd-container");
    expect(problems).toContain("missing debootstrap: apt-get install -y debootstrap");
    expect(problems).not.toContain("missing ip:");
  });

  it("asks for root", () => {
    const problems = preflightProblems({ PATH: binWith(allTools()) }, 1000);
    expect(problems).toEqual([expect.stringMatching(/must run as root.*sudo npm run drill:local/)]);
  });
});
