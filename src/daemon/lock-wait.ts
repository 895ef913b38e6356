// The daemon never waits for the writers' lock on its event loop: it opens
// the dispatcher with lockTimeoutMs 0, so a write fails at once with EBUSY
// while another writer (a tubectl command, say) holds the lock. The write
// is then tried again on timers, the pause doubling from 2 ms to 50 ms,
// until the request's deadline (--lock-timeout). Other clients are served
// in the meantime; this client's next request waits its turn.
import { setTimeout as sleep } from 'node:timers/promises';
import { TubularError } from '../errors.js';
import { RequestError } from './wire.js';

export const FIRST_PAUSE_MS = 2;
export const MAX_PAUSE_MS = 50;
/** How long a request waits for the lock unless --lock-timeout says otherwise. */
export const DEFAULT_LOCK_TIMEOUT_MS = 5_000;

const isBusy = (err: unknown): err is TubularError => err instanceof TubularError && err.code === 'EBUSY';

/** One request's patience: every write it makes shares the deadline. */
export interface LockWait {
  readonly started: number;
  readonly deadline: number;
}

export const lockWait = (timeoutMs: number): LockWait => {
  const started = Date.now();
  return { started, deadline: started + timeoutMs };
};

/**
 * Runs `attempt` (a write) until it does not fail with EBUSY; past the
 * deadline the EBUSY becomes the reply, naming the lock's holder when the
 * dispatcher could tell it.
 */
export async function whenUnlocked<T>(attempt: () => T | Promise<T>, wait: LockWait): Promise<T> {
  for (let pause = FIRST_PAUSE_MS; ; pause = Math.min(pause * 2, MAX_PAUSE_MS)) {
    try {
      return await attempt();
    } catch (err) {
      if (!isBusy(err)) throw err;
      const left = wait.deadline - Date.now();
      if (left <= 0) throw gaveUp(err, wait);
      await sleep(Math.min(pause, left));
    }
  }
}

function gaveUp(err: TubularError, wait: LockWait): RequestError {
  const waited = `tubulard waited ${((Date.now() - wait.started) / 1000).toFixed(1)} s`;
  const message = err.message.includes('(did not wait)') ? err.message.replace('(did not wait)', `(${waited})`) : `${err.message} (${waited})`;
  return new RequestError('EBUSY', message);
}
