// docs/DRILL.md explains every drill setting, every report field and every user workflow: the lists
// come from their one source (the schemas and the workflows folder), so the page cannot fall behind.
import * as fs from "fs";
import * as path from "path";
import { describe, expect, it } from "vitest";
import { drillConfigKeys } from "../../config/drill";
import { drillReportFields } from "../../components/drill-report";

const root = path.join(__dirname, "..", "..");
const page = fs.readFileSync(path.join(root, "docs", "DRILL.md"), "utf8");

describe("docs/DRILL.md", () => {
  it("documents every drill stack setting", () => {
    for (const key of drillConfigKeys) expect(page, key).toContain(`\`${key}\``);
  });

  it("explains every field of the drill report", () => {
    expect(drillReportFields.length).toBeGreaterThan(5);
    for (const field of drillReportFields) expect(page, field).toContain(`\`${field}\``);
  });

  it("describes every user workflow", () => {
    for (const file of fs.readdirSync(path.join(root, ".github", "workflows"))) expect(page, file).toContain(`\`${file}\``);
  });

  it("shows how to run, read and clean up a drill", () => {
    expect(page).toMatch(/^## Running a drill by hand$/m);
    expect(page).toMatch(/^## Reading the report$/m);
    expect(page).toMatch(/^## Cleaning up a failed drill$/m);
    expect(page).toContain("pulumi destroy");
  });
});
