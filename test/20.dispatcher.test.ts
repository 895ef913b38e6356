// The dispatcher over real traffic: a real program attached to a throwaway
// namespace, real sockets, real TCP and UDP connections on loopback.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { ok, tubectlFor } from './lib/tubectl.js';
import { refusedTest, variantCases } from './lib/variants.js';
import { tcpProbe, tcpServer, udpProbe, udpServer, type Served } from './lib/traffic.js';
import { runHelper, startProbeLoop } from './lib/children.js';
import { type Binding, bindingId, parseBinding, toJSON } from '../src/binding.js';
import { bindingAt } from '../src/bindingset.js';
import { Dispatcher } from '../src/dispatcher.js';
import { TubularError } from '../src/errors.js';
import { netnsInode } from '../src/netns.js';

const { bpffs } = isolate();
const opts = { bpffs };
const tubectl = tubectlFor(bpffs);
const stateDir = path.join(bpffs, `${netnsInode('/proc/self/ns/net')}_dispatcher`);
const B = (label: string, protocol: string, prefix: string, port: number, action?: 'reject'): Binding =>
  parseBinding({ label, protocol, prefix, port, action });
const code = (c: string) => (e: unknown) => e instanceof TubularError && e.code === c;

describe('lifecycle', () => {
  test('create pins the state, a second create fails clearly, unload removes everything', () => {
    const d = Dispatcher.create(opts);
    assert.deepEqual(readdirSync(stateDir).sort(),
      ['binding_set_0', 'binding_set_1', 'binding_stats', 'bindings', 'blocks', 'blocks_0', 'blocks_1', 'clock', 'destination_metrics', 'destinations', 'generation', 'journal', 'lengths', 'lengths_0', 'lengths_1', 'link', 'lock', 'meta', 'program', 'socket_slots', 'sockets', 'sources']);
    const s = d.status();
    assert.ok(s.programId! > 0 && s.linkId! > 0);
    assert.equal(s.bindings, 0);
    d.close();
    assert.throws(() => Dispatcher.create(opts), (e: unknown) => code('ELOADED')(e) && /already loaded.*unload/.test((e as Error).message));
    Dispatcher.unload(opts);
    assert.equal(existsSync(stateDir), false);
    assert.deepEqual(readdirSync(bpffs).filter((f) => !f.endsWith('.debug')), []);
    assert.throws(() => Dispatcher.open(opts), (e: unknown) => code('ENOTLOADED')(e) && /tubectl load/.test((e as Error).message));
    assert.throws(() => Dispatcher.unload(opts), code('ENOTLOADED'));
  });
});

