// A binding set as the data plane stores it: one hash map of
// binding_key -> binding_value. Encoding and decoding only; the dispatcher
// decides when to write.
//
// Large sets travel as a PackedBindings: the keys exactly as the map holds
// them, plus an action and a label per binding, so that loading, diffing
// and listing 100k bindings builds no object per binding.
import { endianness } from 'node:os';
import type { Binding } from './binding.js';
import { TubularError } from './errors.js';
import { KeyIndex, keyWords, u32Words } from './keyindex.js';
import {
  ACTION_OBSERVE, ACTION_REJECT, ACTION_STEER, AF, BINDING_KEY_SIZE, BINDING_VALUE_SIZE, BINDING_VALUE_WORDS as VALUE_WORDS, IPPROTO, MAX_DESTINATIONS, NO_DESTINATION,
  decodeBindingKey, encodeBindingKey, readU32, writeU32,
} from './layout.js';
import type { DestinationKey } from './destination.js';
import { type Family, formatAddressAt } from './prefix.js';
import { type Protocol, domainOf } from './protocol.js';

const LE = endianness() === 'LE';

/** The data plane's code of an action, and back (an unknown code reads as steer). */
export const actionCode = (a: Binding['action']): number => (a === 'reject' ? ACTION_REJECT : a === 'observe' ? ACTION_OBSERVE : ACTION_STEER);
export const actionOf = (code: number): Binding['action'] => (code === ACTION_REJECT ? 'reject' : code === ACTION_OBSERVE ? 'observe' : 'steer');

export function bindingKey(b: Pick<Binding, 'protocol' | 'prefix' | 'port'>, buf?: Buffer, off = 0): Buffer {
  return encodeBindingKey({ protocol: IPPROTO[b.protocol], family: b.prefix.family, prefixlen: b.prefix.length, port: b.port, addr: b.prefix.bytes }, buf, off);
}

/** A binding's value; `place`: its index in the set written with it (a guess for the next diff, see KeyIndex.findNear). */
export function bindingValue(destination: number, action: Binding['action'], stat = 0, buf = Buffer.alloc(BINDING_VALUE_SIZE), off = 0, place = 0): Buffer {
  writeU32(buf, destination, off);
  writeU32(buf, actionCode(action), off + 4);
  writeU32(buf, stat, off + 8);
  writeU32(buf, place, off + 12);
  return buf;
}

/** The destination id, action and stat index of value i of a dump. */
export const valueDestination = (values: Buffer, i: number): number => readU32(values, i * BINDING_VALUE_SIZE);
export const valueAction = (values: Buffer, i: number): number => readU32(values, i * BINDING_VALUE_SIZE + 4) & 0xffff;
export const valueStat = (values: Buffer, i: number): number => readU32(values, i * BINDING_VALUE_SIZE + 8);

/** The destination a binding names, or undefined for an unlabelled reject. */
export function destinationOf(b: Binding): DestinationKey | undefined {
  return b.label === '' ? undefined : { label: b.label, domain: domainOf(b.prefix.family), protocol: b.protocol };
}

/** Packs bindings for a batch update, given a resolver from destination to id. */
export function packBindings(bindings: readonly Binding[], idOf: (d: DestinationKey) => number): { keys: Buffer; values: Buffer } {
  const keys = Buffer.alloc(bindings.length * BINDING_KEY_SIZE);
  const values = Buffer.alloc(bindings.length * BINDING_VALUE_SIZE);
  bindings.forEach((b, i) => {
    const d = destinationOf(b);
    bindingKey(b, keys, i * BINDING_KEY_SIZE);
    bindingValue(d ? idOf(d) : NO_DESTINATION, b.action, 0, values, i * BINDING_VALUE_SIZE, i);
  });
  return { keys, values };
}

/** Decodes a dump of the map; labelOf maps a destination id to its label. */
export function unpackBindings(keys: Buffer, values: Buffer, count: number, labelOf: (id: number) => string | undefined): Binding[] {
  const out: Binding[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const k = decodeBindingKey(keys, i * BINDING_KEY_SIZE);
    const id = readU32(values, i * BINDING_VALUE_SIZE);
    const action = actionOf(valueAction(values, i));
    out[i] = {
      label: id === NO_DESTINATION ? '' : labelOf(id) ?? `#${id}`,
      protocol: k.protocol === IPPROTO.tcp ? 'tcp' : 'udp',
      prefix: { family: k.family, bytes: k.addr, length: k.prefixlen },
      port: k.port,
      action,
    };
  }
  return out;
}

