// The binding sets the benchmark measures: a deterministic, realistic mix of
// IPv4 /24, /28 and /32 and IPv6 /48, /64 and /128 prefixes on ports 0, 80,
// 443, 53 and 8080, each entry bound for both TCP and UDP, spread over a few
// hundred labels and a few reject bindings. Mix addresses live in 10.0.0.0/8
// and 2001:db8::/32; the fixtures the lookups probe (bench/dataplane.ts) live
// in 10.255.0.0/16 and 2001:db8:ff00::/40, which the mix never touches.
import type { Binding } from '../src/binding.js';
import type { Family, Prefix } from '../src/prefix.js';
import { maskBytes } from '../src/prefix.js';

export const PORTS = [0, 80, 443, 53, 8080] as const;
const V4_LENGTHS = [24, 28, 32];
const V6_LENGTHS = [48, 64, 128];
export const LABELS = 200;

/** A small seeded PRNG (mulberry32), so every run measures the same sets. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One tubular-format entry: a prefix and port bound for both protocols. */
export interface Entry {
  label: string;
  prefix: string;
  port: number;
  reject: boolean;
}

function prefixText(family: Family, bytes: Uint8Array, length: number): string {
  if (family === 4) return `${bytes.join('.')}/${length}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return `${groups.join(':')}/${length}`;
}

/** `count` distinct entries (2 * count bindings): half IPv4, half IPv6. */
export function entries(count: number, seed = 1): Entry[] {
  const rnd = random(seed);
  const int = (n: number): number => Math.floor(rnd() * n);
  const seen = new Set<string>();
  const out: Entry[] = [];
  while (out.length < count) {
    const family: Family = out.length % 2 === 0 ? 4 : 6;
    const length = (family === 4 ? V4_LENGTHS : V6_LENGTHS)[int(3)];
    const raw = new Uint8Array(family === 4 ? 4 : 16);
    if (family === 4) {
      raw.set([10, int(255), int(256), int(256)]);      // 10.0-254.x.x: never 10.255/16
    } else {
      raw.set([0x20, 0x01, 0x0d, 0xb8, int(255), int(256)]); // 2001:db8:0000-feff::
      for (let i = 6; i < 16; i++) raw[i] = int(256);
    }
    const port = PORTS[int(PORTS.length)];
    const prefix = prefixText(family, maskBytes(raw, length), length);
    const id = `${prefix} ${port}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const reject = int(100) === 0;
    out.push({ label: reject ? '' : `svc${int(LABELS)}`, prefix, port, reject });
  }
  return out;
}

/** The bindings of some entries, TCP and UDP each. */
export function bindingsOf(list: readonly Entry[]): Binding[] {
  const out: Binding[] = [];
  for (const e of list) {
    const prefix = parsePrefixFast(e.prefix);
    for (const protocol of ['tcp', 'udp'] as const) {
      out.push({ label: e.label, protocol, prefix, port: e.port, action: e.reject ? 'reject' : 'steer' });
    }
  }
  return out;
}

function parsePrefixFast(text: string): Prefix {
  const [addr, len] = text.split('/');
  const length = Number(len);
  if (!addr.includes(':')) return { family: 4, bytes: Uint8Array.from(addr.split('.').map(Number)), length };
  const bytes = new Uint8Array(16);
  addr.split(':').forEach((g, i) => { const v = parseInt(g, 16); bytes[2 * i] = v >> 8; bytes[2 * i + 1] = v & 255; });
  return { family: 6, bytes, length };
}
