#!/usr/bin/env node
// `npm run pack:all`: installable tarballs of zofo and of this machine's platform
// package, in artifacts/ (what `npm publish` would upload):
//
//   artifacts/zofo-<version>.tgz
//   artifacts/zofo-<target>-<version>.tgz     e.g. zofo-linux-x64-gnu-0.1.0.tgz
//
// The published zofo is this repository's package.json with two changes, made here
// and nowhere else (docs/distribution.md):
//   - no install-time scripts (install, preinstall, postinstall, prepare): installing zofo
//     runs nothing; the binary comes from a platform package (or `npx zofo build`);
//   - optionalDependencies: every platform package under packages/, at zofo's version.
// Runs `npm run prebuild` first when this platform's binary is missing. Needs dist/
// (`npm run build:ts`).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const artifacts = join(root, 'artifacts');
// The npm that runs this script (`npm run pack:all` sets npm_execpath), through node: no
// shell, so paths with spaces are safe on every platform.
const npm = process.env.npm_execpath ? [process.execPath, process.env.npm_execpath] : ['npm'];
const LIFECYCLE = ['preinstall', 'install', 'postinstall', 'prepare'];

function npmIn(cwd, args) {
  const [cmd, ...pre] = npm;
  const r = spawnSync(cmd, [...pre, ...args], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`npm ${args.join(' ')} failed in ${cwd}`);
  return r.stdout;
}
const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));

/** The published package.json of zofo, from the repository's. */
export function publishedManifest(manifest, platformPackages) {
  const published = structuredClone(manifest);
  for (const s of LIFECYCLE) delete published.scripts?.[s];
  published.optionalDependencies = {};
  for (const p of platformPackages) {
    if (p.version !== manifest.version) throw new Error(`${p.name} is at ${p.version}, zofo at ${manifest.version}: versions must match`);
    published.optionalDependencies[p.name] = p.version;
  }
  return published;
}

/** Every platform package's package.json under packages/. */
export function platformPackages() {
  return readdirSync(join(root, 'packages'), { withFileTypes: true })
    .filter((d) => d.isDirectory() && existsSync(join(root, 'packages', d.name, 'package.json')))
    .map((d) => ({ dir: join(root, 'packages', d.name), ...readJson(join(root, 'packages', d.name, 'package.json')) }));
}

function packTo(dir) {
  const [{ filename }] = JSON.parse(npmIn(dir, ['pack', '--ignore-scripts', '--json', '--pack-destination', artifacts]));
  return join(artifacts, filename);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const platformJs = join(root, 'dist', 'lib', 'platform.js');
  if (!existsSync(platformJs)) throw new Error(`${platformJs} is missing; run \`npm run build:ts\` first`);
  const { cpuPackageName } = await import(pathToFileURL(platformJs).href);
  const manifest = readJson(join(root, 'package.json'));
  const packages = platformPackages();
  const mine = packages.find((p) => p.name === cpuPackageName());
  if (!mine) throw new Error(`no platform package for ${cpuPackageName()} under packages/`);
  if (!existsSync(join(mine.dir, 'zofo_cpu.node'))) {
    const r = spawnSync(process.execPath, [join(root, 'scripts', 'prebuild.mjs')], { cwd: root, stdio: 'inherit' });
    if (r.status !== 0) process.exit(r.status ?? 1);
  }
  mkdirSync(artifacts, { recursive: true });

  // Stage exactly the files `npm pack` would take, with the published package.json.
  const stage = join(artifacts, 'stage', 'zofo');
  rmSync(stage, { recursive: true, force: true });
  const [{ files }] = JSON.parse(npmIn(root, ['pack', '--dry-run', '--ignore-scripts', '--json']));
  for (const { path } of files) {
    mkdirSync(dirname(join(stage, path)), { recursive: true });
    copyFileSync(join(root, path), join(stage, path));
  }
  writeFileSync(join(stage, 'package.json'), JSON.stringify(publishedManifest(manifest, packages), null, 2) + '\n');
  const tarballs = [packTo(stage), packTo(mine.dir)];
  rmSync(join(artifacts, 'stage'), { recursive: true, force: true });
  for (const t of tarballs) console.log(t);
}
