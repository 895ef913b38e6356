// tubulard as systemd runs it, without systemd as PID 1: readiness through a
// NOTIFY_SOCKET the test owns, socket activation through
// systemd-socket-activate; and the Python example of docs/PROTOCOL.md run
// as written against a real daemon.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isolate } from './lib/isolate.js';
import { startDaemon, workDir } from './lib/daemon.js';
import { tcpProbe } from './lib/traffic.js';
import { parseBinding } from '../src/binding.js';
import { listDestinations, ping } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';

const { bpffs } = isolate();
const dir = workDir();
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Starts a process and collects its stdout lines; resolves lines as they come. */
function lines(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  const next = (re: RegExp): Promise<string> => new Promise((ok, fail) => {
    const check = (): void => {
      const l = out.split('\n').slice(0, -1).find((x) => re.test(x)); // complete lines only
      if (l !== undefined) { child.stdout!.off('data', check); ok(l); }
    };
    child.stdout!.on('data', check);
    child.once('exit', (c) => fail(new Error(`${cmd} exited ${c} before printing ${re}: ${out}`)));
    check();
  });
  return { child, next };
}

// Receives sd_notify datagrams; on READY=1 it connects to the daemon's
// socket at once: readiness must mean the socket already accepts.
const NOTIFY_RECEIVER = `
import json, socket, sys
address, daemon = sys.argv[1:3]
r = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
r.bind(address.replace("@", "\\0", 1))
print("bound", flush=True)
while True:
    msg = r.recv(4096).decode()
    reply = None
    if "READY=1" in msg.split("\\n"):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        c.connect(daemon)
        c.send(b'{"op":"ping"}')
        reply = json.loads(c.recv(65536))
    print(json.dumps({"msg": msg, "reply": reply}), flush=True)
`;

describe('systemd integration', () => {
  let d: Dispatcher;
  before(() => {
    d = Dispatcher.create({ bpffs });
  });
  after(() => {
    d.close();
    Dispatcher.unload({ bpffs });
  });

  for (const [name, address] of [['a path', path.join(dir, 'notify')], ['the abstract namespace', `@tubulard-test-${process.pid}`]]) {
    test(`sd_notify to ${name}: READY=1 once the socket accepts, STOPPING=1 on SIGTERM`, async () => {
      const socket = path.join(dir, `notify-${name.length}.sock`);
      const receiver = lines('python3', ['-c', NOTIFY_RECEIVER, address, socket]);
      try {
        await receiver.next(/^bound$/);
        const daemon = await startDaemon({ bpffs, socket, env: { ...process.env, NOTIFY_SOCKET: address }, ready: null });
        const ready = JSON.parse(await receiver.next(/READY=1/)) as { msg: string; reply: { ok: boolean } };
        assert.equal(ready.reply.ok, true);
        assert.match(ready.msg, new RegExp(`^READY=1\\nSTATUS=listening on .*\\nMAINPID=${daemon.pid}$`));
        assert.equal(await daemon.stop(), 0);
        assert.match(await receiver.next(/STOPPING=1/), /STOPPING=1/);
      } finally {
        receiver.child.kill();
      }
    });
  }

  test('socket activation: the daemon serves on the socket systemd-socket-activate passes', async () => {
    const socket = path.join(dir, 'activated.sock');
    const daemon = await startDaemon({
      bpffs, socket,
      wrapper: ['systemd-socket-activate', '--seqpacket', '-l', socket],
      ready: /Listening on/,
    });
    assert.match(await ping({ socketPath: socket }), /\d/); // the first connection starts the daemon
    await daemon.waitLog(/listening on socket passed by systemd/);
    assert.deepEqual(await listDestinations({ socketPath: socket }), []);
    assert.equal(await daemon.stop(), 0);
    assert.equal(existsSync(socket), true); // the socket belongs to systemd, not to the daemon
  });

  test('socket activation with a stream socket is refused with a clear message', async () => {
    const socket = path.join(dir, 'stream.sock');
    const daemon = await startDaemon({ bpffs, socket, wrapper: ['systemd-socket-activate', '-l', socket], ready: /Listening on/ });
    net.createConnection(socket).on('error', () => {}).end(); // the first connection starts the daemon
    assert.equal(await daemon.exited, 1);
    assert.match(daemon.log(), /not a listening SOCK_SEQPACKET socket: use ListenSequentialPacket=/);
  });

  test('the Python example of docs/PROTOCOL.md registers its socket and gets traffic', async () => {
    const doc = readFileSync(path.join(root, 'docs/PROTOCOL.md'), 'utf8');
    const block = /## Example: Python[\s\S]*?```python\n([\s\S]*?)```/.exec(doc);
    assert.ok(block, 'docs/PROTOCOL.md has a python block under "Example: Python"');
    const socket = path.join(dir, 'python.sock');
    const daemon = await startDaemon({ bpffs, socket });
    d.bind(parseBinding({ label: 'web', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80 }));
    const py = lines('python3', ['-c', block[1]], { ...process.env, TUBULARD_SOCKET: socket });
    try {
      assert.equal(await py.next(/^registered/), 'registered web ipv4 tcp');
      assert.equal(await tcpProbe('127.0.0.80', 80), 'hello from python\n');
      assert.equal(await tcpProbe('127.0.0.1', 8080), 'hello from python\n');
    } finally {
      py.child.kill();
      await daemon.stop();
    }
  });
});
