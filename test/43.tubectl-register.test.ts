// tubectl register-pid against a Python service, register under
// systemd-socket-activate, unregister and list, in a throwaway namespace.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { tcpProbe } from './lib/traffic.js';
import { TUBECTL, ok, tubectlFor } from './lib/tubectl.js';
import { udpAsk } from './lib/udp-ask.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);

// A service in another language: a TCP listener on 127.0.0.1 and a UDP
// socket on the wildcard address, each answering with its name.
const PYTHON_SERVICE = `
import select, socket, sys
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("127.0.0.1", 0)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind(("0.0.0.0", 0))
print(t.getsockname()[1], u.getsockname()[1], flush=True)
while True:
    ready, _, _ = select.select([t, u, sys.stdin], [], [])
    if sys.stdin in ready and not sys.stdin.readline():
        break
    if t in ready:
        c, _ = t.accept(); c.sendall(b"py-tcp"); c.close()
    if u in ready:
        data, peer = u.recvfrom(2048); u.sendto(b"py-udp", peer)
`;

/** Starts a child and resolves with the first line it prints. */
function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((ok, fail) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) ok(out.slice(0, nl));
    });
    child.once('exit', (code) => fail(new Error(`exited early (${code}): ${out}`)));
  });
}

/** Resolves once the child wrote `pattern` to stderr. */
function stderrMatches(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((ok, fail) => {
    let err = '';
    child.stderr!.on('data', (d) => {
      err += d;
      if (pattern.test(err)) ok(err);
    });
    child.once('exit', (code) => fail(new Error(`exited early (${code}): ${err}`)));
  });
}

const exited = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null ? Promise.resolve(child.exitCode) : new Promise((ok) => child.once('exit', (code) => ok(code)));

before(async () => { ok(await tubectl(['load'])); });
after(async () => { await tubectl(['unload']); });

describe('register-pid', () => {
  let py: ChildProcess;
  let tcpPort: number;
  let udpPort: number;

  before(async () => {
    py = spawn('python3', ['-c', PYTHON_SERVICE], { stdio: ['pipe', 'pipe', 'inherit'] });
    [tcpPort, udpPort] = (await firstLine(py)).split(' ').map(Number);
  });
  after(async () => {
    py.stdin!.end();
    await exited(py);
  });

  test('takes the listening TCP socket and the wildcard-bound UDP socket out of the process', async () => {
    const t = ok(await tubectl(['register-pid', String(py.pid), 'pytcp', 'tcp', '127.0.0.1', String(tcpPort)]));
    assert.match(t.stdout, new RegExp(`^registered socket \\d+ for pytcp ipv4 tcp \\(fd \\d+ of process ${py.pid}\\)\\n$`));
    const u = ok(await tubectl(['register-pid', String(py.pid), 'pyudp', 'udp', '127.0.0.1', String(udpPort)]));
    assert.match(u.stdout, /^registered socket \d+ for pyudp ipv4 udp/);
    ok(await tubectl(['bind', 'pytcp', 'tcp', '127.0.0.50', '7000']));
    ok(await tubectl(['bind', 'pyudp', 'udp', '127.0.0.51', '7001']));
    assert.equal(await tcpProbe('127.0.0.50', 7000), 'py-tcp');
    assert.equal(await udpAsk('127.0.0.51', 7001), 'py-udp');

    const list = JSON.parse(ok(await tubectl(['list', '--json'])).stdout) as { destinations: { label: string; socket: string | null; lookups: string }[] };
    assert.deepEqual(list.destinations.map((d) => d.label), ['pytcp', 'pyudp']);
    for (const d of list.destinations) {
      assert.match(d.socket ?? '', /^\d+$/);
      assert.equal(d.lookups, '1');
    }
    const cookie = /registered socket (\d+)/.exec(t.stdout)![1];
    assert.equal(list.destinations[0].socket, cookie);
    const text = ok(await tubectl(['list'])).stdout;
    assert.match(text, /^label\s+domain\s+protocol\s+socket\s+bindings\s+lookups\s+misses\s+errors\n/);
    assert.match(text, new RegExp(`pytcp\\s+ipv4\\s+tcp\\s+${cookie}\\s+1\\s+1\\s+0\\s+0\\n`));
    assert.match(ok(await tubectl(['status', 'pyudp'])).stdout, /Destinations of pyudp:\n.*\npyudp\s+ipv4\s+udp/);
  });

  test('no matching socket, or no such process: exit 1 with the reason', async () => {
    const wrongPort = await tubectl(['register-pid', String(py.pid), 'pytcp', 'tcp', '127.0.0.1', String(udpPort)]);
    assert.equal(wrongPort.code, 1);
    assert.match(wrongPort.stderr, new RegExp(`process ${py.pid} has no listening tcp 127\\.0\\.0\\.1:${udpPort} socket`));
    const wrongAddress = await tubectl(['register-pid', String(py.pid), 'pytcp', 'tcp', '127.0.0.2', String(tcpPort)]);
    assert.equal(wrongAddress.code, 1);
    const gone = await tubectl(['register-pid', '999999999', 'pytcp', 'tcp', '127.0.0.1', '80']);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /there is no process 999999999/);
    const usage = await tubectl(['register-pid', 'x', 'pytcp', 'tcp', '127.0.0.1', '80']);
    assert.equal(usage.code, 2);
  });

  test('unregister removes the socket; its bindings then refuse', async () => {
    assert.equal(ok(await tubectl(['unregister', 'pytcp', 'ipv4', 'tcp'])).stdout, 'unregistered the socket of pytcp ipv4 tcp\n');
    assert.equal(await tcpProbe('127.0.0.50', 7000, '127.0.43.1'), 'ECONNREFUSED'); // a fresh source: counted once
    const again = await tubectl(['unregister', 'pytcp', 'ipv4', 'tcp']);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no socket is registered for pytcp ipv4 tcp/);
    const list = JSON.parse(ok(await tubectl(['list', '--json'])).stdout) as { destinations: { label: string; socket: string | null; misses: string }[] };
    const pytcp = list.destinations.find((d) => d.label === 'pytcp');
    assert.equal(pytcp?.socket, null);
    assert.equal(pytcp?.misses, '1');
  });
});

