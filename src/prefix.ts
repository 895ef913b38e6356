// IP prefixes: parsing (the common spellings by hand, the rest with
// ipaddr.js), masking, canonical text, containment.
import { createRequire } from 'node:module';
import type * as IpaddrLib from 'ipaddr.js';
import { invalid } from './errors.js';
import { quote } from './quote.js';

type Ipaddr = typeof IpaddrLib;
let ipaddrLib: Ipaddr | undefined;
/** ipaddr.js, loaded on first use: the common spellings never need it, and start-up time counts. */
function ipaddr(): Ipaddr {
  ipaddrLib ??= createRequire(import.meta.url)('ipaddr.js') as Ipaddr;
  return ipaddrLib;
}

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
 * /128). Host bits are cleared, and the result says so. Refused although
 * ipaddr.js would take them: white space around the text, and an IPv6 zone
 * ("fe80::1%eth0"), which a binding could not honour.
 */
export function parsePrefix(text: string): ParsedPrefix {
  if (/^\s|\s$/.test(text)) throw invalid(`invalid prefix ${quote(text)}: remove the white space around it`);
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const zone = addrText.indexOf('%');
  if (zone >= 0) {
    throw invalid(`invalid prefix ${quote(text)}: a zone (${quote(addrText.slice(zone))}) is not allowed, bindings match an address ` +
      `on every interface: write ${quote(addrText.slice(0, zone) + text.slice(addrText.length))}`);
  }
  // The common spellings, parsed by hand (ipaddr.js dominated loading large
  // binding files); anything else takes the general path below.
  const fast = parseIPv4(addrText) ?? parsePlainIPv6(addrText);
  if (fast) return finish(text, slash, fast.length === 4 ? 4 : 6, fast);
  const lib = ipaddr();
  let addr: IpaddrLib.IPv4 | IpaddrLib.IPv6;
  if (lib.IPv4.isValidFourPartDecimal(addrText)) {
    addr = lib.IPv4.parse(addrText);
  } else if (lib.IPv6.isValid(addrText) && addrText.includes(':')) {
    addr = lib.IPv6.parse(addrText);
    if (addr.isIPv4MappedAddress()) {
      throw invalid(`invalid prefix ${quote(text)}: IPv4-mapped IPv6 addresses never match; write the IPv4 prefix ${addr.toIPv4Address().toString()} instead`);
    }
  } else {
    throw invalid(`invalid prefix ${quote(text)}: expected an IPv4 or IPv6 address, optionally with /length`);
  }
  return finish(text, slash, addr.kind() === 'ipv4' ? 4 : 6, Uint8Array.from(addr.toByteArray()));
}

/** parsePrefixInto: the result is IPv6 */
export const INTO_IPV6 = 0x100;
/** parsePrefixInto: host bits were set and have been cleared */
export const INTO_MASKED = 0x200;
/** the IPv6 groups parsePrefixInto reads, reused */
const scratch = new Uint16Array(8);

/** parsePrefixInto's copy of a string's characters, reused */
const chars = new Uint8Array(64);

/**
 * parsePrefix for the spellings machines write (a dotted quad, hex groups
 * with at most one "::", an optional /length; no spaces), without
 * allocating: writes the masked address to out[off..off + 16) (IPv4 in the
 * first 4 bytes, zeros after) and returns the length | INTO_IPV6 |
 * INTO_MASKED. Returns -1 for anything else, valid or not: then ask
 * parsePrefix, which accepts every spelling this does, with the same result.
 */
export function parsePrefixInto(text: string, out: Uint8Array, off: number): number {
  if (text.length > chars.length) return -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c > 127) return -1;
    chars[i] = c;
  }
  return parsePrefixBytes(chars, 0, text.length, out, off);
}

