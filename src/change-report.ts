// A change of the binding set as an operator reads it: the bindings it
// adds, removes and changes (label or action), each with its traffic, most
// preferred first. Built from compareSets (setdiff.ts) for the dry run,
// rollback and the guard's message. Pure: traffic comes from the reader the
// caller passes (Dispatcher.traffic, or the one a change check is given).
import { type BindingJSON, toJSON } from './binding.js';
import type { Traffic } from './binding-stats.js';
import { type PackedBindings, bindingAt, precedenceOrder } from './bindingset.js';
import { BINDING_KEY_SIZE } from './layout.js';
import type { SetChange } from './setdiff.js';

export type ChangeKind = 'added' | 'removed' | 'changed';

/** A binding with its counters: what bindings --json, diff and rollback show. */
export type TrafficBinding = BindingJSON & Traffic;

/** One changed binding: an index into the current set (from) and into the next set (to), -1 where there is none. */
export interface ChangePick {
  kind: ChangeKind;
  from: number;
  to: number;
}

/** One changed binding: `from` as it is in force, `to` as the change makes it. */
export type ChangeRow =
  | { kind: 'added'; from: null; to: TrafficBinding }
  | { kind: 'removed'; from: TrafficBinding; to: null }
  | { kind: 'changed'; from: TrafficBinding; to: TrafficBinding };

/** The binding a row shows: the one added, else the one in force. */
export const rowBinding = (r: ChangeRow): TrafficBinding => (r.kind === 'added' ? r.to : r.from);

export interface ChangeReport {
  /** every added, removed or changed binding, most preferred first */
  rows: ChangeRow[];
  added: number;
  removed: number;
  changed: number;
  unchanged: number;
  /** bindings in force before the change */
  inForce: number;
}

export type TrafficReader = (stats: Uint32Array) => Traffic[];

export const NO_TRAFFIC: Traffic = Object.freeze({ hits: 0n, lastHit: null });

/** The picks of a change, in no particular order. */
export function picksOf(change: SetChange): ChangePick[] {
  return [
    ...Array.from(change.added, (to) => ({ kind: 'added' as const, from: -1, to })),
    ...Array.from(change.removed, (from) => ({ kind: 'removed' as const, from, to: -1 })),
    ...change.changed.map(({ from, to }) => ({ kind: 'changed' as const, from, to })),
  ];
}

/** Indices into picks, most preferred binding first (precedence depends on the key alone). */
export function precedenceOfPicks(current: PackedBindings, next: PackedBindings, picks: readonly ChangePick[]): number[] {
  const keys = Buffer.alloc(picks.length * BINDING_KEY_SIZE);
  picks.forEach((p, n) => {
    const [set, i] = p.from >= 0 ? [current, p.from] : [next, p.to];
    set.keys.copy(keys, n * BINDING_KEY_SIZE, i * BINDING_KEY_SIZE, (i + 1) * BINDING_KEY_SIZE);
  });
  const count = picks.length;
  return precedenceOrder({ count, keys, actions: new Uint8Array(count), labelIndex: new Int32Array(count), labels: [] });
}

/** Traffic of bindings `indices` of a set; zero for a set that carries no stat indices (a file). */
function trafficOf(set: PackedBindings, indices: readonly number[], read: TrafficReader): Traffic[] {
  if (!set.stats || indices.length === 0) return indices.map(() => NO_TRAFFIC);
  const stats = set.stats;
  return read(Uint32Array.from(indices, (i) => stats[i]));
}

/**
 * Rows for picks, most preferred first. The counters belong to the binding:
 * a changed binding keeps its own, so `to` shows the next set's counters
 * when it has any (a rollback's target), else those of `from`; a binding
 * added from a file starts from zero.
 */
export function rowsOf(current: PackedBindings, next: PackedBindings, picks: readonly ChangePick[], read: TrafficReader): ChangeRow[] {
  const order = precedenceOfPicks(current, next, picks).map((n) => picks[n]);
  const fromIdx = order.filter((p) => p.from >= 0).map((p) => p.from);
  const toIdx = order.filter((p) => p.to >= 0).map((p) => p.to);
  const fromTraffic = trafficOf(current, fromIdx, read);
  const toTraffic = next.stats ? trafficOf(next, toIdx, read) : undefined;
  let f = 0;
  let t = 0;
  return order.map((p): ChangeRow => {
    const fromT = p.from >= 0 ? fromTraffic[f++] : NO_TRAFFIC;
    const toT = p.to >= 0 ? toTraffic?.[t++] ?? (p.from >= 0 ? fromT : NO_TRAFFIC) : NO_TRAFFIC;
    const from = p.from >= 0 ? { ...toJSON(bindingAt(current, p.from)), ...fromT } : null;
    const to = p.to >= 0 ? { ...toJSON(bindingAt(next, p.to)), ...toT } : null;
    if (from && to) return { kind: 'changed', from, to };
    if (to) return { kind: 'added', from: null, to };
    if (from) return { kind: 'removed', from, to: null };
    throw new RangeError(`a ${p.kind} binding with no index in either set`);
  });
}

/** What replacing `current` by `next` does, binding by binding. */
export function reportChange(current: PackedBindings, next: PackedBindings, change: SetChange, read: TrafficReader): ChangeReport {
  return {
    rows: rowsOf(current, next, picksOf(change), read),
    added: change.added.length,
    removed: change.removed.length,
    changed: change.changed.length,
    unchanged: change.unchanged,
    inForce: current.count,
  };
}
