// The guard as tubectl applies it (decisions in ../guard.ts): flags, the
// change check that decides under the writers' lock, and what it says when
// it refuses, when it is overridden, and when bind redirects live traffic.
import { type Binding, toJSON } from '../binding.js';
import type { Traffic } from '../binding-stats.js';
import type { PackedBindings } from '../bindingset.js';
import { precedenceOfPicks, rowsOf } from '../change-report.js';
import type { ChangeCheck } from '../dispatcher.js';
import { TubularError } from '../errors.js';
import { parsing } from './errors.js';
import { DEFAULT_LIVE_WINDOW_MS, type GuardPolicy, MASS_REMOVAL_FLOOR, type Verdict, isLive, judge, redirects, refuses } from '../guard.js';
import { formatAge, formatDuration, parseDuration } from '../duration.js';
import type { Env } from './env.js';
import { changeTable } from './changes.js';
import { describeBinding } from './output.js';

/** Lines of live bindings a refusal lists; the rest are counted. */
export const MAX_LISTED = 20;

export interface GuardFlags {
  /** apply the change whatever the guard says */
  force?: boolean;
  /** --live-window as typed */
  liveWindow?: string;
}

export interface Guard {
  force: boolean;
  liveWindowMs: number;
  /** the policy at this moment */
  policy(): GuardPolicy;
}

/** Reads --force and --live-window (a usage error of `verb` when malformed). */
export function guardFrom(flags: GuardFlags, verb: string): Guard {
  const liveWindowMs = flags.liveWindow === undefined ? DEFAULT_LIVE_WINDOW_MS : parsing(verb, () => parseDuration(flags.liveWindow!, '--live-window'));
  return { force: flags.force ?? false, liveWindowMs, policy: () => ({ liveWindowMs, now: Date.now() }) };
}

/** How a refusal names the change and the way on. */
export interface Refusal {
  /** what was refused, e.g. "load bindings.json" */
  what: string;
  /** the command that applies it anyway */
  retry: string;
  /** the command that shows the whole change, if any */
  inspect?: string;
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;
const hitsText = (t: Traffic, now: number): string => `${t.hits} hit${t.hits === 1n ? '' : 's'}, last ${formatAge(t.lastHit, now)}`;

/** The message of a refused change: the live bindings (most preferred first, up to MAX_LISTED), the mass removal, the way on. */
export function refusalMessage(current: PackedBindings, next: PackedBindings, verdict: Verdict, traffic: (stats: Uint32Array) => Traffic[],
  policy: GuardPolicy, how: Refusal): string {
  const parts = [`refusing to ${how.what}, nothing was changed:`];
  if (verdict.live.length > 0) {
    const picks = verdict.live.map((l) => ({ kind: l.to < 0 ? 'removed' as const : 'changed' as const, from: l.from, to: l.to }));
    const first = precedenceOfPicks(current, next, picks).slice(0, MAX_LISTED).map((n) => picks[n]);
    const rows = rowsOf(current, next, first, traffic);
    const more = verdict.live.length - rows.length;
    parts.push(`  ${plural(verdict.live.length, 'binding')} that carried traffic in the last ${formatDuration(policy.liveWindowMs)} ` +
      `would be withdrawn or redirected:\n${changeTable(rows, policy.now, '  ')}${more > 0 ? `  ... and ${more} more\n` : ''}`.trimEnd());
  }
  if (verdict.mass) {
    parts.push(`  it would remove ${verdict.mass.removed} of the ${verdict.mass.inForce} bindings in force: more than half, and more than ` +
      `${MASS_REMOVAL_FLOOR}, is far more often a broken generator than an intention`);
  }
  parts.push(`${how.inspect ? `see the whole change with ${how.inspect}; ` : ''}to apply it anyway: ${how.retry}`);
  return parts.join('\n');
}

/**
 * The change check of load-bindings and rollback: judges under the lock,
 * refuses unless forced. `onPass` learns what passed (a forced verdict
 * included) before anything changes. Forced, the guard reads no traffic (on
 * a large change that is most of its cost): only the mass removal, which is
 * a count, is reported.
 */
export function guardedChange(guard: Guard, how: Refusal, onPass?: (verdict: Verdict, ...args: Parameters<ChangeCheck>) => void): ChangeCheck {
  return (current, next, change, traffic) => {
    const policy = guard.force ? { ...guard.policy(), liveWindowMs: 0 } : guard.policy();
    const verdict = judge(current, next, change, traffic, policy);
    if (refuses(verdict) && !guard.force) {
      throw new TubularError('EREFUSED', refusalMessage(current, next, verdict, traffic, policy, how));
    }
    onPass?.(verdict, current, next, change, traffic);
  };
}

/** What --force let through, on stderr. */
export function writeForced(env: Env, verdict: Verdict): void {
  if (verdict.mass) env.stderr.write(`tubectl: note: --force: removed ${verdict.mass.removed} of ${verdict.mass.inForce} bindings\n`);
}

/** The check of unbind: a live binding stays unless forced. */
export function guardedUnbind(guard: Guard, retry: string): (existing: Binding, traffic: Traffic) => void {
  return (existing, traffic) => {
    const policy = guard.policy();
    if (guard.force || !isLive(traffic, policy)) return;
    throw new TubularError('EREFUSED', `refusing to remove ${describeBinding(toJSON(existing))}, nothing was changed: ` +
      `it carried traffic in the last ${formatDuration(policy.liveWindowMs)} (${hitsText(traffic, policy.now)}); ` +
      `to remove it anyway: ${retry}`);
  };
}

/** bind proceeds (one explicit binding), but says so when it redirected a live one. */
export function warnRedirected(env: Env, guard: Guard, replaced: Binding, traffic: Traffic, now: Binding): void {
  const policy = guard.policy();
  if (!redirects(replaced, now) || !isLive(traffic, policy)) return;
  const where = now.action === 'reject' ? 'are now refused'
    : now.action === 'observe' ? 'are now only observed: they go where a shorter binding, or the kernel\'s own lookup, sends them'
    : `now go to ${now.label}`;
  env.stderr.write(`tubectl: warning: ${describeBinding(toJSON(replaced))} carried traffic in the last ${formatDuration(policy.liveWindowMs)} ` +
    `(${hitsText(traffic, policy.now)}); its connections ${where}\n`);
}
