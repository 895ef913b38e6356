// Bindings: (protocol, prefix, port) -> label, or -> reject, or observe
// (count and carry on, as if the binding were not there).
//
// Precedence, as the data plane applies it: the longest prefix wins; at equal
// length a specific port beats port 0. Sorting by `comparePrecedence` lists
// bindings in the order the data plane would prefer them.
import { invalid } from './errors.js';
import { labelProblem } from './label.js';
import { formatPrefix, parsePrefix, type Prefix } from './prefix.js';
import { parsePort, parseProtocol, type Protocol } from './protocol.js';

export type Action = 'steer' | 'reject' | 'observe';
export const ACTIONS: readonly Action[] = ['steer', 'reject', 'observe'];

export interface Binding {
  /** the service; '' only for a reject or observe binding given no label */
  readonly label: string;
  readonly protocol: Protocol;
  readonly prefix: Prefix;
  /** 0 means every port */
  readonly port: number;
  readonly action: Action;
}

/** The stable JSON shape of a binding (tubectl --json, files). */
export interface BindingJSON {
  label: string;
  protocol: Protocol;
  prefix: string;
  port: number;
  action: Action;
}

export interface BindingInput {
  label?: string;
  protocol: string;
  prefix: string;
  port: string | number;
  action?: Action;
}

/** Validates one binding; `notes` collects harmless corrections (masked host bits). */
export function parseBinding(input: BindingInput, notes?: string[]): Binding {
  const action = input.action ?? 'steer';
  const label = input.label ?? '';
  if (action === 'steer' || label !== '') {
    const problem = labelProblem(label);
    if (problem) throw invalid(problem);
  }
  const protocol = parseProtocol(input.protocol);
  const { prefix, masked } = parsePrefix(input.prefix);
  if (masked) notes?.push(masked);
  const port = parsePort(input.port);
  return { label, protocol, prefix, port, action };
}

/** The identity of a binding: at most one binding per (protocol, prefix, port). */
export function bindingId(b: Pick<Binding, 'protocol' | 'prefix' | 'port'>): string {
  return `${b.protocol} ${formatPrefix(b.prefix)} ${b.port}`;
}

/**
 * The arguments of `tubectl unbind` that remove one binding: --reject or
 * --observe for those actions, its label when it has one, then `id`
 * (bindingId: protocol, prefix and port).
 */
export function unbindArgs(action: Action, label: string, id: string): string {
  return `${action === 'steer' ? '' : `--${action} `}${label ? `${label} ` : ''}${id}`;
}

export function sameTarget(a: Binding, b: Binding): boolean {
  return a.label === b.label && a.action === b.action;
}

export function toJSON(b: Binding): BindingJSON {
  return { label: b.label, protocol: b.protocol, prefix: formatPrefix(b.prefix), port: b.port, action: b.action };
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Most preferred first: longer prefix, then specific port, then a stable order. */
export function comparePrecedence(a: Binding, b: Binding): number {
  return (b.prefix.length - a.prefix.length) ||
    ((a.port === 0 ? 1 : 0) - (b.port === 0 ? 1 : 0)) ||
    (a.prefix.family - b.prefix.family) ||
    (a.protocol === b.protocol ? 0 : a.protocol < b.protocol ? -1 : 1) ||
    compareBytes(a.prefix.bytes, b.prefix.bytes) ||
    (a.port - b.port);
}

/**
 * The binding the data plane picks for a connection, computed the slow and
 * obvious way: the reference the BPF program is tested against. Observe
 * bindings decide nothing: they are passed over (see observedBinding).
 */
export function matchBinding(bindings: readonly Binding[], protocol: Protocol, family: 4 | 6, addr: Uint8Array, port: number): Binding | undefined {
  return bestMatch(bindings.filter((b) => b.action !== 'observe'), protocol, family, addr, port);
}

/**
 * The observe binding that counts a connection: the most preferred observe
 * binding that matches, when it is preferred to the binding that decides.
 */
export function observedBinding(bindings: readonly Binding[], protocol: Protocol, family: 4 | 6, addr: Uint8Array, port: number): Binding | undefined {
  const observe = bestMatch(bindings.filter((b) => b.action === 'observe'), protocol, family, addr, port);
  const decides = matchBinding(bindings, protocol, family, addr, port);
  return observe && (!decides || comparePrecedence(observe, decides) < 0) ? observe : undefined;
}

function bestMatch(bindings: readonly Binding[], protocol: Protocol, family: 4 | 6, addr: Uint8Array, port: number): Binding | undefined {
  let best: Binding | undefined;
  for (const b of bindings) {
    if (b.protocol !== protocol || b.prefix.family !== family) continue;
    if (b.port !== 0 && b.port !== port) continue;
    if (!prefixMatches(b.prefix, addr)) continue;
    if (!best || comparePrecedence(b, best) < 0) best = b;
  }
  return best;
}

function prefixMatches(p: Prefix, addr: Uint8Array): boolean {
  for (let bit = 0; bit < p.length; bit++) {
    const mask = 0x80 >> (bit & 7);
    if ((p.bytes[bit >> 3] & mask) !== (addr[bit >> 3] & mask)) return false;
  }
  return true;
}
