// Work under way on threads of the addon (a batch, an update that waits),
// each with the call that waits for it: waited for together.

/**
 * Calls every wait, emptying the list, also after one has failed: no map
 * may be closed under a thread still writing it. Then throws `failed` when
 * given, else the first failure among the waits.
 */
export function waitAll(waits: Array<() => void>, failed?: { err: unknown }): void {
  let first = failed;
  for (let wait = waits.shift(); wait; wait = waits.shift()) {
    try {
      wait();
    } catch (err) {
      first ??= { err };
    }
  }
  if (first) throw first.err;
}
