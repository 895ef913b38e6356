// The two filters (`lengths`, `blocks`) in front of a binding set, computed
// from its packed keys: every entry exactly (after a crash), only the
// entries the keys that differ from another set's touch (a replace patching
// the standby generation), or one bit (bind and unbind, in place).
import { BINDING_KEY_SIZE, BPF_ANY, LENGTHS_ENTRIES, lengthsIndex, readU16, readU32, u32, writeU32 } from './layout.js';
import { type Native, native } from './native.js';
import { BLOCK_ENTRIES, BLOCK_WORDS, blockPosition } from './blocks.js';
import { WORDS, lengthWord } from './lengths.js';

export interface FilterSpec {
  /** u32 words per entry */
  words: number;
  entries: number;
  /** where an encoded key sets its bit: (u32 word of the whole table) * 32 + bit, or -1 for none */
  at(keys: Buffer, off: number): number;
  /** `at` of every key of a set */
  positions(set: KeySet): Int32Array;
}

const TCP = 6;

function lengthsPosition(keys: Buffer, off: number): number {
  const family = keys[off + 1] === 2 ? 4 : 6;
  const length = keys[off + 2];
  const entry = lengthsIndex(keys[off] === TCP ? 'tcp' : 'udp', readU16(keys, off + 4));
  return (entry * WORDS + lengthWord(family, length)) * 32 + (length & 31);
}

// Each filter has a loop of its own over a set's keys (`positions`), not one
// loop calling spec.at: a loop that V8 optimized for one filter's function
// was thrown away and compiled again for the other's, twice per replace.
export const LENGTHS_FILTER: FilterSpec = {
  words: WORDS,
  entries: LENGTHS_ENTRIES,
  at: lengthsPosition,
  positions(set) {
    const out = new Int32Array(set.count);
    for (let i = 0; i < set.count; i++) out[i] = lengthsPosition(set.keys, i * BINDING_KEY_SIZE);
    return out;
  },
};

export const BLOCKS_FILTER: FilterSpec = {
  words: BLOCK_WORDS,
  entries: BLOCK_ENTRIES,
  at: blockPosition,
  positions(set) {
    const out = new Int32Array(set.count);
    for (let i = 0; i < set.count; i++) out[i] = blockPosition(set.keys, i * BINDING_KEY_SIZE);
    return out;
  },
};

export interface Packed { keys: Buffer; values: Buffer; count: number }
/** `count` packed binding keys */
export interface KeySet { keys: Buffer; count: number }

function tableOf(spec: FilterSpec, at: Int32Array): Uint32Array {
  const table = new Uint32Array(spec.entries * spec.words);
  for (const p of at) if (p >= 0) table[p >>> 5] = (table[p >>> 5] | (1 << (p & 31))) >>> 0;
  return table;
}

/**
 * Every entry of a filter, exactly as the set needs it: what a writer
 * writes when a predecessor died part-way and the filter cannot be trusted.
 * The values are the table itself, entry after entry.
 */
export function exactFilter(spec: FilterSpec, set: KeySet): Packed {
  const table = tableOf(spec, spec.positions(set));
  const keys = Buffer.alloc(spec.entries * 4);
  const k = new Uint32Array(keys.buffer, keys.byteOffset, spec.entries);
  for (let e = 0; e < spec.entries; e++) k[e] = e;
  return { keys, values: Buffer.from(table.buffer, table.byteOffset, table.byteLength), count: spec.entries };
}

/**
 * What turns a filter exact for one set into the filter of another, from
 * the keys that differ between the two (`gone`: those only the old set
 * has; `arrived`: indices into `after` of those only the new one has) and
 * the whole new set: every entry a differing key sets a bit in, as the new
 * set needs it. Other entries are the same for both sets, and are not
 * written: a replace patching the standby generation writes about as many
 * entries as keys change.
 */