/** A binding set in the map's encoding, with an action and a label per binding. */
export interface PackedBindings {
  readonly count: number;
  /** `count` binding keys (layout.ts), BINDING_KEY_SIZE bytes each */
  readonly keys: Buffer;
  /** per binding: ACTION_STEER or ACTION_REJECT */
  readonly actions: Uint8Array;
  /** per binding: an index into `labels`, or -1 for a reject binding without a label */
  readonly labelIndex: Int32Array;
  /** the distinct labels */
  readonly labels: readonly string[];
  /** per binding: its index into binding_stats, when read from a map */
  readonly stats?: Uint32Array;
}

/** Packs Binding objects, in order. */
export function packBindingSet(bindings: readonly Binding[]): PackedBindings {
  const count = bindings.length;
  const keys = Buffer.alloc(count * BINDING_KEY_SIZE);
  const actions = new Uint8Array(count);
  const labelIndex = new Int32Array(count);
  const labels: string[] = [];
  const seen = new Map<string, number>();
  for (let i = 0; i < count; i++) {
    const b = bindings[i];
    bindingKey(b, keys, i * BINDING_KEY_SIZE);
    actions[i] = actionCode(b.action);
    let li = -1;
    if (b.label !== '') {
      li = seen.get(b.label) ?? -1;
      if (li < 0) {
        li = labels.push(b.label) - 1;
        seen.set(b.label, li);
      }
    }
    labelIndex[i] = li;
  }
  return { count, keys, actions, labelIndex, labels };
}

/** The fields of the key at keys[off..]. */
export const keyProtocol = (keys: Uint8Array, off: number): Protocol => (keys[off] === IPPROTO.tcp ? 'tcp' : 'udp');
export const keyFamily = (keys: Uint8Array, off: number): Family => (keys[off + 1] === AF[4] ? 4 : 6);
export const keyLength = (keys: Uint8Array, off: number): number => keys[off + 2];
export const keyPort = (keys: Uint8Array, off: number): number => (LE ? keys[off + 4] | (keys[off + 5] << 8) : (keys[off + 4] << 8) | keys[off + 5]);
/** The prefix of the key at keys[off..] as text, e.g. "10.0.0.0/24". */
export const keyPrefixText = (keys: Uint8Array, off: number): string =>
  `${formatAddressAt(keyFamily(keys, off), keys, off + 8)}/${keys[off + 2]}`;
/** bindingId of the key at keys[off..]. */
export const keyId = (keys: Uint8Array, off: number): string => `${keyProtocol(keys, off)} ${keyPrefixText(keys, off)} ${keyPort(keys, off)}`;

/** The label of binding i: '' for a reject binding without one. */
export const labelAt = (set: PackedBindings, i: number): string => (set.labelIndex[i] < 0 ? '' : set.labels[set.labelIndex[i]]);

/** Binding i as an object. */
export function bindingAt(set: PackedBindings, i: number): Binding {
  const k = decodeBindingKey(set.keys, i * BINDING_KEY_SIZE);
  return {
    label: labelAt(set, i),
    protocol: k.protocol === IPPROTO.tcp ? 'tcp' : 'udp',
    prefix: { family: k.family, bytes: k.addr, length: k.prefixlen },
    port: k.port,
    action: actionOf(set.actions[i]),
  };
}

/** An index of the set's keys; a key that appears twice is an error. */
export function indexBindingSet(set: PackedBindings): { index: KeyIndex; words: Uint32Array } {
  const words = keyWords(set.keys, set.count);
  const index = new KeyIndex(words, set.count);
  for (let i = 0; i < set.count; i++) {
    if (index.add(i) >= 0) throw new TubularError('EINVAL', `the binding ${keyId(set.keys, i * BINDING_KEY_SIZE)} appears twice: keep one`);
  }
  return { index, words };
}

