// Every class of bad input gets its own error code, changes nothing in the
// dispatcher, and leaks no fd in the daemon.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readdirSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { startDaemon, type Daemon, workDir } from './lib/daemon.js';
import { tcpServer, udpServer, type Served } from './lib/traffic.js';
import { HandoffClient, registerSockets, type Reply } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';

const { bpffs } = isolate();
const dir = workDir();
const socket = path.join(dir, 'tubulard.sock');

// Sockets Node cannot make: a raw socket, an unbound UDP socket, a socket
// of another network namespace (run under unshare).
const PYTHON_CLIENT = `
import socket, sys
path, request, kind = sys.argv[1:4]
if kind == "raw":
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
elif kind == "tcp":
    s = socket.create_server(("", 0))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
c.connect(path)
socket.send_fds(c, [request.encode()], [s.fileno()])
print(c.recv(65536).decode())
`;

type Code = string;
const codeOf = (r: Reply): Code => (r.ok ? 'ok' : r.error.code);

describe('bad input', () => {
  let d: Dispatcher;
  let daemon: Daemon;
  let client: HandoffClient;
  let good: Served;
  let good6: Served;
  let udp: Served;
  let file: number;
  let unixServer: net.Server;
  let unixFd: number;
  let connected: net.Socket;

  before(async () => {
    d = Dispatcher.create({ bpffs });
    daemon = await startDaemon({ bpffs, socket });
    good = await tcpServer('good', '127.0.0.1');
    good6 = await tcpServer('good6', '::1');
    udp = await udpServer('udp', '127.0.0.1');
    await registerSockets('existing', [good.fd], { socketPath: socket });
    file = openSync(path.join(dir, 'file'), 'w');
    unixServer = net.createServer();
    await new Promise<void>((ok) => unixServer.listen(path.join(dir, 'stream.sock'), ok));
    unixFd = (unixServer as unknown as { _handle: { fd: number } })._handle.fd;
    connected = net.connect({ host: '127.0.0.1', port: good.port });
    await new Promise((ok) => connected.once('connect', ok));
    client = HandoffClient.connect(socket);
  });
  after(async () => {
    client.close();
    connected.destroy();
    await new Promise((ok) => unixServer.close(ok));
    closeSync(file);
    await daemon.stop();
    for (const s of [good, good6, udp]) await s.close();
    d.close();
    Dispatcher.unload({ bpffs });
  });

  /** Sends a request, checks its code and a helpful message, and that nothing changed. */
  async function expectCode(code: Code, payload: object | string | Buffer, fds: number[] = []): Promise<string> {
    const before = d.destinations();
    const r = await client.request(payload, fds);
    assert.equal(codeOf(r), code, `reply: ${JSON.stringify(r)}`);
    const message = (r as { error: { message: string } }).error.message;
    assert.ok(message.length > 20 && !/\n\s+at /.test(message), message);
    assert.deepEqual(d.destinations(), before);
    return message;
  }

  test('invalid JSON: EBADMSG', async () => {
    await expectCode('EBADMSG', 'not json');
    await expectCode('EBADMSG', '[1,2]');
    await expectCode('EBADMSG', '"ping"');
    await expectCode('EBADMSG', Buffer.from([0x7b, 0xff, 0xfe, 0x7d]));
  });

  test('unknown op: EOPNOTSUPP', async () => {
    assert.match(await expectCode('EOPNOTSUPP', { op: 'frobnicate' }), /"frobnicate".*ping, list, register, unregister/);
    await expectCode('EOPNOTSUPP', { op: 42 });
  });

  test('unknown, missing or ill-typed field: EINVAL', async () => {
    assert.match(await expectCode('EINVAL', {}), /no "op"/);
    assert.match(await expectCode('EINVAL', { op: 'ping', extra: 1 }), /unknown field extra/);
    assert.match(await expectCode('EINVAL', { op: 'unregister', label: 'existing', domain: 'ipv4' }), /protocol/);
    assert.match(await expectCode('EINVAL', { op: 'unregister', label: 'existing', domain: 'ipv5', protocol: 'tcp' }), /domain/);
    await expectCode('EINVAL', { op: 'register', label: 7 }, [good6.fd]);
    await expectCode('EINVAL', { op: 'register' }, [good6.fd]);
  });

  test('empty or malformed label: EBADLABEL', async () => {
    assert.match(await expectCode('EBADLABEL', { op: 'register', label: '' }, [good6.fd]), /empty/);
    assert.match(await expectCode('EBADLABEL', { op: 'register', label: 'web site' }, [good6.fd]), /"web site"/);
    await expectCode('EBADLABEL', { op: 'register', label: 'x'.repeat(65) }, [good6.fd]);
    await expectCode('EBADLABEL', { op: 'unregister', label: '../etc', domain: 'ipv4', protocol: 'tcp' });
  });

  test('what a client sends cannot forge a log line', async () => {
    await expectCode('EBADLABEL', { op: 'register', label: 'x\npid=1 uid=0 op=register label="y" result=ok' }, [good6.fd]);
    // The label is JSON-quoted in the message (a newline becomes \n), and the log escapes the rest.
    await daemon.waitLog(/result=EBADLABEL: invalid label "x\\npid=1/);
    assert.doesNotMatch(daemon.log(), /^pid=1 uid=0/m);
  });

  test('oversized message: EMSGSIZE; exactly 64 KiB is not oversized', async () => {
    const exact = (n: number): string => { const head = '{"op":"ping","pad":"'; return `${head}${'x'.repeat(n - head.length - 2)}"}`; };
    assert.equal(Buffer.byteLength(exact(65536)), 65536);
    await expectCode('EINVAL', exact(65536)); // read whole: the unknown field is what is wrong
    await expectCode('EMSGSIZE', exact(65537));
    await expectCode('EMSGSIZE', JSON.stringify({ op: 'ping', pad: 'x'.repeat(70 * 1024) }));
    await expectCode('EMSGSIZE', JSON.stringify({ op: 'register', label: 'big', pad: 'x'.repeat(70 * 1024) }), [good6.fd]);
  });

  test('fds on an op that takes none: EUNEXPECTEDFDS', async () => {
    await expectCode('EUNEXPECTEDFDS', { op: 'ping' }, [good6.fd]);
    await expectCode('EUNEXPECTEDFDS', { op: 'list' }, [file, good6.fd]);
    await expectCode('EUNEXPECTEDFDS', { op: 'unregister', label: 'existing', domain: 'ipv4', protocol: 'tcp' }, [good6.fd]);
  });

  test('register without fds: ENOFDS', async () => {
    await expectCode('ENOFDS', { op: 'register', label: 'web' });
  });

  test('more than 16 fds: E2BIG', async () => {
    await expectCode('E2BIG', { op: 'register', label: 'many' }, Array(17).fill(good6.fd));
    await expectCode('E2BIG', { op: 'register', label: 'many' }, Array(40).fill(good6.fd));
  });

  test('a fd that is not a socket: ENOTSOCK, and the good socket next to it is not registered either', async () => {
    assert.match(await expectCode('ENOTSOCK', { op: 'register', label: 'mixed' }, [good6.fd, file]), /socket #2 is not a socket/);
  });

  test('a socket that is not IPv4/IPv6: EAFNOSUPPORT', async () => {
    await expectCode('EAFNOSUPPORT', { op: 'register', label: 'unix' }, [unixFd]);
  });

  test('a TCP socket that is not listening: ENOTLISTENING', async () => {
    const fd = (connected as unknown as { _handle: { fd: number } })._handle.fd;
    assert.match(await expectCode('ENOTLISTENING', { op: 'register', label: 'conn' }, [good6.fd, fd]), /listen\(\)/);
  });

  test('two sockets for one destination that are not one SO_REUSEPORT group: EDUPLICATE', async () => {
    const other = await tcpServer('other', '127.0.0.1');
    try {
      assert.match(await expectCode('EDUPLICATE', { op: 'register', label: 'dup' }, [good.fd, other.fd]), /not one SO_REUSEPORT group/);
      assert.match(await expectCode('EDUPLICATE', { op: 'register', label: 'dup' }, [good.fd, good.fd]), /socket #2 is socket #1 again/);
    } finally {
      await other.close();
    }
  });

  test('a UDP socket that is not bound: ENOTBOUND; a raw socket: EPROTONOSUPPORT', () => {
    const before = d.destinations();
    const run = (kind: string): Reply => JSON.parse(execFileSync('python3', ['-c', PYTHON_CLIENT, socket, '{"op":"register","label":"py"}', kind], { encoding: 'utf8' })) as Reply;
    assert.equal(codeOf(run('udp-unbound')), 'ENOTBOUND');
    assert.equal(codeOf(run('raw')), 'EPROTONOSUPPORT');
    assert.deepEqual(d.destinations(), before);
  });

  test('a socket of another network namespace: EBADSOCK', () => {
    const before = d.destinations();
    const r = JSON.parse(execFileSync('unshare', ['--net', 'python3', '-c', PYTHON_CLIENT, socket, '{"op":"register","label":"elsewhere"}', 'tcp'],
      { encoding: 'utf8' })) as Reply;
    assert.equal(codeOf(r), 'EBADSOCK', JSON.stringify(r));
    assert.match(!r.ok ? r.error.message : '', /^socket #1 belongs to another network namespace /);
    assert.deepEqual(d.destinations(), before);
  });

  test('unregister of something not registered: ENOENT', async () => {
    await expectCode('ENOENT', { op: 'unregister', label: 'existing', domain: 'ipv6', protocol: 'tcp' });
    await expectCode('ENOENT', { op: 'unregister', label: 'nothing', domain: 'ipv4', protocol: 'udp' });
  });

  test('a truncated control message (the daemon out of fds): ECTRUNC', async () => {
    assert.equal((await client.request({ op: 'ping' })).ok, true); // accepted: its fd exists
    const used = new Set(readdirSync(`/proc/${daemon.pid}/fd`).map(Number));
    let lowestFree = 0;
    while (used.has(lowestFree)) lowestFree++;
    const [soft] = execFileSync('prlimit', ['--pid', String(daemon.pid), '--nofile', '--raw', '--noheadings', '--output', 'SOFT'], { encoding: 'utf8' }).trim().split(/\s+/);
    execFileSync('prlimit', ['--pid', String(daemon.pid), `--nofile=${lowestFree}:`]);
    try {
      await expectCode('ECTRUNC', { op: 'register', label: 'lost' }, [good6.fd, udp.fd]);
    } finally {
      execFileSync('prlimit', ['--pid', String(daemon.pid), `--nofile=${soft}:`]);
    }
    assert.equal((await client.request({ op: 'ping' })).ok, true);
  });

  test('the daemon survived all of it, still serves, and its fd count stays flat over 1,000 bad requests', async () => {
    const bad: [object | string, number[]][] = [
      ['{', [good6.fd, file]],
      [{ op: 'ping' }, [good6.fd, udp.fd, file]],
      [{ op: 'register', label: 'x' }, [file, file, file]],
      [{ op: 'register', label: 'bad label' }, [good6.fd]],
      [{ op: 'register', label: 'x' }, Array(17).fill(file)],
      [{ op: 'register', label: 'x' }, Array(30).fill(good6.fd)],
      [JSON.stringify({ op: 'ping', pad: 'y'.repeat(70000) }), [good6.fd]],
      [{ op: 'nope' }, [udp.fd]],
    ];
    await client.request({ op: 'ping' });
    const start = daemon.fdCount();
    for (let i = 0; i < 1000; i++) {
      const [payload, fds] = bad[i % bad.length];
      assert.equal((await client.request(payload, fds)).ok, false);
    }
    // and 100 clients that connect, send a bad request with fds and go
    for (let i = 0; i < 100; i++) {
      const c = HandoffClient.connect(socket);
      await c.request({ op: 'list' }, [file]);
      c.close();
    }
    assert.equal((await client.request({ op: 'ping' })).ok, true);
    const end = daemon.fdCount();
    assert.ok(end - start <= 2, `fd count went from ${start} to ${end}`);
    assert.deepEqual(d.destinations().map((x) => x.label), ['existing']);
  });
});
