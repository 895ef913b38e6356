// tubectl bind, unbind, bindings and load-bindings, as a subprocess, over
// real connections in a throwaway namespace.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { tcpProbe, tcpServer, udpProbe, udpServer, type Served } from './lib/traffic.js';
import { ok, tubectlFor } from './lib/tubectl.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
const files = mkdtempSync(path.join(tmpdir(), 'tubectl-bindings-'));
const servers: Record<string, Served> = {};

/** Registers a socket of this very process, as an operator would with any service. */
async function registerOwn(label: string, s: Served, protocol: 'tcp' | 'udp', host: string): Promise<void> {
  const r = ok(await tubectl(['register-pid', String(process.pid), label, protocol, host, String(s.port)]));
  assert.match(r.stdout, new RegExp(`^registered socket \\d+ for ${label} ipv[46] ${protocol}`));
}

const bindingsJSON = async (...filter: string[]): Promise<string> => ok(await tubectl(['bindings', ...filter, '--json'])).stdout;

interface Listed { label: string; protocol: string; prefix: string; port: number; action: string; hits: string; lastHit: string | null }
/** The bindings of a bindings --json document without their traffic, after checking its shape. */
function withoutTraffic(doc: string): Omit<Listed, 'hits' | 'lastHit'>[] {
  return (JSON.parse(doc) as { bindings: Listed[] }).bindings.map(({ hits, lastHit, ...b }) => {
    assert.match(hits, /^\d+$/);
    assert.ok(lastHit === null || /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(lastHit), String(lastHit));
    assert.equal(lastHit === null, hits === '0');
    return b;
  });
}

before(async () => {
  ok(await tubectl(['load']));
  for (const name of ['wide', 'web', 'all24', 'host', 'v6host', 'v6all']) {
    const host = name.startsWith('v6') ? '::1' : '127.0.0.1';
    servers[name] = await tcpServer(name, host);
    await registerOwn(name, servers[name], 'tcp', host);
  }
  for (const name of ['dns', 'dnsall']) {
    servers[name] = await udpServer(name);
    await registerOwn(name, servers[name], 'udp', '127.0.0.1');
  }
});

after(async () => {
  for (const s of Object.values(servers)) await s.close();
  await tubectl(['unload']);
  rmSync(files, { recursive: true });
});

