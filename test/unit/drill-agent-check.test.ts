// agent-check-hermes --version, which agent-drill (root on a restore box) asks for the report's
// agent: it runs the venv's python, so only an install root owns and only root can write is asked.
// A hostile install (another owner, or writable by others) must not run as root. Needs root.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { scriptsDir } from "../../components/host-install-plan";

const check = path.join(scriptsDir, "agent-check-hermes");
let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "agent-check-version-"));
  fs.chmodSync(dir, 0o755);
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A venv stand-in: bin/hermes, and bin/python that leaves a mark when it runs and prints a version. */
function fakeVenv(name: string): { hermes: string; python: string; bin: string; mark: string } {
  const bin = path.join(dir, name, "bin");
  fs.mkdirSync(bin, { recursive: true, mode: 0o755 });
  const mark = path.join(dir, `${name}.ran`);
  const hermes = path.join(bin, "hermes");
  const python = path.join(bin, "python");
  fs.writeFileSync(hermes, "#!/bin/sh\nexit 0\n", { mode: 0o755 });
  fs.writeFileSync(python, `#!/bin/sh\ntouch ${mark}\necho 0.19.0\n`, { mode: 0o755 });
  return { hermes, python, bin, mark };
}

const version = (hermes: string) => spawnSync(check, ["--version", "--hermes", hermes], { encoding: "utf8" });

describe("agent-check-hermes --version", () => {
  it("is run as root here (the restore box runs agent-drill as root)", () => {
    expect(process.getuid?.(), "this test needs root").toBe(0);
  });

  it("names the agent of a venv that root owns and only root can write", () => {
    const v = fakeVenv("good");
    const r = version(v.hermes);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe("hermes-agent 0.19.0\n");
    expect(fs.existsSync(v.mark)).toBe(true);
  });

  it.each([
    ["python owned by another user", (v: ReturnType<typeof fakeVenv>) => fs.chownSync(v.python, 65534, 65534)],
    ["hermes owned by another user", (v: ReturnType<typeof fakeVenv>) => fs.chownSync(v.hermes, 65534, 65534)],
    ["python writable by its group", (v: ReturnType<typeof fakeVenv>) => fs.chmodSync(v.python, 0o775)],
    ["python writable by anyone", (v: ReturnType<typeof fakeVenv>) => fs.chmodSync(v.python, 0o757)],
    ["the venv's bin writable by anyone", (v: ReturnType<typeof fakeVenv>) => fs.chmodSync(v.bin, 0o777)],
    ["the venv's bin owned by another user", (v: ReturnType<typeof fakeVenv>) => fs.chownSync(v.bin, 65534, 65534)],
  ])("never runs the python of an install it cannot trust with root: %s", (_what, spoil) => {
    const v = fakeVenv("bad");
    spoil(v);
    const r = version(v.hermes);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("no hermes-agent package version in a venv that root owns");
    expect(fs.existsSync(v.mark), "the untrusted python ran").toBe(false);
  });

  it("refuses without an agent on PATH", () => {
    const r = spawnSync(check, ["--version"], { encoding: "utf8", env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" } });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain("no hermes on PATH");
  });
});
