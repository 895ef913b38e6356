// tubectl explain's reading of the maps, without root: the winner and the
// losers in precedence order, why each loses, and the verdict to expect.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type Binding, comparePrecedence, matchBinding, parseBinding } from '../src/binding.js';
import { bindingKey, packBindingSet } from '../src/bindingset.js';
import type { RegisteredDestination } from '../src/check.js';
import { type Lookup, type Verdict, agrees, explainLookup, verdictText } from '../src/explain.js';
import { parsePrefix } from '../src/prefix.js';

const b = (label: string, protocol: string, prefix: string, port: number, action: 'steer' | 'reject' = 'steer'): Binding =>
  parseBinding({ label, protocol, prefix, port, action });
const at = (protocol: 'tcp' | 'udp', address: string, port: number): Lookup => {
  const { prefix } = parsePrefix(address);
  return { protocol, family: prefix.family, address: prefix.bytes, port };
};

const set = [
  b('wide', 'tcp', '192.0.0.0/8', 0), b('web', 'tcp', '192.0.2.0/24', 80), b('all24', 'tcp', '192.0.2.0/24', 0),
  b('host', 'tcp', '192.0.2.7', 0), b('', 'tcp', '192.0.2.0/28', 443, 'reject'), b('nosock', 'udp', '2001:db8::/32', 53),
];
const ds: RegisteredDestination[] = ['wide', 'web', 'all24', 'host'].map((label, i) => ({ label, domain: 'ipv4', protocol: 'tcp', sockets: [BigInt(100 + i), 999n] }));

test('the winner, then the losers in precedence order, each with its reason', () => {
  const e = explainLookup(packBindingSet(set), ds, at('tcp', '192.0.2.8', 80));
  assert.deepEqual(e.matches.map((m) => [m.binding.label, m.reason]), [
    ['web', 'wins: the longest matching prefix, /24, and port 80 beats port 0 there'],
    ['all24', 'loses: at /24, port 80 beats port 0'],
    ['wide', 'loses: /24 is longer than /8'],
  ]);
  assert.equal(e.summary, 'goes to web: tcp 192.0.2.0/24 80 -> web wins');
  assert.deepEqual(e.expected, { verdict: 'pass', cookie: 101n }); // the first socket registered
  assert.deepEqual(e.destination, { label: 'web', domain: 'ipv4', protocol: 'tcp', sockets: [101n, 999n] });
  assert.equal(explainLookup(packBindingSet(set), ds, at('tcp', '192.0.2.7', 80)).matches[0].reason, 'wins: the longest matching prefix, /32');
});

test('no binding, a reject, a destination without a socket', () => {
  const none = explainLookup(packBindingSet(set), ds, at('tcp', '198.51.100.1', 80));
  assert.deepEqual([none.matches, none.expected, none.summary], [[], { verdict: 'pass', cookie: null }, "no binding: the kernel's normal lookup (bind())"]);
  const refused = explainLookup(packBindingSet(set), ds, at('tcp', '192.0.2.3', 443));
  assert.deepEqual([refused.expected, refused.summary], [{ verdict: 'drop', cookie: null }, 'refused: tcp 192.0.2.0/28 443 -> reject wins']);
  const hole = explainLookup(packBindingSet(set), ds, at('udp', '2001:db8::1', 53));
  assert.deepEqual(hole.expected, { verdict: 'drop', cookie: null });
  assert.equal(hole.summary, 'refused: udp 2001:db8::/32 53 -> nosock wins, but no ipv6 udp socket is registered for nosock');
  assert.deepEqual(hole.destination, { label: 'nosock', domain: 'ipv6', protocol: 'udp', sockets: [] });
  // An IPv4 prefix never matches IPv6, tcp never udp.
  assert.deepEqual(explainLookup(packBindingSet(set), ds, at('udp', '192.0.2.8', 80)).matches, []);
});

test('agreement with the program', () => {
  const pass = (cookie: bigint | null, reuseport = false): Verdict => ({ verdict: 'pass', cookie, reuseport });
  const drop: Verdict = { verdict: 'drop', cookie: null };
  assert.ok(agrees(pass(5n), pass(5n)));
  assert.ok(!agrees(pass(5n), pass(6n)));
  assert.ok(!agrees(pass(5n), drop));
  assert.ok(agrees(pass(5n), pass(null, true)));
  assert.ok(agrees(pass(null), pass(null)));
  assert.ok(!agrees(pass(null), pass(5n)));
  assert.ok(!agrees(pass(null), pass(null, true)));
  assert.ok(agrees(drop, drop));
  assert.ok(!agrees(drop, pass(null)));
  assert.equal(verdictText(pass(5n)), 'SK_PASS with socket 5');
  assert.equal(verdictText(drop), 'SK_DROP (refused)');
});

const v4 = fc.tuple(fc.constantFrom(192, 10), fc.constantFrom(0, 2), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 20 })).map((a) => a.join('.'));
const v6 = fc.tuple(fc.constantFrom('2001:db8', 'fd00'), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 0xffff }))
  .map(([net, sub, host]) => `${net}:${sub}::${host.toString(16)}`);
const bindingArb = fc.record({
  prefix: fc.oneof(
    fc.record({ a: v4, len: fc.constantFrom(0, 8, 16, 20, 24, 28, 31, 32) }).map(({ a, len }) => `${a}/${len}`),
    fc.record({ a: v6, len: fc.constantFrom(0, 16, 32, 48, 64, 100, 127, 128) }).map(({ a, len }) => `${a}/${len}`)),
  protocol: fc.constantFrom('tcp', 'udp'), port: fc.constantFrom(0, 80, 443, 53), label: fc.constantFrom('a', 'b'), reject: fc.boolean(),
}).map((r) => b(r.reject ? '' : r.label, r.protocol, r.prefix, r.port, r.reject ? 'reject' : 'steer'));

test('explain lists exactly the matching bindings, the reference winner first (property)', () => {
  fc.assert(fc.property(fc.array(bindingArb, { maxLength: 40 }), fc.constantFrom<'tcp' | 'udp'>('tcp', 'udp'), fc.oneof(v4, v6), fc.constantFrom(0, 53, 80, 443), (raw, protocol, address, port) => {
    const unique = [...new Map(raw.map((x) => [bindingKey(x).toString('hex'), x])).values()];
    const q = at(protocol, address, port);
    const e = explainLookup(packBindingSet(unique), [], q);
    const want = unique.filter((x) => matchBinding([x], protocol, q.family, q.address, port) === x).sort(comparePrecedence);
    assert.deepEqual(e.matches.map((m) => bindingKey(m.binding).toString('hex')), want.map((x) => bindingKey(x).toString('hex')));
    const winner = matchBinding(unique, protocol, q.family, q.address, port);
    assert.equal(e.matches[0]?.index === undefined ? undefined : unique[e.matches[0].index], winner);
  }), { numRuns: 500 });
});