describe('bind and precedence', () => {
  before(async () => {
    for (const args of [
      ['wide', 'tcp', '127.0.0.0/8', '0'],
      ['web', 'tcp', '127.0.0.0/24', '80'],
      ['all24', 'tcp', '127.0.0.0/24', '0'],
      ['host', 'tcp', '127.0.0.7', '0'],
      ['dns', 'udp', '127.0.0.0/24', '53'],
      ['dnsall', 'udp', '127.0.0.0/25', '0'],
      ['v6host', 'tcp', '::1', '80'],
      ['v6all', 'tcp', '::/0', '0'],
    ]) {
      const r = ok(await tubectl(['bind', ...args]));
      assert.match(r.stdout, new RegExp(`^bound ${args[1]} \\S+ ${args[3]} -> ${args[0]}\\n$`));
    }
  });

  test('TCP and UDP follow precedence: longest prefix, then specific port', async () => {
    assert.equal(await tcpProbe('127.0.0.7', 80), 'host');
    assert.equal(await tcpProbe('127.0.0.8', 80), 'web');
    assert.equal(await tcpProbe('127.0.0.8', 81), 'all24');
    assert.equal(await tcpProbe('127.0.1.1', 80), 'wide');
    assert.equal(await udpProbe('127.0.0.9', 53), 'dnsall');   // /25 port 0 beats /24 port 53
    assert.equal(await udpProbe('127.0.0.9', 54), 'dnsall');
    assert.equal(await udpProbe('127.0.0.200', 53), 'dns');    // outside the /25
    assert.equal(await tcpProbe('::1', 80), 'v6host');
    assert.equal(await tcpProbe('::1', 81), 'v6all');
  });

  test('bindings lists most preferred first, filtered like tubular', async () => {
    const all = (JSON.parse(await bindingsJSON()) as { bindings: { label: string }[] }).bindings.map((b) => b.label);
    assert.deepEqual(all, ['v6host', 'host', 'dnsall', 'web', 'dns', 'all24', 'wide', 'v6all']);
    const text = ok(await tubectl(['bindings', 'tcp', '127.0.0.0/16', '80'])).stdout;
    assert.equal(text, [
      'protocol  prefix        port  label',
      'tcp       127.0.0.7/32     0  host',
      'tcp       127.0.0.0/24    80  web',
      'tcp       127.0.0.0/24     0  all24',
      '',
    ].join('\n'));
    assert.deepEqual(withoutTraffic(await bindingsJSON('udp')), [
      { label: 'dnsall', protocol: 'udp', prefix: '127.0.0.0/25', port: 0, action: 'steer' },
      { label: 'dns', protocol: 'udp', prefix: '127.0.0.0/24', port: 53, action: 'steer' },
    ]);
    assert.equal(ok(await tubectl(['bindings', 'any', '10.0.0.0/8'])).stdout, 'no bindings matched\n');
  });

  test('rebinding replaces and says so; host bits give a note on stderr', async () => {
    const r = ok(await tubectl(['bind', 'all24', 'tcp', '127.0.0.9/24', '80']));
    assert.equal(r.stdout, 'bound tcp 127.0.0.0/24 80 -> all24 (was tcp 127.0.0.0/24 80 -> web)\n');
    assert.match(r.stderr, /note: 127\.0\.0\.9\/24 has host bits set; using 127\.0\.0\.0\/24/);
    // web carried traffic a moment ago: bind proceeds, and says so.
    assert.match(r.stderr, /warning: tcp 127\.0\.0\.0\/24 80 -> web carried traffic in the last 10m \(\d+ hits?, last \d+s ago\); its connections now go to all24\n/);
    assert.equal(await tcpProbe('127.0.0.8', 80), 'all24');
    ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '80']));
    assert.equal(await tcpProbe('127.0.0.8', 80), 'web');
  });

  test('unbind: the label must match; then traffic falls through', async () => {
    const wrong = await tubectl(['unbind', 'other', 'tcp', '127.0.0.7', '0']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /belongs to label "host", not "other": nothing was changed/);
    const missing = await tubectl(['unbind', 'host', 'tcp', '127.0.0.77', '0']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /there is no binding tcp 127\.0\.0\.77\/32 0/);
    // host carried traffic: removing it takes --force.
    const live = await tubectl(['unbind', 'host', 'tcp', '127.0.0.7', '0']);
    assert.equal(live.code, 1);
    assert.match(live.stderr, /refusing to remove tcp 127\.0\.0\.7\/32 0 -> host, nothing was changed: .*--force/);
    assert.equal(await tcpProbe('127.0.0.7', 81), 'host');
    assert.equal(ok(await tubectl(['unbind', '--force', 'host', 'tcp', '127.0.0.7', '0'])).stdout, 'removed tcp 127.0.0.7/32 0 -> host\n');
    assert.equal(await tcpProbe('127.0.0.7', 81), 'all24');
    ok(await tubectl(['bind', 'host', 'tcp', '127.0.0.7', '0']));
  });

  test('reject bindings refuse TCP and UDP, are listed distinctly and counted', async () => {
    ok(await tubectl(['bind', '--reject', 'tcp', '127.0.0.0/28', '8080']));
    ok(await tubectl(['bind', '--reject', 'plaintext', 'udp', '127.0.0.0/28', '8080']));
    assert.equal(await tcpProbe('127.0.0.5', 8080), 'ECONNREFUSED');
    assert.equal(await tcpProbe('127.0.0.6', 8080), 'ECONNREFUSED');
    assert.equal(await udpProbe('127.0.0.5', 8080), 'ECONNREFUSED');
    assert.equal(await tcpProbe('127.0.0.17', 8080), 'all24');   // outside the /28

    const text = ok(await tubectl(['bindings', 'any', '127.0.0.0/28'])).stdout;
    assert.match(text, /tcp       127\.0\.0\.0\/28  8080  <reject>\n/);
    assert.match(text, /udp       127\.0\.0\.0\/28  8080  <reject:plaintext>\n/);
    const in28 = (JSON.parse(await bindingsJSON('any', '127.0.0.0/28')) as { bindings: { prefix: string; action: string }[] }).bindings;
    assert.deepEqual(in28.map((b) => `${b.prefix} ${b.action}`), ['127.0.0.7/32 steer', '127.0.0.0/28 reject', '127.0.0.0/28 reject']);

    const s = JSON.parse(ok(await tubectl(['status', '--json'])).stdout) as { rejects: unknown[]; destinations: { label: string; bindings: number; socket: string | null }[] };
    // The label only names the reject binding: its destination counts no
    // binding, needs no socket, and check finds nothing missing.
    assert.deepEqual(s.destinations.filter((d) => d.label === 'plaintext').map((d) => [d.bindings, d.socket]), [[0, null]]);
    const { findings } = JSON.parse((await tubectl(['check', '--json'])).stdout) as { findings: { kind: string; label: string }[] };
    assert.deepEqual(findings.filter((f) => f.label === 'plaintext').map((f) => f.kind), ['reject-covers-live'], 'no blackhole finding');
    const listed = JSON.parse(await bindingsJSON('any', '127.0.0.0/28')) as { bindings: Listed[] };
    assert.deepEqual(listed.bindings.filter((b) => b.action === 'reject').map((b) => b.hits), ['2', '1'], 'a reject binding\'s hits are its refusals');
    assert.deepEqual(s.rejects, [
      { protocol: 'tcp', prefix: '127.0.0.0/28', port: 8080, rejected: '2' },
      { protocol: 'udp', prefix: '127.0.0.0/28', port: 8080, rejected: '1' },
    ]);
    assert.match(ok(await tubectl(['status'])).stdout, /Reject bindings:\nprotocol  prefix        port  rejected\ntcp       127\.0\.0\.0\/28  8080         2\n/);

    // unbind --reject removes only reject bindings.
    const steer = await tubectl(['unbind', '--reject', 'tcp', '127.0.0.0/24', '0']);
    assert.equal(steer.code, 1);
    assert.match(steer.stderr, /^tubectl: the binding tcp 127\.0\.0\.0\/24 0 is a steer binding \(label "all24"\), not a reject binding: nothing was changed; remove it with tubectl --bpffs \S+ unbind all24 tcp 127\.0\.0\.0\/24 0\n$/);
    assert.ok(steer.stderr.includes(`remove it with tubectl --bpffs ${bpffs} unbind all24 `), 'the command acts on the same dispatcher');
    // And the other way round: unbind without --reject of a reject binding.
    const rej = await tubectl(['unbind', 'web', 'tcp', '127.0.0.0/28', '8080']);
    assert.equal(rej.code, 1);
    assert.match(rej.stderr, /^tubectl: the binding tcp 127\.0\.0\.0\/28 8080 is a reject binding, not a steer binding: nothing was changed; remove it with tubectl --bpffs \S+ unbind --reject tcp 127\.0\.0\.0\/28 8080\n$/);
    ok(await tubectl(['unbind', '--reject', '--force', 'tcp', '127.0.0.0/28', '8080']));
    ok(await tubectl(['unbind', '--reject', '--live-window', '0', 'plaintext', 'udp', '127.0.0.0/28', '8080']));
    assert.equal(await tcpProbe('127.0.0.5', 8080), 'all24');
  });
});

