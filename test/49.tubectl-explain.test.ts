// tubectl explain in a throwaway namespace: what it says about real
// connections (and what those connections then do), its argument checks,
// a planted disagreement between maps and program, and a property test:
// on random binding sets, IPv4 and IPv6, its winner is the reference
// matcher's and the loaded program agrees with it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { isolate } from './lib/isolate.js';
import { tcpProbe, tcpServer, udpProbe, udpServer, type Served } from './lib/traffic.js';
import { ok, tubectlFor } from './lib/tubectl.js';
import { type Binding, type BindingJSON, matchBinding, parseBinding, toJSON } from '../src/binding.js';
import { bindingKey } from '../src/bindingset.js';
import { run } from '../src/cli/main.js';
import { Dispatcher } from '../src/dispatcher.js';
import { LENGTHS_VALUE_SIZE, innerPin, lengthsIndex, u32 } from '../src/layout.js';
import { native } from '../src/native.js';
import { parsePrefix } from '../src/prefix.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
let d: Dispatcher;
const servers: Record<string, Served> = {};
const cookies = new Map<string, bigint>(); // "label protocol family" -> cookie

interface VerdictJSON { verdict: 'pass' | 'drop'; cookie: string | null; reuseport: boolean }
interface ExplainJSON {
  protocol: string;
  address: string;
  port: number;
  binding: BindingJSON | null;
  summary: string;
  matches: Array<{ binding: BindingJSON; wins: boolean; reason: string }>;
  destination: { label: string; domain: string; protocol: string; sockets: Array<{ cookie: string; owners: Array<{ pid: number; command: string; fd: number }> }>; ownersComplete: boolean } | null;
  expected: VerdictJSON;
  program: VerdictJSON;
  agrees: boolean;
}

/** tubectl explain in this process, through the same entry point as the command line. */
async function explainHere(...args: string[]): Promise<{ code: number; doc: ExplainJSON; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await run(['--bpffs', bpffs, 'explain', ...args, '--json'], {
    stdout: { write: (s: string) => { stdout += s; } }, stderr: { write: (s: string) => { stderr += s; } }, getenv: () => undefined, pid: process.pid,
  });
  return { code, doc: JSON.parse(stdout) as ExplainJSON, stderr };
}

const b = (label: string, protocol: string, prefix: string, port: number, action: 'steer' | 'reject' = 'steer'): Binding =>
  parseBinding({ label: action === 'reject' ? '' : label, protocol, prefix, port, action });

before(async () => {
  d = Dispatcher.create({ bpffs });
  // Labels a and b have sockets of every kind; c has none.
  for (const label of ['a', 'b']) {
    for (const [family, host] of [[4, '127.0.0.1'], [6, '::1']] as const) {
      const t = await tcpServer(label, host);
      const u = await udpServer(label, host);
      servers[`${label} tcp ${family}`] = t;
      servers[`${label} udp ${family}`] = u;
      cookies.set(`${label} tcp ${family}`, d.registerSocket(label, t.fd).cookie);
      cookies.set(`${label} udp ${family}`, d.registerSocket(label, u.fd).cookie);
    }
  }
});
after(async () => {
  for (const s of Object.values(servers)) await s.close();
  d.close();
  Dispatcher.unload({ bpffs });
});

