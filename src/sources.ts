// Where the traffic of observe and reject bindings comes from: the data
// plane samples the remote address's block (IPv4 /24, IPv6 /48) of each
// connection they count into the `sources` LRU hash, keyed by the binding's
// stat index and epoch. The table holds MAX_SOURCES entries at most: the
// least recently seen blocks are evicted first, so a scan from a million
// addresses costs memory no more than that and keeps the newest.
import { clock } from './binding-stats.js';
import type { BpfMap } from './bpfmap.js';
import { AF, SOURCE_KEY_SIZE, SOURCE_VALUE_SIZE, readU32, readU64 } from './layout.js';
import type { Prefix } from './prefix.js';

export interface SourceSample {
  /** the binding's stat index (PackedBindings.stats) */
  stat: number;
  epoch: number;
  /** the source block: a /24 or a /48 */
  prefix: Prefix;
  hits: bigint;
  lastSeen: Date | null;
}

/** The samples of the bindings whose stat indices and epochs are given (stat -> epoch). */
export function readSources(map: BpfMap, wanted: ReadonlyMap<number, number>): SourceSample[] {
  const { keys, values, count } = map.dump();
  const date = clock();
  const out: SourceSample[] = [];
  for (let i = 0; i < count; i++) {
    const k = i * SOURCE_KEY_SIZE;
    const stat = readU32(keys, k);
    const epoch = readU32(keys, k + 4);
    if (wanted.get(stat) !== epoch) continue;
    const v4 = readU32(keys, k + 8) === AF[4];
    const bytes = Uint8Array.from(keys.subarray(k + 12, k + 12 + (v4 ? 4 : 16)));
    const v = i * SOURCE_VALUE_SIZE;
    out.push({
      stat, epoch,
      prefix: { family: v4 ? 4 : 6, bytes, length: v4 ? 24 : 48 },
      hits: readU64(values, v),
      lastSeen: date(readU64(values, v + 8)),
    });
  }
  return out;
}

/** Empties the sample. */
export function clearSources(map: BpfMap): number {
  const { keys, count } = map.dump();
  map.deleteBatch(keys, count);
  return count;
}
