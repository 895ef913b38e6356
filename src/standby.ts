// Patching the standby generation: a replace turns the set the standby slot
// holds (the generation before the one in force) into the new set by
// writing only what differs, instead of building the new set from scratch.
// Between two replaces that change 1% of 100k bindings, the standby and
// the new set differ by about 2%: the two changes.
//
// Pure: from a dump of the standby set and the new set (keys, values, an
// index of its keys), what to delete, what to write, and which keys the
// filters must be rewritten for.
import { type KeyIndex, keyWords, u32Words } from './keyindex.js';
import { BINDING_KEY_SIZE, BINDING_KEY_WORDS as KEY_WORDS, BINDING_VALUE_SIZE, BINDING_VALUE_WORDS as VALUE_WORDS, MIN_SET_CAPACITY } from './layout.js';

export interface PackedSet {
  keys: Buffer;
  values: Buffer;
  count: number;
}

export interface StandbyPatch {
  /** keys of the standby set the new set does not have */
  deletes: { keys: Buffer; count: number };
  /** bindings of the new set the standby set lacks, or holds with another value */
  updates: PackedSet;
  /** indices into the new set of the keys the standby lacks (with `deletes`, the keys only one of the two sets has: the filters' bits that may change) */
  arrived: Int32Array;
}


/**
 * Whether value i of `a` and value j of `b` (as u32 words) are the same
 * binding value: destination, action and stat index. Not its place (a
 * guess, see layout.ts): a binding that only moved in its file keeps the
 * value it has, and no patch rewrites every binding behind an insertion.
 */
export function sameValue(a: Uint32Array, i: number, b: Uint32Array, j: number): boolean {
  return a[VALUE_WORDS * i] === b[VALUE_WORDS * j] && a[VALUE_WORDS * i + 1] === b[VALUE_WORDS * j + 1] && a[VALUE_WORDS * i + 2] === b[VALUE_WORDS * j + 2];
}

/** Keys (and values) gathered one by one from packed sets (as u32 words), up to `max`. */
export class Gather {
  private readonly keys: Buffer;
  private readonly values: Buffer;
  private readonly kw: Uint32Array;
  private readonly vw: Uint32Array;
  count = 0;

  constructor(max: number, withValues: boolean) {
    this.keys = Buffer.alloc(max * BINDING_KEY_SIZE);
    this.values = Buffer.alloc(withValues ? max * BINDING_VALUE_SIZE : 0);
    this.kw = new Uint32Array(this.keys.buffer, this.keys.byteOffset, max * KEY_WORDS);
    this.vw = new Uint32Array(this.values.buffer, this.values.byteOffset, withValues ? max * VALUE_WORDS : 0);
  }

  /** Adds key i of `keys` (words), and value i of `values` when given. */
  add(keys: Uint32Array, i: number, values?: Uint32Array): void {
    const n = this.count++;
    for (let w = 0; w < KEY_WORDS; w++) this.kw[n * KEY_WORDS + w] = keys[i * KEY_WORDS + w];
    if (values) for (let w = 0; w < VALUE_WORDS; w++) this.vw[n * VALUE_WORDS + w] = values[i * VALUE_WORDS + w];
  }

  get packed(): PackedSet {
    return { keys: this.keys.subarray(0, this.count * BINDING_KEY_SIZE), values: this.values.subarray(0, this.count * BINDING_VALUE_SIZE), count: this.count };
  }
}

/**
 * What turns the standby set into `next`. Without `writes` (the standby is
 * rebuilt, not patched), only what the filters need: `updates` is empty.
 */
export function standbyPatch(standby: PackedSet, next: PackedSet & { index: KeyIndex }, writes = true): StandbyPatch {
  const old = keyWords(standby.keys, standby.count);
  const newKeys = keyWords(next.keys, next.count);
  const oldValues = u32Words(standby.values, standby.count * VALUE_WORDS);
  const newValues = u32Words(next.values, next.count * VALUE_WORDS);
  const kept = new Uint8Array(next.count);
  const deletes = new Gather(standby.count, false);
  const updates = new Gather(writes ? next.count : 0, true);
  for (let j = 0; j < standby.count; j++) {
    const i = next.index.findNear(oldValues[VALUE_WORDS * j + 3], old, j);
    if (i < 0) {
      deletes.add(old, j);
      continue;
    }
    kept[i] = 1;
    if (writes && !sameValue(oldValues, j, newValues, i)) updates.add(newKeys, i, newValues);
  }
  const arrived = new Int32Array(next.count);
  let n = 0;
  for (let i = 0; i < next.count; i++) {
    if (kept[i]) continue;
    if (writes) updates.add(newKeys, i, newValues);
    arrived[n++] = i;
  }
  return { deletes: deletes.packed, updates: updates.packed, arrived: arrived.subarray(0, n) };
}

/**
 * Whether a set's map of `capacity` entries should be patched into a set of
 * `count` bindings rather than rebuilt: it has room, and is not more than
 * twice the size a new map would get (a set that shrank a lot is rebuilt,
 * smaller).
 */
export function patchable(capacity: number, count: number, sizeFor: (count: number) => number): boolean {
  return count <= capacity && capacity <= Math.max(MIN_SET_CAPACITY, 2 * sizeFor(count));
}
