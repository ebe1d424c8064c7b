/**
 * Which prebuilt platform package fits this machine. The packages are named after
 * Node's own `process.platform` and `process.arch` (plus the C library on Linux, and
 * the CUDA major version for the CUDA variant), so the name is computed, never looked
 * up in a table: `@zofo/linux-x64-gnu`, `@zofo/linux-x64-gnu-cuda13`, `@zofo/darwin-arm64`,
 * `@zofo/win32-x64`. docs/distribution.md says why.
 */
import { existsSync, readFileSync } from 'node:fs';

/** The npm scope every platform package is published under. */
export const PLATFORM_SCOPE = '@zofo';

/** CUDA major versions that have a prebuilt CUDA variant (newest first). */
export const CUDA_MAJORS: readonly number[] = [13];

/** The targets with a prebuilt CPU package (packages/<target>/). */
export const CPU_TARGETS: readonly string[] = ['linux-x64-gnu', 'linux-arm64-gnu', 'darwin-arm64', 'win32-x64'];

/** The platforms whose CUDA variants are published (the CUDA backend is Linux x64 only). */
const CUDA_TARGETS: readonly string[] = ['linux-x64-gnu'];

// glibc or musl. Reading /usr/bin/ldd first is what detect-libc does: cheap, and it
// avoids process.report, which can be slow on some hosts.
function linuxLibc(): 'gnu' | 'musl' {
  try {
    const ldd = readFileSync('/usr/bin/ldd', 'latin1');
    if (ldd.includes('musl')) return 'musl';
    if (ldd.includes('GNU C Library') || ldd.includes('GLIBC')) return 'gnu';
  } catch {
    // no ldd: ask Node itself
  }
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ? 'gnu' : 'musl';
}

/**
 * The platform target of this machine, e.g. `linux-x64-gnu`, `darwin-arm64`, `win32-x64`:
 * `<process.platform>-<process.arch>`, with `-gnu` or `-musl` on Linux.
 */
export function platformTarget(platform: string = process.platform, arch: string = process.arch, libc: () => 'gnu' | 'musl' = linuxLibc): string {
  return platform === 'linux' ? `${platform}-${arch}-${libc()}` : `${platform}-${arch}`;
}

/** The npm name of the CPU package of a target, e.g. `@zofo/linux-x64-gnu` (whether or not one is published: CPU_TARGETS). */
export function cpuPackageName(target: string = platformTarget()): string {
  return `${PLATFORM_SCOPE}/${target}`;
}

/** The npm names of a target's CUDA variants, newest CUDA first (none for most targets). */
export function cudaPackageNames(target: string = platformTarget()): string[] {
  return CUDA_TARGETS.includes(target) ? CUDA_MAJORS.map((m) => `${PLATFORM_SCOPE}/${target}-cuda${m}`) : [];
}

/**
 * Whether an NVIDIA kernel driver is loaded (Linux: /proc/driver/nvidia/version). Without
 * one the CUDA variant cannot run, so the loader does not even open it.
 */
export function nvidiaDriverPresent(): boolean {
  return process.platform === 'linux' && existsSync('/proc/driver/nvidia/version');
}
