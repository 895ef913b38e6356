// tubulard's writes of one turn of the event loop share one turn of the
// writers' lock; each keeps its own result and its own error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from '../src/dispatcher.js';
import { TubularError } from '../src/errors.js';
import { Writes } from '../src/daemon/writes.js';

/** Stands in for the dispatcher: counts its batches, or fails them as a taken lock would. */
function fake(busy = false): { d: Dispatcher; batches: number; inside: boolean } {
  const state = { batches: 0, inside: false, d: undefined as unknown as Dispatcher };
  state.d = {
    batch<T>(fn: () => T): T {
      if (busy) throw new TubularError('EBUSY', 'the dispatcher\'s state is being changed by pid 1 (did not wait)');
      state.batches++;
      state.inside = true;
      try {
        return fn();
      } finally {
        state.inside = false;
      }
    },
  } as unknown as Dispatcher;
  return state;
}

test('the writes asked for in one turn are made in one batch, in order, each with its own result or error', async () => {
  const f = fake();
  const w = new Writes(() => f.d);
  const order: number[] = [];
  const write = (n: number) => w.run((d) => {
    assert.equal(d, f.d);
    assert.ok(f.inside, 'a write ran outside the batch');
    order.push(n);
    if (n === 2) throw new TubularError('ENOENT', 'no socket is registered for two');
    return n * 10;
  });
  const results = await Promise.allSettled([write(1), write(2), write(3)]);
  assert.equal(f.batches, 1);
  assert.deepEqual(order, [1, 2, 3]);
  assert.deepEqual(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as TubularError).code)), [10, 'ENOENT', 30]);
  // A later turn is another batch.
  await sleep(1);
  assert.equal(await write(4), 40);
  assert.equal(f.batches, 2);
});

test('what fails the batch (the lock taken, nothing loaded) is the error of each write in it, and none runs', async () => {
  const busy = fake(true);
  const w = new Writes(() => busy.d);
  let ran = false;
  const results = await Promise.allSettled([1, 2].map(() => w.run(() => { ran = true; })));
  assert.equal(ran, false);
  assert.deepEqual(results.map((r) => r.status === 'rejected' && (r.reason as TubularError).code), ['EBUSY', 'EBUSY']);
  const gone = new Writes(() => { throw new TubularError('ENOTLOADED', 'no dispatcher is loaded'); });
  await assert.rejects(gone.run(() => 1), (e: unknown) => e instanceof TubularError && e.code === 'ENOTLOADED');
});
