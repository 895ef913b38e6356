// Change safety without a dispatcher: durations and ages as tubectl reads
// and prints them, the guard's decisions, the operator's view of a change
// and the refusal message. In-process, no root needed.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Binding, parseBinding } from '../src/binding.js';
import type { Traffic } from '../src/binding-stats.js';
import { type PackedBindings, packBindingSet } from '../src/bindingset.js';
import { reportChange } from '../src/change-report.js';
import { type GuardPolicy, isLive, isMassRemoval, judge, judgeRows, redirects } from '../src/guard.js';
import { compareSets } from '../src/setdiff.js';
import { changeDoc, changeText } from '../src/cli/changes.js';
import { formatAge, formatDuration, isoSecond, parseDuration } from '../src/duration.js';
import { TubularError } from '../src/errors.js';
import { MAX_LISTED, refusalMessage } from '../src/cli/guard.js';

const NOW = Date.parse('2025-07-14T22:00:00Z');
const ago = (s: number): Date => new Date(NOW - s * 1000);
const policy: GuardPolicy = { liveWindowMs: 10 * 60_000, now: NOW };
const B = (label: string, prefix: string, port: number, action?: 'reject'): Binding =>
  parseBinding({ label, protocol: 'tcp', prefix, port, action });

/** A set as read from the maps: binding i has stat index 100 + i. */
const inForce = (list: Binding[]): PackedBindings => ({ ...packBindingSet(list), stats: Uint32Array.from(list, (_, i) => 100 + i) });

/** A traffic reader over a table of stat index -> traffic; counts the indices it was asked for. */
function reader(table: Record<number, Traffic>): { read: (stats: Uint32Array) => Traffic[]; asked: number[] } {
  const asked: number[] = [];
  return {
    asked,
    read: (stats) => Array.from(stats, (s) => {
      asked.push(s);
      return table[s] ?? { hits: 0n, lastHit: null };
    }),
  };
}

describe('durations', () => {
  test('parseDuration: 0, or whole numbers with units from largest to smallest', () => {
    assert.equal(parseDuration('0', '--live-window'), 0);
    assert.equal(parseDuration('30s', '--live-window'), 30_000);
    assert.equal(parseDuration('10m', '--live-window'), 600_000);
    assert.equal(parseDuration('2h', '--live-window'), 7_200_000);
    assert.equal(parseDuration('1h30m', '--live-window'), 5_400_000);
    assert.equal(parseDuration('1d2h3m4s', '--live-window'), 93_784_000);
    assert.equal(parseDuration('0s', '--live-window'), 0);
    assert.equal(parseDuration('365d', '--live-window'), 365 * 86_400_000);
  });

  test('parseDuration refuses anything else, naming the flag', () => {
    for (const bad of ['', '10', '-5m', '5 m', '5M', '1.5h', '30m1h', '1h1h', 'm', '10m ', ' 10m', '1w', '367d', '0x10s', '+5s', '١٠m']) {
      assert.throws(() => parseDuration(bad, '--live-window'), (e: unknown) =>
        e instanceof TubularError && e.code === 'EINVAL' && /^--live-window: invalid duration/.test(e.message), JSON.stringify(bad));
    }
    assert.throws(() => parseDuration('10', '--live-window'), /give a unit/);
  });

  test('formatDuration writes what parseDuration reads', () => {
    for (const text of ['0', '30s', '10m', '2h', '1h30m', '1d2h3m4s', '7d']) assert.equal(formatDuration(parseDuration(text)), text);
  });

  test('formatAge: never, seconds, minutes, hours, days; a clock step back is 0s', () => {
    assert.equal(formatAge(null, NOW), 'never');
    assert.equal(formatAge(ago(0), NOW), '0s ago');
    assert.equal(formatAge(ago(3), NOW), '3s ago');
    assert.equal(formatAge(ago(59), NOW), '59s ago');
    assert.equal(formatAge(ago(60), NOW), '1m ago');
    assert.equal(formatAge(ago(5 * 60 + 59), NOW), '5m ago');
    assert.equal(formatAge(ago(3600), NOW), '1h ago');
    assert.equal(formatAge(ago(47 * 3600), NOW), '47h ago');
    assert.equal(formatAge(ago(48 * 3600), NOW), '2d ago');
    assert.equal(formatAge(ago(-5), NOW), '0s ago');
  });

  test('isoSecond: ISO 8601 UTC to the second, or null', () => {
    assert.equal(isoSecond(new Date('2025-07-14T21:52:03.000Z')), '2025-07-14T21:52:03Z');
    assert.equal(isoSecond(null), null);
  });
});

