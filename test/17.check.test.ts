// tubectl check's analysis, without root: each kind of finding on a crafted
// set, a clean set, and reachability and reject-over-live against brute
// force over small address spaces.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type Binding, matchBinding, parseBinding } from '../src/binding.js';
import type { Traffic } from '../src/binding-stats.js';
import { bindingKey, packBindingSet } from '../src/bindingset.js';
import { type Finding, type RegisteredDestination, check, unbindCommand } from '../src/check.js';
import { findingsText } from '../src/cli/check.js';
import { buildForest } from '../src/prefix-forest.js';
import type { Family } from '../src/prefix.js';
import { reachability } from '../src/reachability.js';

const b = (label: string, protocol: string, prefix: string, port: number, action: 'steer' | 'reject' = 'steer'): Binding =>
  parseBinding({ label, protocol, prefix, port, action });
const dest = (label: string, domain: 'ipv4' | 'ipv6', protocol: 'tcp' | 'udp', ...sockets: bigint[]): RegisteredDestination =>
  ({ label, domain, protocol, sockets });
const NOW = Date.parse('2025-07-14T12:00:00Z');
const hit = (agoMs: number, hits = 5n): Traffic => ({ hits, lastHit: new Date(NOW - agoMs) });
const idle: Traffic = { hits: 0n, lastHit: null };

function run(bindings: Binding[], destinations: RegisteredDestination[], traffic?: Traffic[], liveWindowMs = 600_000): Finding[] {
  return check({ set: packBindingSet(bindings), destinations, traffic, now: NOW, liveWindowMs });
}
const summary = (bindings: Binding[], fs: Finding[]) => fs.map((f) => [f.severity, f.kind, f.binding < 0 ? f.label : bindings[f.binding].label]);

test('a good configuration is clean', () => {
  const set = [
    b('web', 'tcp', '192.0.2.0/24', 80), b('web', 'tcp', '2001:db8::/64', 80), b('wide', 'tcp', '192.0.0.0/16', 0),
    b('dns', 'udp', '192.0.2.53', 53), b('', 'tcp', '203.0.113.0/24', 25, 'reject'),
  ];
  const ds = [dest('web', 'ipv4', 'tcp', 1n), dest('web', 'ipv6', 'tcp', 2n), dest('wide', 'ipv4', 'tcp', 3n), dest('dns', 'ipv4', 'udp', 4n)];
  assert.deepEqual(run(set, ds, set.map(() => hit(1000))), []);
  assert.deepEqual(run([], []), []);
});

test('blackholes: a steer binding whose destination has no socket', () => {
  const set = [b('web', 'tcp', '192.0.2.0/24', 80), b('web', 'tcp', '2001:db8::/64', 80), b('api', 'udp', '192.0.2.0/24', 0)];
  const fs = run(set, [dest('web', 'ipv4', 'tcp', 1n)]);
  assert.deepEqual(summary(set, fs), [['error', 'blackhole', 'web'], ['error', 'blackhole', 'api']]);
  assert.equal(fs[0].binding, 1); // the IPv6 one: web has an IPv4 socket only
  assert.match(fs[0].message, /^tcp 2001:db8::\/64 80 -> web refuses every connection it decides: no ipv6 tcp socket is registered for web \(web has sockets for ipv4 tcp only\)$/);
  assert.match(fs[0].fix, /tubectl register-pid PID web tcp ADDRESS PORT.*tubectl unbind web tcp 2001:db8::\/64 80/);
  assert.match(fs[1].message, /api has no socket registered at all/);
});

test('unreachable: covered by longer bindings for the port or port 0, or beaten on every port', () => {
  const set = [
    b('old', 'tcp', '192.0.2.0/24', 80),          // covered by the two /25s
    b('a', 'tcp', '192.0.2.0/25', 80),
    b('b', 'tcp', '192.0.2.128/25', 0),
    b('fine', 'tcp', '192.0.2.0/24', 443),          // only half covered (port 80 does not count)
    b('x', 'tcp', '192.0.2.128/26', 443), b('y', 'tcp', '192.0.2.192/26', 0),
    b('v6old', 'udp', '2001:db8::/127', 0),        // covered by both /128s of port 0
    b('v6a', 'udp', '2001:db8::', 0), b('v6b', 'udp', '2001:db8::1', 0),
    b('', 'tcp', '10.0.0.0/8', 53, 'reject'),       // a reject can be unreachable too
    b('n', 'tcp', '10.0.0.0/9', 0), b('m', 'tcp', '10.128.0.0/9', 53),
  ];
  const ds = ['old', 'a', 'b', 'fine', 'x', 'y', 'n', 'm'].map((l) => dest(l, 'ipv4', 'tcp', 1n))
    .concat(['v6old', 'v6a', 'v6b'].map((l) => dest(l, 'ipv6', 'udp', 2n)));
  const fs = run(set, ds);
  assert.deepEqual(fs.map((f) => [f.kind, set[f.binding].label || 'reject']), [['unreachable', 'v6old'], ['unreachable', 'old'], ['unreachable', 'reject']]);
  const old = fs[1];
  assert.deepEqual(old.related.map((i) => set[i].label), ['a', 'b']);
  assert.match(old.message, /^tcp 192.0.2.0\/24 80 -> old can never decide a connection: longer bindings for port 80 or every port cover all of 192.0.2.0\/24 \(tcp 192.0.2.0\/25 80 -> a; tcp 192.0.2.128\/25 0 -> b\)$/);
  assert.match(old.fix, /tubectl unbind old tcp 192.0.2.0\/24 80/);
  assert.match(fs[2].fix, /tubectl unbind --reject tcp 10.0.0.0\/8 53/);
});

