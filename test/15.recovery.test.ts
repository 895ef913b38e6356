// What a writer repairs after a predecessor died, for every crash point of
// every multi-step operation, decided without a kernel (recovery.ts), and
// how a planted or foreign map is told from ours (bpfmap.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mismatch } from '../src/bpfmap.js';
import { MAP_SPECS } from '../src/layout.js';
import { type RecoveryFacts, planRecovery } from '../src/recovery.js';

const set0 = { name: 'binding_set_0', inSlot: 10, pinned: 10 };
const set1 = { name: 'binding_set_1', inSlot: 20, pinned: 20 };
const clean: RecoveryFacts = { inner: [set0, set1], linkProgram: 7, linkAttached: true, intent: false };
const withSet1 = (m: Partial<typeof set1> & { pending?: number }): RecoveryFacts => ({ ...clean, inner: [set0, { ...set1, ...m }] });

describe('recovery plan', () => {
  test('a clean state needs nothing', () => {
    assert.deepEqual(planRecovery(clean), { steps: [], halfUnloaded: false, unpinned: [] });
  });

  // Putting a map in a slot: pin <name>_new, update the slot, rename over <name>.
  test('died after pinning the new map, before the slot update: the pending pin is dropped', () => {
    const p = planRecovery({ ...withSet1({ pending: 21 }), intent: true });
    assert.deepEqual(p.steps, [{ do: 'drop', name: 'binding_set_1' }, { do: 'reconcile' }]);
    assert.deepEqual(p.unpinned, []);
  });

  test('died after the slot update, before the rename: the pending pin is adopted', () => {
    const p = planRecovery({ ...withSet1({ inSlot: 21, pending: 21 }), intent: true });
    assert.deepEqual(p.steps, [{ do: 'adopt', name: 'binding_set_1' }, { do: 'reconcile' }]);
    assert.deepEqual(p.unpinned, []);
  });

  test('a pending pin alone (no intent mark) still reconciles: a writer died', () => {
    assert.deepEqual(planRecovery(withSet1({ pending: 21 })).steps, [{ do: 'drop', name: 'binding_set_1' }, { do: 'reconcile' }]);
  });

  test('died between the changes of a bind, a replace or a rollback: only reconcile', () => {
    assert.deepEqual(planRecovery({ ...clean, intent: true }).steps, [{ do: 'reconcile' }]);
  });

  // An upgrade: pin program_new, update the link, rename over program.
  test('died after pinning the new program, before the link switched: dropped', () => {
    assert.deepEqual(planRecovery({ ...clean, pendingProgram: 8 }).steps, [{ do: 'drop-program' }, { do: 'reconcile' }]);
  });

  test('died after the link switched, before the rename: adopted', () => {
    assert.deepEqual(planRecovery({ ...clean, linkProgram: 8, pendingProgram: 8 }).steps, [{ do: 'adopt-program' }, { do: 'reconcile' }]);
  });

  // An unload: detach the link, rename the directory away, remove the pins.
  test('died after detaching the link: only unload may go on', () => {
    assert.equal(planRecovery({ ...clean, linkAttached: false }).halfUnloaded, true);
    assert.equal(planRecovery({ ...clean, linkProgram: undefined }).halfUnloaded, true);
  });

  test('a map in a slot that no pin holds is reported, not guessed at', () => {
    assert.deepEqual(planRecovery(withSet1({ pinned: 19 })).unpinned, ['binding_set_1']);
    assert.deepEqual(planRecovery(withSet1({ pinned: undefined })).unpinned, ['binding_set_1']);
    assert.deepEqual(planRecovery(withSet1({ pinned: 19, inSlot: 22, pending: 22 })).unpinned, []);
  });
});

describe('map specs', () => {
  const ok = { ...MAP_SPECS.sockets, flags: 0 };
  test('a map of this layout matches', () => {
    assert.equal(mismatch(ok, MAP_SPECS.sockets), undefined);
    // Mmapable, with whatever other flags the kernel reports.
    assert.equal(mismatch({ ...MAP_SPECS.binding_stats, flags: 1 << 10 }, MAP_SPECS.binding_stats), undefined);
    assert.equal(mismatch({ ...MAP_SPECS.binding_stats, flags: (1 << 10) | (1 << 3) }, MAP_SPECS.binding_stats), undefined);
  });
  test('type, key size, value size, entries and flags are each checked', () => {
    assert.match(mismatch({ ...ok, type: 2 }, MAP_SPECS.sockets)!, /type 2, expected 15/);
    assert.match(mismatch({ ...ok, keySize: 8 }, MAP_SPECS.sockets)!, /key size 8/);
    assert.match(mismatch({ ...ok, valueSize: 4 }, MAP_SPECS.sockets)!, /value size 4/);
    assert.match(mismatch({ ...ok, maxEntries: 4096 }, MAP_SPECS.sockets)!, /4096 entries, expected 32768/);
    assert.match(mismatch({ ...MAP_SPECS.destinations, flags: 1 }, MAP_SPECS.destinations)!, /flags 1, expected 0/);
    assert.match(mismatch({ ...MAP_SPECS.binding_stats, flags: 0 }, MAP_SPECS.binding_stats)!, /flags 0, expected 1024/);
  });
  test('a binding set may be smaller than the capacity, never larger', () => {
    const set = { type: 1, keySize: 24, valueSize: 8, maxEntries: 1 << 20, flags: 0 };
    assert.equal(mismatch({ ...set, maxEntries: 2048 }, set, true), undefined);
    assert.match(mismatch({ ...set, maxEntries: (1 << 20) + 1 }, set, true)!, /at most/);
  });
});
