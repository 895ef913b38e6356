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
  // The common spellings, parsed by hand (ipaddr.js dominated loading large
  // binding files); anything else takes the general path below.
  const fast = parseIPv4(addrText) ?? parsePlainIPv6(addrText);
  if (fast) return finish(text, s, slash, fast.length === 4 ? 4 : 6, fast);
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
  return finish(text, s, slash, addr.kind() === 'ipv4' ? 4 : 6, Uint8Array.from(addr.toByteArray()));
}

/** Applies the /length of `s` (trimmed `text`) to a parsed address. */
function finish(text: string, s: string, slash: number, family: Family, raw: Uint8Array): ParsedPrefix {
  let length = maxLength(family);
  if (slash >= 0) {
    const lenText = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > maxLength(family)) {
      throw invalid(`invalid prefix "${text}": the length must be 0-${maxLength(family)} for IPv${family}`);
    }
    length = Number(lenText);
  }
  const bytes = maskBytes(raw, length);
  const prefix: Prefix = { family, bytes, length };
  const changed = raw.some((b, i) => b !== bytes[i]);
  return changed ? { prefix, masked: `${text} has host bits set; using ${formatPrefix(prefix)}` } : { prefix };
}

/** Dotted-quad IPv4 exactly as ipaddr.js's four-part decimal accepts it (no leading zeros), or undefined. */
function parseIPv4(t: string): Uint8Array | undefined {
  const out = new Uint8Array(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= t.length; i++) {
    const c = i < t.length ? t.charCodeAt(i) : 46;
    if (c >= 48 && c <= 57) {
      if (digits > 0 && value === 0) return undefined; // leading zero
      value = value * 10 + (c - 48);
      if (++digits > 3 || value > 255) return undefined;
    } else if (c === 46) {
      if (digits === 0 || part > 3) return undefined;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else {
      return undefined;
    }
  }
  return part === 4 ? out : undefined;
}

/**
 * IPv6 of hex groups with at most one "::" (no embedded IPv4, no zone), or
 * undefined to let ipaddr.js decide. IPv4-mapped addresses are left to it
 * too, for its message.
 */
function parsePlainIPv6(t: string): Uint8Array | undefined {
  if (t.length < 2 || t.length > 39) return undefined;
  const gap = t.indexOf('::');
  if (gap >= 0 && t.indexOf('::', gap + 1) >= 0) return undefined;
  const head = gap < 0 ? t : t.slice(0, gap);
  const tail = gap < 0 ? '' : t.slice(gap + 2);
  const a = head === '' ? [] : head.split(':');
  const b = tail === '' ? [] : tail.split(':');
  if (gap < 0 ? a.length !== 8 : a.length + b.length > 7) return undefined;
  const out = new Uint8Array(16);
  const put = (groups: string[], at: number): boolean => {
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (g.length < 1 || g.length > 4 || !/^[0-9a-fA-F]+$/.test(g)) return false;
      const v = parseInt(g, 16);
      out[(at + i) * 2] = v >> 8;
      out[(at + i) * 2 + 1] = v & 0xff;
    }
    return true;
  };
  if (!put(a, 0) || !put(b, 8 - b.length)) return undefined;
  const mapped = out.subarray(0, 10).every((x) => x === 0) && out[10] === 0xff && out[11] === 0xff;
  return mapped ? undefined : out;
}

export function formatAddress(family: Family, bytes: Uint8Array): string {
  if (family === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  return formatIPv6(bytes);
}

/** RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups as "::" (the first on a tie). */
function formatIPv6(bytes: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = (from: number, to: number): string => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  if (best < 0) return hex(0, 8);
  return `${hex(0, best)}::${hex(best + bestLen, 8)}`;
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
