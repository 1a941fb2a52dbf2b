// The real agent in tests: hermes-agent (pinned in test/fixtures/hermes-agent-requirements.txt)
// installed once into a cached venv, a fake OpenAI-compatible server on loopback, and the agent
// driven with its own commands (drill/lib/real-agent.ts has the recipe) as the test's non-root
// agent user, always with scratch HOME and HERMES_HOME. requireHermes() fails, never skips, when
// the agent cannot be installed. Every wait is bounded; processes are stopped by their PID.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import {
  agentHomeSteps, agentVersion, fakeServerFile, makeCanaries, parseSessionIds, parseSessionStats, pipInstallArgs, readyMarker,
  requirementsFile, requirementsHash, systemPython, type AgentCanaries, type SessionStats,
} from "../../drill/lib/real-agent";
import { agentUser, chownToAgent, type AgentUser } from "./agent-home";

/** Root-owned and world-readable: the agent user runs the venv, only root writes it. */
export const venvCacheRoot = "/var/cache/agent-backup-test";

export interface HermesInstall {
  venv: string;
  /** The venv's `hermes` console script. */
  bin: string;
  version: string;
}

const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A lock directory holding the owner's PID. A lock whose owner is gone is taken over; one without
 * a PID yet is left alone for a grace period (its owner is between mkdir and writing the PID).
 */
function withLock<T>(lockDir: string, waitMs: number, fn: () => T): T {
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      fs.mkdirSync(lockDir, { mode: 0o700 });
      fs.writeFileSync(path.join(lockDir, "pid"), `${process.pid}\n`);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      let owner = 0;
      try {
        owner = Number(fs.readFileSync(path.join(lockDir, "pid"), "utf8").trim());
      } catch {
        // no PID written yet
      }
      const young = Date.now() - (fs.statSync(lockDir, { throwIfNoEntry: false })?.mtimeMs ?? 0) < 10_000;
      if (owner > 0 ? !pidAlive(owner) : !young) {
        fs.rmSync(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`${lockDir} is held by PID ${owner || "(unknown)"} for too long`);
      sleepSync(1000);
    }
  }
  try {
    return fn();
  } finally {
    fs.rmSync(lockDir, { recursive: true, force: true });
  }
}

function mustRun(argv: string[], what: string, timeoutMs: number): void {
  const [cmd = "", ...args] = argv;
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: timeoutMs, killSignal: "SIGKILL" });
  if (r.status !== 0) {
    const why = r.error ? r.error.message : `exit ${r.status ?? r.signal}`;
    throw new Error(`${what} failed (${why}):\n${(r.stderr || r.stdout || "").trim().split("\n").slice(-15).join("\n")}`);
  }
}

let installed: HermesInstall | undefined;

/**
 * The pinned agent in its cached venv (built on first use, from the package index, each wheel
 * checked against its hash). Throws when it cannot be installed: a test that needs the agent fails.
 */
export function requireHermes(): HermesInstall {
  if (installed) return installed;
  const version = agentVersion();
  const venv = path.join(venvCacheRoot, `hermes-${version}-${requirementsHash()}`);
  const bin = path.join(venv, "bin", "hermes");
  if (!fs.existsSync(path.join(venv, readyMarker))) {
    if (!fs.existsSync(systemPython)) throw new Error(`the real agent needs ${systemPython}: apt-get install -y python3 python3-venv`);
    fs.mkdirSync(venvCacheRoot, { recursive: true, mode: 0o755 });
    fs.chmodSync(venvCacheRoot, 0o755);
    withLock(`${venv}.lock`, 15 * 60_000, () => {
      if (fs.existsSync(path.join(venv, readyMarker))) return;
      // A venv cannot be moved once made: it is built in place, and a half-built one is removed.
      fs.rmSync(venv, { recursive: true, force: true });
      mustRun([systemPython, "-m", "venv", venv], "python3 -m venv (apt-get install -y python3-venv)", 120_000);
      mustRun([path.join(venv, "bin", "pip"), ...pipInstallArgs, "-r", requirementsFile],
        `pip install of ${path.basename(requirementsFile)} (needs the package index)`, 900_000);
      mustRun(["chmod", "-R", "u+rwX,go+rX,go-w", venv], "chmod of the venv", 60_000);
      fs.writeFileSync(path.join(venv, readyMarker), `hermes-agent==${version}\n`);
    });
  }
  const v = spawnSync(path.join(venv, "bin", "python"), ["-c", "import importlib.metadata as m; print(m.version('hermes-agent'))"], { encoding: "utf8" });
  if (v.status !== 0 || v.stdout.trim() !== version) throw new Error(`the venv ${venv} does not hold hermes-agent ${version}: ${v.stderr}${v.stdout}`);
  installed = { venv, bin, version };
  return installed;
}

// --- the fake model server --------------------------------------------------------------------

export interface FakeServerRequest {
  method: string;
  path: string;
  stream?: boolean;
  toolCall?: string | null;
  authorized?: boolean;
}

export interface FakeServer {
  port: number;
  /** http://127.0.0.1:PORT/v1, what the agent's model.base_url is set to. */
  baseUrl: string;
  pid: number;
  /** Every request so far, in order. */
  requests(): FakeServerRequest[];
  stop(): Promise<void>;
}

