// tubulard's writes, batched. The writes asked for in one turn of the event
// loop (registers of several clients read in one wakeup, say) are made
// together, in order, under one turn of the writers' lock with one recovery
// check (Dispatcher.batch), right after the turn. Each keeps its own
// result and its own error. What fails the batch as a whole (the lock
// taken by another writer: EBUSY; nothing loaded; a recovery that fails)
// is each one's error, and each retries on its own (lock-wait.ts).
import type { Dispatcher } from '../dispatcher.js';

interface Queued {
  write: (d: Dispatcher) => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class Writes {
  private queue: Queued[] = [];

  /** `dispatcher` gives the open dispatcher, or throws (ENOTLOADED...). */
  constructor(private readonly dispatcher: () => Dispatcher) {}

  /** Makes `write` (synchronous, on the dispatcher given) with the others asked for in this turn. */
  run<T>(write: (d: Dispatcher) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.queue.length === 0) setImmediate(() => this.flush());
      this.queue.push({ write, resolve: resolve as (value: unknown) => void, reject });
    });
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    try {
      const d = this.dispatcher();
      d.batch(() => {
        for (const q of batch) {
          try {
            q.resolve(q.write(d));
          } catch (err) {
            q.reject(err);
          }
        }
      });
    } catch (err) {
      // From the lock, the dispatcher or recovery (batch's fn catches the
      // writes' own errors): every write not done gets it.
      for (const q of batch) q.reject(err);
    }
  }
}
