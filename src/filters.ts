// How a replace moves the two filters (`lengths`, `blocks`) from the old
// binding set to the new one: widen to old | new before the swap, narrow to
// new after it. Both are computed from the packed keys of the two sets, and
// only entries that a key of either set touches are written: every other
// entry holds no bit a binding in force needs, so it can be left alone.
import { BINDING_KEY_SIZE, LENGTHS_ENTRIES, lengthsIndex, readU16 } from './layout.js';
import { BLOCK_ENTRIES, BLOCK_WORDS, blockBit } from './blocks.js';
import { WORDS, lengthBit, lengthWord } from './lengths.js';

export interface FilterSpec {
  /** u32 words per entry */
  words: number;
  entries: number;
  /** the u32 word of the whole table, and the bit, an encoded key sets; undefined: none */
  at(keys: Buffer, off: number): { word: number; mask: number } | undefined;
}

const TCP = 6;

export const LENGTHS_FILTER: FilterSpec = {
  words: WORDS,
  entries: LENGTHS_ENTRIES,
  at(keys, off) {
    const family = keys[off + 1] === 2 ? 4 : 6;
    const length = keys[off + 2];
    const entry = lengthsIndex(keys[off] === TCP ? 'tcp' : 'udp', readU16(keys, off + 4));
    return { word: entry * WORDS + lengthWord(family, length), mask: lengthBit(length) };
  },
};

export const BLOCKS_FILTER: FilterSpec = { words: BLOCK_WORDS, entries: BLOCK_ENTRIES, at: blockBit };

export interface Packed { keys: Buffer; values: Buffer; count: number }
/** `count` packed binding keys */
export interface KeySet { keys: Buffer; count: number }

export interface FilterPlan {
  /** old | new, for every touched entry: written before the swap */
  widen: Packed;
  /** new, for touched entries where it differs from old | new: written after */
  narrow: Packed;
}

function tableOf(spec: FilterSpec, keys: Buffer, count: number, touched: Uint8Array): Uint32Array {
  const table = new Uint32Array(spec.entries * spec.words);
  for (let i = 0; i < count; i++) {
    const at = spec.at(keys, i * BINDING_KEY_SIZE);
    if (!at) continue;
    table[at.word] = (table[at.word] | at.mask) >>> 0;
    touched[Math.floor(at.word / spec.words)] = 1;
  }
  return table;
}

function pack(spec: FilterSpec, entries: number[], word: (i: number) => number): Packed {
  const keys = Buffer.alloc(entries.length * 4);
  const values = Buffer.alloc(entries.length * spec.words * 4);
  const k = new Uint32Array(keys.buffer, keys.byteOffset, entries.length);
  const v = new Uint32Array(values.buffer, values.byteOffset, entries.length * spec.words);
  entries.forEach((e, n) => {
    k[n] = e;
    for (let w = 0; w < spec.words; w++) v[n * spec.words + w] = word(e * spec.words + w);
  });
  return { keys, values, count: entries.length };
}

/** The writes that move a filter from the set `before` to the set `after` (packed keys). */
export function planFilter(spec: FilterSpec, before: KeySet, after: KeySet): FilterPlan {
  const touched = new Uint8Array(spec.entries);
  const old = tableOf(spec, before.keys, before.count, touched);
  const next = tableOf(spec, after.keys, after.count, touched);
  const all: number[] = [];
  const narrowed: number[] = [];
  for (let e = 0; e < spec.entries; e++) {
    if (!touched[e]) continue;
    all.push(e);
    for (let w = e * spec.words; w < (e + 1) * spec.words; w++) {
      if ((old[w] & ~next[w]) !== 0) { narrowed.push(e); break; }
    }
  }
  return {
    widen: pack(spec, all, (w) => (old[w] | next[w]) >>> 0),
    narrow: pack(spec, narrowed, (w) => next[w]),
  };
}
