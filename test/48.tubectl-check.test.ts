// tubectl check, as a subprocess, in a throwaway namespace with real
// sockets and real traffic: clean on a good configuration; on a crafted
// one, each kind of finding, each fixed by the command it names.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { tcpProbe, tcpServer, udpProbe, udpServer, type Served } from './lib/traffic.js';
import { ok, tubectlFor } from './lib/tubectl.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
const servers: Served[] = [];

interface FindingJSON {
  severity: string;
  kind: string;
  binding: { label: string; protocol: string; prefix: string; port: number; action: string; hits: string; lastHit: string | null } | null;
  label: string;
  message: string;
  fix: string;
  related: Array<{ label: string; prefix: string; port: number; hits: string }>;
  destination?: { label: string; domain: string; protocol: string; sockets: string[] };
}

async function register(label: string, s: Served, protocol: 'tcp' | 'udp', host: string): Promise<void> {
  servers.push(s);
  ok(await tubectl(['register-pid', String(process.pid), label, protocol, host, String(s.port)]));
}

async function findings(...flags: string[]): Promise<{ code: number | null; list: FindingJSON[] }> {
  const r = await tubectl(['check', '--json', ...flags]);
  assert.equal(r.stderr, '');
  return { code: r.code, list: (JSON.parse(r.stdout) as { findings: FindingJSON[] }).findings };
}

before(async () => {
  ok(await tubectl(['load']));
  await register('web', await tcpServer('web'), 'tcp', '127.0.0.1');
  await register('dns', await udpServer('dns'), 'udp', '127.0.0.1');
});
after(async () => {
  for (const s of servers) await s.close();
  await tubectl(['unload']);
});

test('a good configuration is clean: exit 0, no findings', async () => {
  for (const args of [['web', 'tcp', '127.0.0.0/24', '80'], ['web', 'tcp', '127.0.0.0/16', '0'], ['dns', 'udp', '127.0.0.53', '53']]) {
    ok(await tubectl(['bind', ...args]));
  }
  ok(await tubectl(['bind', '--reject', 'tcp', '127.1.0.0/24', '25']));
  assert.equal(await tcpProbe('127.0.0.9', 80), 'web');
  assert.equal(await udpProbe('127.0.0.53', 53), 'dns');
  const text = await tubectl(['check']);
  assert.deepEqual([text.code, text.stdout, text.stderr], [0, 'no problems found (4 bindings, 2 registered destinations)\n', '']);
  assert.deepEqual(await findings(), { code: 0, list: [] });
});

test('a crafted configuration: every kind found, each named with its label and fix', async () => {
  // blackholes: a label with no socket at all; web over IPv6, where it has none.
  ok(await tubectl(['bind', 'api', 'tcp', '127.0.2.0/24', '8000']));
  ok(await tubectl(['bind', 'web', 'tcp', '::1', '80']));
  // unreachable: both halves of the /24 now go elsewhere for every port.
  ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/25', '0']));
  ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.128/25', '0']));
  // a reject thrown in front of live traffic: 127.0.1.9:443 goes to web (the /16), then is refused.
  assert.equal(await tcpProbe('127.0.1.9', 443), 'web');
  ok(await tubectl(['bind', '--reject', 'tcp', '127.0.1.0/24', '443']));
  // an orphan: a registered socket nothing is bound to.
  await register('old', await tcpServer('old'), 'tcp', '127.0.0.1');

  // What check calls a blackhole or a reject really refuses.
  assert.equal(await tcpProbe('127.0.2.9', 8000), 'ECONNREFUSED');
  assert.equal(await tcpProbe('::1', 80), 'ECONNREFUSED');
  assert.equal(await tcpProbe('127.0.1.9', 443), 'ECONNREFUSED');
  // ... and the unreachable binding decides nothing: the /25 answers.
  assert.equal(await tcpProbe('127.0.0.9', 80), 'web');

  const { code, list } = await findings();
  assert.equal(code, 1);
  assert.deepEqual(list.map((f) => [f.severity, f.kind, f.label, f.binding && `${f.binding.protocol} ${f.binding.prefix} ${f.binding.port}`]), [
    ['error', 'blackhole', 'web', 'tcp ::1/128 80'],
    ['error', 'blackhole', 'api', 'tcp 127.0.2.0/24 8000'],
    ['error', 'unreachable', 'web', 'tcp 127.0.0.0/24 80'],
    ['warning', 'reject-covers-live', '', 'tcp 127.0.1.0/24 443'],
    ['warning', 'orphan-socket', 'old', null],
  ]);
  const [v6, api, unreachable, reject, orphan] = list;
  assert.match(v6.message, /no ipv6 tcp socket is registered for web \(web has sockets for ipv4 tcp only\)/);
  assert.deepEqual(api.binding, { label: 'api', protocol: 'tcp', prefix: '127.0.2.0/24', port: 8000, action: 'steer', hits: '1', lastHit: api.binding?.lastHit });
  // It had traffic: unbind's guard wants --force, and the fix says so.
  assert.match(api.fix, /tubectl --bpffs \S+ unbind --force api tcp 127\.0\.2\.0\/24 8000/);
  assert.deepEqual(unreachable.related.map((b) => b.prefix), ['127.0.0.0/25', '127.0.0.128/25']);
  assert.match(unreachable.fix, /tubectl --bpffs \S+ unbind (--force )?web tcp 127\.0\.0\.0\/24 80/);
  assert.deepEqual(reject.related.map((b) => [b.label, b.prefix, b.port, b.hits]), [['web', '127.0.0.0/16', 0, '1']]);
  assert.match(reject.message, /refuses connections that 1 steer binding with traffic in the last 10m would otherwise get/);
  assert.deepEqual(orphan.destination && { ...orphan.destination, sockets: orphan.destination.sockets.length }, { label: 'old', domain: 'ipv4', protocol: 'tcp', sockets: 1 });

  // The text names the same, with the fix on the next line, and a count.
  const text = await tubectl(['check']);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /^error: blackhole: tcp ::1\/128 80 -> web refuses every connection it decides/);
  assert.match(text.stdout, /\nwarning: orphan-socket: the socket registered for old ipv4 tcp \(cookie \d+\) gets no traffic/);
  assert.match(text.stdout, /\n  fix: .*tubectl --bpffs \S+ unregister old ipv4 tcp\)\n\n3 errors, 2 warnings\n$/);

  // No live window: traffic is left out.
  assert.deepEqual((await findings('--live-window', '0')).list.map((f) => f.kind), ['blackhole', 'blackhole', 'unreachable', 'orphan-socket']);

  // Each finding's fix, run as written, clears it; it names the dispatcher this check ran on.
  const removal = (f: FindingJSON): string[] => {
    const m = /\(tubectl --bpffs (\S+) ((unbind|unregister) [^)]*)\)/.exec(f.fix);
    assert.ok(m, f.fix);
    assert.equal(m[1], bpffs);
    return m[2].split(' ');
  };
  for (const f of [v6, api, unreachable, reject, orphan]) ok(await tubectl(removal(f)));
  assert.deepEqual(await findings(), { code: 0, list: [] });
  assert.equal(await tcpProbe('127.0.1.9', 443), 'web');
});

test('check refuses a malformed --live-window with exit 2', async () => {
  for (const bad of ['10', '-1m', '1.5h', 'soon']) {
    const r = await tubectl(['check', '--live-window', bad]);
    assert.equal(r.code, 2, bad);
    assert.match(r.stderr, /invalid duration/);
  }
  assert.equal((await tubectl(['check', '--live-window', '1h30m'])).code, 0);
});