test('unreachable: a port-0 binding beaten on every port', () => {
  // With 3 ports in the world, a /24 port 0 with /24 ports 1, 2 and 3 never wins.
  const set = [b('any', 'tcp', '192.0.2.0/24', 0), b('p1', 'tcp', '192.0.2.0/24', 1), b('p2', 'tcp', '192.0.2.0/24', 2), b('p3', 'tcp', '192.0.2.0/25', 3)];
  const r = (bs: Binding[]) => {
    const set = packBindingSet(bs);
    return Array.from(reachability(set, buildForest(set), 3).unreachable);
  };
  assert.deepEqual(r(set), [0, 0, 0, 0]);           // port 3 on the upper /25 still reaches it
  assert.deepEqual(r([...set, b('p3b', 'tcp', '192.0.2.128/25', 3)]), [1, 0, 0, 0, 0]);
  assert.deepEqual(r([...set.slice(0, 3), b('p3', 'tcp', '192.0.2.0/24', 3)]), [1, 0, 0, 0]);
});

test('unreachable: coverage found through prefixes that bind other ports only', () => {
  // The /26 binds port 443 only, but its two /27s bind port 80: together
  // with the other /26 (port 0) they cover the /25 for port 80.
  const set = [
    b('old', 'tcp', '192.0.2.0/25', 80), b('tls', 'tcp', '192.0.2.0/26', 443),
    b('a', 'tcp', '192.0.2.0/27', 80), b('b', 'tcp', '192.0.2.32/27', 80), b('c', 'tcp', '192.0.2.64/26', 0),
  ];
  const r = (bs: Binding[]) => {
    const set = packBindingSet(bs);
    return Array.from(reachability(set, buildForest(set)).unreachable);
  };
  assert.deepEqual(r(set), [1, 0, 0, 0, 0]);
  assert.deepEqual(r(set.filter((x) => x.label !== 'b')), [0, 0, 0, 0]);
  const fs = run(set, ['old', 'tls', 'a', 'b', 'c'].map((l) => dest(l, 'ipv4', 'tcp', 1n)));
  assert.deepEqual(fs[0].related.map((i) => set[i].label), ['a', 'b', 'c']);
});

test('reject bindings in front of live steer bindings are warnings', () => {
  const set = [
    b('web', 'tcp', '192.0.2.0/24', 0),                 // live
    b('', 'tcp', '192.0.2.0/24', 80, 'reject'),          // the HTTPS-only switch: beats it on port 80
    b('quiet', 'tcp', '198.51.100.0/24', 0),            // no recent traffic
    b('', 'tcp', '198.51.100.0/25', 0, 'reject'),
    b('', 'udp', '192.0.2.0/25', 0, 'reject'),          // other protocol: nothing behind it
  ];
  const ds = [dest('web', 'ipv4', 'tcp', 1n), dest('quiet', 'ipv4', 'tcp', 2n)];
  const traffic = [hit(3000, 12n), idle, hit(3_600_000), idle, idle];
  const fs = run(set, ds, traffic);
  assert.deepEqual(fs.map((f) => [f.severity, f.kind, f.binding]), [['warning', 'reject-covers-live', 1]]);
  assert.match(fs[0].message, /^tcp 192.0.2.0\/24 80 -> reject refuses connections that 1 steer binding with traffic in the last 10m would otherwise get: tcp 192.0.2.0\/24 0 -> web \(12 hits, last 3s ago\)$/);
  assert.match(fs[0].fix, /tubectl unbind --reject tcp 192.0.2.0\/24 80/);
  assert.deepEqual(run(set, ds, traffic, 7_200_000).map((f) => f.binding), [3, 1]); // a 2h window sees "quiet" too
  assert.deepEqual(run(set, ds, traffic, 0), []);                                      // 0: nothing is live
});

