// tubectl sources without root: joining sampled source blocks to the
// observe and reject bindings in force, the top N, the order, the text and
// the JSON.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type Binding, parseBinding } from '../src/binding.js';
import type { Traffic } from '../src/binding-stats.js';
import { packBindingSet } from '../src/bindingset.js';
import { TubularError } from '../src/errors.js';
import { formatPrefix, parsePrefix } from '../src/prefix.js';
import { type SourceCount, compareSources, parseTop, sourceReports, sourcesDoc, sourcesText, topSources } from '../src/cli/sources.js';

const b = (label: string, prefix: string, port: number, action: Binding['action']): Binding =>
  parseBinding({ label, protocol: 'tcp', prefix, port, action });
const at = (iso: string): Date => new Date(iso);
const src = (stat: number, prefix: string, hits: number, lastSeen: Date | null = at('2026-01-01T00:00:10Z')): SourceCount =>
  ({ stat, prefix: parsePrefix(prefix).prefix, hits: BigInt(hits), lastSeen });

/** A set read back from a map: binding i has stat index 10 + i. */
function setOf(bindings: Binding[]) {
  const set = packBindingSet(bindings);
  return { ...set, stats: Uint32Array.from(bindings, (_, i) => 10 + i) };
}
const trafficOf = (byStat: Record<number, [number, Date | null]>) => (stats: Uint32Array): Traffic[] =>
  Array.from(stats, (s) => ({ hits: BigInt(byStat[s]?.[0] ?? 0), lastHit: byStat[s]?.[1] ?? null }));

test('--top is strict: 1-1000 in decimal digits, default 10', () => {
  assert.equal(parseTop(undefined), 10);
  assert.equal(parseTop('1'), 1);
  assert.equal(parseTop('1000'), 1000);
  for (const bad of ['0', '1001', '010', '-1', '+5', '5.0', '1e2', ' 5', '0x10', '', 'ten', '99999']) {
    assert.throws(() => parseTop(bad), (e: unknown) => e instanceof TubularError && e.code === 'EINVAL' && /--top/.test(e.message), bad);
  }
});

test('only observe and reject bindings, busiest first, each with its own sources, most active first', () => {
  const set = setOf([b('web', '127.0.0.0/24', 0, 'steer'), b('', '127.0.0.128/25', 80, 'observe'), b('old', '127.0.0.0/28', 25, 'reject')]);
  const samples = [
    src(11, '127.1.0.0/24', 1), src(11, '127.3.0.0/24', 3), src(11, '127.2.0.0/24', 2),
    src(12, '192.0.2.0/24', 4),
    src(99, '198.51.100.0/24', 50), // a stat no binding in force has: left out
  ];
  const reports = sourceReports(set, trafficOf({ 10: [100, null], 11: [6, at('2026-01-01T00:00:10Z')], 12: [9, at('2026-01-01T00:00:05Z')] }), samples, 10);
  assert.deepEqual(reports.map((r) => [r.binding.prefix, r.binding.action, r.hits]), [['127.0.0.0/28', 'reject', 9n], ['127.0.0.128/25', 'observe', 6n]]);
  assert.deepEqual(reports[1].sources.map((s) => [formatPrefix(s.prefix), s.hits]), [['127.3.0.0/24', 3n], ['127.2.0.0/24', 2n], ['127.1.0.0/24', 1n]]);
  assert.deepEqual(reports[0].sources.map((s) => formatPrefix(s.prefix)), ['192.0.2.0/24']);

  const doc = sourcesDoc(reports) as { bindings: unknown[] };
  assert.deepEqual(doc.bindings[1], {
    binding: { label: '', protocol: 'tcp', prefix: '127.0.0.128/25', port: 80, action: 'observe', hits: '6', lastHit: '2026-01-01T00:00:10Z' },
    hits: '6',
    lastHit: '2026-01-01T00:00:10Z',
    sources: [
      { prefix: '127.3.0.0/24', hits: '3', lastSeen: '2026-01-01T00:00:10Z' },
      { prefix: '127.2.0.0/24', hits: '2', lastSeen: '2026-01-01T00:00:10Z' },
      { prefix: '127.1.0.0/24', hits: '1', lastSeen: '2026-01-01T00:00:10Z' },
    ],
  });
});

test('a binding picked by name; a binding without samples; equal hits keep precedence order', () => {
  const set = setOf([b('', '127.0.0.0/24', 80, 'observe'), b('', '127.0.0.128/25', 80, 'observe')]);
  const none = sourceReports(set, trafficOf({}), [], 10);
  assert.deepEqual(none.map((r) => r.binding.prefix), ['127.0.0.128/25', '127.0.0.0/24']);
  assert.deepEqual(none.map((r) => r.sources), [[], []]);
  const one = sourceReports(set, trafficOf({}), [src(10, '127.9.0.0/24', 1)], 10, (i) => i === 0);
  assert.deepEqual(one.map((r) => [r.binding.prefix, r.sources.length]), [['127.0.0.0/24', 1]]);
});

test('the text: a heading per binding, its sources as a table, and how many more were sampled', () => {
  const set = setOf([b('', '127.0.0.128/25', 80, 'reject'), b('api', '2001:db8::/32', 0, 'reject')]);
  const now = at('2026-01-01T00:00:13Z').getTime();
  const samples = [src(10, '127.3.0.0/24', 3), src(10, '127.2.0.0/24', 2, at('2026-01-01T00:00:01Z')), src(10, '127.1.0.0/24', 1)];
  const text = sourcesText(sourceReports(set, trafficOf({ 10: [7, at('2026-01-01T00:00:10Z')] }), samples, 2), now);
  assert.equal(text, [
    'tcp 127.0.0.128/25 80 <reject>: 7 hits, last hit 3s ago',
    '  source        hits  last seen',
    '  127.3.0.0/24     3  3s ago',
    '  127.2.0.0/24     2  12s ago',
    '  ... 1 more source block sampled (--top shows more)',
    '',
    'tcp 2001:db8::/32 0 <reject:api>: 0 hits, last hit never',
    '  no sources sampled',
    '',
  ].join('\n'));
  assert.equal(sourcesText([], now), 'no observe or reject bindings\n');
});

test('order: more hits first, then seen more recently, then by address; IPv6 /48 blocks too', () => {
  const t = at('2026-01-01T00:00:10Z');
  const sorted = [src(1, '10.0.0.0/24', 5, null), src(1, '10.0.1.0/24', 5, t), src(1, '2001:db8:1::/48', 5, t), src(1, '10.0.2.0/24', 6, null)].sort(compareSources);
  assert.deepEqual(sorted.map((s) => formatPrefix(s.prefix)), ['10.0.2.0/24', '10.0.1.0/24', '2001:db8:1::/48', '10.0.0.0/24']);
});

test('topSources is the first N of the full sort, whatever the input', () => {
  const sample = fc.record({ a: fc.integer({ min: 0, max: 255 }), hits: fc.integer({ min: 0, max: 5 }), seen: fc.option(fc.integer({ min: 0, max: 3 })) });
  fc.assert(fc.property(fc.array(sample, { maxLength: 60 }), fc.integer({ min: 1, max: 20 }), (xs, n) => {
    const all = xs.map((x) => src(1, `10.${x.a}.0.0/24`, x.hits, x.seen === null ? null : new Date(x.seen * 1000)));
    const want = [...all].sort(compareSources).slice(0, n);
    assert.deepEqual(topSources(all, n), want);
  }));
});
