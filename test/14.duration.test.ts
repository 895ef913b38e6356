import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MAX_DURATION_MS, formatDuration, parseDuration } from '../src/duration.js';
import { TubularError } from '../src/errors.js';

test('parseDuration reads the spellings operators write', () => {
  assert.equal(parseDuration('0'), 0);
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('10m'), 600_000);
  assert.equal(parseDuration('2h'), 7_200_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('7d'), 7 * 86_400_000);
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('365d'), MAX_DURATION_MS);
});

test('parseDuration refuses anything it would have to guess', () => {
  for (const bad of ['', '10', '-1m', '+1m', '1.5h', '10 m', ' 10m', '10m ', '10M', '1m1h', '1m1m', 'm', '1w', '366d', '10mm', '0x10s', '１０m']) {
    assert.throws(() => parseDuration(bad), (e: unknown) => e instanceof TubularError && e.code === 'EINVAL' && /invalid duration/.test(e.message), JSON.stringify(bad));
  }
  assert.throws(() => parseDuration('10'), /give a unit/);
});

test('formatDuration and parseDuration round-trip (property)', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: MAX_DURATION_MS }), (ms) => {
    assert.equal(parseDuration(formatDuration(ms)), ms);
  }));
  assert.equal(formatDuration(600_000), '10m');
  assert.equal(formatDuration(5_400_000), '1h30m');
});