describe('traffic', () => {
  const cases = variantCases();
  for (const c of cases) {
    const { program } = c;
    if (c.lacks) {
      refusedTest(c, opts);
      continue;
    }
    describe(`${program} program`, () => {
      let d: Dispatcher;
      const servers: Record<string, Served> = {};
      const register = (name: string, s: Served, label = name) => d.registerSocket(label, s.fd);

      before(async () => {
        d = Dispatcher.create({ ...opts, program });
        assert.equal(d.status().programVariant, program);
        for (const name of ['wide', 'web', 'all24', 'host', 'v6host', 'v6all']) {
          servers[name] = await tcpServer(name, name.startsWith('v6') ? '::1' : '127.0.0.1');
          register(name, servers[name]);
        }
        for (const name of ['dns', 'dnsall']) {
          servers[name] = await udpServer(name);
          register(name, servers[name]);
        }
        servers.v6dns = await udpServer('v6dns', '::1');
        register('v6dns', servers.v6dns);
        d.bind(B('wide', 'tcp', '127.0.0.0/8', 0));
        d.bind(B('web', 'tcp', '127.0.0.0/24', 80));
        d.bind(B('all24', 'tcp', '127.0.0.0/24', 0));
        d.bind(B('host', 'tcp', '127.0.0.7', 0));
        d.bind(B('dns', 'udp', '127.0.0.0/24', 53));
        d.bind(B('dnsall', 'udp', '127.0.0.0/25', 0));
        d.bind(B('v6host', 'tcp', '::1', 80));
        d.bind(B('v6all', 'tcp', '::/0', 0));
        d.bind(B('v6dns', 'udp', '::/64', 53));
      });
      after(async () => {
        for (const s of Object.values(servers)) await s.close();
        d.close();
        Dispatcher.unload(opts);
      });

      test('TCP over IPv4 follows precedence: longest prefix, then specific port', async () => {
        assert.equal(await tcpProbe('127.0.0.7', 80), 'host');   // /32 port 0 beats /24 port 80
        assert.equal(await tcpProbe('127.0.0.8', 80), 'web');    // equal length: port 80 beats port 0
        assert.equal(await tcpProbe('127.0.0.8', 81), 'all24');
        assert.equal(await tcpProbe('127.0.1.1', 80), 'wide');
      });

      test('UDP over IPv4 follows precedence', async () => {
        assert.equal(await udpProbe('127.0.0.8', 53), 'dnsall'); // /25 beats /24 port 53
        assert.equal(await udpProbe('127.0.0.200', 53), 'dns');
        assert.equal(await udpProbe('127.0.0.9', 5353), 'dnsall');
      });

      test('IPv6 over ::1, and IPv4 prefixes never match IPv6', async () => {
        assert.equal(await tcpProbe('::1', 80), 'v6host');
        assert.equal(await tcpProbe('::1', 443), 'v6all');
        assert.equal(await udpProbe('::1', 53), 'v6dns');
        assert.equal(await udpProbe('::1', 54), 'ECONNREFUSED');  // no IPv6 UDP binding, nothing listens
      });

      test('unmatched traffic reaches a normally bound socket', async () => {
        const plain = await udpServer('plain', '127.0.0.200', 4444);
        try {
          assert.equal(await udpProbe('127.0.0.200', 4444), 'plain');
        } finally {
          await plain.close();
        }
      });

      test('a reject binding refuses TCP and UDP at the transport layer, and counts', async () => {
        d.bind(B('', 'tcp', '127.0.0.0/28', 8080, 'reject'));
        d.bind(B('plaintext', 'udp', '127.0.0.0/28', 8080, 'reject'));
        const direct = await tcpServer('direct', '127.0.0.1', 8080);
        try {
          assert.equal(await tcpProbe('127.0.0.1', 8080), 'ECONNREFUSED');
          assert.equal(await tcpProbe('127.0.0.5', 8080), 'ECONNREFUSED');
          assert.equal(await udpProbe('127.0.0.5', 8080), 'ECONNREFUSED');
          assert.equal(await tcpProbe('127.0.0.17', 8080), 'all24');   // outside the /28
          const counts = Object.fromEntries(d.rejectCounters().map((r) => [`${r.protocol} ${r.port}`, r.rejected]));
          assert.deepEqual(counts, { 'tcp 8080': 2n, 'udp 8080': 1n });
          const listed = d.bindings().filter((b) => b.action === 'reject').map(toJSON);
          assert.deepEqual(listed.map((b) => b.label).sort(), ['', 'plaintext']);
        } finally {
          await direct.close();
          d.unbind(B('', 'tcp', '127.0.0.0/28', 8080, 'reject'));
          d.unbind(B('plaintext', 'udp', '127.0.0.0/28', 8080, 'reject'));
        }
        assert.equal(d.rejectCounters().length, 0);
      });

      test('a binding whose destination has no socket refuses, counted as a miss', async () => {
        const direct = await udpServer('direct', '127.0.0.200', 9090);
        try {
          d.bind(B('ghost', 'udp', '127.0.0.200', 9090));
          assert.equal(await udpProbe('127.0.0.200', 9090), 'ECONNREFUSED');
          const ghost = d.destinations().find((x) => x.label === 'ghost')!;
          assert.equal(ghost.socket, null);
          assert.equal(ghost.lookups, 1n);
          assert.equal(ghost.misses, 1n);
          d.unbind(B('ghost', 'udp', '127.0.0.200', 9090));
          assert.equal(await udpProbe('127.0.0.200', 9090), 'direct');
          assert.equal(d.destinations().find((x) => x.label === 'ghost'), undefined);
        } finally {
          await direct.close();
        }
      });

      test('counters count lookups per destination', async () => {
        const before = d.destinations().find((x) => x.label === 'web' && x.protocol === 'tcp')!.lookups;
        await tcpProbe('127.0.0.9', 80);
        await tcpProbe('127.0.0.9', 80);
        const now = d.destinations().find((x) => x.label === 'web')!;
        assert.equal(now.lookups - before, 2n);
        assert.equal(now.misses, 0n);
        assert.equal(now.bindings, 1);
        assert.notEqual(now.socket, null);
      });

      test('registering again replaces the socket; unregistering refuses', async () => {
        const second = await tcpServer('web2');
        try {
          const r = d.registerSocket('web', second.fd);
          assert.notEqual(r.replaced, null);
          assert.equal(await tcpProbe('127.0.0.8', 80), 'web2');
          d.unregisterSocket({ label: 'web', domain: 'ipv4', protocol: 'tcp' });
          assert.equal(await tcpProbe('127.0.0.8', 80), 'ECONNREFUSED');
          assert.throws(() => d.unregisterSocket({ label: 'web', domain: 'ipv4', protocol: 'tcp' }), code('ENOENT'));
        } finally {
          register('web', servers.web);
          await second.close();
        }
        assert.equal(await tcpProbe('127.0.0.8', 80), 'web');
      });

      test('sockets that cannot be registered are refused with a reason', async () => {
        const net = await import('node:net');
        const dgram = await import('node:dgram');
        const unbound = dgram.createSocket('udp4');
        const client = net.connect({ host: '127.0.0.1', port: servers.wide.port });
        await new Promise((ok) => client.once('connect', ok));
        try {
          const fdOf = (s: unknown) => (s as { _handle: { fd: number } })._handle.fd;
          assert.throws(() => d.registerSocket('x', fdOf(client)), (e: unknown) => code('EBADSOCK')(e) && /not listening/.test((e as Error).message));
          unbound.bind(0, '127.0.0.1');
          await new Promise((ok) => unbound.once('listening', ok));
          assert.ok(d.registerSocket('udpx', fdOf(unbound)).cookie > 0n);
          d.unregisterSocket({ label: 'udpx', domain: 'ipv4', protocol: 'udp' });
          assert.throws(() => d.registerSocket('x', 0), /socket|ENOTSOCK/i);
        } finally {
          client.destroy();
          unbound.close();
        }
        assert.equal(d.destinations().find((x) => x.label === 'x'), undefined);
      });

      test('a registration outlives the process that made it', async () => {
        const s = await tcpServer('fromchild');
        try {
          d.bind(B('fromchild', 'tcp', '127.0.0.0/24', 7000));
          const out = await runHelper('register-fd', [bpffs, 'fromchild'], [s.fd]);
          assert.match(out, /^ipv4 tcp \d+/);
          assert.equal(await tcpProbe('127.0.0.3', 7000), 'fromchild');
        } finally {
          d.unbind(B('fromchild', 'tcp', '127.0.0.0/24', 7000));
          await s.close();
        }
      });

      test('state survives the process: a second handle sees the same bindings', () => {
        const other = Dispatcher.open({ ...opts, readOnly: true });
        try {
          assert.deepEqual(other.bindings().map(bindingId).sort(), d.bindings().map(bindingId).sort());
          assert.throws(() => other.bind(B('x', 'tcp', '127.0.0.1', 1)), code('EPERM'));
        } finally {
          other.close();
        }
      });

      // Upgrades run in a tubectl of their own, as an operator runs them: a
      // synchronous load here would stall the servers of this process while
      // the kernel verifies the program (seconds under an emulated CPU).
      const upgrade = async (...args: string[]): Promise<{ from: number; to: number; variant: string }> => {
        const out = ok(await tubectl(['upgrade', ...args])).stdout;
        const m = /program (\d+) -> (\d+) \((?:\w+ -> )?(\w+):/.exec(out);
        assert.ok(m, out);
        return { from: Number(m[1]), to: Number(m[2]), variant: m[3] };
      };

      test('upgrade swaps the program while a connection loop runs, losing nothing', async () => {
        const loop = await startProbeLoop('127.0.0.8', 80);
        const ids = new Set<number>();
        // 20 upgrades, or as many as 20 s allow (at least 3) where verifying
        // the program takes seconds, as under an emulated CPU.
        const started = Date.now();
        let done = 0;
        for (; done < 20 && (done < 3 || Date.now() - started < 20_000); done++) {
          const { from, to, variant } = await upgrade();
          assert.equal(variant, program); // auto keeps the variant in force
          ids.add(from);
          ids.add(to);
          await new Promise((ok) => setTimeout(ok, 20));
        }
        const { total, seen } = await loop.stop();
        assert.ok(total > 0);
        assert.deepEqual(Object.keys(seen), ['web'], JSON.stringify(seen));
        assert.equal(ids.size, done + 1); // a new program each time
        assert.equal(d.status().programId, [...ids].pop());
      });

      const other = program === 'full' ? 'compat' : 'full';
      if (cases.find((x) => x.program === other)!.lacks) {
        test('an upgrade to the other variant is refused on this kernel, and the program in force stays', () => {
          const before = d.status().programId;
          assert.throws(() => d.upgrade({ program: other }), code('EINCOMPAT'));
          assert.equal(d.status().programId, before);
        });
      } else test('an upgrade to the other variant and back keeps bindings, sockets and counters, losing no connection', async () => {
        const bindings = d.bindings().map(bindingId).sort();
        const sockets = d.destinations().map((x) => [x.label, x.socket]);
        const lookups = () => d.destinations().find((x) => x.label === 'web' && x.protocol === 'tcp')!.lookups;
        const hits = () => {
          const set = d.packedBindings();
          const i = Array.from({ length: set.count }, (_, k) => k).find((k) => bindingId(bindingAt(set, k)) === bindingId(B('web', 'tcp', '127.0.0.0/24', 80)))!;
          return d.traffic(set.stats!.subarray(i, i + 1))[0].hits;
        };
        const [lookupsBefore, hitsBefore] = [lookups(), hits()];
        const loop = await startProbeLoop('127.0.0.8', 80);
        assert.equal((await upgrade('--program', other)).variant, other);
        assert.equal(d.status().programVariant, other);
        await new Promise((ok) => setTimeout(ok, 50));
        assert.equal((await upgrade('--program', program)).variant, program);
        const { total, seen } = await loop.stop();
        assert.deepEqual(Object.keys(seen), ['web'], JSON.stringify(seen));
        assert.equal(d.status().programVariant, program);
        assert.deepEqual(d.bindings().map(bindingId).sort(), bindings);
        assert.deepEqual(d.destinations().map((x) => [x.label, x.socket]), sockets);
        // Both programs counted every connection of the loop into the same maps.
        assert.equal(lookups() - lookupsBefore, BigInt(total));
        assert.equal(hits() - hitsBefore, BigInt(total));
      });
    });
  }
});

describe('binding sets', () => {
  test('two processes binding at once leave consistent state', async () => {
    const d = Dispatcher.create(opts);
    try {
      await Promise.all([runHelper('bind-many', [bpffs, '1', '150', 'left']), runHelper('bind-many', [bpffs, '2', '150', 'right'])]);
      const all = d.bindings();
      assert.equal(all.length, 300);
      const dests = d.destinations();
      const count = (label: string, protocol: string) => all.filter((b) => b.label === label && b.protocol === protocol).length;
      for (const x of dests) assert.equal(x.bindings, count(x.label, x.protocol), `${x.label} ${x.protocol}`);
      assert.equal(dests.length, 4);
    } finally {
      d.close();
      Dispatcher.unload(opts);
    }
  });

  test('replace: identical set is a no-op; labels and destinations follow the new set', () => {
    const d = Dispatcher.create(opts);
    try {
      const a = [B('a', 'tcp', '127.0.0.0/24', 80), B('b', 'udp', '127.0.0.0/24', 0), B('', 'tcp', '127.0.0.0/28', 25, 'reject')];
      assert.deepEqual(d.replaceBindings(a), { added: 3, removed: 0, changed: 0, unchanged: 0, generation: 2 });
      assert.deepEqual(d.replaceBindings(a), { added: 0, removed: 0, changed: 0, unchanged: 3, generation: 2 });
      // A bind or an unbind in between is seen: the set is no longer the file's.
      d.bind(B('x', 'tcp', '127.0.0.9', 1));
      assert.deepEqual(d.replaceBindings(a), { added: 0, removed: 1, changed: 0, unchanged: 3, generation: 3 });
      d.unbind(a[0]);
      assert.deepEqual(d.replaceBindings(a), { added: 1, removed: 0, changed: 0, unchanged: 2, generation: 4 });
      d.bind(B('other', 'tcp', '127.0.0.0/24', 80));
      assert.deepEqual(d.replaceBindings(a), { added: 0, removed: 0, changed: 1, unchanged: 2, generation: 5 });
      const b = [B('c', 'tcp', '127.0.0.0/24', 80), B('b', 'udp', '127.0.0.0/24', 0)];
      assert.deepEqual(d.replaceBindings(b), { added: 0, removed: 1, changed: 1, unchanged: 1, generation: 6 });
      assert.deepEqual(d.bindings().map(toJSON).sort((x, y) => x.label.localeCompare(y.label)), b.map(toJSON).sort((x, y) => x.label.localeCompare(y.label)));
      // The previous generation (a) keeps its destinations, for a rollback.
      assert.deepEqual(d.destinations().map((x) => `${x.label}:${x.bindings}`), ['a:0', 'b:1', 'c:1']);
      assert.throws(() => d.replaceBindings([...b, b[0]]), (e: unknown) => code('EINVAL')(e) && /twice/.test((e as Error).message));
      assert.equal(d.bindings().length, 2);
      d.replaceBindings([]);
      assert.equal(d.bindings().length, 0);
      assert.deepEqual(d.destinations().map((x) => `${x.label}:${x.bindings}`), ['b:0', 'c:0']);
      d.replaceBindings([B('z', 'tcp', '127.0.0.1', 9)]);
      assert.deepEqual(d.destinations().map((x) => `${x.label}:${x.bindings}`), ['z:1'], 'no generation uses b and c any more');
    } finally {
      d.close();
      Dispatcher.unload(opts);
    }
  });

  test('a bind into a full binding set rebuilds it larger and keeps every binding', async () => {
    const d = Dispatcher.create(opts);
    const grown = await tcpServer('grown');
    try {
      d.registerSocket('grown', grown.fd);
      const host = (i: number) => `127.1.${i >> 8}.${i & 255}`;
      // A set of 600 is sized for 1200: the singles below overflow it.
      d.replaceBindings(Array.from({ length: 600 }, (_, i) => B('grown', 'tcp', host(i), 5000)));
      for (let i = 600; i < 1300; i++) d.bind(B('grown', 'tcp', host(i), 5000));
      assert.equal(d.bindings().length, 1300);
      assert.equal(d.destinations()[0].bindings, 1300);
      assert.equal(await tcpProbe(host(5), 5000), 'grown');
      assert.equal(await tcpProbe(host(1299), 5000), 'grown');
      assert.equal(await tcpProbe(host(1300), 5000), 'ECONNREFUSED');
    } finally {
      await grown.close();
      d.close();
      Dispatcher.unload(opts);
    }
  });

  test('replace is atomic: connections during repeated replaces see only the old or the new set', async () => {
    const d = Dispatcher.create(opts);
    const a = await tcpServer('a');
    const b = await tcpServer('b');
    const fallback = await tcpServer('fallback', '0.0.0.0', 6000);
    try {
      d.registerSocket('a', a.fd);
      d.registerSocket('b', b.fd);
      // Set A and set B share no binding: a replace that is not atomic shows
      // a moment with neither, and the connection falls through to `fallback`.
      const setA = [B('a', 'tcp', '127.0.0.0/24', 6000), B('a', 'tcp', '127.0.0.7', 0)];
      const setB = [B('b', 'tcp', '127.0.0.0/25', 0), B('b', 'tcp', '127.0.0.6/31', 6000)];
      d.replaceBindings(setA);
      const loop = await startProbeLoop('127.0.0.7', 6000);
      for (let i = 0; i < 60; i++) {
        d.replaceBindings(i % 2 ? setA : setB);
        await new Promise((ok) => setImmediate(ok));
      }
      const { total, seen } = await loop.stop();
      assert.ok(total > 0);
      for (const who of Object.keys(seen)) assert.ok(who === 'a' || who === 'b', `observed ${who}: ${JSON.stringify(seen)}`);
    } finally {
      await Promise.all([a.close(), b.close(), fallback.close()]);
      d.close();
      Dispatcher.unload(opts);
    }
  });
});
