// The real agent inside the drill's boxes: installed from the cached wheelhouse (no network in a
// box), talking to the fake model server on the box's own loopback, run as the agent's non-root
// user. On the agent host it writes its home with the recipe of drill/lib/real-agent.ts and keeps
// taking turns during the backups; on the restore box it takes a turn on the restored home.
import * as fs from "fs";
import * as path from "path";
import { drillAgentBin, drillAgentVenv } from "../../components/drill-agent";
import type { DrillCheck } from "../../components/drill-report";
import type { Box } from "./box";
import { waitFor, type RunOptions, type RunResult } from "./exec";
import {
  agentHomeSteps, agentPackage, fakeServerFile, makeCanaries, parseSessionStats, pipInstallArgs, rememberedWord, repoRoot,
  secondProfile, type SessionStats,
} from "./real-agent";

export const boxVenv = drillAgentVenv;
export const boxWheelhouse = "/var/cache/hermes-wheelhouse";
/** Where the drill's own helpers go inside boxes (as drill/lib/agent-host.ts boxToolsDir). */
const toolsDir = "/usr/local/lib/agent-backups-drill";
const fakeServerPort = 8765;
/** The model endpoint of the agent, the same on every box: a restored config.yaml still points at it. */
export const boxBaseUrl = `http://127.0.0.1:${fakeServerPort}/v1`;

/**
 * Install the pinned agent into a box from the machine's wheelhouse: copied into the box's tree,
 * then `pip install --no-index` into a venv, `hermes` linked onto PATH. Returns the installed version.
 */
export async function installAgent(box: Box, wheelhouse: string): Promise<string> {
  fs.cpSync(wheelhouse, path.join(box.dir, boxWheelhouse), { recursive: true });
  await box.exec(["python3", "-m", "venv", boxVenv], { timeoutMs: 120_000 });
  await box.exec([`${boxVenv}/bin/pip`, ...pipInstallArgs, "--no-index", "--find-links", boxWheelhouse, "-r", `${boxWheelhouse}/requirements.txt`],
    { timeoutMs: 900_000 });
  await box.exec(["ln", "-sfn", `${boxVenv}/bin/hermes`, drillAgentBin]);
  const v = await box.exec([`${boxVenv}/bin/python`, "-c", `import importlib.metadata as m; print(m.version("${agentPackage}"))`]);
  return v.stdout.trim();
}

/** The fake model server as a unit of the box (its own dynamic user), listening on loopback. */
export async function startFakeServer(box: Box): Promise<void> {
  const server = `${toolsDir}/fake-openai-server`;
  // Reachable by the server's dynamic user and the agent's user (writeFile would make it 0700).
  await box.exec(["install", "-d", "-m", "0755", toolsDir]);
  await box.writeFile(server, fs.readFileSync(fakeServerFile), "0755");
  await box.writeFile(
    "/etc/systemd/system/fake-openai.service",
    "[Unit]\nDescription=Fake OpenAI-compatible model server for the real agent (drill)\n\n" +
      // A box powers off quickly: a test server needs no grace period.
      `[Service]\nDynamicUser=yes\nLogsDirectory=fake-openai\nTimeoutStopSec=5\n` +
      `ExecStart=/usr/bin/python3 ${server} --host 127.0.0.1 --port ${fakeServerPort} --log /var/log/fake-openai/requests.log\n`,
    "0644",
  );
  await box.exec(["systemctl", "daemon-reload"]);
  await box.exec(["systemctl", "start", "fake-openai.service"]);
  await waitFor("the fake model server to listen", 100, 100, async () => {
    const r = await box.exec(["ss", "-ltnH", `sport = :${fakeServerPort}`], { allowFailure: true });
    return r.code === 0 && r.stdout.trim() !== "" ? true : undefined;
  });
}

export interface AgentUserHome {
  user: string;
  /** The user's HOME in the box (the box is scratch: nothing here is a real user's). */
  home: string;
  /** HERMES_HOME. */
  hermesHome: string;
}

