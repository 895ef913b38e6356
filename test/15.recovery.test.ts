// What a writer repairs after a predecessor died, for every crash point of
// every multi-step operation, decided without a kernel (recovery.ts), and
// how a planted or foreign map is told from ours (bpfmap.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { mismatch } from '../src/bpfmap.js';
import { MAP_SPECS } from '../src/layout.js';
import { type RecoveryFacts, planRecovery } from '../src/recovery.js';

const clean: RecoveryFacts = { setInForce: 10, pinnedSet: 10, linkProgram: 7, linkAttached: true, intent: false };

describe('recovery plan', () => {
  test('a clean state needs nothing', () => {
    assert.deepEqual(planRecovery(clean), { steps: [], halfUnloaded: false, unpinnedSet: false });
  });

  // A swap: pin binding_set_new, update the slot, rename over binding_set.
  test('died after pinning the new set, before the swap: the pending set is dropped', () => {
    const p = planRecovery({ ...clean, pendingSet: 11, intent: true });
    assert.deepEqual(p.steps, ['drop-pending-set', 'reconcile']);
    assert.equal(p.unpinnedSet, false);
  });

  test('died after the swap, before the rename: the pending set is adopted', () => {
    const p = planRecovery({ ...clean, setInForce: 11, pendingSet: 11, intent: true });
    assert.deepEqual(p.steps, ['adopt-pending-set', 'reconcile']);
    assert.equal(p.unpinnedSet, false);
  });

  test('a pending pin alone (no intent mark) still reconciles: a writer died', () => {
    assert.deepEqual(planRecovery({ ...clean, pendingSet: 11 }).steps, ['drop-pending-set', 'reconcile']);
  });

  test('died between the changes of a bind or a replace: only reconcile', () => {
    assert.deepEqual(planRecovery({ ...clean, intent: true }).steps, ['reconcile']);
  });

  // An upgrade: pin program_new, update the link, rename over program.
  test('died after pinning the new program, before the link switched: dropped', () => {
    assert.deepEqual(planRecovery({ ...clean, pendingProgram: 8 }).steps, ['drop-pending-program', 'reconcile']);
  });

  test('died after the link switched, before the rename: adopted', () => {
    assert.deepEqual(planRecovery({ ...clean, linkProgram: 8, pendingProgram: 8 }).steps, ['adopt-pending-program', 'reconcile']);
  });

  // An unload: detach the link, rename the directory away, remove the pins.
  test('died after detaching the link: only unload may go on', () => {
    assert.equal(planRecovery({ ...clean, linkAttached: false }).halfUnloaded, true);
    assert.equal(planRecovery({ ...clean, linkProgram: undefined }).halfUnloaded, true);
  });

  test('a set in force that no pin holds is reported, not guessed at', () => {
    assert.equal(planRecovery({ ...clean, pinnedSet: 9 }).unpinnedSet, true);
    assert.equal(planRecovery({ ...clean, pinnedSet: undefined }).unpinnedSet, true);
    assert.equal(planRecovery({ ...clean, pinnedSet: 9, setInForce: 12, pendingSet: 12 }).unpinnedSet, false);
  });
});

describe('map specs', () => {
  const ok = { ...MAP_SPECS.sockets, flags: 0 };
  test('a map of this layout matches', () => {
    assert.equal(mismatch(ok, MAP_SPECS.sockets), undefined);
    assert.equal(mismatch({ ...MAP_SPECS.reject_metrics, flags: 1 }, MAP_SPECS.reject_metrics), undefined);
  });
  test('type, key size, value size, entries and flags are each checked', () => {
    assert.match(mismatch({ ...ok, type: 2 }, MAP_SPECS.sockets)!, /type 2, expected 15/);
    assert.match(mismatch({ ...ok, keySize: 8 }, MAP_SPECS.sockets)!, /key size 8/);
    assert.match(mismatch({ ...ok, valueSize: 4 }, MAP_SPECS.sockets)!, /value size 4/);
    assert.match(mismatch({ ...ok, maxEntries: 4096 }, MAP_SPECS.sockets)!, /4096 entries, expected 32768/);
    assert.match(mismatch({ ...MAP_SPECS.reject_metrics, flags: 0 }, MAP_SPECS.reject_metrics)!, /flags 0, expected 1/);
  });
  test('a binding set may be smaller than the capacity, never larger', () => {
    const set = { type: 1, keySize: 24, valueSize: 8, maxEntries: 1 << 20, flags: 0 };
    assert.equal(mismatch({ ...set, maxEntries: 2048 }, set, true), undefined);
    assert.match(mismatch({ ...set, maxEntries: (1 << 20) + 1 }, set, true)!, /at most/);
  });
});
