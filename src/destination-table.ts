// The destinations map and what hangs off each destination id: its socket
// slots and its per-CPU counters. The dispatcher calls this under its lock.
//
// Nothing here counts bindings: which destinations the binding set uses is
// derived from the set whenever it matters, so a writer that dies part-way
// can never leave a count that lets a used destination be freed.
import { actionOf, valueAction, valueDestination } from './bindingset.js';
import type { BpfMap } from './bpfmap.js';
import {
  type DestinationEntry, type DestinationKey, decodeDestination, decodeDestinations, destinationName, encodeDestinationKey, encodeDestinationValue,
} from './destination.js';
import { TubularError } from './errors.js';
import {
  BINDING_VALUE_SIZE, DESTINATION_METRICS_SIZE, MAX_DESTINATIONS, NO_DESTINATION, SOCKET_SLOTS, SOCKET_VALUE_SIZE,
  readU32, readU64, u32, writeU32, writeU64,
} from './layout.js';

export interface DestinationMaps {
  destinations: BpfMap;
  sockets: BpfMap;
  socket_slots: BpfMap;
  destination_metrics: BpfMap;
}

const slotKey = (id: number, slot: number): Buffer => u32(id * SOCKET_SLOTS + slot);

/** Marks (in `used`, or a new table) the destination ids a dump of binding values points at. */
export function referencedIds(values: Buffer, count: number, used = new Uint8Array(MAX_DESTINATIONS)): Uint8Array {
  for (let i = 0; i < count; i++) {
    const id = readU32(values, i * BINDING_VALUE_SIZE);
    if (id !== NO_DESTINATION && id < MAX_DESTINATIONS) used[id] = 1;
  }
  return used;
}

/**
 * How many steer bindings of a dump send traffic to each destination id. A
 * reject or observe binding's label only names it: its destination holds the
 * label and needs no socket, so it is not counted.
 */
export function bindingCounts(values: Buffer, count: number): Uint32Array {
  const counts = new Uint32Array(MAX_DESTINATIONS);
  for (let i = 0; i < count; i++) {
    const id = valueDestination(values, i);
    if (actionOf(valueAction(values, i)) === 'steer' && id !== NO_DESTINATION && id < MAX_DESTINATIONS) counts[id]++;
  }
  return counts;
}

export class DestinationTable {
  constructor(private readonly maps: DestinationMaps) {}

  entries(): DestinationEntry[] {
    const { keys, values, count } = this.maps.destinations.dump();
    return decodeDestinations(keys, values, count);
  }

  lookup(d: DestinationKey): DestinationEntry | undefined {
    const key = encodeDestinationKey(d);
    const value = this.maps.destinations.lookup(key);
    return value ? decodeDestination(key, value) : undefined;
  }

  /** id -> label, for decoding bindings. */
  labels(): Map<number, string> {
    return new Map(this.entries().map((d) => [d.id, d.label]));
  }

  /** The ids of the destinations that exist, and how many there are, read from the values alone (no label decoded). */
  ids(): { taken: Uint8Array; count: number } {
    const { values, count } = this.maps.destinations.dump();
    const vs = this.maps.destinations.info.valueSize;
    const taken = new Uint8Array(MAX_DESTINATIONS);
    for (let i = 0; i < count; i++) {
      const id = readU32(values, i * vs);
      if (id < MAX_DESTINATIONS) taken[id] = 1;
    }
    return { taken, count };
  }

  /**
   * Creates destinations known not to exist, each with the lowest free id
   * and zeroed counters; appends them to `known` and returns their ids.
   * Checks there is room for all of them first, so a failure creates none.
   * A free id's socket slots are empty: sockets are only ever put in the
   * slots of a destination that exists, and a destination is deleted only
   * when collect() has found its slots empty (the kernel itself only ever
   * empties a slot, when its socket closes).
   */
  create(missing: readonly DestinationKey[], known: DestinationEntry[]): number[] {
    const taken = new Uint8Array(MAX_DESTINATIONS);
    for (const e of known) taken[e.id] = 1;
    const made = this.createIn(missing, { taken, count: known.length });
    known.push(...made);
    return made.map((e) => e.id);
  }

