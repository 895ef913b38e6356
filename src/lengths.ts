// The `lengths` map: for each (protocol, port), which prefix lengths have a
// binding, as bitmaps the BPF program walks longest first. Port 0's entry
// holds the lengths of "every port" bindings. Eight host-order u32 words per
// entry: v4 in words 0-1, IPv6 /0-/63 in 2-3, /64-/127 in 4-5, /128 in 6.
import type { Binding } from './binding.js';
import { LENGTHS_ENTRIES, LENGTHS_VALUE_SIZE, lengthsIndex } from './layout.js';
import type { Family } from './prefix.js';
import type { Protocol } from './protocol.js';

export const WORDS = LENGTHS_VALUE_SIZE / 4;

export function lengthWord(family: Family, length: number): number {
  return (family === 4 ? 0 : 2) + (length >> 5);
}

export function lengthBit(length: number): number {
  return (1 << (length & 31)) >>> 0;
}

/** The exact table a binding set needs. */
export function lengthsFor(bindings: Iterable<Pick<Binding, 'protocol' | 'port' | 'prefix'>>): Uint32Array {
  const words = new Uint32Array(LENGTHS_ENTRIES * WORDS);
  for (const b of bindings) {
    const i = lengthsIndex(b.protocol, b.port) * WORDS + lengthWord(b.prefix.family, b.prefix.length);
    words[i] = (words[i] | lengthBit(b.prefix.length)) >>> 0;
  }
  return words;
}

export function hasLength(table: Uint32Array, protocol: Protocol, port: number, family: Family, length: number): boolean {
  return (table[lengthsIndex(protocol, port) * WORDS + lengthWord(family, length)] & lengthBit(length)) !== 0;
}
