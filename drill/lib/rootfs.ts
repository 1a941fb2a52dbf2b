// The drill's boxes all start from one minimal Debian root filesystem, built once with
// debootstrap and cached under /var/cache/agent-backups, keyed by a hash of its recipe.
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { run } from "./exec";
import type { Progress } from "./progress";
import { removeTree } from "./teardown";

export const cacheRoot = "/var/cache/agent-backups";

export interface RootfsRecipe {
  suite: string;
  variant: string;
  packages: readonly string[];
  mirror: string;
  /** Bumped when the post-build adjustments below change. */
  adjustments: number;
}

/**
 * What every box needs: systemd as PID 1, borg, sqlite3, jq, yq and ssh (client and server) for
 * the host scripts (agent-install refuses a host without its tools, and boxes have no network to
 * fetch them); python3 and its venv for the real agent (installed from the cached wheelhouse).
 */
export const rootfsPackages = [
  "systemd", "systemd-sysv", "dbus", "iproute2", "borgbackup", "sqlite3", "jq", "yq", "openssh-client", "openssh-server",
  "python3", "python3-venv",
] as const;

/** The Debian mirror this machine's apt uses (deb822 .sources or sources.list), for `suite`. */
export function debianMirror(suite: string, etcApt = "/etc/apt"): string {
  const found: string[] = [];
  const dir = path.join(etcApt, "sources.list.d");
  const sourcesFiles = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith(".sources")).sort() : [];
  for (const f of sourcesFiles) {
    for (const stanza of fs.readFileSync(path.join(dir, f), "utf8").split(/\n\s*\n/)) {
      const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, "mi").exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
      if (field("Types").includes("deb") && field("Suites").includes(suite)) found.push(...field("URIs"));
    }
  }
  const list = path.join(etcApt, "sources.list");
  if (fs.existsSync(list)) {
    for (const line of fs.readFileSync(list, "utf8").split("\n")) {
      const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s/.exec(line.trim() + " ");
      if (m && m[2] === suite && m[1]) found.push(m[1]);
    }
  }
  const mirror = found.find((u) => /^https?:\/\/[A-Za-z0-9.:/_~-]+$/.test(u));
  if (!mirror) throw new Error(`no Debian mirror for ${suite} in ${etcApt}/sources.list(.d): add one, e.g. "deb http://deb.debian.org/debian ${suite} main"`);
  return mirror;
}

export function defaultRecipe(): RootfsRecipe {
  return { suite: "bookworm", variant: "minbase", packages: rootfsPackages, mirror: debianMirror("bookworm"), adjustments: 1 };
}

export function recipeHash(recipe: RootfsRecipe): string {
  return crypto.createHash("sha256").update(JSON.stringify(recipe)).digest("hex").slice(0, 16);
}

export function rootfsPath(recipe: RootfsRecipe): string {
  return path.join(cacheRoot, `rootfs-${recipeHash(recipe)}`);
}

/** Marker written last into a finished build: a cached tree without it is never used. */
const markerFile = "etc/agent-backups-rootfs.json";

/**
 * The cached rootfs for `recipe`, built first when missing. The build happens in a temp dir that
 * is renamed into place only when complete, so an interrupted build leaves nothing half-made; two
 * runs building at once both succeed (the second rename loses and its copy is removed).
 */
export async function ensureRootfs(recipe: RootfsRecipe, progress: Progress): Promise<string> {
  const final = rootfsPath(recipe);
  if (fs.existsSync(path.join(final, markerFile))) return final;
  fs.mkdirSync(cacheRoot, { recursive: true, mode: 0o700 });
  const build = fs.mkdtempSync(path.join(cacheRoot, `.build-${recipeHash(recipe)}-`));
  const target = path.join(build, "rootfs");
  try {
    progress.line(`building the box root filesystem (debootstrap ${recipe.variant} ${recipe.suite} from ${recipe.mirror}; about a minute, once)`);
    await run(
      ["debootstrap", `--variant=${recipe.variant}`, `--include=${recipe.packages.join(",")}`, recipe.suite, target, recipe.mirror],
      { timeoutMs: 900_000 },
    );
    adjust(target);
    fs.writeFileSync(path.join(target, markerFile), JSON.stringify(recipe, null, 2) + "\n");
    try {
      fs.renameSync(target, final);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
      // Another run finished first: use its copy.
    }
    if (!fs.existsSync(path.join(final, markerFile))) {
      throw new Error(`${final} exists without ${markerFile}: a broken cache; remove it and run again`);
    }
    return final;
  } finally {
    await removeTree(build);
  }
}

/**
 * Per-box identity must not come from the cache: the machine id and sshd host keys are removed
 * here and made fresh for every box; apt's downloaded packages are dropped to keep copies small.
 */
function adjust(root: string): void {
  fs.writeFileSync(path.join(root, "etc/machine-id"), "");
  for (const f of fs.readdirSync(path.join(root, "etc/ssh"))) {
    if (f.startsWith("ssh_host_")) fs.rmSync(path.join(root, "etc/ssh", f));
  }
  const archives = path.join(root, "var/cache/apt/archives");
  for (const f of fs.readdirSync(archives)) if (f.endsWith(".deb")) fs.rmSync(path.join(archives, f));
}
