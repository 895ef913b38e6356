// What every request is handled with: the dispatcher, the policy, the
// limits; and how a dispatcher failure becomes a reply code.
import type { Dispatcher } from '../dispatcher.js';
import { TubularError } from '../errors.js';
import type { Policy } from './policy.js';
import type { DispatcherHandle } from './state.js';
import { type HandoffErrorCode, RequestError } from './wire.js';
import type { Writes } from './writes.js';

export interface HandlerContext {
  dispatcher: DispatcherHandle;
  /** every write goes through here: those of one turn of the event loop share a turn of the lock */
  writes: Writes;
  policy: () => Policy;
  version: string;
  /** how long a write waits for the writers' lock, in ms (--lock-timeout) */
  lockTimeoutMs: number;
  /** how many destinations a user other than root may hold registered (--max-destinations-per-user) */
  maxDestinationsPerUser: number;
}

const PASSED_ON: readonly HandoffErrorCode[] = ['ENOENT', 'ENOSPC', 'EPERM', 'ENOTLOADED', 'EBADSOCK', 'EBUSY'];

/** Maps a dispatcher failure to a reply code. */
export function dispatcherError(err: unknown): RequestError {
  if (err instanceof RequestError) return err;
  if (err instanceof TubularError) {
    const code = (PASSED_ON as readonly string[]).includes(err.code) ? err.code as HandoffErrorCode : 'EIO';
    return new RequestError(code, err.message);
  }
  return new RequestError('EIO', `the dispatcher failed: ${(err as Error).message}`);
}

/** The open dispatcher, or a RequestError (ENOTLOADED...). */
export function dispatcherOf(ctx: HandlerContext): Dispatcher {
  try {
    return ctx.dispatcher.get();
  } catch (err) {
    throw dispatcherError(err);
  }
}
