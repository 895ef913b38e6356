// Durations as operators type them (--live-window 10m) and ages as tubectl
// prints them (last hit "3s ago"). The data plane's clock has one-second
// resolution, so nothing here is finer than a second.
import { UsageError } from './errors.js';

const UNITS = [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const;
/** The longest duration accepted: a longer one is far more likely a typo than a wish. */
export const MAX_DURATION_MS = 366 * 86_400_000;

/**
 * Parses `0`, or whole numbers with units from largest to smallest, each at
 * most once: `30s`, `10m`, `2h`, `1h30m`, `7d`. Returns milliseconds; a
 * usage error naming `flag` otherwise.
 */
export function parseDuration(text: string, flag: string, verb?: string): number {
  const wrong = (why: string): UsageError => new UsageError(
    `${flag} takes a duration such as 30s, 10m, 2h or 1h30m (0 turns the check off), not ${JSON.stringify(text.slice(0, 20))}: ${why}`, verb);
  if (text === '0') return 0;
  const m = /^(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?$/.exec(text);
  if (!m || text === '') {
    throw wrong(/^\d+$/.test(text) ? 'give a unit (s, m, h or d)' : 'whole numbers, each with a unit (d, h, m, s) in that order');
  }
  let ms = 0;
  UNITS.forEach(([, size], i) => { if (m[i + 1] !== undefined) ms += Number(m[i + 1]) * size; });
  if (ms > MAX_DURATION_MS) throw wrong('at most 366d');
  return ms;
}

/** A duration as parseDuration reads it: `10m`, `1h30m`, `0`. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0';
  let rest = Math.floor(ms / 1000) * 1000;
  let out = '';
  for (const [unit, size] of UNITS) {
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out || '0s';
}

/** How long ago `at` was, coarsely: `never`, `3s ago`, `5m ago`, `2h ago`, `3d ago`. */
export function formatAge(at: Date | null, now: number): string {
  if (at === null) return 'never';
  const s = Math.max(0, Math.floor((now - at.getTime()) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 48 * 3600) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** A last hit as JSON carries it: ISO 8601 UTC to the second, or null. */
export function isoSecond(at: Date | null): string | null {
  return at === null ? null : at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}
