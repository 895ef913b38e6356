// The `blocks` filter (see bpf/dispatcher.c): which prefix lengths have a
// binding near an address. A binding of length 16-23 (IPv4) is filed under
// its /16, 24-32 under its /24; IPv6 32-47 under its /32, 48-64 under its /48,
// 65-96 under its /64, 97-128 under its /96. Each block hashes to one u64:
// bit i of the low half means "length first + i has a port-specific binding
// in some block hashing here", of the high half the same for port 0.
// Shorter bindings are not filed: the program always tries them.

export const BLOCK_BITS = 20;
export const BLOCK_ENTRIES = 1 << BLOCK_BITS;
/** u32 words per entry: one host-order u64 */
export const BLOCK_WORDS = 2;
export const BLOCK_VALUE_SIZE = 8;

const MUL = 0x9e3779b1;
const FIN = 0x2c1b3c6d;
const AF_INET = 2;

/** The level a length is filed under (see above), or -1 for a short one. */
function levelOf(family: number, length: number): number {
  if (family === AF_INET) return length >= 24 ? 24 : length >= 16 ? 16 : -1;
  return length >= 97 ? 96 : length >= 65 ? 64 : length >= 48 ? 48 : length >= 32 ? 32 : -1;
}

/** The first length filed under a level. */
const firstOf = (level: number): number => (level === 64 || level === 96 ? level + 1 : level);

const LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** The entry of a block: the program's block() hash. a, b, c: host-order address words masked to the level. */
export function blockIndex(protocol: number, family: number, level: number, a: number, b: number, c: number): number {
  let h = Math.imul(protocol | (family << 8) | (level << 16), MUL);
  h = Math.imul(h ^ a, MUL);
  h = Math.imul(h ^ b, MUL);
  h = Math.imul(h ^ c, MUL);
  h = Math.imul(h ^ (h >>> 15), FIN);
  return h >>> (32 - BLOCK_BITS);
}

/** The big-endian u32 at keys[at..]. */
const wordAt = (keys: Uint8Array, at: number): number => ((keys[at] << 24) | (keys[at + 1] << 16) | (keys[at + 2] << 8) | keys[at + 3]) >>> 0;

const maskTo = (word: number, bits: number): number => (bits <= 0 ? 0 : bits >= 32 ? word : (word & ~((1 << (32 - bits)) - 1)) >>> 0);

/**
 * Where the encoded binding key at keys[off..] is filed: (u32 word of a
 * block table) * 32 + bit, or -1 for a short binding.
 */
export function blockPosition(keys: Buffer, off = 0): number {
  const family = keys[off + 1];
  const length = keys[off + 2];
  const level = levelOf(family, length);
  if (level < 0) return -1;
  const a = maskTo(wordAt(keys, off + 8), level);
  const b = maskTo(wordAt(keys, off + 12), level - 32);
  const c = maskTo(wordAt(keys, off + 16), level - 64);
  const index = blockIndex(keys[off], family, level, a, b, c);
  // The port is a host-order u16 at offset 4: zero either way round.
  const high = keys[off + 4] === 0 && keys[off + 5] === 0 ? 1 : 0;
  return (index * BLOCK_WORDS + (LE ? high : 1 - high)) * 32 + (length - firstOf(level));
}

/** blockPosition as a u32 word and mask; undefined for a short binding. */
export function blockBit(keys: Buffer, off = 0): { word: number; mask: number } | undefined {
  const at = blockPosition(keys, off);
  return at < 0 ? undefined : { word: at >>> 5, mask: (1 << (at & 31)) >>> 0 };
}
