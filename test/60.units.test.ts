// The systemd units: `systemd-analyze verify` accepts them (with the
// installed binaries' paths pointed at this tree), they say what the design
// asks, the load unit is idempotent, and the daemon works inside the unit's
// capability bounding set with no_new_privs. What needs systemd as PID 1
// (socket ownership, RuntimeDirectory, the sandbox itself) is left to the VM.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isolate } from './lib/isolate.js';
import { startDaemon } from './lib/daemon.js';
import { DEFAULT_SOCKET, listDestinations, registerSockets, unregisterSocket } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';

const { bpffs } = isolate();
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const unitDir = path.join(root, 'systemd');
const scratch = mkdtempSync(path.join(tmpdir(), 'tubular-units-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const units = readdirSync(unitDir).filter((f) => /\.(service|socket)$/.test(f)).sort();

/** The values of a key in a unit file (continuation lines are not used in ours). */
function values(unit: string, key: string): string[] {
  return readFileSync(path.join(unitDir, unit), 'utf8').split('\n')
    .filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}
const value = (unit: string, key: string): string | undefined => values(unit, key).at(-1);

describe('systemd units', () => {
  test('the units ship: load, socket, daemon and the example', () => {
    assert.deepEqual(units, ['example-hello-register.service', 'example-hello.service', 'example-hello.socket',
      'tubular-load.service', 'tubulard.service', 'tubulard.socket']);
  });

  test('systemd-analyze verify passes without a warning', () => {
    const dir = mkdtempSync(path.join(scratch, 'verify-'));
    for (const u of units) {
      const text = readFileSync(path.join(unitDir, u), 'utf8')
        .replaceAll('/usr/local/bin/tubectl', path.join(root, 'bin/tubectl'))
        .replaceAll('/usr/local/bin/tubulard', path.join(root, 'bin/tubulard'));
      writeFileSync(path.join(dir, u), text);
    }
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...units.map((u) => path.join(dir, u))], { encoding: 'utf8' });
    assert.equal(r.stderr, '');
    assert.equal(r.status, 0);
  });

  test('systemd-analyze verify does catch a mistake (the check is real)', () => {
    const dir = mkdtempSync(path.join(scratch, 'mistake-'));
    copyFileSync(path.join(unitDir, 'tubulard.service'), path.join(dir, 'tubulard.service'));
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', path.join(dir, 'tubulard.service')], { encoding: 'utf8' });
    assert.notEqual(r.status, 0); // /usr/local/bin/tubulard does not exist here
    assert.match(r.stderr, /tubulard/);
  });

  test('tubulard.socket: the protocol\'s default path, SOCK_SEQPACKET, 0660, group tubular', () => {
    assert.equal(value('tubulard.socket', 'ListenSequentialPacket'), DEFAULT_SOCKET);
    assert.equal(value('tubulard.socket', 'SocketMode'), '0660');
    assert.equal(value('tubulard.socket', 'SocketGroup'), 'tubular');
  });

  test('tubulard.service: notify, reload by SIGHUP, hardened', () => {
    const s = 'tubulard.service';
    assert.equal(value(s, 'Type'), 'notify');
    assert.equal(value(s, 'ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.match(value(s, 'ExecStart')!, /^\/usr\/local\/bin\/tubulard --policy \/etc\/tubular\/policy\.json$/);
    for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['PrivateTmp', 'yes'], ['ReadWritePaths', '/sys/fs/bpf'],
      ['RuntimeDirectory', 'tubular'], ['RuntimeDirectoryPreserve', 'yes'], ['CapabilityBoundingSet', 'CAP_BPF']]) {
      assert.equal(value(s, k), v, k);
    }
    assert.deepEqual(values(s, 'Requires'), ['tubulard.socket']);
  });

  test('tubular-load.service: a oneshot that stays active', () => {
    assert.equal(value('tubular-load.service', 'Type'), 'oneshot');
    assert.equal(value('tubular-load.service', 'RemainAfterExit'), 'yes');
  });

  describe('in a throwaway namespace', () => {
    after(() => {
      if (Dispatcher.isLoaded({ bpffs })) Dispatcher.unload({ bpffs });
    });

    test('tubular-load\'s command loads once, and succeeds again when already loaded', () => {
      const exec = value('tubular-load.service', 'ExecStart')!;
      const script = /^\/bin\/sh -c '(.*)'$/.exec(exec)![1]
        .replaceAll('$$', '$')
        .replace('/usr/local/bin/tubectl load', `${path.join(root, 'bin/tubectl')} --bpffs ${bpffs} load`);
      const run = (): ReturnType<typeof spawnSync> => spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
      const first = run();
      assert.equal(first.status, 0, String(first.stderr));
      assert.equal(Dispatcher.isLoaded({ bpffs }), true);
      const second = run();
      assert.equal(second.status, 0, String(second.stderr));
      assert.match(String(second.stdout), /already loaded/);
      // any other failure fails the unit
      const broken = spawnSync('/bin/sh', ['-c', script.replace(`--bpffs ${bpffs}`, '--bpffs /nonexistent-bpffs')], { encoding: 'utf8' });
      assert.notEqual(broken.status, 0);
    });

    test('the daemon does its work inside the unit\'s capability bounding set, with no_new_privs', async () => {
      const caps = value('tubulard.service', 'CapabilityBoundingSet')!.split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`);
      const socket = path.join(mkdtempSync(path.join(scratch, 'daemon-')), 'tubulard.sock');
      const daemon = await startDaemon({
        bpffs, socket,
        wrapper: ['setpriv', '--bounding-set', ['-all', ...caps].join(','), '--inh-caps=-all', '--no-new-privs'],
      });
      const server = net.createServer();
      await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
      try {
        const status = readFileSync(`/proc/${daemon.pid}/status`, 'utf8');
        assert.match(status, /^NoNewPrivs:\s+1$/m);
        assert.match(status, /^CapBnd:\s+0000008000000000$/m); // CAP_BPF (39) alone
        const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
        await registerSockets('capped', [fd], { socketPath: socket });
        assert.equal((await listDestinations({ socketPath: socket }))[0].registered, true);
        await unregisterSocket('capped', 'ipv4', 'tcp', { socketPath: socket });
      } finally {
        server.close();
        assert.equal(await daemon.stop(), 0);
      }
    });
  });

});