describe('guard decisions', () => {
  test('live: a hit within the window; never hit, or older, is not; a window of 0 turns it off', () => {
    assert.equal(isLive({ hits: 5n, lastHit: ago(599) }, policy), true);
    assert.equal(isLive({ hits: 5n, lastHit: ago(600) }, policy), true);
    assert.equal(isLive({ hits: 5n, lastHit: ago(601) }, policy), false);
    assert.equal(isLive({ hits: 0n, lastHit: null }, policy), false);
    assert.equal(isLive({ hits: 5n, lastHit: ago(1) }, { ...policy, liveWindowMs: 0 }), false);
  });

  test('redirects: any change of label, any change of action to reject', () => {
    assert.equal(redirects({ label: 'a', action: 'steer' }, { label: 'b', action: 'steer' }), true);
    assert.equal(redirects({ label: 'a', action: 'steer' }, { label: 'a', action: 'reject' }), true);
    assert.equal(redirects({ label: 'a', action: 'steer' }, { label: '', action: 'reject' }), true);
    assert.equal(redirects({ label: '', action: 'reject' }, { label: 'x', action: 'reject' }), true);
    // A reject binding turned back into steering, same label: traffic that was refused is served.
    assert.equal(redirects({ label: 'a', action: 'reject' }, { label: 'a', action: 'steer' }), false);
    assert.equal(redirects({ label: 'a', action: 'steer' }, { label: 'a', action: 'steer' }), false);
    // Observe: switching it to reject is the HTTPS-only switch thrown; a steer
    // binding turned into observe lets its traffic fall through.
    assert.equal(redirects({ label: '', action: 'observe' }, { label: '', action: 'reject' }), true);
    assert.equal(redirects({ label: 'a', action: 'steer' }, { label: 'a', action: 'observe' }), true);
    assert.equal(redirects({ label: '', action: 'reject' }, { label: '', action: 'observe' }), false);
  });

  test('mass removal: more than half of those in force and more than 100', () => {
    assert.equal(isMassRemoval(101, 200), true);
    assert.equal(isMassRemoval(100, 150), false);   // not more than 100
    assert.equal(isMassRemoval(101, 202), false);   // not more than half
    assert.equal(isMassRemoval(150, 150), true);
    assert.equal(isMassRemoval(3, 3), false);       // small sets may be emptied
  });

  const current = inForce([B('web', '127.0.0.0/24', 80), B('host', '127.0.0.7', 0), B('all', '127.0.0.0/8', 0), B('idle', '127.0.1.0/24', 0), B('x', '127.0.2.0/24', 0, 'reject')]);
  const traffic = {
    100: { hits: 12n, lastHit: ago(3) },     // web: live
    101: { hits: 4n, lastHit: ago(120) },    // host: live
    102: { hits: 9n, lastHit: ago(3600) },   // all: hit, but an hour ago
    104: { hits: 2n, lastHit: ago(5) },      // x (reject): live
  };

  test('judge: live removals and redirects are found, nothing else; traffic is read only for them', () => {
    const next = packBindingSet([
      B('web', '127.0.0.0/24', 80, 'reject'),  // live, flipped to reject
      B('other', '127.0.0.0/8', 0),            // not live (an hour ago), relabelled
      B('idle', '127.0.1.0/24', 0),            // unchanged
      B('x', '127.0.2.0/24', 0),               // live reject back to steer: not a redirect
      B('new', '10.0.0.0/8', 0),               // added
    ]);                                        // host: live, removed
    const change = compareSets(current, next);
    const r = reader(traffic);
    const v = judge(current, next, change, r.read, policy);
    assert.deepEqual(v.live.map((l) => `${l.from}->${l.to}`).sort(), ['0->0', '1->-1']);
    assert.equal(v.live.find((l) => l.from === 0)?.traffic.hits, 12n);
    assert.equal(v.mass, null);
    assert.deepEqual(r.asked.sort(), [100, 101, 102], 'only removed and redirected bindings');
  });

  test('judge: a window of 0 reads no traffic and finds nothing live; an unchanged set passes', () => {
    const next = packBindingSet([]);
    const r = reader(traffic);
    const v = judge(current, next, compareSets(current, next), r.read, { ...policy, liveWindowMs: 0 });
    assert.deepEqual(v, { live: [], mass: null });
    assert.deepEqual(r.asked, []);
    const same = packBindingSet([B('web', '127.0.0.0/24', 80), B('host', '127.0.0.7', 0), B('all', '127.0.0.0/8', 0), B('idle', '127.0.1.0/24', 0), B('x', '127.0.2.0/24', 0, 'reject')]);
    assert.deepEqual(judge(current, same, compareSets(current, same), reader(traffic).read, policy), { live: [], mass: null });
  });

  test('judge: a mass removal is refused whatever the traffic', () => {
    const many = inForce(Array.from({ length: 300 }, (_, i) => B('bulk', `10.0.${i >> 8}.${i & 255}`, 80)));
    const keep = (n: number) => packBindingSet(Array.from({ length: n }, (_, i) => B('bulk', `10.0.${i >> 8}.${i & 255}`, 80)));
    const v = judge(many, keep(100), compareSets(many, keep(100)), reader({}).read, { ...policy, liveWindowMs: 0 });
    assert.deepEqual(v, { live: [], mass: { removed: 200, inForce: 300 } });
    assert.equal(judge(many, keep(150), compareSets(many, keep(150)), reader({}).read, policy).mass, null, 'exactly half is allowed');
  });
});

