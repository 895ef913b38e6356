// Errors are values with meaning: callers branch on the class, people read
// the message. A TubularError is a mistake or a state the operator can fix;
// it is printed without a stack trace. Anything else is a bug or a system
// failure and keeps its stack.
import { WRITER_CAPABILITIES } from './capabilities.js';

export type ErrorCode =
  | 'EINVAL'      // bad input: a prefix, port, label, file...
  | 'ENOENT'      // something named does not exist
  | 'EEXIST'      // already there
  | 'ENOTLOADED'  // no dispatcher in this namespace
  | 'ELOADED'     // a dispatcher is already loaded
  | 'EINCOMPAT'   // pinned state written by an incompatible version
  | 'EPERM'       // not allowed
  | 'EBADSOCK'    // a socket that cannot be registered
  | 'ENOSPC'      // a capacity limit
  | 'EBUSY'       // another writer holds the lock; or signals interrupted a program load each time
  | 'EUNSAFE'     // state that root did not create: a symlink, a squatted name
  | 'EREFUSED';   // a change the guard refused: live traffic, or a mass removal (--force overrides)

export class TubularError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TubularError';
    this.code = code;
  }
}

export const invalid = (message: string): TubularError => new TubularError('EINVAL', message);

/** A Node-style system error as thrown by the addon or node:fs. */
export interface SystemError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
}

export function isSystemError(err: unknown, code?: string): err is SystemError {
  return err instanceof Error && typeof (err as SystemError).code === 'string' &&
    (code === undefined || (err as SystemError).code === code);
}

/** Wraps a failing step with what was being attempted, keeping code and cause. */
export function context<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof TubularError) throw err;
    if (isSystemError(err)) {
      if (err.code === 'EPERM' || err.code === 'EACCES') {
        throw new TubularError('EPERM', `${what}: ${err.message} (run as root, or with ${WRITER_CAPABILITIES}; ` +
          `read-only commands need membership of the group owning the state directory)`, { cause: err });
      }
      const wrapped = new Error(`${what}: ${err.message}`, { cause: err }) as SystemError;
      wrapped.code = err.code;
      wrapped.errno = err.errno;
      wrapped.syscall = err.syscall;
      throw wrapped;
    }
    throw err;
  }
}