/** The set without its observe bindings (the same set when it has none). */
export function withoutObserve(set: PackedBindings): PackedBindings {
  const keep: number[] = [];
  for (let i = 0; i < set.count; i++) if (set.actions[i] !== ACTION_OBSERVE) keep.push(i);
  if (keep.length === set.count) return set;
  const keys = Buffer.alloc(keep.length * BINDING_KEY_SIZE);
  keep.forEach((i, n) => set.keys.copy(keys, n * BINDING_KEY_SIZE, i * BINDING_KEY_SIZE, (i + 1) * BINDING_KEY_SIZE));
  return {
    count: keep.length,
    keys,
    actions: Uint8Array.from(keep, (i) => set.actions[i]),
    labelIndex: Int32Array.from(keep, (i) => set.labelIndex[i]),
    labels: set.labels,
    stats: set.stats && Uint32Array.from(keep, (i) => set.stats![i]),
  };
}

/**
 * Decodes a dump of the map (`count` keys and values); labelOf maps a
 * destination id to its label.
 */
export function packedFromDump(keys: Buffer, values: Buffer, count: number, labelOf: (id: number) => string | undefined): PackedBindings {
  const actions = new Uint8Array(count);
  const labelIndex = new Int32Array(count);
  const stats = new Uint32Array(count);
  const labels: string[] = [];
  // destination id -> index into labels, plus one (0: not met yet)
  const byId = new Int32Array(MAX_DESTINATIONS);
  const other = new Map<number, number>();
  const words = u32Words(values, count * VALUE_WORDS);
  for (let i = 0; i < count; i++) {
    const id = words[VALUE_WORDS * i];
    const action = words[VALUE_WORDS * i + 1] & 0xffff;
    actions[i] = action === ACTION_REJECT || action === ACTION_OBSERVE ? action : ACTION_STEER;
    stats[i] = words[VALUE_WORDS * i + 2];
    let li = -1;
    if (id !== NO_DESTINATION) {
      li = (id < MAX_DESTINATIONS ? byId[id] : other.get(id) ?? 0) - 1;
      if (li < 0) {
        li = labels.push(labelOf(id) ?? `#${id}`) - 1;
        if (id < MAX_DESTINATIONS) byId[id] = li + 1;
        else other.set(id, li + 1);
      }
    }
    labelIndex[i] = li;
  }
  return { count, keys: keys.subarray(0, count * BINDING_KEY_SIZE), actions, labelIndex, labels, stats };
}

/**
 * The destinations a set names, each once: `slotOf[i]` is binding i's index
 * into `slots`, or -1 for a reject binding without a label.
 */
export function destinationSlots(set: PackedBindings): { slotOf: Int32Array; slots: DestinationKey[] } {
  const slotOf = new Int32Array(set.count);
  // (label, family, protocol) -> slot + 1; 0: not met yet
  const compact = new Int32Array(set.labels.length * 4);
  const slots: DestinationKey[] = [];
  const k = set.keys;
  for (let i = 0; i < set.count; i++) {
    const li = set.labelIndex[i];
    if (li < 0) {
      slotOf[i] = -1;
      continue;
    }
    const off = i * BINDING_KEY_SIZE;
    const wide = li * 4 + (k[off + 1] === AF[6] ? 2 : 0) + (k[off] === IPPROTO.udp ? 1 : 0);
    let slot = compact[wide] - 1;
    if (slot < 0) {
      slot = slots.push({ label: set.labels[li], domain: domainOf(keyFamily(k, off)), protocol: keyProtocol(k, off) }) - 1;
      compact[wide] = slot + 1;
    }
    slotOf[i] = slot;
  }
  return { slotOf, slots };
}

/** The destination id of a destination that does not exist yet (packValues, diffBindingSets): no real id, and not NO_DESTINATION. */
export const PENDING_DESTINATION = 0xfffffffe;

/**
 * Binding values for a set whose destination slots have these ids (-1:
 * none yet, written as PENDING_DESTINATION), and whose bindings have these
 * stat indices (none given: 0).
 */
export function packValues(set: PackedBindings, slotOf: Int32Array, ids: Int32Array, stats?: Uint32Array): Buffer {
  const values = Buffer.alloc(set.count * BINDING_VALUE_SIZE);
  const words = new Uint32Array(values.buffer, values.byteOffset, set.count * VALUE_WORDS);
  for (let i = 0; i < set.count; i++) {
    const slot = slotOf[i];
    const id = slot < 0 ? -1 : ids[slot];
    words[VALUE_WORDS * i] = slot < 0 ? NO_DESTINATION : id < 0 ? PENDING_DESTINATION : id;
    words[VALUE_WORDS * i + 1] = set.actions[i];
    words[VALUE_WORDS * i + 2] = stats ? stats[i] : 0;
    words[VALUE_WORDS * i + 3] = i;
  }
  return values;
}

