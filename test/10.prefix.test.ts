import assert from 'node:assert/strict';
import { test } from 'node:test';
import { INTO_IPV6, containsPrefix, formatPrefix, parsePrefix, parsePrefixInto } from '../src/prefix.js';
import { TubularError } from '../src/errors.js';

test('an address without a length is a host prefix', () => {
  assert.equal(formatPrefix(parsePrefix('127.0.0.1').prefix), '127.0.0.1/32');
  assert.equal(formatPrefix(parsePrefix('::1').prefix), '::1/128');
});

test('IPv6 prefixes print in RFC 5952 form', () => {
  assert.equal(formatPrefix(parsePrefix('2001:0DB8:0:0::/32').prefix), '2001:db8::/32');
});

test('host bits are masked, and the parse says so', () => {
  const r = parsePrefix('192.0.2.77/24');
  assert.equal(formatPrefix(r.prefix), '192.0.2.0/24');
  assert.match(r.masked ?? '', /host bits.*192\.0\.2\.0\/24/);
  assert.equal(parsePrefix('192.0.2.0/24').masked, undefined);
  assert.equal(formatPrefix(parsePrefix('2001:db8::ffff/120').prefix), '2001:db8::ff00/120');
  assert.equal(formatPrefix(parsePrefix('10.1.2.3/0').prefix), '0.0.0.0/0');
});

test('bad prefixes name the token and what to do', () => {
  for (const bad of ['127.0.0.300', '127.0.0.1/33', '::1/129', 'example.com', '', '1.2.3.4/', '1.2.3.4/-1', '1.2.3', '::ffff:1.2.3.4']) {
    assert.throws(() => parsePrefix(bad), (e: unknown) => e instanceof TubularError && e.code === 'EINVAL' && e.message.includes(`"${bad}"`), bad);
  }
});

test('the byte parser refuses IPv4-mapped addresses only', () => {
  const out = new Uint8Array(16);
  // Refused here: the reference parser (parsePrefix) then names the problem.
  for (const mapped of ['::ffff:a00:1', '0:0:0:0:0:ffff:0:0/96', '::FFFF:7f00:7']) assert.equal(parsePrefixInto(mapped, out, 0), -1, mapped);
  // One bit away from the mapped range, in each word of the test.
  for (const plain of ['::fffe:a00:1', '::7fff:a00:1', '::ff:ffff:a00:1', '1::ffff:a00:1', '::ffff:0:0:0', '2001:db8::ffff:ffff:1']) {
    const r = parsePrefixInto(plain, out, 0);
    assert.ok(r >= 0 && (r & INTO_IPV6) !== 0, plain);
    assert.deepEqual([...out], [...parsePrefix(plain).prefix.bytes], plain);
  }
});

test('containment follows length and leading bits, never across families', () => {
  const p = (s: string) => parsePrefix(s).prefix;
  assert.ok(containsPrefix(p('127.0.0.0/8'), p('127.0.0.1')));
  assert.ok(containsPrefix(p('127.0.0.0/24'), p('127.0.0.0/24')));
  assert.ok(!containsPrefix(p('127.0.0.0/24'), p('127.0.0.0/8')));
  assert.ok(!containsPrefix(p('127.0.1.0/24'), p('127.0.0.1')));
  assert.ok(!containsPrefix(p('::/0'), p('127.0.0.1')));
  assert.ok(containsPrefix(p('0.0.0.0/0'), p('198.51.100.7')));
});
