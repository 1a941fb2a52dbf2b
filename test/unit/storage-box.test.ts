import * as pulumi from "@pulumi/pulumi";
import { beforeAll, describe, expect, test } from "vitest";
import { resetPasswordInterpreter, resetPasswordScript } from "../../components/password-reset";
import { StorageBox, renderKnownHosts } from "../../components/storage-box";
import { storageBoxHostKeys } from "../../config/prod";
import { MockRun, isSecretValue, mockBox, runMocked, valueOf } from "./prod-mocks";

const boxType = "hcloud:index/storageBox:StorageBox";

describe("StorageBox component", () => {
  let run: MockRun<StorageBox>;
  beforeAll(async () => {
    run = await runMocked(
      () => new StorageBox("backup-storage", {
        name: "agent-backups", location: "fsn1", boxType: "bx21",
        snapshots: { hour: 3, minute: 17, keep: 14 }, port: 23, hostKeys: storageBoxHostKeys,
      }),
    );
    await valueOf(run.result.knownHosts);
  });

  test("one box with a daily snapshot plan: hour and minute set, both day fields unset", () => {
    const [box, ...more] = run.byType(boxType);
    expect(more).toHaveLength(0);
    expect(box!.inputs.snapshotPlan).toEqual({ hour: 3, minute: 17, maxSnapshots: 14 });
    expect(box!.inputs.snapshotPlan).not.toHaveProperty("dayOfWeek");
    expect(box!.inputs.snapshotPlan).not.toHaveProperty("dayOfMonth");
    expect(box!.inputs).toMatchObject({ name: "agent-backups", location: "fsn1", storageBoxType: "bx21", deleteProtection: true });
  });

  test("SSH on and reachable from outside Hetzner, the read-only snapshot directory shown (the runbook reads it), every other access off", () => {
    expect(run.one(boxType, "backup-storage").inputs.accessSettings).toEqual({
      sshEnabled: true, reachableExternally: true, sambaEnabled: false, webdavEnabled: false, zfsEnabled: true,
    });
  });

  test("protected, retained on delete, sshKeys and password changes ignored, password secret", () => {
    const box = run.one(boxType, "backup-storage");
    expect(box.opts.protect).toBe(true);
    expect(box.opts.retainOnDelete).toBe(true);
    expect(box.opts.ignoreChanges).toEqual(["sshKeys", "password"]);
    expect(box.opts.additionalSecretOutputs).toContain("password");
    expect(isSecretValue(box.inputs.password)).toBe(true);
    expect(box.parentType).toBe("agent-backups:storage:StorageBox");
  });

  test("the main account's password is made dead right after creation, by a command that never sees it", () => {
    const reset = run.one("command:local:Command", "backup-storage-password-reset");
    expect(reset.inputs.interpreter).toEqual(resetPasswordInterpreter);
    expect(reset.inputs.create).toBe(resetPasswordScript);
    expect(reset.inputs.environment).toEqual({ STORAGE_BOX_ID: mockBox.id });
    expect(reset.inputs.addPreviousOutputInEnv).toBe(false);
    expect(reset.inputs.triggers).toEqual([mockBox.id]);
    expect((reset.opts.dependsOn as pulumi.Resource[]).length).toBe(1);
    expect(reset.parentType).toBe("agent-backups:storage:StorageBox");
    // The value Pulumi generated (and keeps in the state) reaches it nowhere.
    const stored = run.one("random:index/randomPassword:RandomPassword", "backup-storage-password").state.result as string;
    expect(JSON.stringify(reset.inputs)).not.toContain(stored);
  });

  test("the main account's key is the admin key given at creation, and stays secret", async () => {
    const key = run.one("tls:index/privateKey:PrivateKey", "backup-storage-admin-key");
    expect(key.inputs.algorithm).toBe("ED25519");
    expect(key.opts.protect).toBe(true);
    const box = run.one(boxType, "backup-storage");
    expect(box.inputs.sshKeys).toHaveLength(1);
    expect(box.inputs.sshKeys[0]).toMatch(/^ssh-ed25519 [A-Za-z0-9+/]{68}$/);
    const admin = await valueOf(run.result.adminPrivateKey);
    expect(admin.secret).toBe(true);
    expect(admin.value).toContain("OPENSSH PRIVATE KEY");
  });

  test("known_hosts pins Hetzner's port-23 ed25519 host key for the box's server", async () => {
    const kh = await valueOf(run.result.knownHosts);
    expect(kh.value).toBe(`[${mockBox.server}]:23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIICf9svRenC/PLKIL9nk6K/pxQgoiFC41wTNvoIncOxs\n`);
    expect((await valueOf(run.result.boxId)).value).toBe(4242);
  });
});

describe("renderKnownHosts", () => {
  test("one line per host key", () => {
    const keys = ["ssh-ed25519 " + "A".repeat(68), "ssh-ed25519 " + "B".repeat(68)];
    expect(renderKnownHosts("box.example", 2222, keys)).toBe(`[box.example]:2222 ${keys[0]}\n[box.example]:2222 ${keys[1]}\n`);
  });
  test.each([
    ["host with a space", "box example", 23, storageBoxHostKeys],
    ["host with a newline", "box\n* ssh-ed25519", 23, storageBoxHostKeys],
    ["port out of range", "box.example", 70000, storageBoxHostKeys],
    ["key with an option", "box.example", 23, ['command="sh" ssh-ed25519 ' + "A".repeat(68)]],
  ])("refuses %s", (_what, host, port, keys) => {
    expect(() => renderKnownHosts(host, port, keys)).toThrow(/refusing known_hosts|refusing host key/);
  });
});
