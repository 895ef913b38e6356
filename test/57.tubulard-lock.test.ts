// tubulard never waits for the writers' lock on its event loop: while
// another process holds the lock, ping and list answer at once, a register
// waits on timers and succeeds when the lock is released, and one that
// waits longer than --lock-timeout gets EBUSY naming the holder.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { startDaemon, type Daemon, workDir } from './lib/daemon.js';
import { tcpProbe, tcpServer, type Served } from './lib/traffic.js';
import { parseBinding } from '../src/binding.js';
import { HandoffClient, type Reply, listDestinations, ping } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';
import { native } from '../src/native.js';

const { bpffs } = isolate();
const dir = workDir();

interface Holder { child: ChildProcess; release(): Promise<void> }

/** Takes the writers' lock in another process (flock, as an operator could) until release(), or for `seconds`. */
async function holdLock(lock: string, seconds?: number): Promise<Holder> {
  const script = seconds === undefined ? 'echo locked; read _' : `echo locked; sleep ${seconds}`;
  const child = spawn('flock', ['-x', lock, 'sh', '-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((ok, fail) => {
    child.stdout!.on('data', (d) => { if (String(d).includes('locked')) ok(); });
    child.once('exit', (code) => fail(new Error(`flock exited early (${code})`)));
  });
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  return { child, release: async () => { child.stdin!.end(); await exited; } };
}

const timed = async <T>(p: Promise<T>): Promise<[T, number]> => {
  const start = performance.now();
  const v = await p;
  return [v, performance.now() - start];
};

describe('the writers\' lock', () => {
  let d: Dispatcher;
  let lock: string;
  const servers: Served[] = [];

  before(() => {
    d = Dispatcher.create({ bpffs });
    d.bind(parseBinding({ label: 'web', protocol: 'tcp', prefix: '127.0.6.0/24', port: 80 }));
    lock = path.join(d.stateDir, 'lock');
  });
  after(async () => {
    for (const s of servers) await s.close();
    d.close();
    Dispatcher.unload({ bpffs });
  });

  test('while another process holds it, ping and list answer at once; a register waits, then succeeds', async () => {
    const socket = path.join(dir, 'wait.sock');
    const daemon: Daemon = await startDaemon({ bpffs, socket, args: ['--lock-timeout', '20'] });
    const web = await tcpServer('web', '127.0.0.1');
    servers.push(web);
    const holder = await holdLock(lock);
    const c = HandoffClient.connect(socket);
    try {
      let answered = false;
      const registering = timed(c.request({ op: 'register', label: 'web' }, [web.fd], 30_000)).finally(() => { answered = true; });
      for (let i = 0; i < 5; i++) {
        const [version, ms] = await timed(ping({ socketPath: socket }));
        assert.match(version, /\d/);
        assert.ok(ms < 500, `ping took ${ms} ms`);
        const [list, listMs] = await timed(listDestinations({ socketPath: socket }));
        assert.deepEqual(list.map((x) => [x.label, x.registered]), [['web', false]]);
        assert.ok(listMs < 500, `list took ${listMs} ms`);
        await new Promise((ok) => setTimeout(ok, 100));
      }
      assert.equal(answered, false, 'the register did not wait for the lock');
      await holder.release();
      const [reply, ms] = await registering;
      assert.equal(reply.ok, true, JSON.stringify(reply));
      assert.ok(ms >= 500, `the register took only ${ms} ms`);
      assert.equal(await tcpProbe('127.0.6.1', 80), 'web');
    } finally {
      c.close();
      await holder.release();
      await daemon.stop();
    }
  });

  test('one client\'s requests are answered in turn: a ping behind a waiting register waits for it', async () => {
    const socket = path.join(dir, 'order.sock');
    const daemon = await startDaemon({ bpffs, socket, args: ['--lock-timeout', '20'] });
    const other = await tcpServer('other', '127.0.0.1');
    servers.push(other);
    const holder = await holdLock(lock, 1);
    const n = native();
    const fd = n.seqpacketConnect(socket); // blocking: the lock holder lets go by itself
    try {
      n.sendMessage(fd, Buffer.from(JSON.stringify({ op: 'register', label: 'other' })), [other.fd]);
      n.sendMessage(fd, Buffer.from(JSON.stringify({ op: 'ping' })), []);
      const first = JSON.parse(n.recvMessage(fd, 65536, 0)!.data.toString()) as Reply;
      const second = JSON.parse(n.recvMessage(fd, 65536, 0)!.data.toString()) as Reply;
      assert.ok(first.ok && 'registered' in first, JSON.stringify(first));
      assert.ok(second.ok && 'version' in second, JSON.stringify(second));
    } finally {
      n.close(fd);
      await holder.release();
      await daemon.stop();
    }
  });

  test('past --lock-timeout a register gets EBUSY naming the holder, and nothing changes', async () => {
    const socket = path.join(dir, 'short.sock');
    const daemon = await startDaemon({ bpffs, socket, args: ['--lock-timeout', '0.3'] });
    const late = await tcpServer('late', '127.0.0.1');
    servers.push(late);
    const holder = await holdLock(lock);
    const c = HandoffClient.connect(socket);
    try {
      const before = d.destinations();
      const [r, ms] = await timed(c.request({ op: 'register', label: 'late' }, [late.fd]));
      assert.equal(!r.ok && r.error.code, 'EBUSY', JSON.stringify(r));
      const message = !r.ok ? r.error.message : '';
      assert.match(message, new RegExp(`being changed by pid ${holder.child.pid} \\(flock -x .*lock sh -c`));
      // The time it did wait: --lock-timeout, and on a busy machine the last timer's lateness.
      assert.match(message, /tubulard waited (0\.[3-9]|1\.\d) s/);
      assert.ok(ms >= 300 && ms < 2000, `EBUSY after ${ms} ms`);
      assert.deepEqual(d.destinations(), before);
      const u = await c.request({ op: 'unregister', label: 'web', domain: 'ipv4', protocol: 'tcp' });
      assert.equal(!u.ok && u.error.code, 'EBUSY');
      await daemon.waitLog(/op=register label="late" result=EBUSY: .*pid \d+/);
    } finally {
      c.close();
      await holder.release();
      await daemon.stop();
    }
  });
});