describe('on real traffic', () => {
  before(() => {
    d.replaceBindings([
      b('a', 'tcp', '127.0.0.0/8', 0), b('b', 'tcp', '127.0.0.0/24', 80), b('a', 'tcp', '127.0.0.0/24', 0),
      b('c', 'tcp', '127.0.0.64/26', 80), b('', 'tcp', '127.0.0.128/25', 80, 'reject'),
      b('b', 'udp', '127.0.0.0/24', 53), b('b', 'tcp', '::1', 0),
    ]);
  });

  test('a steered connection: the winner, the losers and why, the socket and its process', async () => {
    const { code, doc } = await explainHere('tcp', '127.0.0.9', '80');
    assert.equal(code, 0);
    assert.deepEqual(doc.binding, { label: 'b', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80, action: 'steer' });
    assert.deepEqual(doc.matches.map((m) => [m.binding.label, m.binding.prefix, m.binding.port, m.wins, m.reason]), [
      ['b', '127.0.0.0/24', 80, true, 'wins: the longest matching prefix, /24, and port 80 beats port 0 there'],
      ['a', '127.0.0.0/24', 0, false, 'loses: at /24, port 80 beats port 0'],
      ['a', '127.0.0.0/8', 0, false, 'loses: /24 is longer than /8'],
    ]);
    const cookie = String(cookies.get('b tcp 4'));
    assert.deepEqual(doc.program, { verdict: 'pass', cookie, reuseport: false });
    assert.deepEqual(doc.expected, doc.program);
    assert.equal(doc.agrees, true);
    assert.deepEqual(doc.destination?.sockets.map((s) => [s.cookie, s.owners.some((o) => o.pid === process.pid && o.fd === servers['b tcp 4'].fd)]), [[cookie, true]]);
    assert.equal(await tcpProbe('127.0.0.9', 80), 'b');
  });

  test('as an operator reads it', async () => {
    const r = await tubectl(['explain', 'tcp', '127.0.0.9', '80']);
    assert.equal(r.code, 0);
    const cookie = cookies.get('b tcp 4');
    assert.equal(r.stdout.replace(/process \d+ \(\S+\) fd \d+/, 'process P (node) fd N'), [
      'tcp 127.0.0.9 port 80: goes to b: tcp 127.0.0.0/24 80 -> b wins',
      '',
      'Matching bindings, most preferred first:',
      '  tcp 127.0.0.0/24 80 -> b  wins: the longest matching prefix, /24, and port 80 beats port 0 there',
      '  tcp 127.0.0.0/24 0 -> a   loses: at /24, port 80 beats port 0',
      '  tcp 127.0.0.0/8 0 -> a    loses: /24 is longer than /8',
      '',
      'Destination b ipv4 tcp: 1 socket',
      `  socket ${cookie}: process P (node) fd N`,
      '',
      `The loaded program (BPF_PROG_TEST_RUN): SK_PASS with socket ${cookie}, as the maps say`,
      '',
    ].join('\n'));
  });

  test('refused by a reject, refused for want of a socket, left to the kernel, over UDP and IPv6', async () => {
    const reject = await explainHere('tcp', '127.0.0.200', '80');
    assert.deepEqual([reject.code, reject.doc.summary, reject.doc.program.verdict, reject.doc.agrees], [0, 'refused: tcp 127.0.0.128/25 80 -> reject wins', 'drop', true]);
    assert.equal(await tcpProbe('127.0.0.200', 80), 'ECONNREFUSED');

    const hole = await explainHere('tcp', '127.0.0.70', '80');
    assert.deepEqual([hole.code, hole.doc.program.verdict, hole.doc.destination?.sockets], [0, 'drop', []]);
    assert.match(hole.doc.summary, /no ipv4 tcp socket is registered for c$/);
    assert.equal(await tcpProbe('127.0.0.70', 80), 'ECONNREFUSED');

    const dns = await explainHere('udp', '127.0.0.53', '53');
    assert.deepEqual([dns.code, dns.doc.binding?.label, dns.doc.program.cookie], [0, 'b', String(cookies.get('b udp 4'))]);
    assert.equal(await udpProbe('127.0.0.53', 53), 'b');

    const v6 = await explainHere('tcp', '::1', '8080');
    assert.deepEqual([v6.code, v6.doc.address, v6.doc.binding?.prefix, v6.doc.program.cookie], [0, '::1', '::1/128', String(cookies.get('b tcp 6'))]);
    assert.equal(await tcpProbe('::1', 8080), 'b');

    // No binding for UDP on this port: the kernel's own lookup finds a's socket by its bound address.
    const own = servers['a udp 4'].port;
    const none = await explainHere('udp', '127.0.0.1', String(own));
    assert.deepEqual([none.code, none.doc.binding, none.doc.summary, none.doc.program], [0, null, "no binding: the kernel's normal lookup (bind())", { verdict: 'pass', cookie: null, reuseport: false }]);
    assert.equal(await udpProbe('127.0.0.1', own), 'a');
  });
});

// Two TCP listeners in one SO_REUSEPORT group, in Python (Node 20 cannot make one).
const GROUP = `
import socket, sys
ms = []
for i in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", 0 if not ms else ms[0].getsockname()[1])); s.listen(64)
    ms.append(s)
print(ms[0].getsockname()[1], flush=True)
sys.stdin.read()
`;

test('a socket of an SO_REUSEPORT group: the program selects one, the kernel does not say which', async () => {
  const group = spawn('python3', ['-c', GROUP], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    const [line] = await once(group.stdout!, 'data') as [Buffer];
    const port = line.toString().trim();
    ok(await tubectl(['register-pid', String(group.pid), 'grp', 'tcp', '127.0.0.1', port]));
    d.replaceBindings([b('grp', 'tcp', '192.0.2.0/24', 0)]);
    const { code, doc } = await explainHere('tcp', '192.0.2.1', '80');
    assert.equal(code, 0);
    assert.deepEqual([doc.program, doc.agrees], [{ verdict: 'pass', cookie: null, reuseport: true }, true]);
    assert.equal(doc.destination?.sockets[0].owners[0]?.pid, group.pid);
    const text = await tubectl(['explain', 'tcp', '192.0.2.1', '80']);
    assert.match(text.stdout, /\nThe loaded program \(BPF_PROG_TEST_RUN\): SK_PASS with a socket of an SO_REUSEPORT group \(the kernel does not say which member when asked this way\), as the maps say\n$/);
  } finally {
    group.stdin!.end();
    await once(group, 'exit');
  }
});

