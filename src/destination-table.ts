// The destinations map and what hangs off each destination id: its socket
// slot and its per-CPU counters. The dispatcher calls this under its lock.
import {
  type DestinationEntry, type DestinationKey, decodeDestination, encodeDestinationKey, encodeDestinationValue, freeId,
} from './destination.js';
import { isSystemError } from './errors.js';
import {
  BPF_ANY, DESTINATION_KEY_SIZE, DESTINATION_METRICS_SIZE, DESTINATION_VALUE_SIZE, MAX_DESTINATIONS, SOCKET_VALUE_SIZE, u32,
} from './layout.js';
import { native } from './native.js';

export interface DestinationMaps {
  destinations: number;
  sockets: number;
  destination_metrics: number;
}

const same = (a: DestinationKey, b: DestinationKey): boolean => a.label === b.label && a.domain === b.domain && a.protocol === b.protocol;

export class DestinationTable {
  constructor(private readonly maps: DestinationMaps) {}

  entries(): DestinationEntry[] {
    const { keys, values, count } = native().mapDump(this.maps.destinations, DESTINATION_KEY_SIZE, DESTINATION_VALUE_SIZE);
    const out: DestinationEntry[] = [];
    for (let i = 0; i < count; i++) out.push(decodeDestination(keys, values, i * DESTINATION_KEY_SIZE, i * DESTINATION_VALUE_SIZE));
    return out;
  }

  lookup(d: DestinationKey): DestinationEntry | undefined {
    const value = Buffer.alloc(DESTINATION_VALUE_SIZE);
    const key = encodeDestinationKey(d);
    return native().mapLookup(this.maps.destinations, key, value) ? decodeDestination(key, value) : undefined;
  }

  /** id -> label, for decoding bindings. */
  labels(): Map<number, string> {
    return new Map(this.entries().map((d) => [d.id, d.label]));
  }

  /** Finds or creates a destination; `known`, when given, is the table as read and is kept up to date. */
  ensure(d: DestinationKey, known?: DestinationEntry[]): DestinationEntry {
    const found = known ? known.find((e) => same(e, d)) : this.lookup(d);
    if (found) return found;
    const all = known ?? this.entries();
    this.create([d], all);
    return all[all.length - 1];
  }

  /**
   * Creates destinations known not to exist, each with the lowest free id,
   * zeroed counters and an empty socket slot; appends them to `known` and
   * returns their ids.
   */
  create(missing: readonly DestinationKey[], known: DestinationEntry[]): number[] {
    if (missing.length === 0) return [];
    const n = native();
    const taken = new Uint8Array(MAX_DESTINATIONS);
    for (const e of known) taken[e.id] = 1;
    const zero = Buffer.alloc(DESTINATION_METRICS_SIZE * n.numPossibleCpus());
    let id = 0;
    return missing.map((d) => {
      while (id < MAX_DESTINATIONS && taken[id]) id++;
      if (id === MAX_DESTINATIONS) freeId(known.map((e) => e.id)); // throws ENOSPC
      taken[id] = 1;
      n.mapUpdate(this.maps.destination_metrics, u32(id), zero, BPF_ANY);
      if (this.hasSocket(id)) this.deleteSocket(id);
      n.mapUpdate(this.maps.destinations, encodeDestinationKey(d), encodeDestinationValue(id, 0), BPF_ANY);
      known.push({ ...d, id, bindings: 0 });
      return id;
    });
  }

  /** Records how many bindings point at a destination; one with none and no socket goes away. */
  setBindingCount(d: DestinationEntry, bindings: number): void {
    if (bindings === 0 && !this.hasSocket(d.id)) {
      native().mapDelete(this.maps.destinations, encodeDestinationKey(d));
    } else if (bindings !== d.bindings) {
      native().mapUpdate(this.maps.destinations, encodeDestinationKey(d), encodeDestinationValue(d.id, bindings), BPF_ANY);
    }
  }

  /** One binding fewer points at destination `id`. */
  release(id: number): void {
    const d = this.entries().find((e) => e.id === id);
    if (d) this.setBindingCount(d, Math.max(0, d.bindings - 1));
  }

  /** Empties a socket slot; a sockmap says EINVAL, not ENOENT, for an empty one. */
  deleteSocket(id: number): boolean {
    try {
      return native().mapDelete(this.maps.sockets, u32(id));
    } catch (err) {
      if (isSystemError(err, 'EINVAL')) return false;
      throw err;
    }
  }

  hasSocket(id: number): boolean {
    return native().mapLookup(this.maps.sockets, u32(id), Buffer.alloc(SOCKET_VALUE_SIZE));
  }
}
