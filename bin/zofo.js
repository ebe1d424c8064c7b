#!/usr/bin/env node
// The `zofo` command: runs the compiled CLI (dist/lib/cli/main.js, built by `npm install`).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const entry = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'lib', 'cli', 'main.js');
if (!existsSync(entry)) {
  process.stderr.write(`zofo: ${entry} is missing; build it with \`npm run build:ts\` (npm install does this)\n`);
  process.exit(1);
}
const { main } = await import(pathToFileURL(entry).href);
await main(process.argv);