test('arguments are checked strictly: usage errors exit 2', async () => {
  for (const args of [
    ['sctp', '127.0.0.1', '80'], ['tcp', 'fe80::1%lo', '80'], ['tcp', '127.0.0.1/32', '80'], ['tcp', '127.0.0.01', '80'],
    ['tcp', '::ffff:127.0.0.1', '80'], ['tcp', ' 127.0.0.1', '80'], ['tcp', 'localhost', '80'], ['tcp', '127.0.0.1', '65536'],
    ['tcp', '127.0.0.1', '+80'], ['tcp', '127.0.0.1', '8o'], ['tcp', '127.0.0.1', ''], ['tcp', '127.0.0.1', '0x50'], ['tcp', '127.0.0.1'],
    ['tcp', '127.0.0.1', '080'], ['tcp', '127.0.0.1', '00'], ['tcp', 'x'.repeat(100_000), '80'],
  ]) {
    const r = await tubectl(['explain', ...args]);
    assert.equal(r.code, 2, JSON.stringify(args));
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^tubectl: /, JSON.stringify(args));
    assert.ok(r.stderr.length < 600, `a message of ${r.stderr.length} characters: the input is echoed cut`);
  }
});

const v4 = fc.tuple(fc.constantFrom(192, 10), fc.constantFrom(0, 2), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 20 })).map((a) => a.join('.'));
const v6 = fc.tuple(fc.constantFrom('2001:db8', 'fd00'), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 0xffff }))
  .map(([net, sub, host]) => `${net}:${sub}::${host.toString(16)}`);
const probeArb = fc.record({ protocol: fc.constantFrom<'tcp' | 'udp'>('tcp', 'udp'), address: fc.oneof(v4, v6), port: fc.constantFrom(53, 80, 443, 8080) });
const bindingArb = fc.oneof(
  fc.record({ a: v4, len: fc.constantFrom(0, 8, 16, 20, 24, 28, 31, 32) }).map(({ a, len }) => `${a}/${len}`),
  fc.record({ a: v6, len: fc.constantFrom(0, 16, 32, 48, 64, 100, 127, 128) }).map(({ a, len }) => `${a}/${len}`),
).chain((prefix) => fc.record({
  prefix: fc.constant(prefix), protocol: fc.constantFrom('tcp', 'udp'), port: fc.constantFrom(0, 80, 443, 53),
  label: fc.constantFrom('a', 'b', 'c'), reject: fc.boolean(),
}));

test('explain names the reference winner and the program agrees, on random sets (property)', async () => {
  await fc.assert(fc.asyncProperty(fc.array(bindingArb, { maxLength: 40 }), fc.array(probeArb, { minLength: 1, maxLength: 6 }), async (raw, probes) => {
    const unique = new Map<string, Binding>();
    for (const r of raw) {
      const x = b(r.label, r.protocol, r.prefix, r.port, r.reject ? 'reject' : 'steer');
      unique.set(bindingKey(x).toString('hex'), x);
    }
    const set = [...unique.values()];
    d.replaceBindings(set);
    for (const p of probes) {
      const { prefix } = parsePrefix(p.address);
      const want = matchBinding(set, p.protocol, prefix.family, prefix.bytes, p.port);
      const { code, doc, stderr } = await explainHere(p.protocol, p.address, String(p.port));
      const what = `${p.protocol} ${p.address} ${p.port}`;
      assert.deepEqual([code, doc.agrees, stderr], [0, true, ''], what);
      assert.deepEqual(doc.binding, want ? toJSON(want) : null, what);
      const cookie = want && want.action === 'steer' && want.label !== 'c' ? String(cookies.get(`${want.label} ${p.protocol} ${prefix.family}`)) : null;
      assert.deepEqual(doc.program, { verdict: want && cookie === null ? 'drop' : 'pass', cookie, reuseport: false }, what);
    }
  }), { numRuns: 40 });
});

test('a program that disagrees with the maps is reported loudly, with exit 1', async () => {
  d.replaceBindings([b('a', 'tcp', '192.0.2.0/24', 80)]);
  assert.equal((await explainHere('tcp', '192.0.2.1', '80')).doc.agrees, true);
  // Plant the bug: the lengths filters of both generations say nothing is bound on tcp port 80.
  const n = native();
  for (const slot of [0, 1]) {
    const fd = n.getPinned(path.join(d.stateDir, innerPin('lengths', slot)), 0);
    try {
      n.mapUpdate(fd, u32(lengthsIndex('tcp', 80)), Buffer.alloc(LENGTHS_VALUE_SIZE), 0);
    } finally {
      n.close(fd);
    }
  }
  const { code, doc, stderr } = await explainHere('tcp', '192.0.2.1', '80');
  assert.equal(code, 1);
  assert.deepEqual([doc.agrees, doc.expected.verdict, doc.program], [false, 'pass', { verdict: 'pass', cookie: null, reuseport: false }]);
  assert.match(stderr, /^tubectl: DISAGREEMENT: for tcp 192\.0\.2\.1 port 80 the maps call for SK_PASS with socket \d+, but the loaded program answered SK_PASS without a socket/);
  const text = await tubectl(['explain', 'tcp', '192.0.2.1', '80']);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /\nDISAGREEMENT: the maps call for SK_PASS with socket \d+\n$/);
});
