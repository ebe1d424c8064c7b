// Test helpers for errors.
import { ZofoError } from '../../lib/errors.js';

/** The ZofoError a promise rejects with (anything else fails the test). */
export async function caught(promise: Promise<unknown>): Promise<ZofoError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof ZofoError) return err;
    throw err;
  }
  throw new Error('expected a ZofoError, but nothing was thrown');
}
