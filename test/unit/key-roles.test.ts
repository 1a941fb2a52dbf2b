// The key roles: the one place that says which key may do what. A role name that is not one of
// the roles' own (an inherited property such as toString) must never render a line: it would have
// no --append-only and so give full access.
import { describe, expect, test } from "vitest";
import { forcedCommand, isKeyRoleName, keyRoleNames, renderAuthorizedKeys, renderKeyLine, retiredKeyRoleNames, type KeyRoleName } from "../../components/key-roles";

const publicKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs";
const line = (role: string) =>
  renderKeyLine({ role: role as KeyRoleName, publicKey, borgCommand: "borg-1.4", repoPath: "/home/borg", comment: "x@acme" });

describe("renderKeyLine", () => {
  test("push and drill are append-only, maintenance is not; each forced to the one repository", () => {
    expect(line("push")).toBe(`command="borg-1.4 serve --append-only --restrict-to-repository /home/borg",restrict ${publicKey} x@acme`);
    expect(line("drill")).toBe(`command="borg-1.4 serve --append-only --restrict-to-repository /home/borg",restrict ${publicKey} x@acme`);
    expect(line("maintenance")).toBe(`command="borg-1.4 serve --restrict-to-repository /home/borg",restrict ${publicKey} x@acme`);
  });

  // Every name `in` finds on a plain object without the object defining it.
  const inherited = ["toString", "constructor", "__proto__", "hasOwnProperty", "valueOf", "isPrototypeOf", "propertyIsEnumerable", "toLocaleString"];

  test.each(inherited)("refuses the inherited name %s as a role", (role) => {
    expect(role in {}).toBe(true);
    expect(() => line(role)).toThrow(/refusing to render an authorized_keys line: invalid role/);
    expect(() => forcedCommand(role as KeyRoleName, "borg", "/home/borg")).toThrow(/refusing forced command/);
    expect(isKeyRoleName(role)).toBe(false);
  });

  test.each(["", "Push", "push ", "maintenance\n", "admin"])("refuses the unknown role %j", (role) => {
    expect(() => line(role)).toThrow(/invalid role/);
  });

  test("a non-string role is refused, not coerced", () => {
    expect(isKeyRoleName(["push"])).toBe(false);
    expect(() => line(["push"] as unknown as string)).toThrow(/invalid role/);
  });

  test("accepts exactly the three roles", () => {
    expect(keyRoleNames).toEqual(["push", "drill", "maintenance"]);
    for (const role of keyRoleNames) expect(isKeyRoleName(role)).toBe(true);
  });
});

describe("renderAuthorizedKeys", () => {
  test("one line per role, whatever else the key map holds", () => {
    const keys = { push: publicKey, drill: publicKey, maintenance: publicKey, toString: publicKey } as unknown as Record<KeyRoleName, string>;
    const text = renderAuthorizedKeys("acme", keys, "borg-1.4", "/home/borg");
    expect(text.split("\n").filter(Boolean).map((l) => l.split(" ").pop())).toEqual(["push@acme", "drill@acme", "maintenance@acme"]);
  });

  test("a retired repository's file: the maintenance line only, though every key is at hand", () => {
    expect(retiredKeyRoleNames).toEqual(["maintenance"]);
    const keys = { push: publicKey, drill: publicKey, maintenance: publicKey };
    expect(renderAuthorizedKeys("acme", keys, "borg-1.4", "/home/borg", retiredKeyRoleNames)).toBe(
      `command="borg-1.4 serve --restrict-to-repository /home/borg",restrict ${publicKey} maintenance@acme\n`,
    );
  });

  test("a role without a key, an unknown role, or no role at all is refused, never an empty or partial file", () => {
    expect(() => renderAuthorizedKeys("acme", { maintenance: publicKey }, "borg-1.4", "/home/borg")).toThrow(/no public key for "push", "drill"/);
    expect(() => renderAuthorizedKeys("acme", { maintenance: publicKey }, "borg-1.4", "/home/borg", ["toString" as KeyRoleName])).toThrow(/no public key for "toString"/);
    expect(() => renderAuthorizedKeys("acme", { maintenance: publicKey }, "borg-1.4", "/home/borg", [])).toThrow(/without any key/);
  });
});
