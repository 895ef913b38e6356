// The pinned state's layout: map names, sizes and the byte encoding of every
// key and value. Mirrors bpf/dispatcher.c; change both together and bump
// LAYOUT_VERSION, which open() checks before touching anything.
import { endianness } from 'node:os';
import type { Family } from './prefix.js';

export const LAYOUT_VERSION = 12;
/** 'TUBT' in the high half of the meta word, the layout version in the low. */
export const META_MAGIC = 0x54554254;

export const MAX_BINDINGS = 1 << 20;
/**
 * Each binding set's map is sized to twice its contents (at least
 * MIN_SET_CAPACITY, at most MAX_BINDINGS): a small set is quick to build,
 * dump and free, and single binds have room. A bind into a full set
 * rebuilds it twice as large.
 */
export const MIN_SET_CAPACITY = 1024;
export const setCapacity = (count: number): number => Math.min(MAX_BINDINGS, Math.max(MIN_SET_CAPACITY, count * 2));
export const MAX_DESTINATIONS = 4096;
/** Sockets per destination: the members of one SO_REUSEPORT group. */
export const SOCKET_SLOTS = 8;
/** Generations: the binding set in force and the previous one, each with its filters. */
export const GENERATIONS = 2;
export const LABEL_MAX_BYTES = 64;

export const ACTION_STEER = 1;
export const ACTION_REJECT = 2;
export const ACTION_OBSERVE = 3;
/** binding_value.destination of a reject binding without a label */
export const NO_DESTINATION = 0xffffffff;

export const IPPROTO = { tcp: 6, udp: 17 } as const;
export const AF = { 4: 2, 6: 10 } as const;

/** Names of the pins inside the state directory. */
export const PIN = {
  link: 'link',
  program: 'program',
  bindings: 'bindings',          // ARRAY_OF_MAPS [GENERATIONS]: each generation's binding set
  lengths: 'lengths',            // ARRAY_OF_MAPS [GENERATIONS]: each generation's lengths filter
  blocks: 'blocks',              // ARRAY_OF_MAPS [GENERATIONS]: each generation's blocks filter
  generation: 'generation',      // ARRAY [1]: the slot in force
  bindingStats: 'binding_stats', // ARRAY [MAX_BINDINGS]: hits and last hit per binding
  sources: 'sources',            // LRU_HASH [MAX_SOURCES]: where observe and reject traffic comes from
  destinations: 'destinations',
  journal: 'journal',            // HASH [JOURNAL_CAPACITY]: binding keys that may differ between the generations
  sockets: 'sockets',
  destinationMetrics: 'destination_metrics',
  socketSlots: 'socket_slots',  // ARRAY [MAX_DESTINATIONS]: how many socket slots of each destination may hold one
  clock: 'clock',                // PERCPU_ARRAY [1]: each CPU's last reading of the clock (derived)
  meta: 'meta',
  /** a directory only root can open: the writers' flock */
  lock: 'lock',
} as const;

/** The inner maps of generation `slot`, pinned for readers and for recovery: binding_set_0, lengths_1... */
export type InnerKind = 'binding_set' | 'lengths' | 'blocks';
export const INNER_KINDS: readonly InnerKind[] = ['binding_set', 'lengths', 'blocks'];
export const innerPin = (kind: InnerKind, slot: number): string => `${kind}_${slot}`;
/** The outer map holding each kind of inner map. */
export const OUTER_OF: Record<InnerKind, 'bindings' | 'lengths' | 'blocks'> = { binding_set: 'bindings', lengths: 'lengths', blocks: 'blocks' };

/**
 * meta slots: the layout stamp; the next stat index (every index either
 * generation uses is below it: derived, recomputed after a crash); a
 * writer's intent; whether the journal holds every key whose binding
 * differs between the two generations (1) or is to be ignored (0); the
 * next epoch (see binding-stats.ts: only ever grows); then per generation
 * slot: its number, when it was applied (ms), the digest of its set as a
 * replace wrote it (0: changed since), and the file it was read from: a
 * digest of the file's bytes (0: none) and how many bindings the file holds;
 * then the writes begun (META_WRITES); last, 1 from a flip until a writer
 * has waited for the programs that may still run with the generation it
 * put out of force (META_UNSETTLED, see generations.ts).
 */