/** test/fixtures/fake-openai-server on a free loopback port; resolves once it listens (10 s at most). */
export async function startFakeServer(dir: string): Promise<FakeServer> {
  const logFile = path.join(dir, "fake-openai.log");
  const child = spawn(systemPython, [fakeServerFile, "--host", "127.0.0.1", "--port", "0", "--log", logFile], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  // Last resort, should a test process end without stop(): by its PID, never by name.
  process.once("exit", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let port = 0;
  for (let i = 0; i < 200 && port === 0; i++) {
    if (child.exitCode !== null) throw new Error(`fake-openai-server exited: ${err}`);
    port = Number(/^listening (\d+)$/m.exec(out)?.[1] ?? 0);
    if (port === 0) await new Promise((r) => setTimeout(r, 50));
  }
  if (port === 0) {
    child.kill("SIGKILL");
    throw new Error(`fake-openai-server did not listen within 10 s: ${err}`);
  }
  return {
    port,
    baseUrl: `http://127.0.0.1:${port}/v1`,
    pid: child.pid ?? -1,
    requests: () =>
      fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l) as FakeServerRequest) : [],
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
      }
    },
  };
}

// --- running the agent ------------------------------------------------------------------------

export interface HermesResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export interface RunningTurn {
  pid: number;
  /** Resolves when the turn's process has exited (bounded by the timeout given to start). */
  done: Promise<HermesResult>;
}

/**
 * The agent as its user sees it: the test agent user, a scratch HOME (also its working folder) and
 * a HERMES_HOME, a clean environment with the venv first on PATH.
 */
export class Hermes {
  constructor(readonly install: HermesInstall, readonly user: AgentUser, readonly userHome: string, readonly hermesHome: string) {}

  env(): NodeJS.ProcessEnv {
    return {
      HOME: this.userHome,
      HERMES_HOME: this.hermesHome,
      PATH: `${path.dirname(this.install.bin)}:/usr/local/bin:/usr/bin:/bin`,
      LANG: "C.UTF-8",
      TERM: "dumb",
      NO_COLOR: "1",
    };
  }

  /** One hermes command to its end (killed by PID after timeoutMs). */
  run(args: string[], timeoutMs = 120_000): HermesResult {
    const r = spawnSync(this.install.bin, args, {
      uid: this.user.uid, gid: this.user.gid, cwd: this.userHome, env: this.env(), encoding: "utf8",
      timeout: timeoutMs, killSignal: "SIGKILL", stdio: ["ignore", "pipe", "pipe"],
    });
    return { status: r.status, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? `\n${r.error.message}` : "") };
  }

  /** Like run, but throws with the command's output when it does not exit 0. */
  ok(args: string[], timeoutMs = 120_000): string {
    const r = this.run(args, timeoutMs);
    if (r.status !== 0) throw new Error(`hermes ${args.join(" ")}: exit ${r.status}\n${r.stderr.trim() || r.stdout.trim()}`);
    return r.stdout;
  }

  /** Start a command (e.g. a slow turn) without waiting; killed by its PID after timeoutMs. */
  start(args: string[], timeoutMs = 300_000): RunningTurn {
    const child: ChildProcess = spawn(this.install.bin, args, {
      uid: this.user.uid, gid: this.user.gid, cwd: this.userHome, env: this.env(), stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    const done = new Promise<HermesResult>((resolve) =>
      child.once("close", (code) => {
        clearTimeout(timer);
        resolve({ status: code, stdout, stderr });
      }),
    );
    return { pid: child.pid ?? -1, done };
  }

  stats(profile?: string): SessionStats {
    return parseSessionStats(this.ok([...(profile ? ["-p", profile] : []), "sessions", "stats"]));
  }

  sessionIds(profile?: string): string[] {
    return parseSessionIds(this.ok([...(profile ? ["-p", profile] : []), "sessions", "list", "--limit", "1000"]));
  }
}

export interface RealAgentHome {
  hermes: Hermes;
  /** HERMES_HOME. */
  home: string;
  canaries: AgentCanaries;
  /** Every planted secret value, as a list (as AgentHome.canaries). */
  canaryList: string[];
}

/**
 * A home written by the real agent (drill/lib/real-agent.ts agentHomeSteps), in `dir`: dir/home is
 * the agent user's HOME, dir/hermes its HERMES_HOME, both owned by the test agent user.
 */
export function makeRealAgentHome(dir: string, server: FakeServer): RealAgentHome {
  const install = requireHermes();
  const userHome = path.join(dir, "home");
  const home = path.join(dir, "hermes");
  fs.mkdirSync(userHome, { mode: 0o700 });
  fs.mkdirSync(home, { mode: 0o700 });
  chownToAgent(userHome);
  chownToAgent(home);
  const hermes = new Hermes(install, agentUser(), userHome, home);
  const canaries = makeCanaries();
  for (const step of agentHomeSteps(server.baseUrl, canaries)) {
    const r = hermes.run(step.args, step.turn ? 240_000 : 120_000);
    if (r.status !== 0) throw new Error(`real agent, ${step.what}: hermes exit ${r.status}\n${(r.stderr.trim() || r.stdout.trim()).slice(-2000)}`);
  }
  return { hermes, home, canaries, canaryList: [canaries.configKey, canaries.envKey] };
}
