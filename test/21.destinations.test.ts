// Destinations: room is checked before anything is created, unused ones
// are collected, a socket of another namespace is refused, and a
// registered SO_REUSEPORT group keeps answering while any member listens.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { type Binding, parseBinding } from '../src/binding.js';
import { packBindingSet } from '../src/bindingset.js';
import { Dispatcher, ROOT_RESERVED_DESTINATIONS } from '../src/dispatcher.js';
import { TubularError } from '../src/errors.js';
import { MAX_DESTINATIONS, PIN, readU32, u32 } from '../src/layout.js';
import { type Native, native } from '../src/native.js';
import { isolate } from './lib/isolate.js';
import { type Served, tcpProbe, tcpServer } from './lib/traffic.js';

const { bpffs } = isolate();
const opts = { bpffs };
const B = (label: string, prefix: string, port: number): Binding => parseBinding({ label, protocol: 'tcp', prefix, port });
const labels = (n: number, from = 0): Binding[] => Array.from({ length: n }, (_, i) => B(`l${from + i}`, '127.0.0.0/24', 1000 + from + i));
const children: ChildProcess[] = [];

after(() => {
  for (const c of children) c.kill('SIGKILL');
  try { Dispatcher.unload(opts); } catch { /* not loaded */ }
});

describe('room for destinations', () => {
  test('a replace that would not fit creates nothing and says so; unused destinations are collected', () => {
    const d = Dispatcher.create(opts);
    try {
      d.replaceBindings(labels(MAX_DESTINATIONS - 10));
      assert.equal(d.destinations().length, MAX_DESTINATIONS - 10);
      const before = d.bindings().length;
      const generations = d.generations();
      assert.notEqual(generations.previous, null);
      // What diff warns of, judged as the replace judges it.
      const room = (b: Binding[]) => d.destinationRoom(packBindingSet(b));
      assert.equal(room(labels(MAX_DESTINATIONS + 5)), `the file names 15 new destinations (label, address family, protocol) but only 10 of ${MAX_DESTINATIONS} are free while the bindings in force use the rest`);
      assert.match(room(labels(50, 10_000)) ?? '', /names 50 new destinations .* only 10 of/);
      assert.equal(room(labels(5, 10_000)), undefined);
      assert.throws(() => d.replaceBindings(labels(MAX_DESTINATIONS + 5)),
        (e: unknown) => e instanceof TubularError && e.code === 'ENOSPC' && /nothing was changed/.test(e.message));
      assert.equal(d.destinations().length, MAX_DESTINATIONS - 10, 'no destination was created');
      assert.equal(d.bindings().length, before);
      // Nothing means nothing: the previous generation is still there to roll back to.
      assert.deepEqual(d.generations(), generations);
      // Until the flip the set in force uses its destinations, so old and
      // new must fit together.
      assert.throws(() => d.replaceBindings(labels(50, 10_000)),
        (e: unknown) => e instanceof TubularError && e.code === 'ENOSPC' && /in two steps/.test(e.message));
      assert.deepEqual(d.generations(), generations);
      d.replaceBindings(labels(5, 10_000));
      // The previous generation keeps its destinations, for a rollback...
      assert.equal(d.destinations().length, MAX_DESTINATIONS - 10 + 5);
      // ...until a replace overwrites it: then they are free again.
      d.replaceBindings(labels(50, 10_000));
      assert.deepEqual(d.destinations().map((x) => x.label).sort(), labels(50, 10_000).map((b) => b.label).sort());
      d.replaceBindings([]);
      d.replaceBindings(labels(MAX_DESTINATIONS));
      assert.equal(d.destinations().length, MAX_DESTINATIONS);
      assert.throws(() => d.bind(B('one-more', '127.0.0.0/24', 9)), (e: unknown) => e instanceof TubularError && e.code === 'ENOSPC');
      // Freeing one binding's label makes room: no generation uses its destination.
      d.unbind(B('l0', '127.0.0.0/24', 1000));
      assert.equal(d.destinations().length, MAX_DESTINATIONS - 1);
      d.bind(B('one-more', '127.0.0.0/24', 9));
      d.replaceBindings([]);
      d.replaceBindings([B('z', '127.0.0.1', 9)]);
      assert.deepEqual(d.destinations().map((x) => x.label), ['z']);
    } finally {
      d.close();
      Dispatcher.unload(opts);
    }
  });

  test('registrations by other users never take the last destinations, which stay for root', async () => {
    const d = Dispatcher.create(opts);
    const server = await tcpServer('late');
    try {
      d.replaceBindings(labels(MAX_DESTINATIONS - ROOT_RESERVED_DESTINATIONS));
      assert.throws(() => d.registerSocket('someone', server.fd, { owner: 1000 }),
        (e: unknown) => e instanceof TubularError && e.code === 'ENOSPC' && /the last 64 of 4096 destinations are kept for root/.test(e.message));
      assert.equal(d.destinations().length, MAX_DESTINATIONS - ROOT_RESERVED_DESTINATIONS, 'nothing was created');
      // An existing destination is not a new one: a user may register there.
      d.registerSocket('l7', server.fd, { owner: 1000 });
      d.registerSocket('root-late', server.fd);
      assert.equal(d.destinations().length, MAX_DESTINATIONS - ROOT_RESERVED_DESTINATIONS + 1);
    } finally {
      await server.close();
      d.close();
      Dispatcher.unload(opts);
    }
  });

  test('a label replaced by bind or by a replace, and a socket unregistered, leave no destination behind; a registered one stays', async () => {
    const d = Dispatcher.create(opts);
    const server = await tcpServer('svc');
    try {
      d.bind(B('a', '127.0.0.0/24', 80));
      d.bind(B('b', '127.0.0.0/24', 80));
      assert.deepEqual(d.destinations().map((x) => [x.label, x.bindings]), [['b', 1]]);
      d.registerSocket('lonely', server.fd);
      assert.deepEqual(d.destinations().map((x) => [x.label, x.bindings, x.sockets.length]), [['b', 1, 0], ['lonely', 0, 1]]);
      const registered = (only?: (x: { label: string }) => boolean): string[][] =>
        d.registrations(only).map((x) => [x.label, String(x.registered), String(x.owner)]).sort();
      assert.deepEqual(registered(), [['b', 'false', 'null'], ['lonely', 'true', 'null']]);
      // Only the destinations the filter accepts are looked up in the socket slots.
      assert.deepEqual(registered((x) => x.label === 'b'), [['b', 'false', 'null'], ['lonely', 'false', 'null']]);
      // Replaces collect destinations neither generation uses, unless a socket is registered there.
      d.replaceBindings(labels(3));
      d.replaceBindings(labels(2));
      assert.deepEqual(d.destinations().map((x) => [x.label, x.bindings, x.sockets.length]).sort(),
        [['l0', 1, 0], ['l1', 1, 0], ['l2', 0, 0], ['lonely', 0, 1]], 'b is gone, l2 kept for a rollback, lonely kept for its socket');
      d.replaceBindings(labels(1));
      assert.deepEqual(d.destinations().map((x) => x.label).sort(), ['l0', 'l1', 'lonely']);
      d.unregisterSocket({ label: 'lonely', domain: 'ipv4', protocol: 'tcp' });
      assert.deepEqual(d.destinations().map((x) => x.label).sort(), ['l0', 'l1']);
      d.replaceBindings([B('b', '127.0.0.0/24', 80)]);
    } finally {
      await server.close();
      d.close();
      Dispatcher.unload(opts);
    }
  });
});

