// Digests: of a binding set as a replace wrote it, and of a bindings file's
// bytes (64 bits of SHA-256, never 0); and random names. node:crypto loads
// on first use: most commands never hash, and loading it costs every start.
import { createRequire } from 'node:module';
import type * as Crypto from 'node:crypto';
import type { PackedBindings } from './bindingset.js';
import { BINDING_KEY_SIZE } from './layout.js';

let cryptoLib: typeof Crypto | undefined;
const crypto = (): typeof Crypto => (cryptoLib ??= createRequire(import.meta.url)('node:crypto') as typeof Crypto);

const nonZero = (d: bigint): bigint => (d === 0n ? 1n : d);

/**
 * 64 bits of SHA-256 over what a set says, in its order: its keys, actions
 * and labels, not the destination ids and stat indices a host gave it (so
 * two hosts that loaded the same set show the same digest).
 */
export function setDigest(set: PackedBindings): bigint {
  const h = crypto().createHash('sha256');
  const count = Buffer.alloc(4);
  count.writeUInt32LE(set.count, 0);
  h.update(count).update(set.keys.subarray(0, set.count * BINDING_KEY_SIZE)).update(set.actions.subarray(0, set.count));
  h.update(new Uint8Array(set.labelIndex.buffer, set.labelIndex.byteOffset, set.count * 4));
  for (const label of set.labels) h.update(`${label}\0`);
  return nonZero(h.digest().readBigUInt64LE(0));
}

/** 64 bits of SHA-256 over a bindings file's bytes: how load-bindings recognises the file the set in force came from. */
export function fileDigest(bytes: Uint8Array): bigint {
  return nonZero(crypto().createHash('sha256').update(bytes).digest().readBigUInt64LE(0));
}

/** fileDigest of bytes given in parts, in order. */
export function digestParts(): { update(bytes: Uint8Array): void; value(): bigint } {
  const h = crypto().createHash('sha256');
  return { update: (bytes) => { h.update(bytes); }, value: () => nonZero(h.digest().readBigUInt64LE(0)) };
}

/** fileDigest of a file read a part at a time (as ByteSource reads it), never held whole. */
export function fileDigestOf(read: (into: Uint8Array, at: number, count: number, position: number) => number): bigint {
  const d = digestParts();
  const part = Buffer.allocUnsafe(1 << 20);
  for (let position = 0; ;) {
    const got = read(part, 0, part.length, position);
    if (got === 0) break;
    d.update(part.subarray(0, got));
    position += got;
  }
  return d.value();
}

/** n random bytes in hex, for names nobody can guess. */
export function randomHex(n: number): string {
  return crypto().randomBytes(n).toString('hex');
}
