// Recomputes everything derived from the binding set in force, for a
// writer that finds its predecessor died part-way (recovery.ts): both
// filters exactly, destinations nothing uses deleted, counters of bindings
// that are no longer reject bindings deleted. Safe while the program runs:
// the set cannot change under the writers' lock, and the filters written
// are exactly what it needs.
import type { BindingStore } from './binding-store.js';
import type { BpfMap } from './bpfmap.js';
import { type DestinationTable, referencedIds } from './destination-table.js';
import { type FilterSpec, exactFilter } from './filters.js';
import { ACTION_REJECT, BINDING_KEY_SIZE, BINDING_VALUE_SIZE, readU32 } from './layout.js';

export function reconcile(store: BindingStore, dests: DestinationTable, filters: Array<{ spec: FilterSpec; map: BpfMap }>, rejectMetrics: BpfMap): void {
  const set = store.with((s) => s.dump());
  for (const f of filters) {
    const exact = exactFilter(f.spec, set);
    f.map.updateBatch(exact.keys, exact.values, exact.count);
  }
  dests.collect(referencedIds(set.values, set.count));
  const rejects = new Set<string>();
  for (let i = 0; i < set.count; i++) {
    if (readU32(set.values, i * BINDING_VALUE_SIZE + 4) === ACTION_REJECT) {
      rejects.add(set.keys.toString('hex', i * BINDING_KEY_SIZE, (i + 1) * BINDING_KEY_SIZE));
    }
  }
  const counters = rejectMetrics.dump();
  const stale: Buffer[] = [];
  for (let i = 0; i < counters.count; i++) {
    const key = counters.keys.subarray(i * BINDING_KEY_SIZE, (i + 1) * BINDING_KEY_SIZE);
    if (!rejects.has(key.toString('hex'))) stale.push(Buffer.from(key));
  }
  if (stale.length > 0) rejectMetrics.deleteBatch(Buffer.concat(stale), stale.length);
}