export const META_STAMP = 0;
export const META_NEXT_STAT = 1;
export const META_INTENT = 2;
export const META_JOURNAL = 3;
export const META_NEXT_EPOCH = 4;
/** counts writes: each writer adds one under the lock before it changes anything (see Dispatcher.write) */
export const META_WRITES = 5 + 5 * 2;
/** 1 while a flip has not been waited for (see Generations.settleStart) */
export const META_UNSETTLED = META_WRITES + 1;
export const META_ENTRIES = META_UNSETTLED + 1;
/**
 * Generation `slot`'s record in meta: its number, when it was applied (ms),
 * the digest of its set (0: changed since), the digest of the bytes of the
 * bindings file it was read from (0: none), and that file's shape: its
 * bindings (low 32 bits) and its size in bytes (high 32 bits).
 */
export const metaGeneration = (slot: number): { number: number; applied: number; digest: number; file: number; fileShape: number } =>
  ({ number: 5 + 5 * slot, applied: 6 + 5 * slot, digest: 7 + 5 * slot, file: 8 + 5 * slot, fileShape: 9 + 5 * slot });

/** Keys the journal holds at most (a change of more leaves it to be ignored until the next replace). */
export const JOURNAL_CAPACITY = 1 << 16;

/** Maps created by the BPF object, by their names in bpf/dispatcher.c. */
export const OBJECT_MAPS = ['bindings', 'lengths', 'blocks', 'generation', 'binding_stats', 'sources', 'sockets', 'destination_metrics', 'socket_slots', 'clock', 'meta'] as const;
export type ObjectMapName = typeof OBJECT_MAPS[number];
export type MapName = ObjectMapName | 'destinations' | 'journal';

export const BPF_MAP_TYPE_HASH = 1;
export const BPF_MAP_TYPE_ARRAY = 2;
export const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
export const BPF_MAP_TYPE_ARRAY_OF_MAPS = 12;
export const BPF_MAP_TYPE_SOCKMAP = 15;
export const BPF_MAP_TYPE_LRU_HASH = 9;
export const BPF_PROG_TYPE_SK_LOOKUP = 30;
export const BPF_LINK_TYPE_NETNS = 5;
/** enum bpf_attach_type: BPF_SK_LOOKUP */
export const BPF_SK_LOOKUP = 36;
export const BPF_F_RDONLY = 1 << 3;
export const BPF_F_NO_PREALLOC = 1 << 0;
export const BPF_F_MMAPABLE = 1 << 10;
export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;

const LE = endianness() === 'LE';
function writeU16(buf: Buffer, v: number, off: number): void {
  if (LE) buf.writeUInt16LE(v, off); else buf.writeUInt16BE(v, off);
}
export function readU16(buf: Buffer, off: number): number {
  return LE ? buf.readUInt16LE(off) : buf.readUInt16BE(off);
}
export function writeU32(buf: Buffer, v: number, off: number): void {
  if (LE) buf.writeUInt32LE(v, off); else buf.writeUInt32BE(v, off);
}
/** A u32 in host order, as a 4-byte map key or value. */
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  writeU32(b, v, 0);
  return b;
}
export function readU32(buf: Buffer, off: number): number {
  return LE ? buf.readUInt32LE(off) : buf.readUInt32BE(off);
}
export function readU64(buf: Buffer, off: number): bigint {
  return LE ? buf.readBigUInt64LE(off) : buf.readBigUInt64BE(off);
}
export function writeU64(buf: Buffer, v: bigint, off: number): void {
  if (LE) buf.writeBigUInt64LE(v, off); else buf.writeBigUInt64BE(v, off);
}

// struct binding_key: protocol u8, family u8, prefixlen u8, pad u8,
// port u16 (host order), pad u16, addr[16] (network order, masked).
export const BINDING_KEY_SIZE = 24;
/** a key as u32 words (keyindex.ts reads keys so) */
export const BINDING_KEY_WORDS = BINDING_KEY_SIZE / 4;
// struct binding_value: destination u32, action u16, pad u16, stat u32,
// place u32 (the binding's index in the set whose write gave it this value:
// only a guess for the next diff, which checks it against the key).
export const BINDING_VALUE_SIZE = 16;
/** a value as u32 words: destination, action, stat, place */
export const BINDING_VALUE_WORDS = BINDING_VALUE_SIZE / 4;
// struct binding_stat: hits u64, last_hit u32 (CLOCK_MONOTONIC in ticks of 2^30 ns, + 1; 0: never), epoch u32.
// struct source_key: stat u32, epoch u32, family u32 (AF_*), addr[4]; struct source_value: hits u64, last_seen u64.
export const SOURCE_KEY_SIZE = 28;
export const SOURCE_VALUE_SIZE = 16;
/** Entries of the sources LRU: about 12 MiB of kernel memory. */
export const MAX_SOURCES = 131072;
export const BINDING_STAT_SIZE = 16;

export interface RawBindingKey {
  protocol: number;
  family: Family;
  prefixlen: number;
  port: number;
  addr: Uint8Array;
}

