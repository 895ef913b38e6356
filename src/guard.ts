// The guard: no change of bindings silently withdraws live traffic. A
// change is refused (unless forced) when it would remove a binding, point
// it at another label or turn it into reject while that binding decided a
// connection within the live window; and, whatever the traffic, when it
// would remove more than half of the bindings in force and more than
// MASS_REMOVAL_FLOOR of them: that shape is far more often a broken
// generator than an intention.
//
// Pure decisions over what it is given. tubectl runs them inside the
// dispatcher's change check, under the writers' lock, so the decision and
// the change see the same set.
import type { Action } from './binding.js';
import type { Traffic } from './binding-stats.js';
import { type PackedBindings, actionOf, labelAt } from './bindingset.js';
import type { SetChange } from './setdiff.js';

export const DEFAULT_LIVE_WINDOW_MS = 10 * 60_000;
/** A change may remove up to this many bindings, or up to half of those in force, without --force. */
export const MASS_REMOVAL_FLOOR = 100;

export interface GuardPolicy {
  /** a binding is live when its last hit is at most this old; 0 turns the traffic check off */
  liveWindowMs: number;
  /** the time of the decision, ms since the epoch */
  now: number;
}

/** What a binding does, for comparing before and after. */
export interface Target {
  label: string;
  action: Action;
}

/** Whether the binding decided a connection within the live window. */
export function isLive(t: Traffic, p: GuardPolicy): boolean {
  return p.liveWindowMs > 0 && t.lastHit !== null && p.now - t.lastHit.getTime() <= p.liveWindowMs;
}

/**
 * Whether a change of target sends a binding's traffic somewhere it did
 * not go: any change of label, any change of action to reject (observe to
 * reject is the HTTPS-only switch thrown), and a steer binding turned into
 * an observe one (its traffic falls through to whatever is behind it).
 */
export function redirects(from: Target, to: Target): boolean {
  return from.label !== to.label || (to.action === 'reject' && from.action !== 'reject') ||
    (from.action === 'steer' && to.action === 'observe');
}

export function isMassRemoval(removed: number, inForce: number): boolean {
  return removed > MASS_REMOVAL_FLOOR && removed * 2 > inForce;
}

/** A live binding a change would withdraw (to = -1) or redirect. */
export interface LiveChange {
  /** index into the current set */
  from: number;
  /** index into the next set, or -1: removed */
  to: number;
  traffic: Traffic;
}

export interface Verdict {
  /** live bindings the change would withdraw or redirect, in the order of the change */
  live: LiveChange[];
  /** set when the change removes too much at once */
  mass: { removed: number; inForce: number } | null;
}

/** Whether the guard refuses the change (unless forced). */
export const refuses = (v: Verdict): boolean => v.live.length > 0 || v.mass !== null;

const targetAt = (set: PackedBindings, i: number): Target =>
  ({ label: labelAt(set, i), action: actionOf(set.actions[i]) });

/**
 * Judges replacing `current` (read from the maps, with stat indices) by
 * `next`. Traffic is read only for the bindings that would be withdrawn or
 * redirected, and only when the live window is on.
 */
export function judge(current: PackedBindings, next: PackedBindings, change: SetChange,
  traffic: (stats: Uint32Array) => Traffic[], policy: GuardPolicy): Verdict {
  const mass = isMassRemoval(change.removed.length, current.count) ? { removed: change.removed.length, inForce: current.count } : null;
  const stats = current.stats;
  if (policy.liveWindowMs <= 0 || !stats) return { live: [], mass };
  const candidates: Array<{ from: number; to: number }> = Array.from(change.removed, (from) => ({ from, to: -1 }));
  for (const c of change.changed) if (redirects(targetAt(current, c.from), targetAt(next, c.to))) candidates.push(c);
  if (candidates.length === 0) return { live: [], mass };
  const seen = traffic(Uint32Array.from(candidates, (c) => stats[c.from]));
  const live = candidates.flatMap((c, k) => (isLive(seen[k], policy) ? [{ ...c, traffic: seen[k] }] : []));
  return { live, mass };
}

/** The guard's decision over a report's rows: what the dry run shows load-bindings would decide. */
export function judgeRows<R extends { kind: 'added' | 'removed' | 'changed'; from: (Target & Traffic) | null; to: Target | null }>(
  rows: readonly R[], removed: number, inForce: number, policy: GuardPolicy,
): { live: R[]; blocking: R[]; mass: Verdict['mass'] } {
  const live = rows.filter((r) => r.kind !== 'added' && r.from !== null && isLive(r.from, policy));
  const blocking = live.filter((r) => r.kind === 'removed' || (r.from !== null && r.to !== null && redirects(r.from, r.to)));
  return { live, blocking, mass: isMassRemoval(removed, inForce) ? { removed, inForce } : null };
}