describe('load-bindings', () => {
  const write = (name: string, content: unknown): string => {
    const file = path.join(files, name);
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  };

  test('replaces everything atomically; the same file again changes nothing', async () => {
    const file = write('good.json', { bindings: [
      { label: 'web', prefix: '127.0.0.0/24', port: 80 },              // tcp and udp, as in tubular
      { label: 'dns', prefix: '127.0.0.0/24', port: 53, protocol: 'udp' },
      { label: 'v6all', prefix: '::/0', port: 0, protocol: 'tcp' },
      { prefix: '127.0.0.0/28', port: 25, action: 'reject' },
    ] });
    // It withdraws bindings that carried traffic in the tests above: --force.
    const first = ok(await tubectl(['load-bindings', '--force', file]));
    assert.match(first.stdout, /^replaced bindings: \d+ added, \d+ removed, \d+ changed, \d+ unchanged \(generation \d+\)\n$/);
    assert.deepEqual(withoutTraffic(await bindingsJSON()), [
      { label: '', protocol: 'tcp', prefix: '127.0.0.0/28', port: 25, action: 'reject' },
      { label: '', protocol: 'udp', prefix: '127.0.0.0/28', port: 25, action: 'reject' },
      { label: 'web', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80, action: 'steer' },
      { label: 'dns', protocol: 'udp', prefix: '127.0.0.0/24', port: 53, action: 'steer' },
      { label: 'web', protocol: 'udp', prefix: '127.0.0.0/24', port: 80, action: 'steer' },
      { label: 'v6all', protocol: 'tcp', prefix: '::/0', port: 0, action: 'steer' },
    ]);
    assert.equal(await tcpProbe('127.0.0.8', 80), 'web');
    assert.equal(await tcpProbe('127.0.0.7', 81), 'ECONNREFUSED');  // host and all24 are gone
    assert.equal(await tcpProbe('127.0.0.3', 25), 'ECONNREFUSED');
    assert.equal(await tcpProbe('::1', 80), 'v6all');

    const again = JSON.parse(ok(await tubectl(['load-bindings', file, '--json'])).stdout) as { generation: number };
    assert.deepEqual(again, { added: 0, removed: 0, changed: 0, unchanged: 6, generation: again.generation });
    assert.equal(ok(await tubectl(['load-bindings', file])).stdout,
      `bindings already up to date: 0 added, 0 removed, 0 changed, 6 unchanged (generation ${again.generation})\n`);

    // The output of bindings --json loads back as is.
    const roundTrip = write('roundtrip.json', await bindingsJSON());
    assert.deepEqual(JSON.parse(ok(await tubectl(['load-bindings', roundTrip, '--json'])).stdout), { added: 0, removed: 0, changed: 0, unchanged: 6, generation: again.generation });
  });

  const invalid: [string, unknown, RegExp][] = [
    ['not JSON', '{"bindings": [', /is not valid JSON/],
    ['unknown field', { bindings: [{ label: 'foo', prefix: '127.0.0.1', port: 0, bogus: false }] }, /bindings\[0\]\.bogus = false: unknown field "bogus"/],
    ['port out of range', { bindings: [{ label: 'bar', prefix: '127.0.0.2', port: 99999999 }] }, /bindings\[0\]\.port = 99999999: a port is 0-65535/],
    ['missing port', { bindings: [{ label: 'baz', prefix: '127.0.0.3' }] }, /bindings\[0\]\.port is missing/],
    ['bad prefix', { bindings: [{ label: 'a', prefix: '127.0.0.1' , port: 1 }, { label: 'a', prefix: '127.0.0.300', port: 1 }] }, /bindings\[1\]\.prefix = "127\.0\.0\.300"/],
    ['duplicate', { bindings: [{ label: 'a', prefix: '127.0.0.1', port: 1 }, { label: 'b', prefix: '127.0.0.1/32', port: 1, protocol: 'tcp' }] }, /bindings\[1\] = .*duplicates bindings\[0\]/],
    ['missing bindings', {}, /bindings is missing/],
    ['bad label', { bindings: [{ label: 'web/1', prefix: '127.0.0.1', port: 1 }] }, /bindings\[0\]\.label = "web\/1": invalid label/],
  ];
  for (const [what, content, message] of invalid) {
    test(`an invalid file (${what}) changes nothing and exits 1`, async () => {
      const before = await bindingsJSON();
      const r = await tubectl(['load-bindings', write(`${what}.json`, content)]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^tubectl: .*\.json is (not valid JSON|invalid, nothing was changed)/);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
      assert.equal(r.stdout, '');
      assert.equal(await bindingsJSON(), before, 'bindings --json is byte for byte the same');
    });
  }

  test('a file that does not exist exits 1; an empty list removes every binding', async () => {
    const r = await tubectl(['load-bindings', path.join(files, 'nope.json')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /cannot read .*nope\.json: no such file/);
    assert.match(ok(await tubectl(['load-bindings', '--force', write('empty.json', { bindings: [] })])).stdout, /0 added, 6 removed, 0 changed, 0 unchanged/);
    assert.equal(ok(await tubectl(['bindings'])).stdout, 'no bindings\n');
    assert.equal(await tcpProbe('127.0.0.8', 80), 'ECONNREFUSED');
  });
});
