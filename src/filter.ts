// The filter in front of the binding set: a one-hash Bloom filter over
// binding keys, stored in the `lengths` map from FILTER_BASE on (see
// bpf/dispatcher.c). A clear bit proves a key is absent, so the program skips
// the hash-map lookup. The control plane keeps it a superset of the keys in
// force; the hash here must equal filter_head/filter_bit in the program.
// The 256 bits of an entry are eight host-order u32 words here and four u64
// words in the program: the same bits on a little-endian machine, as the
// length bitmaps assume too.
import { BINDING_KEY_SIZE, FILTER_BASE, FILTER_ENTRIES, readU32 } from './layout.js';

const MUL = 0x9e3779b1;
const FIN = 0x2c1b3c6d;
/** 32-bit words per table entry (struct lengths is 32 bytes). */
const WORDS = 8;
/** Bits in the filter: FILTER_ENTRIES entries of 256 bits. */
export const FILTER_BITS = FILTER_ENTRIES * 256;

const fin = (h: number): number => Math.imul(h ^ (h >>> 15), FIN);

/**
 * The filter bit of the encoded binding key at keys[off..]: 0 to
 * FILTER_BITS - 1, the entry in the high 16 bits (from everything but the
 * port) and the bit within its 256 in the low 8 (from the port too).
 * Address words are read in host order, as the program loads them.
 */
export function filterPosition(keys: Buffer, off = 0): number {
  const family = keys[off + 1];
  let h = Math.imul(keys[off] | (family << 8) | (keys[off + 2] << 16), MUL);
  h = Math.imul(h ^ readU32(keys, off + 8), MUL);
  h = Math.imul(h ^ readU32(keys, off + 12), MUL);
  h = Math.imul(h ^ readU32(keys, off + 16), MUL);
  h = Math.imul(h ^ readU32(keys, off + 20), MUL);
  // The key's port is a host-order u16; the program mixes in its value.
  const port = LE ? keys[off + 4] | (keys[off + 5] << 8) : (keys[off + 4] << 8) | keys[off + 5];
  const entry = fin(h) >>> 16;
  const bit = fin(Math.imul(h ^ port, MUL)) >>> 24;
  return (entry << 8) | bit;
}

const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Index into a full `lengths` table (as u32 words) and mask of a filter bit. */
export function filterWord(position: number): { word: number; mask: number } {
  return { word: (FILTER_BASE + (position >>> 8)) * WORDS + ((position >>> 5) & 7), mask: (1 << (position & 31)) >>> 0 };
}

/** Sets the filter bits of `count` packed binding keys in a full table. */
export function setFilterBits(table: Uint32Array, keys: Buffer, count: number): void {
  for (let i = 0; i < count; i++) {
    const { word, mask } = filterWord(filterPosition(keys, i * BINDING_KEY_SIZE));
    table[word] = (table[word] | mask) >>> 0;
  }
}
