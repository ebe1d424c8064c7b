/**
 * Loads the communicator addon (zofo_comm.node: MPI, and NCCL where built with it)
 * lazily, on the first distributed call, so that importing zofo never loads libmpi.
 * It is a separate binary from the CPU addon: if it cannot load, only the distributed
 * modes are unavailable, with ONE error saying why and which packages to install.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { packageRoot } from '../binding.js';
import { ZofoError } from '../errors.js';

/** The handle the optimizer passes to the engine: a type-tagged object holding the native communicator. */
export type NativeCommHandle = object;

/** Collectives made so far, the bytes each carried from this rank, and the wall time spent in them (waiting for slower ranks included). */
export interface CommStats {
  calls: number;
  bytes: number;
  seconds: number;
}

/** The raw communicator binding (native/comm/addon_comm.cpp). */
export interface CommBinding {
  /** MPI's library version string. */
  readonly library: string;
  /** Built with NCCL (device-memory collectives). */
  readonly nccl: boolean;
  init(): { rank: number; size: number; threadLevel: 'serialized' | 'multiple'; timeout: number; handle: NativeCommHandle };
  allreduce(buffer: Float32Array | Float64Array, what: string): Promise<void>;
  broadcast(buffer: ArrayBufferView, root: number, what: string): Promise<void>;
  barrier(what: string): Promise<void>;
  enableDevice(device: number): void;
  abort(message: string, code: number): never;
  stats(): CommStats;
  finalize(): void;
  ncclSelfTest?(device: number, n: number): string;
}

const require = createRequire(import.meta.url);
let binding: CommBinding | undefined;

function candidates(): string[] {
  const dirs = process.env.ZOFO_BINDING_DIR ? [resolve(process.env.ZOFO_BINDING_DIR)] : [];
  if (process.env.ZOFO_BINDING_ONLY !== '1') dirs.push(join(packageRoot, 'build', 'Release'), join(packageRoot, 'build', 'Debug'));
  return dirs.map((d) => join(d, 'zofo_comm.node'));
}

const INSTALL_HINT =
  'zofo needs MPI for distributed training: on Debian/Ubuntu `apt-get install openmpi-bin libopenmpi-dev`, ' +
  'then rebuild zofo (`npm rebuild zofo`) so that zofo_comm.node is built against it';

/** The communicator addon; throws ZOFO_LOAD_FAILED naming every file tried, why, and the packages to install. */
export function commBinding(): CommBinding {
  if (binding) return binding;
  const tried: string[] = [];
  for (const file of candidates()) {
    if (!existsSync(file)) {
      tried.push(`${file}: not found (zofo was built without MPI)`);
      continue;
    }
    try {
      binding = require(file) as CommBinding;
      return binding;
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      tried.push(`${file}: ${/libmpi/.test(message) ? `the MPI library is missing (${message})` : message}`);
    }
  }
  throw new ZofoError(
    'ZOFO_LOAD_FAILED',
    `zofo could not load its communicator addon. Tried:${tried.map((t) => `\n  - ${t}`).join('')}\nFix: ${INSTALL_HINT}.`,
  );
}
