// Destinations: (label, domain, protocol). Each has a small integer id that
// indexes the socket map and the per-CPU metrics; bindings store the id.
import {
  AF, DESTINATION_KEY_SIZE, DESTINATION_VALUE_SIZE, IPPROTO, LABEL_MAX_BYTES, NO_OWNER, readU32, writeU32,
} from './layout.js';
import { type Domain, type Protocol } from './protocol.js';

export interface DestinationKey {
  readonly label: string;
  readonly domain: Domain;
  readonly protocol: Protocol;
}

export interface DestinationEntry extends DestinationKey {
  readonly id: number;
  /** the uid that registered its sockets through tubulard, or null */
  readonly owner: number | null;
}

export const destinationName = (d: DestinationKey): string => `${d.label} ${d.domain} ${d.protocol}`;

export function encodeDestinationKey(d: DestinationKey): Buffer {
  const buf = Buffer.alloc(DESTINATION_KEY_SIZE);
  buf[0] = IPPROTO[d.protocol];
  buf[1] = AF[d.domain === 'ipv4' ? 4 : 6];
  buf.write(d.label, 4, LABEL_MAX_BYTES, 'utf8');
  return buf;
}

export function decodeDestination(key: Buffer, value: Buffer, off = 0, voff = 0): DestinationEntry {
  const protocol: Protocol = key[off] === IPPROTO.tcp ? 'tcp' : 'udp';
  const domain: Domain = key[off + 1] === AF[4] ? 'ipv4' : 'ipv6';
  // The label runs to its first zero byte, or fills its field. Decoded in
  // place: a subarray per entry made reading a few thousand destinations
  // cost milliseconds.
  const start = off + 4;
  const stop = off + DESTINATION_KEY_SIZE;
  let end = start;
  while (end < stop && key[end] !== 0) end++;
  const label = key.toString('utf8', start, end);
  const owner = readU32(value, voff + 4);
  return { label, domain, protocol, id: readU32(value, voff), owner: owner === NO_OWNER ? null : owner };
}

export function encodeDestinationValue(id: number, owner: number | null): Buffer {
  const buf = Buffer.alloc(DESTINATION_VALUE_SIZE);
  writeU32(buf, id, 0);
  writeU32(buf, owner ?? NO_OWNER, 4);
  return buf;
}
