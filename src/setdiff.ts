// What a change of the whole binding set does, as an operator reads it:
// which bindings are added, removed, or changed (label or action), by key
// (protocol, prefix, port). Shared by the dry run, the guard and rollback.
import { type PackedBindings, indexBindingSet, labelAt } from './bindingset.js';
import { keyWords } from './keyindex.js';

export interface SetChange {
  /** indices into the new set */
  added: readonly number[] | Int32Array;
  /** indices into the current set */
  removed: readonly number[] | Int32Array;
  /** pairs of indices: current (from) and new (to) */
  changed: Array<{ from: number; to: number }>;
  unchanged: number;
}

/** Compares the set in force with a new one. The new set must not name a key twice. */
export function compareSets(current: PackedBindings, next: PackedBindings): SetChange {
  const { index } = indexBindingSet(next);
  const words = keyWords(current.keys, current.count);
  const seen = new Uint8Array(next.count);
  const change = { added: [] as number[], removed: [] as number[], changed: [] as SetChange['changed'], unchanged: 0 };
  for (let j = 0; j < current.count; j++) {
    const i = index.find(words, j);
    if (i < 0) {
      change.removed.push(j);
      continue;
    }
    seen[i] = 1;
    if (current.actions[j] === next.actions[i] && labelAt(current, j) === labelAt(next, i)) change.unchanged++;
    else change.changed.push({ from: j, to: i });
  }
  for (let i = 0; i < next.count; i++) if (!seen[i]) change.added.push(i);
  return change;
}
