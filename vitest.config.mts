import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Host and e2e tests start real sshd, borg and systemd boxes: one file at a time keeps them
    // from fighting over two cores, and gives each its own generous time budget.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 600_000,
    reporters: ["default"],
  },
});