test('orphan sockets: registered, but no steer binding leads to them', () => {
  const set = [b('web', 'tcp', '192.0.2.0/24', 80), b('gone', 'tcp', '192.0.2.0/24', 25, 'reject')];
  const fs = run(set, [dest('web', 'ipv4', 'tcp', 1n), dest('web', 'ipv6', 'tcp', 2n), dest('gone', 'ipv4', 'tcp', 3n, 4n), dest('none', 'ipv4', 'udp')]);
  assert.deepEqual(fs.map((f) => [f.severity, f.kind, f.binding, f.label, f.destination?.domain]), [
    ['warning', 'orphan-socket', -1, 'gone', 'ipv4'], ['warning', 'orphan-socket', -1, 'web', 'ipv6'],
  ]);
  assert.match(fs[0].message, /^the 2 sockets registered for gone ipv4 tcp \(cookie 3, 4\) get no traffic/);
  assert.match(fs[0].fix, /tubectl bind gone tcp PREFIX PORT.*tubectl unregister gone ipv4 tcp/);
});

test('as text, at most 10 findings of one kind and label, then a count', () => {
  const set = Array.from({ length: 13 }, (_, i) => b('api', 'tcp', `192.0.2.${i}`, 80)).concat([b('web', 'tcp', '198.51.100.0/24', 80)]);
  const text = findingsText(run(set, []));
  assert.equal(text.match(/^error: blackhole: /gm)?.length, 11);
  assert.match(text, /\n\.\.\. and 3 more blackhole findings for label api \(tubectl check --json lists them all\)\n\n14 errors, 0 warnings\n$/);
});

// ---- against brute force ----

const PORTS = 3;
/** A small universe per family: the last HOST_BITS bits vary; shorter prefixes all contain it. */
const HOST_BITS = 3;
const UNIVERSE = { 4: { base: [10, 1, 2, 0], bits: 32 }, 6: { base: [0x20, 1, 0xd, 0xb8, ...new Array<number>(12).fill(0)], bits: 128 } } as const;

function prefixText(family: Family, host: number, len: number): string {
  const bytes = [...UNIVERSE[family].base];
  bytes[bytes.length - 1] = host;
  if (family === 4) return `${bytes.join('.')}/${len}`;
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return `${groups.join(':')}/${len}`;
}

/**
 * Bindings crowded into one family and protocol (so that prefixes cover
 * each other often), with a few of the others mixed in.
 */
const setArb = (maxLength: number) => fc.record({ family: fc.constantFrom<Family>(4, 6), protocol: fc.constantFrom('tcp', 'udp') }).chain((main) =>
  fc.array(fc.record({
    other: fc.integer({ min: 0, max: 5 }).map((x) => x === 0),
    host: fc.integer({ min: 0, max: (1 << HOST_BITS) - 1 }),
    deep: fc.integer({ min: 0, max: HOST_BITS }),
    short: fc.constantFrom(0, 8, 20, 28, 64, 100, 124),
    isShort: fc.integer({ min: 0, max: 6 }).map((x) => x === 0),
    port: fc.integer({ min: 0, max: PORTS }),
    label: fc.constantFrom('a', 'b'),
    reject: fc.integer({ min: 0, max: 4 }).map((x) => x === 0),
  }).map((r) => {
    const family: Family = r.other ? (main.family === 4 ? 6 : 4) : main.family;
    const protocol = r.other ? (main.protocol === 'tcp' ? 'udp' : 'tcp') : main.protocol;
    const full = UNIVERSE[family].bits;
    const len = r.isShort ? Math.min(r.short, full - HOST_BITS - 1) : full - HOST_BITS + r.deep;
    return parseBinding({ label: r.label, protocol, prefix: prefixText(family, r.host, len), port: r.port, action: r.reject ? 'reject' : 'steer' });
  }), { maxLength }));

function unique(raw: Binding[]): Binding[] {
  const m = new Map<string, Binding>();
  for (const x of raw) m.set(bindingKey(x).toString('hex'), x);
  return [...m.values()];
}

