// Per-binding traffic: binding_stats[i] = {hits, last hit, epoch}, where i is the
// stat index stored in the binding's value. Indices belong to bindings:
// an unchanged binding keeps its index (and its counts) across replaces,
// a new one gets an index that no binding of either generation uses, and
// starts from zero. Which indices are in use is derived from the sets; the
// next free index (meta, one past every index in use) is derived too: kept
// by every writer, recomputed after a crash.
import type { BpfMap } from './bpfmap.js';
import { TubularError } from './errors.js';
import { u32Words } from './keyindex.js';
import { native } from './native.js';
import { BINDING_STAT_SIZE, BINDING_VALUE_SIZE, BINDING_VALUE_WORDS as VALUE_WORDS, MAX_BINDINGS, readU32, readU64 } from './layout.js';

export interface Traffic {
  hits: bigint;
  /** when the binding last decided a connection, to the second; null: never */
  lastHit: Date | null;
}

/** Marks the stat indices a dump of binding values uses. */
export function markStats(used: Uint8Array, values: Buffer, count: number): Uint8Array {
  const words = u32Words(values, count * VALUE_WORDS);
  for (let i = 0; i < count; i++) used[words[VALUE_WORDS * i + 2]] = 1;
  return used;
}

/** One more than the highest stat index these dumps of binding values use; 0 when they use none. */
export function nextStatOf(...dumps: ReadonlyArray<{ values: Buffer; count: number }>): number {
  let next = 0;
  for (const { values, count } of dumps) {
    for (let i = 0; i < count; i++) next = Math.max(next, readU32(values, i * BINDING_VALUE_SIZE + 8) + 1);
  }
  return next;
}

/** `n` indices not marked used (marking them), lowest first; ENOSPC if there are not enough. */
export function allocateStats(used: Uint8Array, n: number): Uint32Array {
  const out = new Uint32Array(n);
  let k = 0;
  for (let i = 0; i < MAX_BINDINGS && k < n; i++) {
    if (!used[i]) {
      used[i] = 1;
      out[k++] = i;
    }
  }
  if (k < n) throw new TubularError('ENOSPC', `no room for ${n} more bindings' counters (${MAX_BINDINGS} in all, both generations): remove bindings first`);
  return out;
}

/** log2 of the data plane's clock tick in ns (bpf/dispatcher.c now_ticks). */
export const TICK_SHIFT = 30;

/**
 * The coarse clock the data plane stamps with (CLOCK_MONOTONIC in ticks of
 * 2^30 ns, plus one) turned into wall-clock dates: the offset is taken once
 * per read. A stamp is the start of its tick, so a date may be up to 1.07 s
 * early, never late.
 */
export function clock(): (raw: bigint) => Date | null {
  // Both clocks read in one call, to the nanosecond: with Date.now() (whole
  // milliseconds, read a little after) two commands could print the same
  // stamp a second apart where it falls near the turn of a second.
  const { monoNs, wallMs } = native().clocks();
  return (raw) => {
    if (raw === 0n) return null;
    const ageMs = Number(monoNs - ((raw - 1n) << BigInt(TICK_SHIFT))) / 1e6;
    return new Date(Math.floor((wallMs - Math.max(0, ageMs)) / 1000) * 1000);
  };
}

/** Entries zero() writes in one call. */
const ZERO_BATCH = 1 << 15;

export class BindingStats {
  constructor(private readonly map: BpfMap) {}

  /** Traffic of the bindings with these stat indices, in their order. */
  many(stats: Uint32Array): Traffic[] {
    const values = this.map.gather(stats);
    const date = clock();
    return Array.from(stats, (_, i) => ({ hits: readU64(values, i * BINDING_STAT_SIZE), lastHit: date(BigInt(readU32(values, i * BINDING_STAT_SIZE + 8))) }));
  }

  /** Traffic of one binding. */
  one(stat: number): Traffic {
    return this.many(Uint32Array.of(stat))[0];
  }

  /**
   * Gives these indices to new bindings: counts from zero, and `epoch`, one
   * no entry has had before (meta's next epoch, which only ever grows), so
   * that sources sampled for the bindings that had them before are never
   * shown for the new ones. Nothing is read, and no syscall per entry: the
   * entries are written through a mapping of the array (BPF_F_MMAPABLE),
   * 100k of them in well under a millisecond where a batch update took 20.
   */
  zero(stats: Uint32Array, epoch: number): void {
    // In batches of at most ZERO_BATCH entries: a million new bindings need no 20 MB at once.
    const n = Math.min(stats.length, ZERO_BATCH);
    if (n === 0) return;
    const fresh = Buffer.alloc(n * BINDING_STAT_SIZE);
    // Host-order u32 words, as the map holds them.
    const words = new Uint32Array(fresh.buffer, fresh.byteOffset, n * (BINDING_STAT_SIZE / 4));
    for (let i = 0; i < n; i++) words[i * (BINDING_STAT_SIZE / 4) + 3] = epoch;
    for (let from = 0; from < stats.length; from += n) {
      const count = Math.min(n, stats.length - from);
      this.map.scatter(stats.subarray(from, from + count), fresh.subarray(0, count * BINDING_STAT_SIZE));
    }
  }

  /** The epochs of these indices, in order. */
  epochs(stats: Uint32Array): Uint32Array {
    const values = this.map.gather(stats);
    return Uint32Array.from(stats, (_, i) => readU32(values, i * BINDING_STAT_SIZE + 12));
  }
}
