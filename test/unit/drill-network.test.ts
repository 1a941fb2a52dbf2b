// Where the drill box runs: a configured subnet and its VPC, else the region's default VPC, and a
// clear error naming the key to set when the region has none (some accounts have no default VPC).
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, test } from "vitest";
import { defaultVpcOf, drillNetwork, type DrillNetwork } from "../../components/drill-box";

/** drillNetwork under mocks whose EC2 lookups answer from `vpcs` and `subnets`. */
async function network(subnetId: string | undefined, vpcs: string[], subnets: Record<string, string> = {}) {
  const invokes: { token: string; inputs: Record<string, any> }[] = [];
  await pulumi.runtime.setMocks({
    newResource: (a) => ({ id: `${a.name}-id`, state: a.inputs }),
    call: (a) => {
      invokes.push({ token: a.token, inputs: a.inputs });
      if (a.token === "aws:ec2/getVpcs:getVpcs") return { ...a.inputs, ids: vpcs };
      if (a.token === "aws:ec2/getSubnet:getSubnet") {
        const vpcId = subnets[a.inputs.id as string];
        if (vpcId === undefined) throw new Error(`no subnet ${a.inputs.id}`);
        return { ...a.inputs, vpcId };
      }
      return a.inputs;
    },
  }, "agent-backups", "drill", false);
  // The output's own promise (internal, but what the engine awaits) rejects with an apply's error.
  const out = drillNetwork("eu-south-2", subnetId) as unknown as { promise(): Promise<DrillNetwork> };
  let result: DrillNetwork | Error;
  try {
    result = await out.promise();
  } catch (e) {
    result = e as Error;
  }
  return { result, invokes };
}

describe("drillNetwork", () => {
  test("a configured subnet: its own VPC, no default VPC lookup", async () => {
    const { result, invokes } = await network("subnet-0aaaaaaaaaaaaaaaa", [], { "subnet-0aaaaaaaaaaaaaaaa": "vpc-0bbbbbbbbbbbbbbbb" });
    expect(result).toEqual({ vpcId: "vpc-0bbbbbbbbbbbbbbbb", subnetId: "subnet-0aaaaaaaaaaaaaaaa" });
    expect(invokes.map((i) => i.token)).toEqual(["aws:ec2/getSubnet:getSubnet"]);
  });

  test("no subnet: the region's default VPC, found by the is-default filter", async () => {
    const { result, invokes } = await network(undefined, ["vpc-0ccccccccccccccccc"]);
    expect(result).toEqual({ vpcId: "vpc-0ccccccccccccccccc" });
    expect(invokes[0]?.inputs.filters).toEqual([{ name: "is-default", values: ["true"] }]);
  });

  test("no subnet and no default VPC: a clear error naming the key to set", () => {
    // What drillNetwork applies to the lookup's answer (an error inside an apply fails the update).
    expect(() => defaultVpcOf("eu-south-2", [])).toThrow("region eu-south-2 has no default VPC: set agent-backups:subnetId");
    expect(() => defaultVpcOf("eu-south-2", undefined)).toThrow(/no default VPC/);
    expect(defaultVpcOf("eu-south-2", ["vpc-0ccccccccccccccccc"])).toBe("vpc-0ccccccccccccccccc");
  });
});