export function encodeBindingKey(k: RawBindingKey, buf: Buffer = Buffer.alloc(BINDING_KEY_SIZE), off = 0): Buffer {
  buf.fill(0, off, off + BINDING_KEY_SIZE);
  buf[off] = k.protocol;
  buf[off + 1] = AF[k.family];
  buf[off + 2] = k.prefixlen;
  writeU16(buf, k.port, off + 4);
  buf.set(k.addr, off + 8);
  return buf;
}

export function decodeBindingKey(buf: Buffer, off = 0): RawBindingKey {
  const family: Family = buf[off + 1] === AF[4] ? 4 : 6;
  return {
    protocol: buf[off],
    family,
    prefixlen: buf[off + 2],
    port: readU16(buf, off + 4),
    addr: Uint8Array.from(buf.subarray(off + 8, off + 8 + (family === 4 ? 4 : 16))),
  };
}

// struct lengths: u64 v4, u64 v6[3] = 8 host-order u32 words.
export const LENGTHS_VALUE_SIZE = 32;
/** Entries of the per-(protocol, port) length bitmaps. */
export const LENGTHS_ENTRIES = 2 << 16;
export const lengthsIndex = (protocol: 'tcp' | 'udp', port: number): number => (protocol === 'tcp' ? 0 : 1 << 16) | port;

// Destinations: key = protocol u8, domain u8 (AF_*), pad u16, label[64];
// value = id u32 (index into sockets and metrics), owner u32 (the uid that
// registered its sockets through tubulard, NO_OWNER when none did). How
// many bindings point at a destination is never stored: it is derived
// from the binding set whenever it is needed.
export const DESTINATION_KEY_SIZE = 4 + LABEL_MAX_BYTES;
export const DESTINATION_VALUE_SIZE = 8;

// struct destination_metrics: lookups, misses, errors (u64 each), per CPU.
export const DESTINATION_METRICS_SIZE = 24;
// Sockets: key u32 id * SOCKET_SLOTS + slot, value u64 (fd on write, cookie on read).
export const SOCKET_VALUE_SIZE = 8;
export const NO_OWNER = 0xffffffff;

/** What each pinned map must be; open() compares every pin with it. */
export interface MapSpec { type: number; keySize: number; valueSize: number; maxEntries: number; flags?: number }
const LENGTHS_VALUE = 32;
const OUTER = { type: BPF_MAP_TYPE_ARRAY_OF_MAPS, keySize: 4, valueSize: 4, maxEntries: 2 };
export const MAP_SPECS: Record<MapName, MapSpec> = {
  bindings: OUTER,
  lengths: OUTER,
  blocks: OUTER,
  generation: { type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: 4, maxEntries: 1 },
  binding_stats: { type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: 16, maxEntries: 1 << 20, flags: BPF_F_MMAPABLE },
  sources: { type: BPF_MAP_TYPE_LRU_HASH, keySize: 28, valueSize: 16, maxEntries: 131072 },
  sockets: { type: BPF_MAP_TYPE_SOCKMAP, keySize: 4, valueSize: 8, maxEntries: 4096 * 8 },
  destination_metrics: { type: BPF_MAP_TYPE_PERCPU_ARRAY, keySize: 4, valueSize: 24, maxEntries: 4096 },
  socket_slots: { type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: 4, maxEntries: 4096 },
  clock: { type: BPF_MAP_TYPE_PERCPU_ARRAY, keySize: 4, valueSize: 8, maxEntries: 1 },
  meta: { type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: 8, maxEntries: META_ENTRIES },
  destinations: { type: BPF_MAP_TYPE_HASH, keySize: 4 + 64, valueSize: 8, maxEntries: 4096 },
  journal: { type: BPF_MAP_TYPE_HASH, keySize: 24, valueSize: 4, maxEntries: 1 << 16 },
};
/** The inner maps of a generation; a binding set's entries are an upper bound. */
export const INNER_SPECS: Record<InnerKind, MapSpec & { upTo?: boolean }> = {
  binding_set: { type: BPF_MAP_TYPE_HASH, keySize: BINDING_KEY_SIZE, valueSize: BINDING_VALUE_SIZE, maxEntries: 1 << 20, upTo: true },
  lengths: { type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: LENGTHS_VALUE, maxEntries: 2 << 16 },
  blocks: { type: BPF_MAP_TYPE_ARRAY, keySize: 4, valueSize: 8, maxEntries: 1 << 20 },
};

/** The map layout assumes a little-endian host, as the BPF program does. */
export function assertLittleEndian(): void {
  if (!LE) throw new Error('tubular needs a little-endian host: the BPF maps hold little-endian words');
}
