// Digests: of a binding set as a replace wrote it, and of a bindings file's
// bytes (64 bits of SHA-256, never 0), and random names. node:crypto loads
// on first use: most commands never hash, and loading it costs every start.
import { createRequire } from 'node:module';
import type * as Crypto from 'node:crypto';
import { BINDING_VALUE_SIZE } from './layout.js';

let cryptoLib: typeof Crypto | undefined;
const crypto = (): typeof Crypto => (cryptoLib ??= createRequire(import.meta.url)('node:crypto') as typeof Crypto);

const nonZero = (d: bigint): bigint => (d === 0n ? 1n : d);

/** 64 bits of SHA-256 over a packed set: what it says, not the stat indices it was given. */
export function setDigest(keys: Buffer, values: Buffer): bigint {
  const said = Buffer.from(values);
  for (let off = 8; off < said.length; off += BINDING_VALUE_SIZE) said.writeUInt32LE(0, off);
  return nonZero(crypto().createHash('sha256').update(keys).update(said).digest().readBigUInt64LE(0));
}

/** 64 bits of SHA-256 over a bindings file's bytes: how load-bindings recognises the file the set in force came from. */
export function fileDigest(bytes: Uint8Array): bigint {
  return nonZero(crypto().createHash('sha256').update(bytes).digest().readBigUInt64LE(0));
}

/** n random bytes in hex, for names nobody can guess. */
export function randomHex(n: number): string {
  return crypto().randomBytes(n).toString('hex');
}
