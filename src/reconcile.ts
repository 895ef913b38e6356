// Recomputes everything derived from the binding sets, for a writer that
// finds its predecessor died part-way (recovery.ts): the filters of both
// generations exactly, and destinations that neither generation's set
// uses (and no socket serves) deleted. Safe while the program runs: no
// set changes under the writers' lock, and each filter written is exactly
// what its set needs.
import { type DestinationTable, referencedIds } from './destination-table.js';
import { BLOCKS_FILTER, LENGTHS_FILTER, exactFilter } from './filters.js';
import type { Generations } from './generations.js';
import { GENERATIONS, MAX_DESTINATIONS } from './layout.js';

export function reconcile(gens: Generations, dests: DestinationTable): void {
  const used = new Uint8Array(MAX_DESTINATIONS);
  for (let slot = 0; slot < GENERATIONS; slot++) {
    const set = gens.withSet((s) => s.dump(), slot);
    referencedIds(set.values, set.count, used);
    for (const [kind, spec] of [['lengths', LENGTHS_FILTER], ['blocks', BLOCKS_FILTER]] as const) {
      gens.with(kind, slot, (map) => {
        const exact = exactFilter(spec, set);
        map.updateBatch(exact.keys, exact.values, exact.count);
      });
    }
  }
  dests.collect(used);
}
