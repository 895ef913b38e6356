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
    // the shell's kill builtin: a minimal system has no /bin/kill
    assert.equal(value(s, 'ExecReload'), "/bin/sh -c 'kill -HUP $MAINPID'");
    assert.match(value(s, 'ExecStart')!, /^\/usr\/local\/bin\/tubulard --bpffs \$\{TUBULAR_BPFFS\} --policy \/etc\/tubular\/policy\.json$/);
    for (const [k, v] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['PrivateTmp', 'yes'], ['ReadWritePaths', '-/sys/fs/bpf -/run/tubular-bpffs'],
      ['RuntimeDirectory', 'tubular'], ['RuntimeDirectoryPreserve', 'yes'], ['CapabilityBoundingSet', 'CAP_BPF']]) {
      assert.equal(value(s, k), v, k);
    }
    assert.deepEqual(values(s, 'Requires'), ['tubulard.socket']);
  });

  test('tubular-load.service: a oneshot that stays active, before network-pre.target', () => {
    assert.equal(value('tubular-load.service', 'Type'), 'oneshot');
    assert.equal(value('tubular-load.service', 'RemainAfterExit'), 'yes');
    assert.match(value('tubular-load.service', 'Before')!, /\bnetwork-pre\.target\b/);
  });

  test('the bpffs is configurable in /etc/default/tubular, for every unit that reaches the state', () => {
    for (const u of ['tubular-load.service', 'tubulard.service', 'example-hello-register.service']) {
      assert.deepEqual(values(u, 'Environment'), ['TUBULAR_BPFFS=/sys/fs/bpf'], u);
      assert.deepEqual(values(u, 'EnvironmentFile'), ['-/etc/default/tubular'], u);
    }
  });

  describe('in a throwaway namespace', () => {
    after(() => {
      if (Dispatcher.isLoaded({ bpffs })) Dispatcher.unload({ bpffs });
    });

    /** tubular-load's ExecStartPre, ExecStart lines (or ExecReload), run as systemd would, against this tree and namespace. */
    function runLoadUnit(env: Record<string, string>, key = 'ExecStart'): { status: number | null; stdout: string; stderr: string } {
      const lines = key === 'ExecStart' ? [...values('tubular-load.service', 'ExecStartPre'), ...values('tubular-load.service', 'ExecStart')]
        : values('tubular-load.service', key);
      let stdout = '';
      for (const line of lines) {
        const cmd = line.replaceAll('/usr/local/bin/tubectl', path.join(root, 'bin/tubectl')).replaceAll('${TUBULAR_BPFFS}', env.TUBULAR_BPFFS)
          .replaceAll('/etc/tubular/bindings.json', env.BINDINGS ?? '/etc/tubular/bindings.json');
        const sh = /^\/bin\/sh -c '(.*)'$/.exec(cmd);
        const argv = sh ? ['/bin/sh', '-c', sh[1]] : cmd.split(' ');
        const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env: { ...process.env, ...env } });
        stdout += r.stdout;
        if (r.status !== 0) return { status: r.status, stdout, stderr: r.stderr };
      }
      return { status: 0, stdout, stderr: '' };
    }

    test('tubular-load loads once, succeeds again when already loaded, and fails on any other error', () => {
      const first = runLoadUnit({ TUBULAR_BPFFS: bpffs });
      assert.equal(first.status, 0, first.stderr);
      assert.equal(Dispatcher.isLoaded({ bpffs }), true);
      const second = runLoadUnit({ TUBULAR_BPFFS: bpffs });
      assert.equal(second.status, 0, second.stderr);
      assert.match(second.stdout, /already loaded/);
      const broken = runLoadUnit({ TUBULAR_BPFFS: '/proc/version/not-a-bpffs' });
      assert.notEqual(broken.status, 0);
    });

    test('tubular-load applies /etc/tubular/bindings.json only when it exists (the unit names that path)', () => {
      const exec = values('tubular-load.service', 'ExecStart')[1];
      assert.match(exec, /\[ ! -e \/etc\/tubular\/bindings\.json \] \|\| exec .* load-bindings \/etc\/tubular\/bindings\.json'$/);
      assert.equal(values('tubular-load.service', 'ExecReload')[0], exec);
      const file = path.join(mkdtempSync(path.join(scratch, 'bindings-')), 'bindings.json');
      assert.equal(runLoadUnit({ TUBULAR_BPFFS: bpffs, BINDINGS: file }).status, 0); // no file: nothing to apply
      writeFileSync(file, JSON.stringify({ bindings: [{ label: 'boot', prefix: '127.0.0.0/24', port: 8080 }] }));
      const applied = runLoadUnit({ TUBULAR_BPFFS: bpffs, BINDINGS: file });
      assert.equal(applied.status, 0, applied.stderr);
      const list = spawnSync(path.join(root, 'bin/tubectl'), ['--bpffs', bpffs, 'bindings', '--json'], { encoding: 'utf8' });
      assert.match(list.stdout, /"label":\s*"boot"/);
      writeFileSync(file, JSON.stringify({ bindings: [{ label: 'boot', prefix: '127.0.0.0/24', port: 8080 }, { label: 'more', prefix: '::1', port: 53 }] }));
      const reloaded = runLoadUnit({ TUBULAR_BPFFS: bpffs, BINDINGS: file }, 'ExecReload');
      assert.equal(reloaded.status, 0, reloaded.stderr);
      assert.match(spawnSync(path.join(root, 'bin/tubectl'), ['--bpffs', bpffs, 'bindings', '--json'], { encoding: 'utf8' }).stdout, /"label":\s*"more"/);
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
        assert.equal((await listDestinations({ socketPath: socket })).find((d) => d.label === 'capped')?.registered, true);
        await unregisterSocket('capped', 'ipv4', 'tcp', { socketPath: socket });
      } finally {
        server.close();
        assert.equal(await daemon.stop(), 0);
      }
    });
  });

});
