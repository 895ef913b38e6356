// Recomputes everything derived from the binding sets, for a writer that
// finds its predecessor died part-way (recovery.ts): the filters of both
// generations exactly, and destinations that neither generation's set
// uses (and no socket serves) deleted. Safe while the program runs: no
// set changes under the writers' lock, and each filter written is exactly
// what its set needs.
import { valueDestination } from './bindingset.js';
import type { DestinationTable } from './destination-table.js';
import { type FilterSpec, exactFilter } from './filters.js';
import type { Generations } from './generations.js';
import { GENERATIONS, MAX_DESTINATIONS, NO_DESTINATION } from './layout.js';

export function reconcile(gens: Generations, dests: DestinationTable, filters: readonly FilterSpec[]): void {
  const used = new Uint8Array(MAX_DESTINATIONS);
  for (let slot = 0; slot < GENERATIONS; slot++) {
    const set = gens.withSet((s) => s.dump(), slot);
    for (let i = 0; i < set.count; i++) {
      const id = valueDestination(set.values, i);
      if (id !== NO_DESTINATION && id < MAX_DESTINATIONS) used[id] = 1;
    }
    filters.forEach((spec, k) => gens.with(k === 0 ? 'lengths' : 'blocks', slot, (map) => {
      const exact = exactFilter(spec, set);
      map.updateBatch(exact.keys, exact.values, exact.count);
    }));
  }
  dests.collect(used);
}
