// IP prefixes: parsing with ipaddr.js, masking, canonical text, containment.
import ipaddr from 'ipaddr.js';
import { invalid } from './errors.js';

export type Family = 4 | 6;

export interface Prefix {
  readonly family: Family;
  /** the network address, host bits zero: 4 or 16 bytes */
  readonly bytes: Uint8Array;
  /** prefix length: 0-32 or 0-128 */
  readonly length: number;
}

export interface ParsedPrefix {
  prefix: Prefix;
  /** set when the input had host bits set; they were cleared */
  masked?: string;
}

const maxLength = (family: Family): number => (family === 4 ? 32 : 128);

/** Zero every bit past `length`. */
export function maskBytes(bytes: Uint8Array, length: number): Uint8Array {
  const out = Uint8Array.from(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, length - i * 8));
    out[i] &= keep === 8 ? 0xff : (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

/**
 * Parses "192.0.2.0/24", "192.0.2.7" (a /32), "2001:db8::/32" or "::1" (a
 * /128). Host bits are cleared, and the result says so.
 */
export function parsePrefix(text: string): ParsedPrefix {
  const s = text.trim();
  const slash = s.indexOf('/');
  const addrText = slash < 0 ? s : s.slice(0, slash);
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  if (ipaddr.IPv4.isValidFourPartDecimal(addrText)) {
    addr = ipaddr.IPv4.parse(addrText);
  } else if (ipaddr.IPv6.isValid(addrText) && addrText.includes(':')) {
    addr = ipaddr.IPv6.parse(addrText);
    if (addr.isIPv4MappedAddress()) {
      throw invalid(`invalid prefix "${text}": IPv4-mapped IPv6 addresses never match; write the IPv4 prefix ${addr.toIPv4Address().toString()} instead`);
    }
  } else {
    throw invalid(`invalid prefix "${text}": expected an IPv4 or IPv6 address, optionally with /length`);
  }
  const family: Family = addr.kind() === 'ipv4' ? 4 : 6;
  let length = maxLength(family);
  if (slash >= 0) {
    const lenText = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > maxLength(family)) {
      throw invalid(`invalid prefix "${text}": the length must be 0-${maxLength(family)} for IPv${family}`);
    }
    length = Number(lenText);
  }
  const raw = Uint8Array.from(addr.toByteArray());
  const bytes = maskBytes(raw, length);
  const prefix: Prefix = { family, bytes, length };
  const changed = raw.some((b, i) => b !== bytes[i]);
  return changed ? { prefix, masked: `${text} has host bits set; using ${formatPrefix(prefix)}` } : { prefix };
}

export function formatAddress(family: Family, bytes: Uint8Array): string {
  return family === 4
    ? ipaddr.fromByteArray(Array.from(bytes.subarray(0, 4))).toString()
    : (ipaddr.fromByteArray(Array.from(bytes.subarray(0, 16))) as ipaddr.IPv6).toRFC5952String();
}

export function formatPrefix(p: Prefix): string {
  return `${formatAddress(p.family, p.bytes)}/${p.length}`;
}

/** Whether `outer` contains `inner` (same family, shorter or equal, same leading bits). */
export function containsPrefix(outer: Prefix, inner: Prefix): boolean {
  if (outer.family !== inner.family || outer.length > inner.length) return false;
  const masked = maskBytes(inner.bytes, outer.length);
  return masked.every((b, i) => b === outer.bytes[i]);
}
