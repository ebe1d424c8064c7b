/** Errors thrown by zofo: always an `Error` with a stable `code`. */
export type ZofoErrorCode =
  | 'ZOFO_INVALID_ARG'
  | 'ZOFO_LOAD_FAILED'
  | 'ZOFO_NO_BLAS'
  | 'ZOFO_CUDA'
  | 'ZOFO_OUT_OF_MEMORY'
  | 'ZOFO_INTERNAL'
  | 'ZOFO_BAD_FILE'
  | 'ZOFO_IO'
  | 'ZOFO_CLOSED'
  | 'ZOFO_BAD_CONFIG'
  | 'ZOFO_UNSUPPORTED'
  | 'ZOFO_DISPOSED'
  | 'ZOFO_INVALID_STATE'
  /** A step met a NaN/∞ loss or gradient and was rejected; no weight changed. */
  | 'ZOFO_NON_FINITE'
  /** A step was cancelled (AbortSignal) before its update; no weight changed. */
  | 'ZOFO_ABORTED'
  /** A distributed collective or the communicator failed. */
  | 'ZOFO_COMM'
  /** The replicas of a distributed run hold different weights. */
  | 'ZOFO_REPLICA_MISMATCH';

/**
 * The one error class zofo throws for bad input, bad files and failed native calls. `code`
 * is stable (see `ZofoErrorCode`); the message names the offending file, tensor, shape or
 * option.
 *
 * @example
 * ```ts
 * import { loadModel, ZofoError } from 'zofo';
 *
 * try {
 *   await loadModel('./no-such-model');
 * } catch (err) {
 *   if (err instanceof ZofoError && err.code === 'ZOFO_IO') console.error(err.message);
 *   else throw err;
 * }
 * ```
 */
export class ZofoError extends Error {
  readonly code: ZofoErrorCode;
  constructor(code: ZofoErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ZofoError';
    this.code = code;
  }
}

/** Describes a received value for error messages: `-3 of type number`. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'bigint') return `${value}n of type bigint`;
  if (typeof value === 'string') return `${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)} of type string`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${value} of type ${typeof value}`;
  if (ArrayBuffer.isView(value)) return `a ${value.constructor.name} of length ${(value as unknown as { length?: number }).length ?? value.byteLength}`;
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  return `a value of type ${typeof value === 'object' ? (value.constructor?.name ?? 'object') : typeof value}`;
}

/** "Expected X for Y but received Z" (sharp's style). */
export function invalidArg(expected: string, name: string, received: unknown): ZofoError {
  return new ZofoError('ZOFO_INVALID_ARG', `Expected ${expected} for ${name} but received ${describe(received)}`);
}

/** Re-throws a native error as a ZofoError, keeping its code and the JS caller's stack. */
export function rethrowNative(err: unknown, context: string): never {
  if (err instanceof Error) {
    const code = (err as { code?: string }).code;
    const known = typeof code === 'string' && code.startsWith('ZOFO_') ? (code as ZofoErrorCode) : 'ZOFO_INTERNAL';
    throw new ZofoError(known, `${context}: ${err.message}`, { cause: err });
  }
  throw new ZofoError('ZOFO_INTERNAL', `${context}: ${String(err)}`);
}

/**
 * Awaits a native promise and rethrows its failure as a ZofoError with `context`,
 * carrying the caller's stack (the native rejection has none worth keeping).
 */
export async function awaitNative(call: () => Promise<void>, context: string): Promise<void> {
  const stackHolder = new Error();
  try {
    await call();
  } catch (err) {
    try {
      rethrowNative(err, context);
    } catch (wrapped) {
      (wrapped as Error).stack = `${(wrapped as Error).name}: ${(wrapped as Error).message}\n${stackHolder.stack?.split('\n').slice(1).join('\n') ?? ''}`;
      throw wrapped;
    }
  }
}

/** A bad option: `option` is its path (`zo.lr`; 'options' for the options object itself). */
export class OptionError extends ZofoError {
  /** The path of the offending option, e.g. `zo.lr`. */
  readonly option: string;
  constructor(option: string, message: string) {
    super('ZOFO_INVALID_ARG', message);
    this.option = option;
  }
}