// Two listeners in one SO_REUSEPORT group, in Python; "close N" on stdin closes member N.
const GROUP = `
import os, select, socket, sys
ms = []
for i in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64)
    ms.append(s)
print(os.getpid(), ms[0].fileno(), ms[1].fileno(), flush=True)
names = {ms[0]: b"member0", ms[1]: b"member1"}
while True:
    ready, _, _ = select.select(list(names) + [sys.stdin], [], [])
    for r in ready:
        if r is sys.stdin:
            line = sys.stdin.readline()
            if not line: sys.exit(0)
            s = ms[int(line.split()[1])]; names.pop(s); s.close()
            print("closed", flush=True)
        else:
            c, _ = r.accept(); c.sendall(names[r]); c.close()
`;

function lines(child: ChildProcess): () => Promise<string> {
  const queue: string[] = [];
  const waiting: ((l: string) => void)[] = [];
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const w = waiting.shift();
      if (w) w(line); else queue.push(line);
    }
  });
  return () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((ok) => waiting.push(ok)));
}

describe('sockets', () => {
  test('a registered SO_REUSEPORT group answers while any member listens, then refuses', async () => {
    const d = Dispatcher.create(opts);
    try {
      const py = spawn('python3', ['-c', GROUP, '7001'], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.push(py);
      const next = lines(py);
      const [pid, fd0, fd1] = (await next()).split(' ').map(Number);
      const n = native();
      const pidfd = n.pidfdOpen(pid);
      const fds = [n.pidfdGetfd(pidfd, fd0), n.pidfdGetfd(pidfd, fd1)];
      n.close(pidfd);
      const r = d.registerSocket('group', fds);
      for (const fd of fds) n.close(fd); // the service holds them; the dispatcher needs no copy
      assert.equal(r.cookies.length, 2);
      d.bind(B('group', '127.0.0.0/24', 7000));
      const answers = new Set<string>();
      for (let i = 0; i < 40; i++) answers.add(await tcpProbe('127.0.0.7', 7000));
      assert.ok([...answers].every((a) => a === 'member0' || a === 'member1'), [...answers].join());
      py.stdin!.write('close 0\n');
      assert.equal(await next(), 'closed');
      for (let i = 0; i < 20; i++) assert.equal(await tcpProbe('127.0.0.7', 7000), 'member1');
      assert.equal(d.destinations()[0].sockets.length, 1);
      assert.equal(d.registrations()[0].registered, true, 'slot 0 is empty, slot 1 still holds a socket');
      py.stdin!.write('close 1\n');
      assert.equal(await next(), 'closed');
      assert.equal(await tcpProbe('127.0.0.7', 7000, '127.0.21.1'), 'ECONNREFUSED'); // a fresh source: counted once
      const dest = d.destinations()[0];
      assert.deepEqual([dest.socket, dest.misses], [null, 1n]);
      assert.equal(d.registrations()[0].registered, false);
      py.stdin!.end();
    } finally {
      d.close();
      Dispatcher.unload(opts);
    }
  });

  test('the program tries only the socket slots a writer filled: raised before they are filled, lowered after they are emptied', async () => {
    const d = Dispatcher.create(opts);
    const n = native();
    const slots = (id: number): number => {
      const fd = n.getPinned(path.join(d.stateDir, PIN.socketSlots), 0);
      try {
        const v = Buffer.alloc(4);
        assert.ok(n.mapLookup(fd, u32(id), v));
        return readU32(v, 0);
      } finally {
        n.close(fd);
      }
    };
    let single: Served | undefined;
    try {
      const py = spawn('python3', ['-c', GROUP, '7011'], { stdio: ['pipe', 'pipe', 'inherit'] });
      children.push(py);
      const next = lines(py);
      const [pid, fd0, fd1] = (await next()).split(' ').map(Number);
      const pidfd = n.pidfdOpen(pid);
      const fds = [n.pidfdGetfd(pidfd, fd0), n.pidfdGetfd(pidfd, fd1)];
      n.close(pidfd);
      const { id } = d.registerSocket('slots', fds);
      for (const fd of fds) n.close(fd);
      d.bind(B('slots', '127.0.0.0/24', 7010));
      assert.equal(slots(id), 2);
      // A single socket in place of the group: one slot is tried, and it answers.
      single = await tcpServer('single');
      d.registerSocket('slots', single.fd);
      assert.equal(slots(id), 1);
      assert.equal(await tcpProbe('127.0.0.7', 7010), 'single');
      d.unregisterSocket({ label: 'slots', domain: 'ipv4', protocol: 'tcp' });
      assert.equal(slots(id), 0);
      assert.equal(await tcpProbe('127.0.0.7', 7010), 'ECONNREFUSED');
      py.stdin!.end();
    } finally {
      await single?.close();
      d.close();
      Dispatcher.unload(opts);
    }
  });

  // Before Linux 5.14 getsockopt(SO_NETNS_COOKIE) fails with ENOPROTOOPT:
  // the socket is then looked for among the namespace's own sockets.
  const withoutNetnsCookie = (): Native => {
    const n = native();
    const enoprotoopt = (): never => { throw Object.assign(new Error('getsockopt(SO_NETNS_COOKIE): Protocol not available'), { code: 'ENOPROTOOPT', errno: 92 }); };
    return { ...n, socketNetnsCookie: enoprotoopt, ownNetnsCookie: enoprotoopt };
  };
  for (const [how, sys] of [['SO_NETNS_COOKIE', undefined], ['without SO_NETNS_COOKIE (Linux before 5.14)', withoutNetnsCookie()]] as const) {
    test(`a socket of another network namespace is refused before anything changes, one of ours registered (${how})`, async () => {
      const ns = `tubd${process.pid}`;
      execFileSync('ip', ['netns', 'add', ns]);
      const d = Dispatcher.create({ ...opts, sys });
      const ours = await tcpServer('ours', '127.0.0.1', 8080);
      try {
        const py = spawn('ip', ['netns', 'exec', ns, 'python3', '-c',
          'import os,socket,sys\ns=socket.socket()\ns.bind(("127.0.0.1",8080))\ns.listen()\nprint(os.getpid(),s.fileno(),flush=True)\nsys.stdin.read()'],
        { stdio: ['pipe', 'pipe', 'inherit'] });
        children.push(py);
        const [pid, fd] = (await lines(py)()).split(' ').map(Number);
        const n = native();
        const pidfd = n.pidfdOpen(pid);
        const theirs = n.pidfdGetfd(pidfd, fd);
        n.close(pidfd);
        assert.throws(() => d.registerSocket('web', theirs),
          (e: unknown) => e instanceof TubularError && e.code === 'EBADSOCK' && /^socket #1 belongs to another network namespace .* create it inside that namespace/.test(e.message));
        n.close(theirs);
        assert.deepEqual(d.destinations(), []);
        py.kill('SIGKILL');
        assert.equal(d.registerSocket('web', ours.fd).label, 'web');
      } finally {
        await ours.close();
        d.close();
        Dispatcher.unload(opts);
        execFileSync('ip', ['netns', 'del', ns]);
      }
    });
  }
});
