// An index of packed binding keys: which key of a set equals a given key,
// without a string or an object per key. Open addressing with linear probing
// over an Int32Array; a key is read as six host-order u32 words. Used to find
// duplicates in a new set and to diff it against a dump of the set in force.
import { BINDING_KEY_WORDS as KEY_WORDS } from './layout.js';

const MUL = 0x9e3779b1;
const FIN = 0x85ebca6b;

/** The first n u32 words of a buffer (copied only when the buffer is not 4-byte aligned). */
export function u32Words(buf: Buffer, n: number): Uint32Array {
  const aligned = buf.byteOffset % 4 === 0 ? buf : Buffer.from(buf.subarray(0, n * 4));
  return new Uint32Array(aligned.buffer, aligned.byteOffset, n);
}

/** The keys of a packed buffer as u32 words (copied only when the buffer is not 4-byte aligned). */
export function keyWords(keys: Buffer, count: number): Uint32Array {
  return u32Words(keys, count * KEY_WORDS);
}

function hash(w: Uint32Array, at: number): number {
  let h = Math.imul(w[at], MUL);
  h = Math.imul(h ^ w[at + 1], MUL);
  h = Math.imul(h ^ w[at + 2], MUL);
  h = Math.imul(h ^ w[at + 3], MUL);
  h = Math.imul(h ^ w[at + 4], MUL);
  h = Math.imul(h ^ w[at + 5], MUL);
  h ^= h >>> 16;
  h = Math.imul(h, FIN);
  return h ^ (h >>> 13);
}

// Every word compared, without a branch: V8 then has feedback for all of it
// from the first calls (adding distinct keys mostly differ in the first
// word) and does not compile find again when a diff finds equal keys.
function equal(a: Uint32Array, i: number, b: Uint32Array, j: number): boolean {
  return ((a[i] ^ b[j]) | (a[i + 1] ^ b[j + 1]) | (a[i + 2] ^ b[j + 2]) |
    (a[i + 3] ^ b[j + 3]) | (a[i + 4] ^ b[j + 4]) | (a[i + 5] ^ b[j + 5])) === 0;
}

export class KeyIndex {
  private readonly words: Uint32Array;
  private readonly count: number;
  /** slot -> key index + 1; 0 is empty */
  private readonly slots: Int32Array;
  private readonly mask: number;
  /** findNear: how far the key its last wrong guess was for had moved */
  private moved = 0;

  /** An empty index over up to `count` keys of `words` (see keyWords). */
  constructor(words: Uint32Array, count: number) {
    this.words = words;
    this.count = count;
    let size = 16;
    while (size < count * 2) size *= 2;
    this.slots = new Int32Array(size);
    this.mask = size - 1;
  }

  /** Adds key i; returns the index of an equal key added before (and does not add), or -1. */
  add(i: number): number {
    const w = this.words;
    const at = i * KEY_WORDS;
    for (let s = hash(w, at) & this.mask; ; s = (s + 1) & this.mask) {
      const k = this.slots[s];
      if (k === 0) {
        this.slots[s] = i + 1;
        return -1;
      }
      if (equal(w, (k - 1) * KEY_WORDS, w, at)) return k - 1;
    }
  }

  /**
   * Adds keys 0 to count - 1; returns the index of the first key equal to
   * one added before it, or -1. (A loop of its own: V8 optimizes a small
   * function on its own sooner than the large one that would hold it.)
   */
  addAll(count: number): number {
    for (let k = 0; k < count; k++) if (this.add(k) >= 0) return k;
    return -1;
  }

  /** The index of the key equal to key j of `other` (words as from keyWords), or -1. */
  find(other: Uint32Array, j: number): number {
    const w = this.words;
    const at = j * KEY_WORDS;
    for (let s = hash(other, at) & this.mask; ; s = (s + 1) & this.mask) {
      const k = this.slots[s];
      if (k === 0) return -1;
      if (equal(w, (k - 1) * KEY_WORDS, other, at)) return k - 1;
    }
  }

  /**
   * find, guessing first that the key is key `guess` (where a set had it
   * before, which it keeps where a file was edited in place), then that it
   * moved as far as the last key guessed wrong (behind an inserted or
   * deleted run of keys). A guess is checked against the whole key: a wrong
   * one costs a compare. All keys must have been added, none twice.
   */
  findNear(guess: number, other: Uint32Array, j: number): number {
    const w = this.words;
    const at = j * KEY_WORDS;
    if (guess < this.count && equal(w, guess * KEY_WORDS, other, at)) return guess;
    const moved = guess + this.moved;
    if (moved >= 0 && moved < this.count && equal(w, moved * KEY_WORDS, other, at)) return moved;
    const i = this.find(other, j);
    if (i >= 0) this.moved = i - guess;
    return i;
  }
}