export interface SetDiff {
  added: number;
  removed: number;
  changed: number;
  unchanged: number;
  /** indices into the dump of the reject bindings that are gone */
  staleRejects: number[];
  /** indices into the dump of every binding that is gone */
  removedKeys: Int32Array;
  /** indices into the new set of every binding that is new */
  addedKeys: Int32Array;
  /** for each binding of the new set, the index in the dump of the same key, or -1 */
  previous: Int32Array;
  /** indices into the dump of bindings whose label or action changes */
  changedKeys: number[];
  /** for each of changedKeys, the index of the same key in the new set */
  changedTo: number[];
  /** the destination ids the dump's bindings point at (1: used) */
  usedIds: Uint8Array;
  /** one past the highest stat index of the dump (0: none) */
  nextStat: number;
}

/**
 * Compares a new set (indexed; each binding's destination slot, the ids
 * of the slots' destinations, -1 for one that does not exist yet, and its
 * action) with a dump of the set in force. A binding whose destination
 * does not exist yet is never unchanged.
 */
export function diffBindingSets(next: { index: KeyIndex; count: number; slotOf: Int32Array; ids: Int32Array; actions: Uint8Array },
  current: { keys: Buffer; values: Buffer; count: number }): SetDiff {
  const previous = new Int32Array(next.count).fill(-1);
  const usedIds = new Uint8Array(MAX_DESTINATIONS);
  const diff: SetDiff = {
    added: 0, removed: 0, changed: 0, unchanged: 0, staleRejects: [], removedKeys: new Int32Array(0), addedKeys: new Int32Array(0), previous, changedKeys: [], changedTo: [], usedIds, nextStat: 0,
  };
  const removed = new Int32Array(current.count);
  const curKeys = keyWords(current.keys, current.count);
  const curValues = u32Words(current.values, current.count * VALUE_WORDS);
  const { slotOf, ids, actions } = next;
  const W = VALUE_WORDS;
  let nextStat = 0;
  for (let j = 0; j < current.count; j++) {
    const id = curValues[W * j];
    if (id < MAX_DESTINATIONS) usedIds[id] = 1;
    if (curValues[W * j + 2] >= nextStat) nextStat = curValues[W * j + 2] + 1;
    // Where the set in force had the binding when its value was written: in
    // a file edited in place, where the new set has it. (The dump comes in
    // the kernel's hash order: a lookup by hash reads memory at random.)
    const i = next.index.findNear(curValues[W * j + 3], curKeys, j);
    if (i < 0) {
      removed[diff.removed++] = j;
      if ((curValues[W * j + 1] & 0xffff) === ACTION_REJECT) diff.staleRejects.push(j);
      continue;
    }
    previous[i] = j;
    // The stat index is the binding's own, not part of what it says.
    const slot = slotOf[i];
    const nextId = slot < 0 ? NO_DESTINATION : ids[slot] < 0 ? PENDING_DESTINATION : ids[slot];
    if (id === nextId && (curValues[W * j + 1] & 0xffff) === actions[i]) {
      diff.unchanged++;
    } else {
      diff.changed++;
      diff.changedKeys.push(j);
      diff.changedTo.push(i);
    }
  }
  diff.nextStat = nextStat;
  diff.removedKeys = removed.slice(0, diff.removed);
  diff.added = next.count - diff.unchanged - diff.changed;
  diff.addedKeys = new Int32Array(diff.added);
  for (let i = 0, n = 0; i < next.count; i++) if (previous[i] < 0) diff.addedKeys[n++] = i;
  return diff;
}

/**
 * The values of a set whose destination slots have these ids (all exist),
 * and whose bindings keep the stat index of the same key in `current`
 * (previous[i] >= 0) or take the next of `fresh` (in order): what a
 * replace writes.
 */