/** One hermes command as the agent's user, with a clean environment. */
export function hermes(box: Box, who: AgentUserHome, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return box.exec(["runuser", "-u", who.user, "--", "env", "-i", "-C", who.home, `HOME=${who.home}`, `HERMES_HOME=${who.hermesHome}`,
    "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "TERM=dumb", "NO_COLOR=1", "hermes", ...args], { timeoutMs: 240_000, ...opts });
}

export async function sessionStats(box: Box, who: AgentUserHome, profile?: string): Promise<SessionStats> {
  return parseSessionStats((await hermes(box, who, [...(profile ? ["-p", profile] : []), "sessions", "stats"])).stdout);
}

/**
 * The agent writes its home with its own commands (the recipe of real-agent.ts, API key canaries
 * included), then keeps taking turns as a unit (hermes-turns) while the backups run. Returns the
 * canaries, one per line.
 */
export async function writeAgentHome(box: Box, who: AgentUserHome): Promise<string> {
  const canaries = makeCanaries();
  await box.exec(["install", "-d", "-m", "0700", "-o", who.user, "-g", who.user, who.hermesHome]);
  for (const step of agentHomeSteps(boxBaseUrl, canaries)) {
    // A step that hands the agent a key may echo it: its output is never shown.
    const secret = step.args.some((a) => a === canaries.configKey || a === canaries.envKey);
    const r = await hermes(box, who, step.args, { allowFailure: true, secretOutput: secret });
    if (r.code !== 0) {
      const why = secret ? "(output withheld)" : (r.stderr.trim() || r.stdout.trim()).split("\n").slice(-8).join("\n");
      throw new Error(`the real agent failed at "${step.what}": hermes exit ${r.code}\n${why}`);
    }
  }
  const turns = `${toolsDir}/hermes-turns`;
  await box.writeFile(turns, fs.readFileSync(path.join(repoRoot, "test", "fixtures", "hermes-turns")), "0755");
  await box.writeFile(
    "/etc/systemd/system/hermes-turns.service",
    "[Unit]\nDescription=The real agent at work: one turn after another\n\n" +
      `[Service]\nUser=${who.user}\nWorkingDirectory=${who.home}\nTimeoutStopSec=5\nEnvironment=HOME=${who.home} HERMES_HOME=${who.hermesHome} PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8\n` +
      `ExecStart=${turns} --duration 3600 --pause 1 --profile ${secondProfile}\n`,
    "0644",
  );
  await box.exec(["systemctl", "daemon-reload"]);
  await box.exec(["systemctl", "start", "hermes-turns.service"]);
  return `${canaries.configKey}\n${canaries.envKey}\n`;
}

/** The agent kept writing while the backups ran: more sessions after than before, and still at work. */
export async function liveWritesCheck(box: Box, who: AgentUserHome, before: SessionStats): Promise<DrillCheck> {
  // A turn that started while the backups ran may still be finishing (each is ~10 s of Python
  // start-up plus a streamed answer, longer on a loaded machine): wait for it, bounded (30 x 3 s).
  let after = await sessionStats(box, who);
  for (let i = 0; i < 30 && after.sessions <= before.sessions; i++) {
    await new Promise((r) => setTimeout(r, 3000));
    after = await sessionStats(box, who);
  }
  const active = (await box.exec(["systemctl", "is-active", "hermes-turns.service"], { allowFailure: true })).stdout.trim();
  return {
    name: "agent:writing",
    ok: after.sessions > before.sessions && active === "active",
    detail: `hermes-turns.service ${active}; sessions ${before.sessions} -> ${after.sessions}, messages ${before.messages} -> ${after.messages} across the backups`,
  };
}

/**
 * One more turn on the restored home, after the API key is provisioned again (the backup never
 * keeps it): the agent must answer and must have its restored memory in its prompt.
 */
export async function restoredTurnCheck(box: Box, who: AgentUserHome): Promise<DrillCheck> {
  const set = await hermes(box, who, ["config", "set", "model.api_key", "sk-provisioned-after-restore"], { allowFailure: true, secretOutput: true });
  const before = await sessionStats(box, who).catch(() => undefined);
  const r = await hermes(box, who, ["-z", `RECALL: ${rememberedWord}`], { allowFailure: true });
  const after = await sessionStats(box, who).catch(() => undefined);
  const answer = r.stdout.trim().split("\n").pop() ?? "";
  const ok = set.code === 0 && r.code === 0 && answer === `recalled ${rememberedWord}: yes` && before !== undefined && after?.sessions === before.sessions + 1;
  return {
    name: "agent:turn",
    ok,
    detail: ok
      ? `hermes -z on the restored home answered with its restored memory in its prompt; sessions ${before?.sessions} -> ${after?.sessions}`
      : `config set exit ${set.code}, hermes -z exit ${r.code}: ${JSON.stringify(answer.slice(0, 200))} ${r.stderr.trim().split("\n").slice(-2).join(" ").slice(0, 300)}`,
  };
}
