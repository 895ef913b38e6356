// The journal: the binding keys whose binding may differ between the two
// generations (present in one only, or with another value), in a map of
// the control plane's own. A replace that can trust it patches the standby
// without reading it whole: the standby is the set in force except at
// those keys, so the keys to write are the journal's and those the new
// set changes, and the standby's bindings at the journal's keys are a few
// lookups.
//
// It is derived, and trusted only while meta says it is whole
// (META_JOURNAL = 1). Every writer that changes a set keeps it whole under
// the intent mark: bind and unbind add their key before changing the set
// in force; a replace marks it not whole before it touches the standby and
// writes it anew after the flip (the keys the replace changed, which are
// where the new set and the previous one differ). Rollback swaps the two
// sets, which leaves the keys where they differ as they were. After a
// crash, reconcile marks it not whole; the next replace then reads the
// standby whole, as without a journal, and writes the journal anew.
import type { BpfMap, Dump } from './bpfmap.js';
import { type KeyIndex, KeyIndex as Index, keyWords, u32Words } from './keyindex.js';
import { BINDING_VALUE_WORDS as VALUE_WORDS, JOURNAL_CAPACITY, u32 } from './layout.js';
import { Gather, type StandbyPatch, sameValue } from './standby.js';
import { isSystemError } from './errors.js';

const ONE = u32(1);

export class Journal {
  constructor(private readonly map: BpfMap, private readonly whole: { get(): boolean; set(whole: boolean): void }) {}

  /** The keys, when the journal is whole; undefined when it is to be ignored. */
  read(): { keys: Buffer; count: number } | undefined {
    if (!this.whole.get()) return undefined;
    const { keys, count } = this.map.dump();
    return { keys, count };
  }

  /**
   * Notes a key whose binding in force is about to change (bind, unbind):
   * under the intent mark, before the change. Written whether the journal
   * is whole or not (the next rewrite clears it either way), so that a
   * bind makes the same calls in either case.
   */
  note(key: Buffer): void {
    try {
      this.map.update(key, ONE);
    } catch (err) {
      if (!isSystemError(err, 'E2BIG')) throw err;
      this.whole.set(false);
    }
  }

  /** Marks it not whole: before a replace touches the standby, and after a crash. */
  invalidate(): void {
    this.whole.set(false);
  }

  /**
   * Holds exactly these keys from now on, and is whole (a replace, after
   * its flip: the keys it changed); undefined: more than it has room for,
   * which leave it not whole. `old`: its keys as read before, if they were.
   */
  rewrite(keys: { keys: Buffer; count: number } | undefined, old?: { keys: Buffer; count: number }): void {
    this.whole.set(false);
    const held = old ?? this.map.dump();
    this.map.deleteBatch(held.keys, held.count);
    if (!keys || keys.count > JOURNAL_CAPACITY) return;
    this.map.updateBatch(keys.keys, Buffer.alloc(keys.count * 4, ONE), keys.count);
    this.whole.set(true);
  }
}

/**
 * The keys a replace changed (removed from the set in force, added by the
 * new set, changed between them): where the new set and the previous one
 * differ, what the journal holds after the replace.
 */
export function changedKeys(current: { keys: Buffer; count: number }, next: { keys: Buffer; count: number }, changes: Changes): { keys: Buffer; count: number } {
  const curKeys = keyWords(current.keys, current.count);
  const nextKeys = keyWords(next.keys, next.count);
  const out = new Gather(changes.removed.length + changes.added.length + changes.changedTo.length, false);
  for (let k = 0; k < changes.removed.length; k++) out.add(curKeys, changes.removed[k]);
  for (let k = 0; k < changes.added.length; k++) out.add(nextKeys, changes.added[k]);
  for (const i of changes.changedTo) out.add(nextKeys, i);
  return out.packed;
}

/** What a replace changed, by key: indices into the set in force (gone, changed) and into the new set (new, changed). */
export interface Changes {
  removed: ArrayLike<number>;
  added: ArrayLike<number>;
  changedFrom: readonly number[];
  changedTo: readonly number[];
}

/**
 * The patch of the standby from the journal, without reading the standby
 * whole: `journal` its keys, `held` the standby's values at those keys (as
 * lookupMany gives them: zero where it has none), `current` the set in
 * force, `next` the new set (values final) and `changes` what the new set
 * changes in the set in force. Everywhere else the standby, the set in
 * force and the new set agree. Without `writes` (the standby is rebuilt),
 * only what the filters need: `updates` is empty.
 */
export function patchFromJournal(journal: { keys: Buffer; count: number }, held: Buffer, current: Dump,
  next: { keys: Buffer; values: Buffer; count: number; index: KeyIndex }, changes: Changes, writes = true): StandbyPatch {
  const jWords = keyWords(journal.keys, journal.count);
  const jIndex = new Index(jWords, journal.count);
  jIndex.addAll(journal.count);
  const heldWords = u32Words(held, journal.count * VALUE_WORDS);
  const nextWords = u32Words(next.values, next.count * VALUE_WORDS);
  const curWords = u32Words(current.values, current.count * VALUE_WORDS);
  const curKeys = keyWords(current.keys, current.count);
  const nextKeys = keyWords(next.keys, next.count);
  const most = journal.count + changes.removed.length + changes.added.length + changes.changedTo.length;
  const deletes = new Gather(most, false);
  const updates = new Gather(writes ? most : 0, true);
  const update = (i: number): void => { if (writes) updates.add(nextKeys, i, nextWords); };
  const arrived = new Int32Array(most);
  let n = 0;
  // The journal's keys: the standby's binding as looked up (none: zero, as no binding's action is 0).
  for (let t = 0; t < journal.count; t++) {
    const present = heldWords[VALUE_WORDS * t + 1] !== 0;
    const i = next.index.findNear(heldWords[VALUE_WORDS * t + 3], jWords, t);
    if (i < 0) {
      if (present) deletes.add(jWords, t);
    } else if (!present) {
      update(i);
      arrived[n++] = i;
    } else if (!sameValue(heldWords, t, nextWords, i)) {
      update(i);
    }
  }
  // The keys the new set changes: where the journal does not say otherwise, the standby holds the set in force's binding.
  for (let k = 0; k < changes.removed.length; k++) {
    const j = changes.removed[k];
    if (jIndex.find(curKeys, j) >= 0) continue;
    deletes.add(curKeys, j);
  }
  for (let k = 0; k < changes.added.length; k++) {
    const i = changes.added[k];
    if (jIndex.find(nextKeys, i) >= 0) continue;
    update(i);
    arrived[n++] = i;
  }
  changes.changedTo.forEach((i, k) => {
    if (jIndex.find(nextKeys, i) >= 0) return;
    if (!sameValue(curWords, changes.changedFrom[k], nextWords, i)) update(i);
  });
  return { deletes: deletes.packed, updates: updates.packed, arrived: arrived.subarray(0, n) };
}
