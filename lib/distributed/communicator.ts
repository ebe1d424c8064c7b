/**
 * The communicator: rank, size and the collectives (sum-allreduce of fp32/fp64
 * buffers, broadcast, barrier) over MPI, off the JS thread. `await init()` once per
 * process; pass the result to HybridOptimizer's `parallel.comm`.
 */
import { ZofoError, invalidArg } from '../errors.js';
import { commBinding, type CommBinding, type CommStats, type NativeCommHandle } from './binding.js';

/** A process's place in an MPI job and the collectives over it. */
export class Communicator {
  /** This process's rank, 0 … size − 1. */
  readonly rank: number;
  /** Processes in the job. */
  readonly size: number;
  /** The MPI thread level obtained: 'multiple' (requested) or 'serialized' (the least zofo accepts). */
  readonly threadLevel: 'serialized' | 'multiple';
  /** Seconds a collective may wait for the other ranks before the watchdog aborts the job (ZOFO_COMM_TIMEOUT; 0: never). */
  readonly timeoutSeconds: number;
  /** MPI's library version string. */
  readonly library: string;
  /** Whether this build has NCCL for device-memory collectives. */
  readonly nccl: boolean;
  readonly #binding: CommBinding;
  readonly #handle: NativeCommHandle;
  #finalized = false;

  /** @internal Use init(). */
  constructor(binding: CommBinding) {
    const w = binding.init();
    this.#binding = binding;
    this.#handle = w.handle;
    this.rank = w.rank;
    this.size = w.size;
    this.threadLevel = w.threadLevel;
    this.timeoutSeconds = w.timeout;
    this.library = binding.library;
    this.nccl = binding.nccl;
  }

  /** @internal The native communicator, for the optimizer's engine. */
  get handle(): NativeCommHandle {
    this.#live();
    return this.#handle;
  }

  #live(): void {
    if (this.#finalized) throw new ZofoError('ZOFO_DISPOSED', 'the communicator has been finalised');
  }

  /** In-place sum of `buffer` over every rank. Every rank must make the same calls in the same order. */
  async allreduce(buffer: Float32Array | Float64Array, what = 'allreduce'): Promise<void> {
    this.#live();
    if (!(buffer instanceof Float32Array || buffer instanceof Float64Array)) throw invalidArg('a Float32Array or Float64Array', 'buffer', buffer);
    await this.#binding.allreduce(buffer, what);
  }

  /** Overwrites `buffer` on every rank with root's bytes. */
  async broadcast(buffer: ArrayBufferView, root = 0, what = 'broadcast'): Promise<void> {
    this.#live();
    if (!ArrayBuffer.isView(buffer)) throw invalidArg('a typed array', 'buffer', buffer);
    if (!Number.isSafeInteger(root) || root < 0 || root >= this.size) throw invalidArg(`a rank in 0 … ${this.size - 1}`, 'root', root);
    await this.#binding.broadcast(buffer, root, what);
  }

  /** Waits until every rank has called barrier(). */
  async barrier(what = 'barrier'): Promise<void> {
    this.#live();
    await this.#binding.barrier(what);
  }

  /** Sets up NCCL on CUDA device `device` for device-memory collectives (builds with NCCL only; every rank calls it). */
  enableDevice(device: number): void {
    this.#live();
    if (!Number.isSafeInteger(device) || device < 0) throw invalidArg('a CUDA device index', 'device', device);
    this.#binding.enableDevice(device);
  }

  /** Ends every rank of the job now (MPI_Abort), after printing `message` on this rank. */
  abort(message: string, code = 1): never {
    return this.#binding.abort(String(message), code);
  }

  /** Collectives so far (the step's own included): calls, bytes sent per rank, seconds spent in them. */
  stats(): CommStats {
    this.#live();
    return this.#binding.stats();
  }

  /** Whether finalize() has run. */
  get finalized(): boolean {
    return this.#finalized;
  }

  /** MPI_Finalize (every rank calls it; at a normal exit zofo does it itself). */
  finalize(): void {
    if (this.#finalized) return;
    this.#finalized = true;
    this.#binding.finalize();
  }
}

let world: Communicator | undefined;

/**
 * Initialises MPI (once per process, thread level MPI_THREAD_MULTIPLE requested,
 * SERIALIZED required) and returns the world communicator. At process exit zofo
 * finalises MPI when the exit code is 0 (or 130, a clean Ctrl-C stop), and aborts the
 * whole job otherwise, so a
 * rank that fails never leaves the others waiting. Throws ZOFO_LOAD_FAILED naming the
 * packages to install when MPI is missing.
 */
export async function init(): Promise<Communicator> {
  if (world) return world;
  const w = new Communicator(commBinding());
  world = w;
  process.once('exit', (code) => {
    if (w.finalized) return;
    if (code === 0 || code === 130)
      w.finalize(); // completed, or stopped cleanly (Ctrl-C) on every rank
    else w.abort(`exiting with code ${code}; ending every rank`, code);
  });
  return w;
}
