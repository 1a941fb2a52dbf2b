// The real agent (hermes-agent from the Python package index) as the subject of tests and of the
// local drill: its pinned requirements, a wheelhouse downloaded once and cached beside the box root
// filesystem (boxes install from it with no network), and the one recipe by which the agent writes
// a home with its own commands. Tests (test/lib/hermes-agent.ts) and the drill both use this recipe.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { agentPackage, agentVersion, pipInstallArgs, requirementsFile, requirementsHash } from "../../components/drill-agent";
import { run } from "./exec";
import { cacheRoot } from "./rootfs";
import { removeTree } from "./teardown";

export const repoRoot = path.resolve(__dirname, "..", "..");
export { agentPackage, agentVersion, pipInstallArgs, requirementsFile, requirementsHash };
/** The fake OpenAI-compatible server the agent talks to (Python standard library only). */
export const fakeServerFile = path.join(repoRoot, "test", "fixtures", "fake-openai-server");
/** The interpreter the agent's venv is made from: Debian's own (python3 and python3-venv). */
export const systemPython = "/usr/bin/python3";

export function wheelhousePath(): string {
  return path.join(cacheRoot, `hermes-wheelhouse-${agentVersion()}-${requirementsHash()}`);
}

/** Marker written last into a finished cache: a directory without it is never used. */
export const readyMarker = ".agent-backups-ready";

/**
 * The cached wheelhouse (every pinned wheel and the requirements file), downloaded first when
 * missing: into a temp dir renamed into place when complete, as the rootfs is. The download uses
 * a throwaway venv's pip, so the machine needs python3 and python3-venv, not python3-pip.
 */
export async function ensureWheelhouse(log: (line: string) => void = () => undefined): Promise<string> {
  const final = wheelhousePath();
  if (fs.existsSync(path.join(final, readyMarker))) return final;
  if (!fs.existsSync(systemPython)) throw new Error(`the real agent needs ${systemPython}: apt-get install -y python3 python3-venv`);
  fs.mkdirSync(cacheRoot, { recursive: true, mode: 0o700 });
  const build = fs.mkdtempSync(path.join(cacheRoot, ".build-wheelhouse-"));
  try {
    log(`downloading ${agentPackage} ${agentVersion()} and its pinned dependencies into ${final} (once)`);
    const pipVenv = path.join(build, "pip");
    await run([systemPython, "-m", "venv", pipVenv], { timeoutMs: 120_000 }).catch((err: Error) => {
      throw new Error(`python3 -m venv failed (apt-get install -y python3-venv): ${err.message}`);
    });
    const wheels = path.join(build, "wheelhouse");
    await run([path.join(pipVenv, "bin", "pip"), "download", "--no-deps", "--require-hashes", "--only-binary=:all:", "--no-input",
      "--disable-pip-version-check", "-r", requirementsFile, "-d", wheels], { timeoutMs: 900_000 });
    fs.copyFileSync(requirementsFile, path.join(wheels, "requirements.txt"));
    fs.writeFileSync(path.join(wheels, readyMarker), `${agentPackage}==${agentVersion()}\n`);
    try {
      fs.renameSync(wheels, final);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
    }
    if (!fs.existsSync(path.join(final, readyMarker))) throw new Error(`${final} exists without ${readyMarker}: remove it and run again`);
    return final;
  } finally {
    await removeTree(build);
  }
}

/** Canary secrets the agent is given (API keys): none may ever reach an archive. */
export interface AgentCanaries {
  /** model.api_key, written by `hermes config set` into config.yaml. */
  configKey: string;
  /** OPENAI_API_KEY, written by `hermes config set` into .env. */
  envKey: string;
}

export function makeCanaries(): AgentCanaries {
  const r = () => crypto.randomBytes(12).toString("hex");
  return { configKey: `sk-canary-cfg-${r()}`, envKey: `sk-canary-env-${r()}` };
}

export const fakeModel = "fake-model";
/** The second profile the recipe makes (a clone of the default one: config, .env, SOUL.md, skills). */
export const secondProfile = "work";
/** A word the recipe has the agent remember; a restored agent must put it in its prompt again. */
export const rememberedWord = "teal";

export interface AgentStep {
  what: string;
  /** Arguments of the `hermes` command. */
  args: string[];
  /** A model turn: slower (a Python start and the model calls). */
  turn?: boolean;
}

/**
 * How the real agent writes its home, with its own commands only: setup, the model and two API keys
 * (canaries), turns that leave sessions and messages in state.db and memories (a scripted memory
 * tool call), a cron job, and a second profile with turns of its own.
 */
export function agentHomeSteps(baseUrl: string, canaries: AgentCanaries): AgentStep[] {
  const p = ["-p", secondProfile];
  return [
    { what: "setup", args: ["setup", "--non-interactive"] },
    { what: "model provider", args: ["config", "set", "model.provider", "custom"] },
    { what: "model base URL", args: ["config", "set", "model.base_url", baseUrl] },
    { what: "model", args: ["config", "set", "model.default", fakeModel] },
    { what: "model API key (canary, config.yaml)", args: ["config", "set", "model.api_key", canaries.configKey] },
    { what: "second API key (canary, .env)", args: ["config", "set", "OPENAI_API_KEY", canaries.envKey] },
    { what: "a first turn", args: ["-z", "Hello from the backup tests: a first turn."], turn: true },
    { what: "a turn that writes MEMORY.md", args: ["-z", `REMEMBER: the user's favourite colour is ${rememberedWord}`], turn: true },
    { what: "a turn that writes USER.md", args: ["-z", "REMEMBER-USER: the user prefers short answers"], turn: true },
    { what: "a cron job", args: ["cron", "create", "--name", "daily-digest", "0 9 * * *", "Summarise yesterday's notes"] },
    { what: "a second profile", args: ["profile", "create", "--clone", secondProfile] },
    { what: "a turn in the second profile", args: [...p, "-z", "REMEMBER: the work profile tracks the launch plan"], turn: true },
    { what: "another turn in the second profile", args: [...p, "-z", "Plan the week for the launch."], turn: true },
  ];
}

/** Totals of `hermes sessions stats`. */
export interface SessionStats {
  sessions: number;
  messages: number;
}

export function parseSessionStats(output: string): SessionStats {
  const sessions = /^Total sessions:\s*(\d+)\s*$/m.exec(output)?.[1];
  const messages = /^Total messages:\s*(\d+)\s*$/m.exec(output)?.[1];
  if (sessions === undefined || messages === undefined) throw new Error(`hermes sessions stats: no totals in ${JSON.stringify(output.slice(0, 300))}`);
  return { sessions: Number(sessions), messages: Number(messages) };
}

/** Session IDs in `hermes sessions list` output (the last column, e.g. 20261130_180217_08cb23). */
export function parseSessionIds(output: string): string[] {
  return [...output.matchAll(/\b(\d{8}_\d{6}_[0-9a-f]{6})\s*$/gm)].map((m) => m[1] as string);
}
