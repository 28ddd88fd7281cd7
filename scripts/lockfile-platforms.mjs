// Completes package-lock.json with the platform-specific optional packages npm could not look up.
//
// Why: the registry mirror this project is developed against serves Linux builds only. npm then leaves
// the other platforms' optional packages (workerd-darwin-64, @biomejs/cli-win32-x64, …) out of the lock,
// and `npm ci` refuses the lock as out of sync. This adds each missing entry where npm would place it,
// with its version and the os/cpu its name implies, so the lock is complete for every platform.
// Run after `npm install` (it is idempotent): `node scripts/lockfile-platforms.mjs`.
import { readFileSync, writeFileSync } from "node:fs";

const file = "package-lock.json";
const lock = JSON.parse(readFileSync(file, "utf8"));
const pkgs = lock.packages;

const platformOf = (name) => {
  const n = name.toLowerCase();
  const os = /darwin/.test(n)
    ? "darwin"
    : /win32|windows/.test(n)
      ? "win32"
      : /android/.test(n)
        ? "android"
        : /linux/.test(n)
          ? "linux"
          : /freebsd/.test(n)
            ? "freebsd"
            : null;
  const cpu = /arm64|aarch64/.test(n)
    ? "arm64"
    : /x64|-64\b|amd64/.test(n)
      ? "x64"
      : /ia32/.test(n)
        ? "ia32"
        : /arm\b/.test(n)
          ? "arm"
          : null;
  const libc = /musl/.test(n) ? "musl" : os === "linux" && /linux/.test(n) ? "glibc" : null;
  return { os, cpu, libc };
};

/** Where npm finds `name` from a package at `from`: the nearest node_modules that has it, if its version fits. */
function resolve(from, name, version) {
  let dir = from;
  for (;;) {
    const candidate = dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`;
    if (pkgs[candidate]) return pkgs[candidate].version === version ? candidate : null;
    if (!dir) return null;
    const i = dir.lastIndexOf("/node_modules/");
    dir = i === -1 ? "" : dir.slice(0, i);
  }
}

let added = 0;
for (const [path, entry] of Object.entries(pkgs)) {
  const optional = Object.entries(entry.optionalDependencies ?? {});
  // Place missing siblings where npm placed the one it could fetch (e.g. beside workerd-linux-64).
  const sibling = optional.map(([n, v]) => resolve(path, n, v)).find(Boolean);
  for (const [name, version] of optional) {
    if (resolve(path, name, version)) continue;
    const { os, cpu, libc } = platformOf(name);
    if (!os && !cpu) continue; // not a platform package: npm left it out for another reason
    const dir = sibling ? sibling.slice(0, sibling.lastIndexOf("node_modules/")) : "";
    let at = `${dir}node_modules/${name}`;
    if (pkgs[at]) at = `${path}/node_modules/${name}`;
    pkgs[at] = {
      version,
      ...(cpu ? { cpu: [cpu] } : {}),
      ...(entry.dev ? { dev: true } : {}),
      ...(libc ? { libc: [libc] } : {}),
      optional: true,
      ...(os ? { os: [os] } : {}),
    };
    added++;
  }
}
lock.packages = Object.fromEntries(Object.entries(pkgs).sort(([a], [b]) => (a === "" ? -1 : b === "" ? 1 : a.localeCompare(b))));
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`lockfile-platforms: added ${added} platform entr${added === 1 ? "y" : "ies"}`);
