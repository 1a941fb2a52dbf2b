// The Pulumi program: picks the stack's entry by name. The drill stack is loaded only for drill
// stacks, so a missing or half-written drill stack never breaks `pulumi up -s prod`.
import * as pulumi from "@pulumi/pulumi";
import { prodStack } from "./stacks/prod";

/** `prod`, `drill`, or `drill-<anything>`; any other stack name is refused. */
function stackKind(stack: string): "prod" | "drill" {
  if (stack === "prod") return "prod";
  if (stack === "drill" || stack.startsWith("drill-")) return "drill";
  throw new Error(`unknown stack ${JSON.stringify(stack)}: expected "prod", "drill" or a name starting with "drill-"`);
}

/** Runs the drill stack module: its exported entry function if it has one, else its exports. */
async function runDrill(): Promise<unknown> {
  // Loaded lazily (CommonJS require, as ts-node runs this program) so prod never depends on it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const mod = require("./stacks/drill") as Record<string, unknown>;
  const entry = ["drillStack", "default", "main"].map((k) => mod[k]).find((f) => typeof f === "function") as (() => unknown) | undefined;
  return entry ? await entry() : mod;
}

// The Pulumi nodejs runtime loads this file with ts-node as CommonJS and runs an exported function.
module.exports = async (): Promise<unknown> => (stackKind(pulumi.getStack()) === "prod" ? prodStack() : runDrill());