/** Every address that can tell bindings apart: the universe, and one just outside each short prefix length used. */
function witnesses(set: readonly Binding[], family: Family): Uint8Array[] {
  const u = UNIVERSE[family];
  const out: Uint8Array[] = [];
  for (let h = 0; h < 1 << HOST_BITS; h++) out.push(Uint8Array.from(u.base.map((v, i) => (i === u.base.length - 1 ? h : v))));
  for (const len of new Set(set.filter((x) => x.prefix.family === family && x.prefix.length < u.bits - HOST_BITS).map((x) => x.prefix.length))) {
    const a = Uint8Array.from(u.base);
    a[len >> 3] ^= 0x80 >> (len & 7);
    out.push(a);
  }
  return out;
}
const ports = (port: number): number[] => (port === 0 ? Array.from({ length: PORTS }, (_, i) => i + 1) : [port]);

test('reachability equals brute force over small spaces, IPv4 and IPv6 (property)', () => {
  fc.assert(fc.property(setArb(40), (raw) => {
    const set = unique(raw);
    const packed = packBindingSet(set);
    const got = reachability(packed, buildForest(packed), PORTS).unreachable;
    set.forEach((x, i) => {
      const reachable = witnesses(set, x.prefix.family).some((a) => ports(x.port).some((q) => matchBinding(set, x.protocol, x.prefix.family, a, q) === x));
      assert.equal(got[i] === 1, !reachable, `${x.protocol} ${x.prefix.family} len ${x.prefix.length} port ${x.port}`);
    });
  }), { numRuns: 1000 });
});

test('reject-covers-live equals brute force: the reject beats the live steer binding somewhere (property)', () => {
  const matches = (x: Binding, fam: Family, a: Uint8Array, q: number) => x.prefix.family === fam && (x.port === 0 || x.port === q) &&
    matchBinding([x], x.protocol, fam, a, q) === x;
  fc.assert(fc.property(setArb(25), fc.array(fc.boolean(), { minLength: 25, maxLength: 25 }), (raw, live) => {
    const set = unique(raw);
    const traffic = set.map((_, i) => (live[i] ? hit(1000) : idle));
    const packed = packBindingSet(set);
    const unreachable = reachability(packed, buildForest(packed), PORTS).unreachable;
    const fs = check({ set: packed, destinations: [], traffic, now: NOW, liveWindowMs: 60_000, portCount: PORTS }).filter((f) => f.kind === 'reject-covers-live');
    const want = set.flatMap((r, i) => {
      if (r.action !== 'reject' || unreachable[i]) return [];
      const behind = set.filter((s, j) => s.action === 'steer' && live[j] && s.protocol === r.protocol && witnesses(set, r.prefix.family).some((a) =>
        [1, 2, 3].some((q) => matches(r, r.prefix.family, a, q) && matches(s, r.prefix.family, a, q) && matchBinding([s, r], r.protocol, r.prefix.family, a, q) === r)));
      return behind.length > 0 ? [[i, behind.length]] : [];
    });
    assert.deepEqual(fs.map((f) => [f.binding, f.related.length + (f.moreRelated ? 100 : 0)]).sort(), want.map(([i, n]) => [i, n > 5 ? 105 : n]).sort());
  }), { numRuns: 300 });
});

test('check is fast on 100k bindings', () => {
  const set: Binding[] = [];
  for (let i = 0; set.length < 100_000; i++) {
    set.push(b(`l${i % 50}`, i % 3 ? 'tcp' : 'udp', `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`, i % 7 === 0 ? 0 : 80 + (i % 5)));
    if (i % 4 === 0) set.push(b('v6', 'tcp', `2001:db8:${(i >> 8).toString(16)}::${(i & 255).toString(16)}/128`, 0));
  }
  set.push(b('wide', 'tcp', '10.0.0.0/8', 0), b('wide', 'udp', '10.0.0.0/8', 80));
  const ds = Array.from({ length: 50 }, (_, i) => dest(`l${i}`, 'ipv4', 'tcp', BigInt(i + 1)));
  const t0 = performance.now();
  const fs = run(set, ds, set.map(() => idle));
  const ms = performance.now() - t0;
  assert.ok(ms < 3000, `check took ${ms.toFixed(0)} ms`);
  assert.ok(fs.some((f) => f.kind === 'blackhole' && f.label === 'v6'));
});

test('a fix names the command that removes the binding: --observe for an observe binding, tubectl as the run named it', () => {
  const set = packBindingSet([parseBinding({ label: 'o', protocol: 'tcp', prefix: '192.0.2.0/24', port: 80, action: 'observe' })]);
  assert.equal(unbindCommand(set, 0), 'tubectl unbind --observe o tcp 192.0.2.0/24 80');
  assert.equal(unbindCommand(set, 0, { now: 0, tubectl: 'tubectl --netns /run/netns/edge' }), 'tubectl --netns /run/netns/edge unbind --observe o tcp 192.0.2.0/24 80');
});
