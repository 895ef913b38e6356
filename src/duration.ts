// Durations as operators write them on the command line: "30s", "10m",
// "2h", "1h30m", "500ms", "7d"; "0" alone means none. Strict: a number
// without a unit, a sign, a fraction or spaces is refused, since a
// guessed unit is how a ten-minute window becomes ten milliseconds.
import { invalid } from './errors.js';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** The longest duration accepted: a year. */
export const MAX_DURATION_MS = 365 * UNIT_MS.d;

/**
 * Parses a duration; returns milliseconds. Throws EINVAL with a message for
 * people, naming `what` (e.g. the flag it came with).
 */
export function parseDuration(text: string, what = 'a duration'): number {
  if (text === '0') return 0;
  const bad = (why: string) => invalid(`${what}: invalid duration ${JSON.stringify(text.slice(0, 40))}: ${why}`);
  if (!/^(\d+(ms|s|m|h|d))+$/.test(text)) {
    throw bad(/^\d+$/.test(text) ? 'give a unit, e.g. 30s, 10m or 2h (0 alone means none)'
      : 'use whole numbers with a unit (ms, s, m, h, d), e.g. 30s, 10m, 2h or 1h30m');
  }
  let total = 0;
  let last = Infinity;
  for (const m of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) {
    const unit = UNIT_MS[m[2]];
    if (unit >= last) throw bad('give each unit once, largest first, e.g. 1h30m');
    last = unit;
    total += Number(m[1]) * unit;
    if (!Number.isSafeInteger(total) || total > MAX_DURATION_MS) throw bad('at most 365d');
  }
  return total;
}

/** A duration in the largest units that keep it exact: 600000 -> "10m", 5400000 -> "1h30m". */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  let rest = ms;
  let out = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms']) {
    const n = Math.floor(rest / UNIT_MS[unit]);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * UNIT_MS[unit];
  }
  return out;
}

/** How long ago, coarsely, for people: "3s ago", "5m ago", "2h ago", "4d ago"; "never" for null. */
export function formatAge(then: Date | null, now: number): string {
  if (then === null) return 'never';
  const s = Math.max(0, Math.floor((now - then.getTime()) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** A last hit as JSON carries it: ISO 8601 UTC to the second, or null. */
export function isoSecond(at: Date | null): string | null {
  return at === null ? null : at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