  /** create, given the ids in use (as ids() reads them), which it does not update. */
  createIn(missing: readonly DestinationKey[], used: { taken: Uint8Array; count: number }): DestinationEntry[] {
    if (missing.length === 0) return [];
    if (used.count + missing.length > MAX_DESTINATIONS) {
      throw new TubularError('ENOSPC', `${missing.length} new destinations do not fit: ${used.count} of ${MAX_DESTINATIONS} are in use ` +
        '(each label, address family and protocol is one): unbind labels or unregister sockets you no longer need');
    }
    const ids: number[] = [];
    for (let id = 0; ids.length < missing.length; id++) {
      if (!used.taken[id]) ids.push(id);
    }
    // Counters zeroed, then the destinations: one batch each.
    const idKeys = Buffer.alloc(ids.length * 4);
    ids.forEach((id, k) => writeU32(idKeys, id, k * 4));
    const metrics = this.maps.destination_metrics;
    metrics.updateBatch(idKeys, Buffer.alloc(ids.length * metrics.valueBytes), ids.length);
    const keys = Buffer.concat(missing.map((d) => encodeDestinationKey(d)));
    const values = Buffer.concat(ids.map((id) => encodeDestinationValue(id, null)));
    this.maps.destinations.updateBatch(keys, values, ids.length);
    return missing.map((d, k) => ({ ...d, id: ids[k], owner: null }));
  }

  /**
   * Empties the socket slots of these ids. Only slots that hold a socket
   * are deleted (a delete of an empty slot fails, and failing costs): one
   * lookup of them all first.
   */
  private emptySlots(ids: readonly number[]): number {
    const keys = Buffer.alloc(ids.length * SOCKET_SLOTS * 4);
    ids.forEach((id, k) => { for (let s = 0; s < SOCKET_SLOTS; s++) slotKey(id, s).copy(keys, (k * SOCKET_SLOTS + s) * 4); });
    const cookies = this.maps.sockets.lookupMany(keys, ids.length * SOCKET_SLOTS);
    let emptied = 0;
    for (let n = 0; n < ids.length * SOCKET_SLOTS; n++) {
      if (readU64(cookies, n * SOCKET_VALUE_SIZE) !== 0n && this.maps.sockets.delete(keys.subarray(n * 4, n * 4 + 4))) emptied++;
    }
    return emptied;
  }

  /** Records who registered a destination's sockets (null: nobody, or root's tools). */
  setOwner(d: DestinationEntry, owner: number | null): void {
    if (d.owner !== owner) this.maps.destinations.update(encodeDestinationKey(d), encodeDestinationValue(d.id, owner));
  }

  /** The cookies of the sockets registered for id, by slot. */
  sockets(id: number): bigint[] {
    return this.slots(id).filter((c): c is bigint => c !== null);
  }

  /**
   * Each socket slot of id: the cookie of its socket, or null when empty
   * (cookies are never 0). Only the slots socket_slots counts are read: no
   * slot past them ever holds a socket.
   */
  slots(id: number): Array<bigint | null> {
    const n = this.filled(id);
    const keys = Buffer.alloc(4 * n);
    for (let s = 0; s < n; s++) writeU32(keys, id * SOCKET_SLOTS + s, 4 * s);
    const values = this.maps.sockets.lookupMany(keys, n);
    return Array.from({ length: SOCKET_SLOTS }, (_, s) => (s < n ? readU64(values, s * SOCKET_VALUE_SIZE) || null : null));
  }

  /**
   * Whether some slot of id holds a socket: stops at the first that does,
   * and at the last socket_slots counts (`n`, when already read).
   */
  hasSocket(id: number, n = this.filled(id)): boolean {
    const v = Buffer.alloc(SOCKET_VALUE_SIZE);
    for (let s = 0; s < n; s++) if (this.maps.sockets.lookup(slotKey(id, s), v)) return true;
    return false;
  }