/** parsePrefixInto for the text src[start..stop), in ASCII (a bindings file read as bytes). */
export function parsePrefixBytes(src: Uint8Array, start: number, stop: number, out: Uint8Array, off: number): number {
  let end = stop;
  let colon = false;
  for (let i = start; i < stop; i++) {
    const c = src[i];
    if (c === 47) { // '/'
      end = i;
      break;
    }
    if (c === 58) colon = true; // ':'
  }
  let family: Family;
  if (!colon) {
    // Dotted quad, no leading zeros (as ipaddr.js's four-part decimal).
    let part = 0;
    let value = 0;
    let digits = 0;
    for (let i = start; i <= end; i++) {
      const c = i < end ? src[i] : 46;
      if (c >= 48 && c <= 57) {
        if (digits > 0 && value === 0) return -1;
        value = value * 10 + (c - 48);
        if (++digits > 3 || value > 255) return -1;
      } else if (c === 46) {
        if (digits === 0 || part > 3) return -1;
        out[off + part++] = value;
        value = 0;
        digits = 0;
      } else {
        return -1;
      }
    }
    if (part !== 4) return -1;
    for (let k = off + 4; k < off + 16; k++) out[k] = 0;
    family = 4;
  } else {
    let n = 0;
    let gap = -1;
    let i = start;
    if (end - start >= 2 && src[start] === 58 && src[start + 1] === 58) {
      gap = 0;
      i = start + 2;
    }
    while (i < end) {
      let value = 0;
      let digits = 0;
      for (; i < end; i++) {
        const c = src[i];
        const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
        if (d < 0) break;
        value = (value << 4) | d;
        digits++;
      }
      if (digits === 0 || digits > 4 || n === 8) return -1;
      scratch[n++] = value;
      if (i === end) break;
      if (src[i] !== 58) return -1;
      if (i + 1 < end && src[i + 1] === 58) {
        if (gap >= 0) return -1;
        gap = n;
        i += 2;
      } else {
        i += 1;
        if (i === end) return -1;
      }
    }
    if (gap < 0 ? n !== 8 : n > 7) return -1;
    const zeros = gap < 0 ? 0 : 8 - n;
    for (let g = 0, k = 0; g < 8; g++) {
      const v = gap >= 0 && g >= gap && g < gap + zeros ? 0 : scratch[k++];
      out[off + 2 * g] = v >> 8;
      out[off + 2 * g + 1] = v & 0xff;
    }
    // An IPv4-mapped address (::ffff:0:0/96) is refused. Without a branch
    // per byte: V8 then compiles this once, with feedback for every
    // operation, instead of again when the first address has 0xff there.
    let high = (out[off + 10] & out[off + 11]) ^ 0xff;
    for (let b = 0; b < 10; b++) high |= out[off + b];
    if (high === 0) return -1;
    family = 6;
  }
  const max = maxLength(family);
  let length = max;
  if (end < stop) {
    const digits = stop - end - 1;
    if (digits < 1 || digits > 3) return -1;
    length = 0;
    for (let i = end + 1; i < stop; i++) {
      const c = src[i];
      if (c < 48 || c > 57) return -1;
      length = length * 10 + (c - 48);
    }
    if (length > max) return -1;
  }
  let masked = false;
  for (let b = 0; b < max / 8; b++) {
    const keep = length - b * 8;
    if (keep >= 8) continue;
    const m = keep <= 0 ? 0 : (0xff << (8 - keep)) & 0xff;
    const v = out[off + b];
    if ((v & m) !== v) {
      out[off + b] = v & m;
      masked = true;
    }
  }
  return length | (family === 6 ? INTO_IPV6 : 0) | (masked ? INTO_MASKED : 0);
}

/** Applies the /length of `text` to a parsed address. */
function finish(text: string, slash: number, family: Family, raw: Uint8Array): ParsedPrefix {
  let length = maxLength(family);
  if (slash >= 0) {
    const lenText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > maxLength(family)) {
      throw invalid(`invalid prefix ${quote(text)}: the length must be 0-${maxLength(family)} for IPv${family}`);
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
  return formatAddressAt(family, bytes, 0);
}

/** The address of `family` at bytes[off..]: dotted quad, or RFC 5952 for IPv6. */
export function formatAddressAt(family: Family, bytes: Uint8Array, off: number): string {
  if (family === 4) return `${bytes[off]}.${bytes[off + 1]}.${bytes[off + 2]}.${bytes[off + 3]}`;
  return formatIPv6(bytes, off);
}

/**
 * RFC 5952's "::": the first longest run of two or more zero groups of the
 * IPv6 address at bytes[off..off + 16), as [first group, length]; [-1, 1]
 * when there is none.
 */
export function zeroRun(bytes: Uint8Array, off: number): [number, number] {
  const group = (i: number): number => (bytes[off + 2 * i] << 8) | bytes[off + 2 * i + 1];
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (group(i) !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && group(j) === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  return [best, bestLen];
}

/** RFC 5952: lowercase, no leading zeros, the longest run of two or more zero groups as "::" (the first on a tie). */
function formatIPv6(bytes: Uint8Array, off: number): string {
  const group = (i: number): number => (bytes[off + 2 * i] << 8) | bytes[off + 2 * i + 1];
  const [best, bestLen] = zeroRun(bytes, off);
  const hex = (from: number, to: number): string => {
    let out = '';
    for (let i = from; i < to; i++) out += i === from ? group(i).toString(16) : `:${group(i).toString(16)}`;
    return out;
  };
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