export function filterPatch(spec: FilterSpec, gone: KeySet, arrived: Int32Array, after: KeySet): Packed {
  const W = spec.words;
  if (gone.count === 0 && arrived.length === 0) return { keys: Buffer.alloc(0), values: Buffer.alloc(0), count: 0 };
  if (gone.count === 0 && arrived.length === after.count) return wholeFilter(spec, after);
  // Where each key of the new set sets its bit: computed once, for the
  // arrived keys and for the entries they touch.
  const at = spec.positions(after);
  const was = spec.positions(gone);
  const touched = new TouchedEntries(gone.count + arrived.length);
  for (let i = 0; i < gone.count; i++) {
    const p = was[i];
    if (p >= 0) touched.add(Math.floor((p >>> 5) / W));
  }
  for (let k = 0; k < arrived.length; k++) {
    const p = at[arrived[k]];
    if (p >= 0) touched.add(Math.floor((p >>> 5) / W));
  }
  const count = touched.count;
  const keys = Buffer.alloc(count * 4);
  const values = Buffer.alloc(count * W * 4);
  if (count === 0) return { keys, values, count: 0 };
  new Uint32Array(keys.buffer, keys.byteOffset, count).set(touched.entries.subarray(0, count));
  const v = new Uint32Array(values.buffer, values.byteOffset, count * W);
  for (let i = 0; i < after.count; i++) {
    const p = at[i];
    if (p < 0) continue;
    const w = p >>> 5;
    const e = Math.floor(w / W);
    const place = touched.find(e);
    if (place < 0) continue;
    const n = place * W + (w - e * W);
    v[n] = (v[n] | (1 << (p & 31))) >>> 0;
  }
  return { keys, values, count };
}

/**
 * filterPatch when every key of the set arrives (the standby was empty):
 * every entry the set sets a bit in, in one pass over its keys.
 */
function wholeFilter(spec: FilterSpec, set: KeySet): Packed {
  const W = spec.words;
  const at = spec.positions(set);
  const most = Math.min(set.count, spec.entries);
  const touched = new TouchedEntries(most);
  const v = new Uint32Array(most * W);
  for (let i = 0; i < set.count; i++) {
    const p = at[i];
    if (p < 0) continue;
    const w = p >>> 5;
    const e = Math.floor(w / W);
    const n = touched.add(e) * W + (w - e * W);
    v[n] = (v[n] | (1 << (p & 31))) >>> 0;
  }
  const count = touched.count;
  const keys = Buffer.alloc(count * 4);
  new Uint32Array(keys.buffer, keys.byteOffset, count).set(touched.entries.subarray(0, count));
  return { keys, values: Buffer.from(v.buffer, v.byteOffset, count * W * 4), count };
}

/**
 * The filter entries a patch touches, each with its place among them: an
 * open-addressed table sized to the changed keys, not to the filter (blocks
 * has a million entries).
 */
class TouchedEntries {
  readonly entries: Uint32Array;
  count = 0;
  /** place + 1 of an entry (0: empty slot): its entry is entries[place] */
  private readonly slots: Int32Array;
  private readonly shift: number;

  constructor(most: number) {
    let bits = 4;
    while (1 << bits < most * 2) bits++;
    this.slots = new Int32Array(1 << bits);
    this.shift = 32 - bits;
    this.entries = new Uint32Array(most);
  }

  // Both probe from the slot before the hash's and step first, so that
  // every call runs the step: V8 then has its feedback before a first
  // collision, which otherwise threw the optimized code away.
  /** Adds entry e (once); returns its place. */
  add(e: number): number {
    const mask = this.slots.length - 1;
    for (let h = (Math.imul(e, 0x9e3779b1) >>> this.shift) - 1; ;) {
      h = (h + 1) & mask;
      const s = this.slots[h];
      if (s === 0) {
        this.entries[this.count] = e;
        this.slots[h] = ++this.count;
        return this.count - 1;
      }
      if (this.entries[s - 1] === e) return s - 1;
    }
  }

  /** The place of entry e, or -1 when it is not touched. */
  find(e: number): number {
    const mask = this.slots.length - 1;
    for (let h = (Math.imul(e, 0x9e3779b1) >>> this.shift) - 1; ;) {
      h = (h + 1) & mask;
      const s = this.slots[h];
      if (s === 0) return -1;
      if (this.entries[s - 1] === e) return s - 1;
    }
  }
}

/** Sets or clears one bit (a position from spec.at) in a filter map, for a single bind or unbind. */
export function setFilterBit(fd: number, spec: FilterSpec, at: number, on: boolean, n: Native = native()): void {
  const word = at >>> 5;
  const entry = u32(Math.floor(word / spec.words));
  const value = Buffer.alloc(spec.words * 4);
  n.mapLookup(fd, entry, value);
  const off = (word % spec.words) * 4;
  const old = readU32(value, off);
  const mask = 1 << (at & 31);
  writeU32(value, (on ? old | mask : old & ~mask) >>> 0, off);
  n.mapUpdate(fd, entry, value, BPF_ANY);
}
