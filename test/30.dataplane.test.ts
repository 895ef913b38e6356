// The real program against the reference rule: random binding sets are
// loaded into a real dispatcher and random lookups are run through the
// program with BPF_PROG_TEST_RUN (no packets), for IPv4 and IPv6 prefixes
// that loopback traffic cannot reach. Every variant of the program this
// kernel runs (full and compat, src/kernel.ts) is loaded on the same maps
// and asked every question: each is held to the same rule.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { isolate } from './lib/isolate.js';
import { refusedTest, variantCases } from './lib/variants.js';
import { tcpServer, udpServer, type Served } from './lib/traffic.js';
import { type Binding, bindingId, matchBinding, observedBinding, parseBinding } from '../src/binding.js';
import { bindingKey } from '../src/bindingset.js';
import { Dispatcher } from '../src/dispatcher.js';
import { native } from '../src/native.js';
import { loadProgramOn, probe } from '../src/probe.js';
import { parsePrefix } from '../src/prefix.js';

const { bpffs } = isolate();
let d: Dispatcher;
const progs = new Map<string, number>();     // variant -> program fd, on d's maps
const cookies = new Map<string, bigint>();   // "label protocol family" -> cookie
const servers: Served[] = [];

// A variant this kernel cannot run is refused, with the version it needs.
const cases = variantCases();
for (const c of cases) if (c.lacks) refusedTest(c, { bpffs });

before(async () => {
  d = Dispatcher.create({ bpffs });
  for (const { program, lacks } of cases) if (!lacks) progs.set(program, loadProgramOn(d.stateDir, program));
  assert.ok(progs.size > 0, 'this kernel runs no variant of the program');
  // Labels a and b have sockets of every kind; c has none.
  for (const label of ['a', 'b']) {
    for (const [family, host] of [[4, '127.0.0.1'], [6, '::1']] as const) {
      const t = await tcpServer(label, host);
      const u = await udpServer(label, host);
      servers.push(t, u);
      cookies.set(`${label} tcp ${family}`, d.registerSocket(label, t.fd).cookie);
      cookies.set(`${label} udp ${family}`, d.registerSocket(label, u.fd).cookie);
    }
  }
});
after(async () => {
  for (const fd of progs.values()) native().close(fd);
  for (const s of servers) await s.close();
  d.close();
  Dispatcher.unload({ bpffs });
});

const v4 = fc.tuple(fc.constantFrom(192, 10), fc.constantFrom(0, 2), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 20 }))
  .map((a) => a.join('.'));
const v6 = fc.tuple(fc.constantFrom('2001:db8', 'fd00'), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 0xffff }))
  .map(([net, sub, host]) => `${net}:${sub}::${host.toString(16)}`);
const probeArb = fc.record({ protocol: fc.constantFrom('tcp', 'udp'), address: fc.oneof(v4, v6), port: fc.constantFrom(53, 80, 443, 8080) });
const bindingArb = fc.oneof(
  fc.record({ a: v4, len: fc.constantFrom(0, 8, 16, 20, 24, 28, 31, 32) }).map(({ a, len }) => `${a}/${len}`),
  fc.record({ a: v6, len: fc.constantFrom(0, 16, 32, 48, 64, 100, 127, 128) }).map(({ a, len }) => `${a}/${len}`),
).chain((prefix) => fc.record({
  prefix: fc.constant(prefix),
  protocol: fc.constantFrom('tcp', 'udp'),
  port: fc.constantFrom(0, 80, 443, 53),
  label: fc.constantFrom('a', 'b', 'c'),
  action: fc.constantFrom('steer', 'steer', 'reject', 'observe'),
}));

/** Hits per binding (by key) of the set in force. */
function hitsByKey(): Map<string, bigint> {
  const set = d.packedBindings();
  const traffic = d.traffic(set.stats!);
  return new Map(Array.from({ length: set.count }, (_, i) => [set.keys.toString('hex', i * 24, (i + 1) * 24), traffic[i].hits]));
}

test('the program picks exactly the binding the reference rule picks, and observe bindings never change it (property)', () => {
  fc.assert(fc.property(fc.array(bindingArb, { maxLength: 40 }), fc.array(probeArb, { minLength: 1, maxLength: 25 }), (raw, probes) => {
    const unique = new Map<string, Binding>();
    for (const r of raw) {
      const b = parseBinding({ label: r.action === 'steer' ? r.label : '', protocol: r.protocol, prefix: r.prefix, port: r.port, action: r.action });
      unique.set(bindingKey(b).toString('hex'), b);
    }
    const set = [...unique.values()];
    d.replaceBindings(set);
    const before = hitsByKey();
    const observed = new Map<string, bigint>();
    for (const p of probes) {
      const { prefix } = parsePrefix(p.address);
      const want = matchBinding(set, p.protocol as 'tcp' | 'udp', prefix.family, prefix.bytes, p.port);
      const counts = observedBinding(set, p.protocol as 'tcp' | 'udp', prefix.family, prefix.bytes, p.port);
      for (const [program, prog] of progs) {
        const got = probe(prog, { protocol: p.protocol as 'tcp' | 'udp', family: prefix.family, address: prefix.bytes, port: p.port });
        if (counts) {
          const k = bindingKey(counts).toString('hex');
          observed.set(k, (observed.get(k) ?? 0n) + 1n);
        }
        const what = `${program} program: ${p.protocol} ${p.address} ${p.port} -> ${want ? `${want.action} ${want.label}` : 'no binding'}`;
        if (!want) {
          assert.deepEqual([got.verdict, got.cookie], ['pass', 0n], what);
        } else if (want.action === 'reject' || want.label === 'c') {
          assert.deepEqual([got.verdict, got.cookie], ['drop', 0n], what);
        } else {
          assert.deepEqual([got.verdict, got.cookie], ['pass', cookies.get(`${want.label} ${p.protocol} ${prefix.family}`)], what);
        }
      }
    }
    // Each connection an observe binding matched first was counted against it.
    const after = hitsByKey();
    for (const b of set.filter((x) => x.action === 'observe')) {
      const k = bindingKey(b).toString('hex');
      assert.equal(after.get(k)! - before.get(k)!, observed.get(k) ?? 0n, `hits of observe ${bindingId(b)}`);
    }
  }), { numRuns: 60 });
});

test('a million bindings fit, and lookups still follow precedence', () => {
  d.replaceBindings([]);
  const many: Binding[] = [];
  for (let i = 0; many.length < 1_000_000; i++) {
    many.push(parseBinding({ label: 'a', protocol: 'udp', prefix: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`, port: 53 }));
  }
  many.push(parseBinding({ label: 'b', protocol: 'udp', prefix: '10.0.0.0/8', port: 0 }));
  assert.equal(d.replaceBindings(many).added, 1_000_001);
  for (const [program, prog] of progs) {
    const at = (addr: string, port: number) => probe(prog, { protocol: 'udp', family: 4, address: parsePrefix(addr).prefix.bytes, port }).cookie;
    assert.equal(at('10.0.1.2', 53), cookies.get('a udp 4'), program);
    assert.equal(at('10.0.1.2', 54), cookies.get('b udp 4'), program);
    assert.equal(at('10.200.1.2', 53), cookies.get('b udp 4'), program);
  }
  d.replaceBindings([]);
});