describe('register under systemd socket activation', () => {
  const activate = (args: string[], command: string[]): ChildProcess =>
    spawn('systemd-socket-activate', [...args, ...command], { stdio: ['ignore', 'pipe', 'pipe'] });

  test('TCP: registers the socket passed as fd 3, named after the label', async () => {
    const port = 20000 + (process.pid % 10000);
    const child = activate(['-l', `127.0.0.1:${port}`, '--fdname=web'], [process.execPath, TUBECTL, '--bpffs', bpffs, 'register', 'web']);
    let out = '';
    child.stdout!.on('data', (d) => { out += d; });
    await stderrMatches(child, /Listening on/);
    // systemd-socket-activate starts the service at the first connection.
    const probe = tcpProbe('127.0.0.1', port);
    assert.equal(await exited(child), 0);
    assert.match(out, /^registered socket \d+ for web ipv4 tcp\n$/);
    await probe;
  });

  test('UDP with --datagram', async () => {
    const port = 20000 + (process.pid % 10000) + 1;
    const child = activate(['--datagram', '-l', `127.0.0.1:${port}`, '--fdname=dns'], [process.execPath, TUBECTL, '--bpffs', bpffs, 'register', 'dns']);
    let out = '';
    child.stdout!.on('data', (d) => { out += d; });
    await stderrMatches(child, /Listening on/);
    void udpAsk('127.0.0.1', port, 500);
    assert.equal(await exited(child), 0);
    assert.match(out, /^registered socket \d+ for dns ipv4 udp\n$/);
  });

  test('the registered socket serves while its owner keeps it, as with ExecStartPre=', async () => {
    // A Python "service manager" under systemd-socket-activate keeps fd 3 and
    // runs tubectl register with LISTEN_PID set to tubectl's pid, as systemd does.
    const port = 20000 + (process.pid % 10000) + 2;
    const holder = `
import os, socket, sys
pid = os.fork()
if pid == 0:
    os.environ["LISTEN_PID"] = str(os.getpid())
    os.execv(sys.argv[1], sys.argv[1:])
_, status = os.waitpid(pid, 0)
print("register exited", os.waitstatus_to_exitcode(status), flush=True)
s = socket.socket(fileno=3)
while True:
    c, _ = s.accept(); c.sendall(b"activated"); c.close()
`;
    const child = activate(['-l', `127.0.0.1:${port}`, '--fdname=svc'],
      ['python3', '-c', holder, process.execPath, TUBECTL, '--bpffs', bpffs, 'register', 'svc']);
    try {
      const first = firstLine(child);
      await stderrMatches(child, /Listening on/);
      const trigger = tcpProbe('127.0.0.1', port);
      const line = await first;
      assert.match(line, /^registered socket \d+ for svc ipv4 tcp$/);
      ok(await tubectl(['bind', 'svc', 'tcp', '127.0.0.60', '0']));
      assert.equal(await tcpProbe('127.0.0.60', 1234), 'activated');
      assert.equal(await trigger, 'activated');
    } finally {
      child.kill();
      await exited(child);
    }
  });

  test('LISTEN_PID of another process is refused', async () => {
    const r = await tubectl(['register', 'web'], { env: { ...process.env, LISTEN_FDS: '1', LISTEN_PID: '1' } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /LISTEN_PID=1 is not this process/);
  });
});
