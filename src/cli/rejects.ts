// Reject bindings with their refusal counts, and observe bindings with the
// connections they counted. The data plane creates a counter on a binding's
// first refusal, so bindings that never refused are added here with zero:
// every reject binding shows up, in precedence order.
import { type Binding, bindingId, comparePrecedence } from '../binding.js';
import type { Traffic } from '../binding-stats.js';
import { type PackedBindings, keyPort, keyPrefixText, keyProtocol, precedenceOrder } from '../bindingset.js';
import type { RejectCounter } from '../dispatcher.js';
import { ACTION_OBSERVE, BINDING_KEY_SIZE } from '../layout.js';
import { formatPrefix } from '../prefix.js';
import type { Protocol } from '../protocol.js';

export interface RejectRow {
  protocol: Protocol;
  prefix: string;
  port: number;
  rejected: bigint;
}

export function rejectRows(bindings: readonly Binding[], counters: readonly RejectCounter[]): RejectRow[] {
  const counted = new Map(counters.map((c) => [bindingId(c), c.rejected]));
  return bindings.filter((b) => b.action === 'reject').sort(comparePrecedence)
    .map((b) => ({ protocol: b.protocol, prefix: formatPrefix(b.prefix), port: b.port, rejected: counted.get(bindingId(b)) ?? 0n }));
}

export interface ObservedRow {
  protocol: Protocol;
  prefix: string;
  port: number;
  /** connections and datagrams the binding counted */
  observed: bigint;
}

/** Observe bindings with their counts, in precedence order. */
export function observedRows(set: PackedBindings, traffic: (stats: Uint32Array) => Traffic[]): ObservedRow[] {
  const stats = set.stats ?? new Uint32Array(set.count);
  const order = precedenceOrder(set, (i) => set.actions[i] === ACTION_OBSERVE);
  const counts = traffic(Uint32Array.from(order, (i) => stats[i]));
  return order.map((i, r) => {
    const off = i * BINDING_KEY_SIZE;
    return { protocol: keyProtocol(set.keys, off), prefix: keyPrefixText(set.keys, off), port: keyPort(set.keys, off), observed: counts[r].hits };
  });
}
