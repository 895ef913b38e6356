// Which sockets may be registered together for one destination.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SocketInfo } from '../src/native.js';
import { registrableGroup } from '../src/registration.js';
import { TubularError } from '../src/errors.js';

const tcp = (over: Partial<SocketInfo> = {}): SocketInfo =>
  ({ domain: 2, type: 1, protocol: 6, listening: true, reusePort: true, address: '127.0.0.1', port: 8080, cookie: 1n, ...over });
const refused = (e: unknown): boolean => e instanceof TubularError && e.code === 'EBADSOCK' && /not one SO_REUSEPORT group/.test(e.message);

test('one socket is its own group, SO_REUSEPORT or not', () => {
  assert.deepEqual(registrableGroup('web', [tcp({ reusePort: false })]), { domain: 'ipv4', protocol: 'tcp' });
});

test('members of one SO_REUSEPORT group register together', () => {
  assert.deepEqual(registrableGroup('web', [tcp(), tcp({ cookie: 2n }), tcp({ cookie: 3n })]), { domain: 'ipv4', protocol: 'tcp' });
});

test('sockets that cannot share connections are refused', () => {
  assert.throws(() => registrableGroup('web', [tcp(), tcp({ reusePort: false })]), refused);
  assert.throws(() => registrableGroup('web', [tcp(), tcp({ port: 8081 })]), refused);
  assert.throws(() => registrableGroup('web', [tcp(), tcp({ address: '127.0.0.2' })]), refused);
  assert.throws(() => registrableGroup('web', [tcp(), tcp({ domain: 10, address: '::1' })]), refused);
  assert.throws(() => registrableGroup('web', [tcp(), tcp({ type: 2, protocol: 17, listening: false })]), refused);
});
