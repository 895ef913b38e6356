// Many clients at once, silent clients, too many clients: nobody blocks
// anybody, idle connections are dropped, the cap is enforced with EBUSY.
// Requests that arrive together are written in one turn of the lock, each
// with its own answer.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isolate } from './lib/isolate.js';
import { readMeta } from './lib/meta.js';
import { startDaemon, type Daemon, workDir } from './lib/daemon.js';
import { tcpProbe, tcpServer, type Served } from './lib/traffic.js';
import { parseBinding } from '../src/binding.js';
import { HandoffClient, type HandoffError, type Reply, ping } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';
import { META_WRITES } from '../src/layout.js';
import { native } from '../src/native.js';

const { bpffs } = isolate();
const dir = workDir();
const socket = path.join(dir, 'tubulard.sock');

describe('clients', () => {
  let d: Dispatcher;
  let daemon: Daemon;
  const servers: Served[] = [];

  before(async () => {
    d = Dispatcher.create({ bpffs });
    daemon = await startDaemon({ bpffs, socket, args: ['--idle-timeout', '1', '--max-clients', '60'] });
  });
  after(async () => {
    await daemon.stop();
    for (const s of servers) await s.close();
    d.close();
    Dispatcher.unload({ bpffs });
  });

  test('50 concurrent clients each register their own socket, and traffic reaches each', async () => {
    for (let i = 0; i < 50; i++) {
      servers.push(await tcpServer(`svc-${i}`, '127.0.0.1'));
      d.bind(parseBinding({ label: `svc-${i}`, protocol: 'tcp', prefix: `127.0.3.${i}`, port: 80 }));
    }
    const clients = servers.map(() => HandoffClient.connect(socket)); // all connected at once
    try {
      const replies = await Promise.all(clients.map(async (c, i) => {
        const first = await c.request({ op: 'register', label: `svc-${i}` }, [servers[i].fd]);
        const second = await c.request({ op: 'ping' });
        return [first.ok, second.ok];
      }));
      assert.deepEqual(replies, servers.map(() => [true, true]));
    } finally {
      for (const c of clients) c.close();
    }
    assert.equal(d.destinations().filter((x) => x.socket !== null).length, 50);
    for (let i = 0; i < 50; i += 7) assert.equal(await tcpProbe(`127.0.3.${i}`, 80), `svc-${i}`);
  });

  test('requests that arrive together are written in one turn of the lock, each with its own answer', async () => {
    const writesBegun = (): bigint => readMeta(d.stateDir, META_WRITES);
    const mine: Served[] = [];
    for (let i = 0; i < 6; i++) mine.push(await tcpServer(`batch-${i}`, '127.0.0.1'));
    servers.push(...mine);
    const clients = Array.from({ length: 8 }, () => HandoffClient.connect(socket));
    try {
      for (const c of clients) assert.equal((await c.request({ op: 'ping' })).ok, true); // all accepted
      const before = writesBegun();
      // Stopped, the daemon finds every request there when it wakes.
      daemon.child.kill('SIGSTOP');
      for (let i = 0; i < 200 && !/^\S+ \(.*\) T /.test(readFileSync(`/proc/${daemon.pid}/stat`, 'utf8')); i++) await sleep(5);
      const answers: Promise<Reply>[] = clients.map((c, i) => {
        if (i < 6) return c.request({ op: 'register', label: `batch-${i}` }, [mine[i].fd]);
        if (i === 6) return c.request({ op: 'unregister', label: 'nothing', domain: 'ipv4', protocol: 'tcp' });
        return c.request({ op: 'ping' });
      });
      await sleep(50); // each request is sent from a microtask
      daemon.child.kill('SIGCONT');
      const replies = await Promise.all(answers);
      replies.slice(0, 6).forEach((r, i) => {
        assert.ok(r.ok && 'registered' in r, JSON.stringify(r));
        assert.equal(r.registered[0].label, `batch-${i}`);
        assert.equal(r.registered[0].cookie, native().socketInfo(mine[i].fd).cookie.toString());
      });
      assert.equal(!replies[6].ok && replies[6].error.code, 'ENOENT', JSON.stringify(replies[6]));
      assert.ok(replies[7].ok && 'version' in replies[7]);
      assert.equal(writesBegun(), before + 1n, 'the six registers and the unregister were not one write');
      const registered = new Map(d.destinations().map((x) => [x.label, x.socket]));
      mine.forEach((s, i) => assert.equal(registered.get(`batch-${i}`), native().socketInfo(s.fd).cookie));
    } finally {
      daemon.child.kill('SIGCONT');
      for (const c of clients) c.close();
    }
  });

  test('a silent client does not block others, and is dropped after the idle timeout', async () => {
    const silent = HandoffClient.connect(socket);
    try {
      for (let i = 0; i < 10; i++) assert.match(await ping({ socketPath: socket }), /\d/);
      const notice = await silent.receive(30_000);
      assert.equal(notice?.ok, false);
      assert.equal(!notice?.ok && notice?.error.code, 'ETIMEDOUT');
      assert.equal(await silent.receive(30_000), null); // then the connection is closed
      await daemon.waitLog(/dropped: idle for 1000 ms/);
    } finally {
      silent.close();
    }
  });

  test('a client that stays busy is not dropped while it keeps sending', async () => {
    const c = HandoffClient.connect(socket);
    try {
      for (let i = 0; i < 20; i++) assert.equal((await c.request({ op: 'list' })).ok, true);
    } finally {
      c.close();
    }
  });

  test('a refused client whose request the daemon never read still gets the EBUSY notice as its answer', async () => {
    const sock3 = path.join(dir, 'one.sock');
    const one = await startDaemon({ bpffs, socket: sock3, args: ['--max-clients', '1'] });
    const held = HandoffClient.connect(sock3);
    try {
      assert.equal((await held.request({ op: 'ping' })).ok, true);
      // Stopped, the daemon cannot accept before the request is in: it then
      // refuses the connection and closes it with the request unread.
      one.child.kill('SIGSTOP');
      const late = HandoffClient.connect(sock3);
      const answer = late.request({ op: 'ping' });
      one.child.kill('SIGCONT');
      const r = await answer;
      assert.equal(!r.ok && r.error.code, 'EBUSY', JSON.stringify(r));
      late.close();
    } finally {
      held.close();
      await one.stop();
    }
  });

  test('beyond --max-clients a client gets EBUSY and is closed; a slot freed is reusable', async () => {
    const sock2 = path.join(dir, 'small.sock');
    const small = await startDaemon({ bpffs, socket: sock2, args: ['--max-clients', '3'] });
    const held = [0, 1, 2].map(() => HandoffClient.connect(sock2));
    try {
      for (const c of held) assert.equal((await c.request({ op: 'ping' })).ok, true);
      const extra = HandoffClient.connect(sock2);
      const r = await extra.receive();
      assert.equal(r !== null && !r.ok && r.error.code, 'EBUSY');
      assert.equal(await extra.receive(), null);
      extra.close();
      held.pop()!.close();
      // the daemon sees the close on its own time: retry while it still says EBUSY
      let version = '';
      for (let i = 0; i < 500 && !version; i++) {
        version = await ping({ socketPath: sock2 }).catch((e: HandoffError) => {
          assert.equal(e.code, 'EBUSY');
          return new Promise<string>((ok) => setTimeout(() => ok(''), 10));
        });
      }
      assert.match(version, /\d/);
    } finally {
      for (const c of held) c.close();
      await small.stop();
    }
  });
});
