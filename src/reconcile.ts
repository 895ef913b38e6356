// Recomputes everything derived from the binding sets, for a writer that
// finds its predecessor died part-way (recovery.ts): the filters of both
// generations exactly, destinations that neither generation's set uses
// (and no socket serves) deleted, and the next free stat index (returned,
// for meta). Safe while the program runs: no
// set changes under the writers' lock, and each filter written is exactly
// what its set needs.
import { nextStatOf } from './binding-stats.js';
import { type DestinationTable, referencedIds } from './destination-table.js';
import { BLOCKS_FILTER, LENGTHS_FILTER, exactFilter } from './filters.js';
import type { Generations } from './generations.js';
import { GENERATIONS, MAX_DESTINATIONS } from './layout.js';

export function reconcile(gens: Generations, dests: DestinationTable): { nextStat: number } {
  const used = new Uint8Array(MAX_DESTINATIONS);
  let nextStat = 0;
  for (let slot = 0; slot < GENERATIONS; slot++) {
    const set = gens.withSet((s) => s.dump(), slot);
    referencedIds(set.values, set.count, used);
    nextStat = Math.max(nextStat, nextStatOf(set));
    for (const [kind, spec] of [['lengths', LENGTHS_FILTER], ['blocks', BLOCKS_FILTER]] as const) {
      gens.with(kind, slot, (map) => {
        const exact = exactFilter(spec, set);
        map.startUpdateBatch(exact.keys, exact.values, exact.count)();
      });
    }
  }
  dests.collect(used);
  return { nextStat };
}