describe('the operator\'s view of a change', () => {
  const current = inForce([B('web', '127.0.0.0/24', 80), B('host', '127.0.0.7', 0), B('all', '127.0.0.0/8', 0), B('idle', '127.0.1.0/24', 0)]);
  const traffic = { 100: { hits: 12n, lastHit: ago(3) }, 101: { hits: 4n, lastHit: ago(120) }, 102: { hits: 9n, lastHit: ago(3600) } };
  const next = packBindingSet([B('web', '127.0.0.0/24', 80, 'reject'), B('other', '127.0.0.0/8', 0), B('idle', '127.0.1.0/24', 0), B('new', '127.0.0.0/25', 0)]);
  const report = reportChange(current, next, compareSets(current, next), reader(traffic).read);

  test('rows: most preferred first, counters of the binding in force, zero for one added from a file', () => {
    assert.deepEqual(report.rows.map((r) => `${r.kind} ${(r.from ?? r.to)?.prefix} ${r.from?.label ?? '-'} ${r.to?.label ?? '-'} ${r.from?.hits ?? '-'} ${r.to?.hits ?? '-'}`), [
      'removed 127.0.0.7/32 host - 4 -',
      'added 127.0.0.0/25 - new - 0',
      'changed 127.0.0.0/24 web web 12 12',
      'changed 127.0.0.0/8 all other 9 9',
    ]);
    assert.deepEqual([report.added, report.removed, report.changed, report.unchanged, report.inForce], [1, 1, 2, 1, 4]);
  });

  test('text: a table and a one-line summary that says what the guard would do', () => {
    assert.equal(changeText(report, policy, 'load-bindings'), [
      'change   protocol  prefix        port  label                hits  last hit',
      'removed  tcp       127.0.0.7/32     0  host                    4  2m ago',
      'added    tcp       127.0.0.0/25     0  new                     0  never',
      'changed  tcp       127.0.0.0/24    80  web => <reject:web>    12  3s ago',
      'changed  tcp       127.0.0.0/8      0  all => other            9  1h ago',
      '1 added, 1 removed, 2 changed, 1 unchanged; 2 live bindings withdrawn or redirected (hit within 10m): load-bindings refuses this without --force',
      '',
    ].join('\n'));
    assert.equal(changeText(report, { ...policy, liveWindowMs: 0 }, 'load-bindings').split('\n').at(-2), '1 added, 1 removed, 2 changed, 1 unchanged');
    const none = reportChange(current, current, compareSets(current, current), reader(traffic).read);
    assert.equal(changeText(none, policy, 'load-bindings'), 'no changes: 4 bindings unchanged\n');
  });

  test('JSON: bindings with hits and lastHit; live lists removed or changed bindings hit within the window', () => {
    const doc = changeDoc(report, policy);
    assert.deepEqual(Object.keys(doc), ['added', 'removed', 'changed', 'unchanged', 'live']);
    assert.deepEqual(doc.added, [{ label: 'new', protocol: 'tcp', prefix: '127.0.0.0/25', port: 0, action: 'steer', hits: '0', lastHit: null }]);
    assert.deepEqual(doc.removed, [{ label: 'host', protocol: 'tcp', prefix: '127.0.0.7/32', port: 0, action: 'steer', hits: '4', lastHit: '2025-07-14T21:58:00Z' }]);
    assert.deepEqual(doc.changed[0], {
      from: { label: 'web', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80, action: 'steer', hits: '12', lastHit: '2025-07-14T21:59:57Z' },
      to: { label: 'web', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80, action: 'reject', hits: '12', lastHit: '2025-07-14T21:59:57Z' },
    });
    assert.equal(doc.unchanged, 1);
    assert.deepEqual(doc.live.map((b) => b.prefix), ['127.0.0.7/32', '127.0.0.0/24']);
  });

  test('judgeRows agrees with judge', () => {
    const rows = judgeRows(report.rows, report.removed, report.inForce, policy);
    const v = judge(current, next, compareSets(current, next), reader(traffic).read, policy);
    assert.equal(rows.blocking.length, v.live.length);
    assert.equal(rows.mass, v.mass);
  });

  test('the refusal lists live bindings most preferred first, up to a limit, and says how to proceed', () => {
    const n = MAX_LISTED + 5;
    const many = inForce(Array.from({ length: n }, (_, i) => B('svc', `10.1.${i}.0/24`, 443)));
    const hot: Record<number, Traffic> = {};
    for (let i = 0; i < n; i++) hot[100 + i] = { hits: BigInt(i + 1), lastHit: ago(i) };
    const empty = packBindingSet([]);
    const change = compareSets(many, empty);
    const v = judge(many, empty, change, reader(hot).read, policy);
    const text = refusalMessage(many, empty, v, reader(hot).read, policy, { what: 'load f.json', retry: 'tubectl load-bindings --force f.json', inspect: 'tubectl diff f.json' });
    const lines = text.split('\n');
    assert.equal(lines[0], 'refusing to load f.json, nothing was changed:');
    assert.equal(lines[1], `  ${n} bindings that carried traffic in the last 10m would be withdrawn or redirected:`);
    assert.match(lines[2], /^ {2}change +protocol +prefix +port +label +hits +last hit$/);
    assert.match(lines[3], /^ {2}removed +tcp +10\.1\.0\.0\/24 +443 +svc +1 +0s ago$/);
    assert.equal(lines.filter((l) => /^ {2}removed/.test(l)).length, MAX_LISTED);
    assert.equal(lines.at(-2), '  ... and 5 more');
    assert.equal(lines.at(-1), 'see the whole change with tubectl diff f.json; to apply it anyway: tubectl load-bindings --force f.json');
  });

  test('the refusal of a mass removal says why, without traffic', () => {
    const many = inForce(Array.from({ length: 120 }, (_, i) => B('bulk', `10.2.0.${i}`, 80)));
    const empty = packBindingSet([]);
    const v = judge(many, empty, compareSets(many, empty), reader({}).read, policy);
    const text = refusalMessage(many, empty, v, reader({}).read, policy, { what: 'roll back', retry: 'tubectl rollback --force' });
    assert.equal(text, 'refusing to roll back, nothing was changed:\n' +
      '  it would remove 120 of the 120 bindings in force: more than half, and more than 100, is far more often a broken generator than an intention\n' +
      'to apply it anyway: tubectl rollback --force');
  });
});
