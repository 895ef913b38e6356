// tubulard over a real Unix socket: services hand over TCP and UDP sockets
// (IPv4 and IPv6) and traffic follows; the daemon can die without the data
// plane noticing, and a new one takes over at once.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, existsSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { startDaemon, type Daemon, workDir } from './lib/daemon.js';
import { startProbeLoop } from './lib/children.js';
import { tcpProbe, tcpServer, udpProbe, udpServer, type Served } from './lib/traffic.js';
import { parseBinding } from '../src/binding.js';
import { HandoffClient, HandoffError, listDestinations, ping, registerSockets, unregisterSocket } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';

const { bpffs } = isolate();
const dir = workDir();
const socket = path.join(dir, 'tubulard.sock');
const opts = { socketPath: socket };

describe('tubulard', () => {
  let d: Dispatcher;
  let daemon: Daemon;
  const servers: Served[] = [];
  const serve = async (s: Promise<Served>): Promise<Served> => { const x = await s; servers.push(x); return x; };

  before(async () => {
    d = Dispatcher.create({ bpffs });
    d.bind(parseBinding({ label: 'web', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80 }));
    d.bind(parseBinding({ label: 'web', protocol: 'tcp', prefix: '::1', port: 80 }));
    d.bind(parseBinding({ label: 'dns', protocol: 'udp', prefix: '127.0.0.0/24', port: 53 }));
    d.bind(parseBinding({ label: 'dns', protocol: 'udp', prefix: '::1', port: 53 }));
    daemon = await startDaemon({ bpffs, socket });
  });
  after(async () => {
    await daemon.stop();
    for (const s of servers) await s.close();
    d.close();
    Dispatcher.unload({ bpffs });
  });

  test('ping answers with the version; the socket is mode 0660', async () => {
    assert.match(await ping(opts), /^\d+\.\d+\.\d+/);
    assert.equal(statSync(socket).mode & 0o777, 0o660);
  });

  test('register TCP over IPv4 and IPv6 in one message, and traffic follows', async () => {
    assert.equal(await tcpProbe('127.0.0.5', 80), 'ECONNREFUSED');
    const v4 = await serve(tcpServer('web-v4', '127.0.0.1'));
    const v6 = await serve(tcpServer('web-v6', '::1'));
    const reg = await registerSockets('web', [v4.fd, v6.fd], opts);
    assert.deepEqual(reg.map((r) => [r.label, r.domain, r.protocol, r.port, r.replaced]),
      [['web', 'ipv4', 'tcp', v4.port, null], ['web', 'ipv6', 'tcp', v6.port, null]]);
    assert.equal(await tcpProbe('127.0.0.5', 80), 'web-v4');
    assert.equal(await tcpProbe('::1', 80), 'web-v6');
  });

  test('register UDP over IPv4 and IPv6, and datagrams follow', async () => {
    const v4 = await serve(udpServer('dns-v4', '127.0.0.1'));
    const v6 = await serve(udpServer('dns-v6', '::1'));
    await registerSockets('dns', [v4.fd], opts);
    await registerSockets('dns', [v6.fd], opts);
    assert.equal(await udpProbe('127.0.0.9', 53), 'dns-v4');
    assert.equal(await udpProbe('::1', 53), 'dns-v6');
  });

  test('a second register replaces the socket and reports the one it replaced', async () => {
    const before = d.destinations().find((x) => x.label === 'web' && x.domain === 'ipv4')!;
    const next = await serve(tcpServer('web-v4-next', '127.0.0.1'));
    const [r] = await registerSockets('web', [next.fd], opts);
    assert.equal(r.replaced, before.socket!.toString());
    assert.equal(await tcpProbe('127.0.0.5', 80), 'web-v4-next');
  });

  test('list shows destinations, sockets and counters', async () => {
    const list = await listDestinations(opts);
    const web4 = list.find((x) => x.label === 'web' && x.domain === 'ipv4' && x.protocol === 'tcp')!;
    assert.equal(web4.registered, true);
    assert.equal(web4.bindings, 1);
    assert.ok(web4.lookups > 0);
    assert.deepEqual(list.map((x) => `${x.label}/${x.domain}/${x.protocol}`).sort(),
      ['dns/ipv4/udp', 'dns/ipv6/udp', 'web/ipv4/tcp', 'web/ipv6/tcp']);
  });

  test('one connection carries several requests in turn', async () => {
    const c = HandoffClient.connect(socket);
    try {
      for (let i = 0; i < 5; i++) assert.equal((await c.request({ op: 'ping' })).ok, true);
      const r = await c.request({ op: 'list' });
      assert.ok(r.ok && 'destinations' in r);
    } finally {
      c.close();
    }
  });

  test('unregister empties the destination; a second unregister is ENOENT', async () => {
    const s = await serve(tcpServer('tmp', '127.0.0.1'));
    await registerSockets('tmp', [s.fd], opts);
    await unregisterSocket('tmp', 'ipv4', 'tcp', opts);
    await assert.rejects(unregisterSocket('tmp', 'ipv4', 'tcp', opts),
      (e: unknown) => e instanceof HandoffError && e.code === 'ENOENT' && /tmp ipv4 tcp/.test(e.message));
  });

  test('each request is logged with peer, op, label and result', async () => {
    // the reply can overtake the log line on its way to us: wait for it
    await daemon.waitLog(new RegExp(`pid=${process.pid} uid=0 op=register label="web" result=ok ipv4/tcp,ipv6/tcp`));
    await daemon.waitLog(/op=unregister label="tmp" result=ENOENT: no socket is registered for tmp ipv4 tcp/);
  });

  test('kill -9 loses no socket and no traffic; a restarted daemon serves at once and can unregister', async () => {
    const loop = await startProbeLoop('127.0.0.5', 80);
    assert.equal(await daemon.stop('SIGKILL'), 'SIGKILL');
    assert.equal(existsSync(socket), true); // the stale socket file stays behind
    assert.equal(await tcpProbe('127.0.0.5', 80), 'web-v4-next');
    assert.equal(await udpProbe('127.0.0.9', 53), 'dns-v4');
    daemon = await startDaemon({ bpffs, socket });
    assert.match(daemon.log(), /replaced a stale socket file/);
    const { total, seen } = await loop.stop();
    assert.equal(seen['web-v4-next'], total);
    const list = await listDestinations(opts);
    assert.equal(list.find((x) => x.label === 'web' && x.domain === 'ipv4')!.registered, true);
    await unregisterSocket('web', 'ipv4', 'tcp', opts);
    assert.equal(await tcpProbe('127.0.0.5', 80), 'ECONNREFUSED');
    assert.equal(await tcpProbe('::1', 80), 'web-v6');
  });

  test('a second daemon on a live socket refuses to start and leaves it alone', async () => {
    const second = await startDaemon({ bpffs, socket, ready: null });
    assert.equal(await second.exited, 1);
    assert.match(second.log(), /another daemon is listening on/);
    assert.match(await ping(opts), /\d/);
  });

  test('a path that is not a socket is not replaced', async () => {
    const file = path.join(dir, 'plain');
    writeFileSync(file, '');
    const other = await startDaemon({ bpffs, socket: file, ready: null });
    assert.equal(await other.exited, 1);
    assert.match(other.log(), /exists and is not a socket/);
    assert.doesNotMatch(other.log(), /\n\s+at /); // no stack trace
  });

  test('SIGTERM closes clients, removes the socket file and exits 0; registrations stay', async () => {
    const c = HandoffClient.connect(socket);
    assert.equal((await c.request({ op: 'ping' })).ok, true);
    assert.equal(await daemon.stop('SIGTERM'), 0);
    assert.equal(await c.receive(), null); // the daemon closed the connection
    c.close();
    assert.equal(existsSync(socket), false);
    assert.equal(await tcpProbe('::1', 80), 'web-v6');
    daemon = await startDaemon({ bpffs, socket });
  });

  test('SIGINT does the same as SIGTERM', async () => {
    const c = HandoffClient.connect(socket);
    assert.equal((await c.request({ op: 'ping' })).ok, true);
    assert.equal(await daemon.stop('SIGINT'), 0);
    assert.equal(await c.receive(), null);
    c.close();
    assert.equal(existsSync(socket), false);
    daemon = await startDaemon({ bpffs, socket });
  });

  test('without --bpffs, the daemon finds the state through TUBULAR_BPFFS in its environment', async () => {
    const sock2 = path.join(dir, 'from-env.sock');
    const other = await startDaemon({ bpffs, bpffsFlag: false, socket: sock2, env: { ...process.env, TUBULAR_BPFFS: bpffs } });
    try {
      assert.doesNotMatch(other.log(), /no dispatcher is loaded/);
      const labels = (await listDestinations({ socketPath: sock2 })).map((x) => x.label);
      assert.ok(labels.includes('web') && labels.includes('dns'), labels.join(' '));
    } finally {
      await other.stop();
    }
  });

  test('a daemon started before the dispatcher is loaded serves once it is', async () => {
    const other = mkdtempSync(path.join(dir, 'bpffs-'));
    execFileSync('mount', ['-t', 'bpf', 'bpf', other]);
    const sock2 = path.join(dir, 'late.sock');
    const late = await startDaemon({ bpffs: other, socket: sock2 });
    try {
      assert.match(late.log(), /no dispatcher is loaded/);
      await assert.rejects(listDestinations({ socketPath: sock2 }), (e: unknown) => e instanceof HandoffError && e.code === 'ENOTLOADED');
      Dispatcher.create({ bpffs: other }).close();
      assert.deepEqual(await listDestinations({ socketPath: sock2 }), []);
      // unloaded and loaded again: the daemon follows the new state
      Dispatcher.unload({ bpffs: other });
      const again = Dispatcher.create({ bpffs: other });
      again.bind(parseBinding({ label: 'x', protocol: 'tcp', prefix: '127.0.2.0/24', port: 1 }));
      assert.deepEqual((await listDestinations({ socketPath: sock2 })).map((x) => x.label), ['x']);
      again.close();
      Dispatcher.unload({ bpffs: other });
    } finally {
      await late.stop();
      execFileSync('umount', [other]);
    }
  });
});
