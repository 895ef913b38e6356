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

interface Level { level: number; first: number; last: number }
const V4: readonly Level[] = [{ level: 16, first: 16, last: 23 }, { level: 24, first: 24, last: 32 }];
const V6: readonly Level[] = [
  { level: 32, first: 32, last: 47 }, { level: 48, first: 48, last: 64 }, { level: 64, first: 65, last: 96 }, { level: 96, first: 97, last: 128 },
];

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

const maskTo = (word: number, bits: number): number => (bits <= 0 ? 0 : bits >= 32 ? word : (word & ~((1 << (32 - bits)) - 1)) >>> 0);

/**
 * Where the encoded binding key at keys[off..] is filed: (u32 word of a
 * block table) * 32 + bit, or -1 for a short binding.
 */
export function blockPosition(keys: Buffer, off = 0): number {
  const family = keys[off + 1];
  const length = keys[off + 2];
  const levels = family === AF_INET ? V4 : V6;
  let level: Level | undefined;
  for (const l of levels) if (length >= l.first && length <= l.last) level = l;
  if (!level) return -1;
  const a = maskTo(keys.readUInt32BE(off + 8), level.level);
  const b = maskTo(keys.readUInt32BE(off + 12), level.level - 32);
  const c = maskTo(keys.readUInt32BE(off + 16), level.level - 64);
  const index = blockIndex(keys[off], family, level.level, a, b, c);
  // The port is a host-order u16 at offset 4: zero either way round.
  const high = keys[off + 4] === 0 && keys[off + 5] === 0 ? 1 : 0;
  return (index * BLOCK_WORDS + (LE ? high : 1 - high)) * 32 + (length - level.first);
}

/** blockPosition as a u32 word and mask; undefined for a short binding. */
export function blockBit(keys: Buffer, off = 0): { word: number; mask: number } | undefined {
  const at = blockPosition(keys, off);
  return at < 0 ? undefined : { word: at >>> 5, mask: (1 << (at & 31)) >>> 0 };
}
