// What tubectl prints: aligned tables for people, one JSON document for
// machines. In JSON, 64-bit counters and socket cookies are decimal strings
// (they can exceed 2^53); everything else is a plain number or string.
import type { BindingJSON } from '../binding.js';
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

/** What the label column shows for a binding: reject bindings stand out. */
export function labelCell(b: Pick<BindingJSON, 'label' | 'action'>): string {
  if (b.action !== 'reject') return b.label;
  return b.label === '' ? '<reject>' : `<reject:${b.label}>`;
}

export function bindingsTable(bindings: readonly BindingJSON[]): string {
  return table(['protocol', 'prefix', 'port', 'label'],
    bindings.map((b) => [b.protocol, b.prefix, String(b.port), labelCell(b)]), [2]);
}

/** "tcp 127.0.0.0/24 80 -> web" or "... -> reject". */
export function describeBinding(b: BindingJSON): string {
  const target = b.action === 'reject' ? (b.label ? `reject (${b.label})` : 'reject') : b.label;
  return `${b.protocol} ${b.prefix} ${b.port} -> ${target}`;
}
