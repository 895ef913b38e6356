// What tubectl prints: aligned tables for people, one JSON document for
// machines. In JSON, 64-bit counters and socket cookies are decimal strings
// (they can exceed 2^53); everything else is a plain number or string.
import type { BindingJSON } from '../binding.js';
import { type PackedBindings, actionOf, keyFamily, keyPort, keyProtocol, labelAt } from '../bindingset.js';
import { BINDING_KEY_SIZE } from '../layout.js';
import { zeroRun } from '../prefix.js';
import type { Env } from './env.js';

/** Left-aligned columns separated by two spaces; numbers right-aligned. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], numeric: readonly number[] = []): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: readonly string[]): string => cells
    .map((c, i) => (numeric.includes(i) ? c.padStart(widths[i]) : c.padEnd(widths[i])))
    .join('  ')
    .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** JSON.stringify with bigints as decimal strings. */
export function toJSONText(doc: unknown): string {
  return JSON.stringify(doc, (_key, value: unknown) => (typeof value === 'bigint' ? value.toString() : value), 2) + '\n';
}

export function writeJSON(env: Env, doc: unknown): void {
  env.stdout.write(toJSONText(doc));
}

/** What the label column shows for a binding: reject and observe bindings stand out. */
export function labelCell(b: Pick<BindingJSON, 'label' | 'action'>): string {
  if (b.action === 'steer') return b.label;
  return b.label === '' ? `<${b.action}>` : `<${b.action}:${b.label}>`;
}

export function bindingsTable(bindings: readonly BindingJSON[]): string {
  return table(['protocol', 'prefix', 'port', 'label'],
    bindings.map((b) => [b.protocol, b.prefix, String(b.port), labelCell(b)]), [2]);
}

/** Writes the decimal digits of v (0-65535) at out[at..]; returns the end. */
function putDecimal(out: Uint8Array, at: number, v: number): number {
  if (v >= 10000) out[at++] = 48 + Math.floor(v / 10000);
  if (v >= 1000) out[at++] = 48 + (Math.floor(v / 1000) % 10);
  if (v >= 100) out[at++] = 48 + (Math.floor(v / 100) % 10);
  if (v >= 10) out[at++] = 48 + (Math.floor(v / 10) % 10);
  out[at++] = 48 + (v % 10);
  return at;
}

const HEX = [48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 97, 98, 99, 100, 101, 102];

/** Writes a group in hex without leading zeros; returns the end. */
function putHex(out: Uint8Array, at: number, v: number): number {
  if (v >= 0x1000) out[at++] = HEX[v >> 12];
  if (v >= 0x100) out[at++] = HEX[(v >> 8) & 15];
  if (v >= 0x10) out[at++] = HEX[(v >> 4) & 15];
  out[at++] = HEX[v & 15];
  return at;
}

/** Writes the prefix of the key at k[off..] as formatPrefix spells it (RFC 5952 for IPv6); returns the end. */
function putPrefix(out: Uint8Array, at: number, k: Uint8Array, off: number): number {
  const a = off + 8;
  if (keyFamily(k, off) === 4) {
    for (let b = 0; b < 4; b++) {
      if (b > 0) out[at++] = 46;
      at = putDecimal(out, at, k[a + b]);
    }
  } else {
    const group = (g: number): number => (k[a + 2 * g] << 8) | k[a + 2 * g + 1];
    const [best, bestLen] = zeroRun(k, a);
    for (let g = 0; g < 8; g++) {
      if (g === best) {
        out[at++] = 58;
        out[at++] = 58;
        g += bestLen - 1;
        continue;
      }
      if (g > 0 && g !== best + bestLen) out[at++] = 58;
      at = putHex(out, at, group(g));
    }
  }
  out[at++] = 47;
  return putDecimal(out, at, k[off + 2]);
}

/**
 * bindingsTable for bindings `order` of a packed set, byte for byte, built
 * as bytes: listing 100k bindings makes no string per row.
 */
export function packedBindingsTable(set: PackedBindings, order: readonly number[]): string[] {
  const k = set.keys;
  const PREFIX_MAX = 44; // "ffff:...:ffff/128"
  const prefixes = Buffer.allocUnsafe(order.length * PREFIX_MAX);
  const prefixEnd = new Uint32Array(order.length);
  let prefixWidth = 'prefix'.length;
  let portWidth = 'port'.length;
  for (let r = 0; r < order.length; r++) {
    const off = order[r] * BINDING_KEY_SIZE;
    const end = putPrefix(prefixes, r * PREFIX_MAX, k, off);
    prefixEnd[r] = end;
    prefixWidth = Math.max(prefixWidth, end - r * PREFIX_MAX);
    portWidth = Math.max(portWidth, String(keyPort(k, off)).length);
  }
  // The label column of each label and action, encoded once.
  const cells = new Map<number, Buffer>();
  const cellOf = (i: number): Buffer => {
    const id = set.labelIndex[i] * 4 + set.actions[i];
    let cell = cells.get(id);
    if (!cell) {
      cell = Buffer.from(labelCell({ label: labelAt(set, i), action: actionOf(set.actions[i]) }));
      cells.set(id, cell);
    }
    return cell;
  };
  const chunks: string[] = [`protocol  ${'prefix'.padEnd(prefixWidth)}  ${'port'.padStart(portWidth)}  label\n`];
  const fixed = 10 + prefixWidth + 2 + portWidth + 3;
  let out = Buffer.allocUnsafe(1 << 20);
  let at = 0;
  for (let r = 0; r < order.length; r++) {
    const i = order[r];
    const off = i * BINDING_KEY_SIZE;
    const cell = cellOf(i);
    if (at + fixed + cell.length > out.length) {
      chunks.push(out.toString('utf8', 0, at));
      out = Buffer.allocUnsafe(Math.max(1 << 20, fixed + cell.length));
      at = 0;
    }
    const udp = keyProtocol(k, off) === 'udp';
    out[at] = udp ? 117 : 116;
    out[at + 1] = udp ? 100 : 99;
    out[at + 2] = 112;
    out.fill(32, at + 3, at + 10);
    at += 10;
    const from = r * PREFIX_MAX;
    prefixes.copy(out, at, from, prefixEnd[r]);
    at += prefixEnd[r] - from;
    const port = keyPort(k, off);
    const digits = port >= 10000 ? 5 : port >= 1000 ? 4 : port >= 100 ? 3 : port >= 10 ? 2 : 1;
    const gap = prefixWidth - (prefixEnd[r] - from) + 2 + portWidth - digits;
    out.fill(32, at, at + gap);
    at = putDecimal(out, at + gap, port);
    if (cell.length > 0) {
      out[at++] = 32;
      out[at++] = 32;
      at += cell.copy(out, at);
    }
    out[at++] = 10;
  }
  chunks.push(out.toString('utf8', 0, at));
  return chunks;
}

/** "tcp 127.0.0.0/24 80 -> web" or "... -> reject". */
export function describeBinding(b: BindingJSON): string {
  const target = b.action === 'steer' ? b.label : b.label ? `${b.action} (${b.label})` : b.action;
  return `${b.protocol} ${b.prefix} ${b.port} -> ${target}`;
}
