// Reject bindings with their refusal counts. The data plane creates a
// counter on a binding's first refusal, so bindings that never refused are
// added here with zero: every reject binding shows up, in precedence order.
import { type Binding, bindingId, comparePrecedence } from '../binding.js';
import type { RejectCounter } from '../dispatcher.js';
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
