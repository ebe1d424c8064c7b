/**
 * A mistake in how a command was called (an unknown or invalid flag, a bad --config
 * file, a missing required option): the CLI prints it as its last line and exits with
 * code 2, as for commander's own parse errors. Other failures exit with code 1.
 */
import { ZofoError, type ZofoErrorCode } from '../errors.js';

/** A ZofoError caused by the command line or its --config file (exit code 2). */
export class UsageError extends ZofoError {
  constructor(code: ZofoErrorCode, message: string) {
    super(code, message);
    this.name = 'UsageError';
  }
}
