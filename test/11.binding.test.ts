import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Binding, bindingId, comparePrecedence, matchBinding, parseBinding, toJSON } from '../src/binding.js';
import { TubularError } from '../src/errors.js';
import { parsePrefix } from '../src/prefix.js';

const b = (label: string, protocol: string, prefix: string, port: number, action?: 'reject'): Binding =>
  parseBinding({ label, protocol, prefix, port, action });
const addr = (s: string) => parsePrefix(s).prefix.bytes;

test('parseBinding validates every field and collects notes', () => {
  const notes: string[] = [];
  const x = parseBinding({ label: 'web', protocol: 'TCP', prefix: '127.0.0.9/24', port: '80' }, notes);
  assert.deepEqual(toJSON(x), { label: 'web', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80, action: 'steer' });
  assert.equal(notes.length, 1);
  const bad: Array<[Parameters<typeof parseBinding>[0], RegExp]> = [
    [{ label: '', protocol: 'tcp', prefix: '127.0.0.1', port: 80 }, /label/],
    [{ label: 'a b', protocol: 'tcp', prefix: '127.0.0.1', port: 80 }, /label "a b"/],
    [{ label: 'x'.repeat(65), protocol: 'tcp', prefix: '127.0.0.1', port: 80 }, /at most 64/],
    [{ label: 'web', protocol: 'sctp', prefix: '127.0.0.1', port: 80 }, /protocol "sctp"/],
    [{ label: 'web', protocol: 'tcp', prefix: '127.0.0.1', port: 65536 }, /port "65536"/],
    [{ label: 'web', protocol: 'tcp', prefix: '127.0.0.1', port: '8o' }, /port "8o"/],
  ];
  for (const [input, msg] of bad) {
    assert.throws(() => parseBinding(input), (e: unknown) => e instanceof TubularError && msg.test(e.message), JSON.stringify(input));
  }
});

test('a reject binding may omit its label', () => {
  const r = parseBinding({ protocol: 'tcp', prefix: '127.0.0.0/24', port: 80, action: 'reject' });
  assert.equal(r.label, '');
  assert.equal(r.action, 'reject');
  assert.equal(bindingId(r), 'tcp 127.0.0.0/24 80');
});

test('precedence: longest prefix first, then specific port before port 0', () => {
  const list = [b('any8', 'tcp', '127.0.0.0/8', 0), b('p24', 'tcp', '127.0.0.0/24', 80), b('any24', 'tcp', '127.0.0.0/24', 0), b('h', 'tcp', '127.0.0.1', 0)];
  const sorted = [...list].sort(comparePrecedence).map((x) => x.label);
  assert.deepEqual(sorted, ['h', 'p24', 'any24', 'any8']);
});

test('matchBinding is the reference rule', () => {
  const set = [
    b('wide', 'tcp', '127.0.0.0/8', 0),
    b('web', 'tcp', '127.0.0.0/24', 80),
    b('all24', 'tcp', '127.0.0.0/24', 0),
    b('host', 'tcp', '127.0.0.7/32', 0),
    b('dns', 'udp', '127.0.0.0/24', 53),
    b('v6', 'tcp', '::/0', 80),
    b('no', 'tcp', '127.0.0.0/28', 443, 'reject'),
  ];
  const m = (p: 'tcp' | 'udp', a: string, port: number) => matchBinding(set, p, a.includes(':') ? 6 : 4, addr(a), port)?.label;
  assert.equal(m('tcp', '127.0.0.7', 80), 'host');      // /32 port 0 beats /24 port 80
  assert.equal(m('tcp', '127.0.0.8', 80), 'web');       // equal length: specific port wins
  assert.equal(m('tcp', '127.0.0.8', 81), 'all24');
  assert.equal(m('tcp', '127.0.1.1', 80), 'wide');
  assert.equal(m('udp', '127.0.0.8', 53), 'dns');
  assert.equal(m('udp', '127.0.0.8', 54), undefined);
  assert.equal(m('tcp', '127.0.0.3', 443), 'no');       // the reject binding
  assert.equal(m('tcp', '::1', 80), 'v6');
  assert.equal(m('tcp', '::1', 81), undefined);         // an IPv4 prefix never matches IPv6
  assert.equal(m('tcp', '10.0.0.1', 80), undefined);
});
