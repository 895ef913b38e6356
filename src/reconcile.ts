// Recomputes everything derived from the binding sets, for a writer that
// finds its predecessor died part-way (recovery.ts): the filters exactly
// (the bits of both generations' sets), and destinations that neither
// generation's set uses (and no socket serves) deleted. Safe while the
// program runs: no set changes under the writers' lock, and every filter
// entry written keeps each bit the set in force needs.
import type { BpfMap } from './bpfmap.js';
import { type DestinationTable, referencedIds } from './destination-table.js';
import { BLOCKS_FILTER, LENGTHS_FILTER, exactFilter, type KeySet } from './filters.js';
import type { Generations } from './generations.js';
import { GENERATIONS, MAX_DESTINATIONS } from './layout.js';

export function reconcile(gens: Generations, filters: { lengths: BpfMap; blocks: BpfMap }, dests: DestinationTable): void {
  const used = new Uint8Array(MAX_DESTINATIONS);
  const sets: KeySet[] = [];
  for (let slot = 0; slot < GENERATIONS; slot++) {
    const set = gens.withSet((s) => s.dump(), slot);
    referencedIds(set.values, set.count, used);
    sets.push(set);
  }
  for (const [map, spec] of [[filters.lengths, LENGTHS_FILTER], [filters.blocks, BLOCKS_FILTER]] as const) {
    const exact = exactFilter(spec, sets);
    map.updateBatch(exact.keys, exact.values, exact.count);
  }
  dests.collect(used);
}