  /**
   * Puts sockets (the members of one SO_REUSEPORT group, or one socket) in
   * the slots of id, then empties the slots beyond them. Each slot update
   * is atomic, so every moment has a socket to hand connections to.
   * `held`, the slots as read under the same lock, spares the deletes of
   * slots already empty: only the kernel changes a slot between writers,
   * and it only empties one (when its socket closes).
   */
  setSockets(d: DestinationKey & { id: number }, fds: readonly number[], held?: ReadonlyArray<bigint | null>): void {
    // The program tries the first `filled` slots: raised before they are filled, lowered after the rest are emptied.
    const filled = this.filled(d.id);
    if (filled < fds.length) this.setFilled(d.id, fds.length);
    const value = Buffer.alloc(SOCKET_VALUE_SIZE);
    fds.forEach((fd, s) => {
      writeU64(value, BigInt(fd), 0);
      try {
        this.maps.sockets.update(slotKey(d.id, s), value);
      } catch (err) {
        throw new TubularError('EBADSOCK', `the socket for ${destinationName(d)} could not be registered: ${(err as Error).message}`, { cause: err });
      }
    });
    for (let s = fds.length; s < SOCKET_SLOTS; s++) if (!held || held[s] !== null) this.maps.sockets.delete(slotKey(d.id, s));
    if (filled !== fds.length) this.setFilled(d.id, fds.length);
  }

  /** Empties every socket slot of id; false when none held a socket. */
  clearSockets(id: number): boolean {
    const any = this.emptySlots([id]) > 0;
    if (this.filled(id) !== 0) this.setFilled(id, 0);
    return any;
  }

  /** How many of id's slots the program tries (socket_slots in bpf/dispatcher.c), at most SOCKET_SLOTS. */
  private filled(id: number): number {
    const v = this.maps.socket_slots.lookup(u32(id), Buffer.alloc(4));
    return v ? Math.min(readU32(v, 0), SOCKET_SLOTS) : 0;
  }

  private setFilled(id: number, n: number): void {
    this.maps.socket_slots.update(u32(id), u32(n));
  }

  /** Deletes destinations that no binding uses and no socket serves; returns how many. */
  collect(used: Uint8Array, known: DestinationEntry[] = this.entries()): number {
    return this.remove(this.collectable(used, known));
  }

  /** Deletes these destinations (what collectable() found, under the same lock); returns how many. */
  remove(gone: readonly DestinationEntry[]): number {
    if (gone.length > 0) this.maps.destinations.deleteBatch(Buffer.concat(gone.map((d) => encodeDestinationKey(d))), gone.length);
    return gone.length;
  }

  /**
   * Room for `missing` new destinations: the ids free once what neither
   * `used()` (the set in force) nor a socket holds is collected, and those
   * collectable (looked for, and `used` asked, only when the free ids alone
   * are too few).
   */
  room(missing: number, used: () => Uint8Array, known: DestinationEntry[] = this.entries()): { free: number; collectable: DestinationEntry[] } {
    if (known.length + missing <= MAX_DESTINATIONS) return { free: MAX_DESTINATIONS - known.length, collectable: [] };
    const collectable = this.collectable(used(), known);
    return { free: MAX_DESTINATIONS - known.length + collectable.length, collectable };
  }

  /** The destinations collect() would delete now, deleting none. */
  collectable(used: Uint8Array, known: DestinationEntry[] = this.entries()): DestinationEntry[] {
    const unused = known.filter((d) => !used[d.id]);
    if (unused.length === 0) return [];
    // How many slots each has filled, in one call: a replace may leave a
    // thousand labels, and two syscalls apiece cost milliseconds.
    const ids = Uint32Array.from(unused, (d) => d.id);
    const filled = this.maps.socket_slots.lookupMany(Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength), ids.length);
    return unused.filter((d, k) => !this.hasSocket(d.id, Math.min(readU32(filled, k * 4), SOCKET_SLOTS)));
  }

  /** Per-destination counters summed over CPUs: lookups, misses, errors. */
  metrics(): (id: number) => [bigint, bigint, bigint] {
    const m = this.maps.destination_metrics;
    const { values } = m.dump();
    const cpus = m.valueBytes / DESTINATION_METRICS_SIZE;
    return (id) => {
      const sum: [bigint, bigint, bigint] = [0n, 0n, 0n];
      for (let c = 0; c < cpus; c++) {
        const off = (id * cpus + c) * DESTINATION_METRICS_SIZE;
        for (let f = 0; f < 3; f++) sum[f] += readU64(values, off + f * 8);
      }
      return sum;
    };
  }
}

/** Why a replace that needs `missing` new destinations, with `free` ids for them, is refused (undefined: it fits). */
export function roomProblem(missing: number, free: number): string | undefined {
  if (missing <= free) return undefined;
  return `the file names ${missing} new destinations (label, address family, protocol) ` +
    `but only ${free} of ${MAX_DESTINATIONS} are free while the bindings in force use the rest`;
}