export function valuesWithStats(set: PackedBindings, slotOf: Int32Array, ids: Int32Array, previous: Int32Array, current: Buffer, fresh: Uint32Array): Buffer {
  const values = Buffer.alloc(set.count * BINDING_VALUE_SIZE);
  const words = u32Words(values, set.count * VALUE_WORDS);
  const cur = u32Words(current, current.length / 4);
  for (let i = 0, k = 0; i < set.count; i++) {
    const slot = slotOf[i];
    const j = previous[i];
    words[VALUE_WORDS * i] = slot < 0 ? NO_DESTINATION : ids[slot];
    words[VALUE_WORDS * i + 1] = set.actions[i];
    words[VALUE_WORDS * i + 2] = j >= 0 ? cur[VALUE_WORDS * j + 2] : fresh[k++];
    words[VALUE_WORDS * i + 3] = i;
  }
  return values;
}

/**
 * Indices of the set's bindings (all, or those `keep` accepts) in the order
 * of comparePrecedence: longer prefix, specific port before port 0, IPv4
 * before IPv6, tcp before udp, address, port.
 */
export function precedenceOrder(set: PackedBindings, keep?: (i: number) => boolean): number[] {
  const k = set.keys;
  // One native sort of u64s: the class (length, port 0, family, protocol:
  // 11 bits), the first address word (32 bits) and the index (21 bits).
  // Runs that tie on class and first word are then sorted by the rest.
  if (set.count > 1 << 21) throw new RangeError(`precedenceOrder: ${set.count} bindings are more than it can sort`);
  const sortKeys = new BigUint64Array(set.count);
  const w = new Uint32Array(sortKeys.buffer);
  const [LO, HI] = LE ? [0, 1] : [1, 0];
  let m = 0;
  for (let i = 0; i < set.count; i++) {
    if (keep && !keep(i)) continue;
    const off = i * BINDING_KEY_SIZE;
    const cls = ((128 - k[off + 2]) << 3) | (keyPort(k, off) === 0 ? 4 : 0) | (k[off + 1] === AF[4] ? 0 : 2) | (k[off] === IPPROTO.tcp ? 0 : 1);
    const addr = ((k[off + 8] << 24) | (k[off + 9] << 16) | (k[off + 10] << 8) | k[off + 11]) >>> 0;
    w[2 * m + HI] = ((cls << 21) | (addr >>> 11)) >>> 0;
    w[2 * m + LO] = (((addr & 0x7ff) << 21) | i) >>> 0;
    m++;
  }
  sortKeys.subarray(0, m).sort();
  const order = new Array<number>(m);
  for (let j = 0; j < m; j++) order[j] = w[2 * j + LO] & 0x1fffff;
  for (let start = 0, j = 1; j <= m; j++) {
    if (j < m && w[2 * j + HI] === w[2 * start + HI] && (w[2 * j + LO] >>> 21) === (w[2 * start + LO] >>> 21)) continue;
    if (j - start > 1) sortRun(k, order, start, j, 1);
    start = j;
  }
  return order;
}

/** What decides among bindings that tie on everything before: address words 1-3 (big-endian), then the port. */
const tieField = (k: Buffer, off: number, level: number): number => (level < 4 ? k.readUInt32BE(off + 8 + 4 * level) : keyPort(k, off));

/** Sorts order[start, end), which tie on every field before `level`, by the fields from `level` on. */
function sortRun(k: Buffer, order: number[], start: number, end: number, level: number): void {
  if (level > 4) return;
  const n = end - start;
  const keys = new BigUint64Array(n);
  const w = new Uint32Array(keys.buffer);
  const [LO, HI] = LE ? [0, 1] : [1, 0];
  for (let j = 0; j < n; j++) {
    // field (32 bits) and the position in the run (21 bits)
    const field = tieField(k, order[start + j] * BINDING_KEY_SIZE, level);
    w[2 * j + HI] = field >>> 11;
    w[2 * j + LO] = (((field & 0x7ff) << 21) | j) >>> 0;
  }
  keys.sort();
  const run = order.slice(start, end);
  for (let j = 0; j < n; j++) order[start + j] = run[w[2 * j + LO] & 0x1fffff];
  for (let a = 0, b = 1; b <= n; b++) {
    if (b < n && w[2 * b + HI] === w[2 * a + HI] && (w[2 * b + LO] >>> 21) === (w[2 * a + LO] >>> 21)) continue;
    if (b - a > 1) sortRun(k, order, start + a, start + b, level + 1);
    a = b;
  }
}

