// Change safety, as a subprocess over real connections in a throwaway
// namespace: hits and last hit, diff (load-bindings --dry-run), the guard of
// load-bindings and unbind, rollback, and rollback's atomicity under a
// connection loop.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startProbeLoop } from './lib/children.js';
import { isolate } from './lib/isolate.js';
import { readMeta } from './lib/meta.js';
import { tcpProbe, tcpServer, udpProbe, udpServer, type Served } from './lib/traffic.js';
import { ok, tubectlFor, type Result } from './lib/tubectl.js';
import { Dispatcher } from '../src/dispatcher.js';
import { META_WRITES } from '../src/layout.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
const files = mkdtempSync(path.join(tmpdir(), 'tubectl-safety-'));
const servers: Record<string, Served> = {};

interface Entry { label?: string; prefix: string; port: number; protocol?: 'tcp' | 'udp'; action?: 'reject' | 'observe' }
interface Listed { label: string; protocol: string; prefix: string; port: number; action: string; hits: string; lastHit: string | null }

const write = (name: string, bindings: Entry[]): string => {
  const file = path.join(files, name);
  writeFileSync(file, JSON.stringify({ bindings }));
  return file;
};
const sha256 = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const listed = async (): Promise<Listed[]> => (JSON.parse(ok(await tubectl(['bindings', '--json'])).stdout) as { bindings: Listed[] }).bindings;
const find = (list: Listed[], prefix: string, port: number, protocol = 'tcp'): Listed | undefined =>
  list.find((b) => b.prefix === prefix && b.port === port && b.protocol === protocol);
const sleep = (ms: number): Promise<void> => new Promise((ok) => setTimeout(ok, ms));

/** Fails unless tubectl exited with `code`. */
function exited(r: Result, code: number): Result {
  assert.equal(r.code, code, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

/**
 * What a change could alter: status --json byte for byte (bindings,
 * generations with their digests, destinations, counters), and bindings
 * --json, whose lastHit is the data plane's monotonic second turned into
 * wall-clock time at each read, so it may differ by that rounding alone.
 */
async function state(): Promise<{ status: string; bindings: Listed[]; writes: bigint }> {
  const status = ok(await tubectl(['status', '--json'])).stdout;
  return { status, bindings: await listed(), writes: readMeta((JSON.parse(status) as { stateDir: string }).stateDir, META_WRITES) };
}
async function assertUnchanged(before: { status: string; bindings: Listed[]; writes: bigint }): Promise<void> {
  const now = await state();
  assert.equal(now.status, before.status, 'status --json is byte for byte the same');
  // Not even the count of writes begun: a refusal writes nothing.
  assert.equal(now.writes, before.writes, 'meta\'s count of writes moved');
  const strip = (l: Listed[]) => l.map(({ lastHit, ...b }) => ({ ...b, seen: lastHit !== null }));
  assert.deepEqual(strip(now.bindings), strip(before.bindings));
  now.bindings.forEach((b, i) => {
    const was = before.bindings[i].lastHit;
    if (b.lastHit !== null && was !== null) assert.ok(Math.abs(Date.parse(b.lastHit) - Date.parse(was)) <= 1000, `${b.lastHit} vs ${was}`);
  });
}

before(async () => {
  ok(await tubectl(['load']));
  const d = Dispatcher.open({ bpffs });
  try {
    for (const name of ['a', 'b', 'c']) {
      servers[name] = await tcpServer(name);
      d.registerSocket(name, servers[name].fd);
    }
    servers.dns = await udpServer('dns');
    d.registerSocket('dns', servers.dns.fd);
  } finally {
    d.close();
  }
});

after(async () => {
  for (const s of Object.values(servers)) await s.close();
  await tubectl(['unload']);
  rmSync(files, { recursive: true });
});

const base: Entry[] = [
  { label: 'a', prefix: '127.0.0.0/24', port: 80, protocol: 'tcp' },
  { label: 'dns', prefix: '127.0.0.0/24', port: 53, protocol: 'udp' },
  { prefix: '127.0.0.0/28', port: 25, protocol: 'tcp', action: 'reject' },
];

describe('hits and last hit', () => {
  test('move on real TCP connections and UDP datagrams, refusals included', async () => {
    ok(await tubectl(['load-bindings', write('base.json', base)]));
    assert.equal(ok(await tubectl(['bindings', '--stats'])).stdout, [
      'protocol  prefix        port  label     hits  last hit',
      'tcp       127.0.0.0/28    25  <reject>     0  never',
      'tcp       127.0.0.0/24    80  a            0  never',
      'udp       127.0.0.0/24    53  dns          0  never',
      '',
    ].join('\n'));
    for (let i = 0; i < 3; i++) assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
    for (let i = 0; i < 2; i++) assert.equal(await udpProbe('127.0.0.9', 53), 'dns');
    assert.equal(await tcpProbe('127.0.0.3', 25), 'ECONNREFUSED');
    const text = ok(await tubectl(['bindings', '--stats'])).stdout;
    assert.match(text, /^tcp +127\.0\.0\.0\/28 +25 +<reject> +1 +\ds ago$/m);
    assert.match(text, /^tcp +127\.0\.0\.0\/24 +80 +a +3 +\ds ago$/m);
    assert.match(text, /^udp +127\.0\.0\.0\/24 +53 +dns +2 +\ds ago$/m);
    const list = await listed();
    assert.deepEqual(list.map((b) => b.hits), ['1', '3', '2']);
    for (const b of list) {
      assert.match(b.lastHit ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
      assert.ok(Math.abs(Date.parse(b.lastHit ?? '') - Date.now()) < 10_000, `${b.lastHit} is now`);
    }
    // The plain listing is unchanged.
    assert.match(ok(await tubectl(['bindings'])).stdout, /^protocol  prefix        port  label\n/);
  });

  test('survive a load-bindings that leaves the binding unchanged; a new binding starts at zero', async () => {
    const before = await listed();
    const grown = [...base, { label: 'b', prefix: '127.0.0.0/24', port: 81, protocol: 'tcp' as const }];
    assert.match(ok(await tubectl(['load-bindings', write('grown.json', grown)])).stdout, /1 added, 0 removed, 0 changed, 3 unchanged/);
    const after = await listed();
    for (const [prefix, port, protocol] of [['127.0.0.0/24', 80, 'tcp'], ['127.0.0.0/24', 53, 'udp'], ['127.0.0.0/28', 25, 'tcp']] as const) {
      assert.equal(find(after, prefix, port, protocol)?.hits, find(before, prefix, port, protocol)?.hits, `${protocol} ${prefix} ${port}`);
      assert.equal(find(after, prefix, port, protocol)?.lastHit, find(before, prefix, port, protocol)?.lastHit);
    }
    assert.deepEqual(find(after, '127.0.0.0/24', 81), { label: 'b', protocol: 'tcp', prefix: '127.0.0.0/24', port: 81, action: 'steer', hits: '0', lastHit: null });
    assert.equal(await tcpProbe('127.0.0.8', 81), 'b');
    assert.equal(find(await listed(), '127.0.0.0/24', 81)?.hits, '1');
  });
});

describe('diff and load-bindings --dry-run', () => {
  // a relabelled to c, dns removed, a new /25: against grown.json's set.
  const change: Entry[] = [
    { label: 'c', prefix: '127.0.0.0/24', port: 80, protocol: 'tcp' },
    { label: 'b', prefix: '127.0.0.0/24', port: 81, protocol: 'tcp' },
    { prefix: '127.0.0.0/28', port: 25, protocol: 'tcp', action: 'reject' },
    { label: 'c', prefix: '127.0.0.0/25', port: 8080, protocol: 'tcp' },
  ];

  test('print the change with hits and last hit, most preferred first, and change nothing', async () => {
    const file = write('change.json', change);
    const digest = sha256(file);
    const before = await state();
    const text = exited(await tubectl(['diff', file]), 0).stdout;
    const lines = text.split('\n');
    assert.match(lines[0], /^change +protocol +prefix +port +label +hits +last hit$/);
    assert.match(lines[1], /^added +tcp +127\.0\.0\.0\/25 +8080 +c +0 +never$/);
    assert.match(lines[2], /^changed +tcp +127\.0\.0\.0\/24 +80 +a => c +3 +\d+s ago$/);
    assert.match(lines[3], /^removed +udp +127\.0\.0\.0\/24 +53 +dns +2 +\d+s ago$/);
    assert.equal(lines[4], '1 added, 1 removed, 1 changed, 2 unchanged; 2 live bindings withdrawn or redirected (hit within 10m): load-bindings refuses this without --force');
    assert.equal(lines.length, 6);
    const dry = exited(await tubectl(['load-bindings', '--dry-run', file]), 0).stdout;
    assert.equal(dry.split('\n').slice(0, 2).join('\n'), lines.slice(0, 2).join('\n'));
    assert.equal(dry.split('\n')[4], lines[4]);
    exited(await tubectl(['diff', '--exit-code', file]), 3);
    exited(await tubectl(['load-bindings', '--dry-run', '--exit-code', file]), 3);
    // A window of 0: nothing is live, and the summary says no more than the counts.
    assert.match(exited(await tubectl(['diff', '--live-window', '0', file]), 0).stdout, /\n1 added, 1 removed, 1 changed, 2 unchanged\n$/);
    await assertUnchanged(before);
    assert.equal(sha256(file), digest, 'the file is not touched');
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
  });

  test('--json: added, removed, changed, unchanged, live; bindings carry hits and lastHit', async () => {
    const before = await state();
    const doc = JSON.parse(exited(await tubectl(['diff', '--json', write('change.json', change)]), 0).stdout) as {
      added: Listed[]; removed: Listed[]; changed: { from: Listed; to: Listed }[]; unchanged: number; live: Listed[];
    };
    assert.deepEqual(Object.keys(doc), ['added', 'removed', 'changed', 'unchanged', 'live']);
    assert.deepEqual(doc.added, [{ label: 'c', protocol: 'tcp', prefix: '127.0.0.0/25', port: 8080, action: 'steer', hits: '0', lastHit: null }]);
    assert.deepEqual(doc.removed.map((b) => [b.label, b.protocol, b.prefix, b.port, b.hits]), [['dns', 'udp', '127.0.0.0/24', 53, '2']]);
    assert.deepEqual(doc.changed.map((c) => [c.from.label, c.to.label]), [['a', 'c']]);
    const a = find(before.bindings, '127.0.0.0/24', 80);
    assert.ok(Number(a?.hits) >= 3);
    assert.deepEqual([doc.changed[0].from.hits, doc.changed[0].to.hits], [a?.hits, a?.hits], 'a changed binding keeps its counters');
    assert.equal(doc.unchanged, 2);
    assert.deepEqual(doc.live.map((b) => `${b.protocol} ${b.prefix} ${b.port}`), ['tcp 127.0.0.0/24 80', 'udp 127.0.0.0/24 53']);
    for (const b of doc.live) assert.match(b.lastHit ?? '', /Z$/);
    await assertUnchanged(before);
  });

  test('no differences: exit 0 even with --exit-code; an invalid file is refused as load-bindings refuses it', async () => {
    const same = exited(await tubectl(['diff', '--exit-code', path.join(files, 'grown.json')]), 0);
    assert.equal(same.stdout, 'no changes: 4 bindings unchanged\n');
    const bad = write('bad.json', [{ label: 'a', prefix: '127.0.0.300', port: 1 }]);
    const r = exited(await tubectl(['diff', bad]), 1);
    const l = exited(await tubectl(['load-bindings', bad]), 1);
    assert.equal(r.stderr, l.stderr);
    assert.match(r.stderr, /bad\.json is invalid, nothing was changed: bindings\[0\]\.prefix = "127\.0\.0\.300"/);
    // bindings --json (with hits and lastHit) is a valid file: it shows no change.
    const listing = path.join(files, 'listing.json');
    writeFileSync(listing, ok(await tubectl(['bindings', '--json'])).stdout);
    assert.equal(exited(await tubectl(['diff', '--exit-code', listing]), 0).stdout, 'no changes: 4 bindings unchanged\n');
  });

  test('a file load-bindings would refuse for lack of destination room: diff warns, with the reason load-bindings gives', async () => {
    const crowded = write('crowded.json', Array.from({ length: 4100 }, (_, i) => ({ label: `many${i}`, protocol: 'tcp' as const, prefix: '127.0.0.0/24', port: 1000 + i })));
    const before = await listed();
    const d = exited(await tubectl(['diff', crowded]), 0);
    const why = /^tubectl: warning: load-bindings would refuse this file, even with --force: (the file names 4100 new destinations .* of 4096 are free while the bindings in force use the rest)\n$/.exec(d.stderr);
    assert.ok(why, d.stderr);
    assert.match(d.stdout, /4100 added/);
    const l = exited(await tubectl(['load-bindings', '--force', crowded]), 1);
    assert.ok(l.stderr.includes(why[1]), l.stderr);
    assert.deepEqual(await listed(), before);
    // A file that fits: no warning.
    assert.equal(exited(await tubectl(['diff', path.join(files, 'grown.json')]), 0).stderr, '');
  });
});

describe('the guard', () => {
  const withA = (a: Entry | undefined): Entry[] => [
    ...(a ? [a] : []),
    { label: 'b', prefix: '127.0.0.0/24', port: 81, protocol: 'tcp' },
    { label: 'dns', prefix: '127.0.0.0/24', port: 53, protocol: 'udp' },
    { prefix: '127.0.0.0/28', port: 25, protocol: 'tcp', action: 'reject' },
  ];
  const refused = async (file: string, row: RegExp): Promise<void> => {
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a'); // a is live
    const before = await state();
    const r = exited(await tubectl(['load-bindings', file]), 1);
    assert.equal(r.stdout, '');
    const name = path.basename(file);
    assert.match(r.stderr, new RegExp(`^tubectl: refusing to load .*${name}, nothing was changed:\\n` +
      ' {2}1 binding that carried traffic in the last 10m would be withdrawn or redirected:\\n' +
      ' {2}change +protocol +prefix +port +label +hits +last hit\\n'));
    assert.match(r.stderr, row);
    assert.match(r.stderr, new RegExp(`\\nsee the whole change with tubectl --bpffs \\S+ diff .*${name}; to apply it anyway: tubectl --bpffs \\S+ load-bindings --force .*${name}\\n$`));
    await assertUnchanged(before);
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
  };

  test('refuses to withdraw a live binding; --force applies it', async () => {
    ok(await tubectl(['load-bindings', write('witha.json', withA(base[0]))]));
    const file = write('withdraw.json', withA(undefined));
    await refused(file, /\n {2}removed +tcp +127\.0\.0\.0\/24 +80 +a +\d+ +\d+s ago\n/);
    const r = ok(await tubectl(['load-bindings', '--force', file]));
    assert.match(r.stdout, /^replaced bindings: 0 added, 1 removed, 0 changed, 3 unchanged/);
    assert.equal(r.stderr, '');
    assert.equal(await tcpProbe('127.0.0.8', 80), 'ECONNREFUSED');
  });

  test('refuses to point a live binding at another label; --force applies it, and the counters stay', async () => {
    ok(await tubectl(['load-bindings', write('witha.json', withA(base[0]))]));
    const file = write('relabel.json', withA({ label: 'c', prefix: '127.0.0.0/24', port: 80, protocol: 'tcp' }));
    await refused(file, /\n {2}changed +tcp +127\.0\.0\.0\/24 +80 +a => c +\d+ +\d+s ago\n/);
    const hits = Number(find(await listed(), '127.0.0.0/24', 80)?.hits);
    ok(await tubectl(['load-bindings', '--force', file]));
    assert.equal(await tcpProbe('127.0.0.8', 80), 'c');
    assert.equal(find(await listed(), '127.0.0.0/24', 80)?.hits, String(hits + 1), 'a changed binding keeps its counters');
  });

  test('refuses to turn a live binding into reject; turning it back is no redirect', async () => {
    ok(await tubectl(['load-bindings', '--force', write('witha.json', withA(base[0]))]));
    const file = write('reject.json', withA({ label: 'a', prefix: '127.0.0.0/24', port: 80, protocol: 'tcp', action: 'reject' }));
    await refused(file, /\n {2}changed +tcp +127\.0\.0\.0\/24 +80 +a => <reject:a> +\d+ +\d+s ago\n/);
    ok(await tubectl(['load-bindings', '--force', file]));
    assert.equal(await tcpProbe('127.0.0.8', 80), 'ECONNREFUSED');
    // The reject binding is live now; steering its traffic to the same label again refuses no one.
    assert.match(ok(await tubectl(['load-bindings', path.join(files, 'witha.json')])).stdout, /0 added, 0 removed, 1 changed/);
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
  });

  test('refuses to turn a live steer binding into observe, and a live observe binding into reject', async () => {
    ok(await tubectl(['load-bindings', '--force', write('witha.json', withA(base[0]))]));
    const observe = write('observe.json', withA({ label: 'a', prefix: '127.0.0.0/24', port: 80, protocol: 'tcp', action: 'observe' }));
    await refused(observe, /\n {2}changed +tcp +127\.0\.0\.0\/24 +80 +a => <observe:a> +\d+ +\d+s ago\n/);
    ok(await tubectl(['load-bindings', '--force', observe]));
    // Observed, then decided as if it were not there: no shorter binding, no listener.
    assert.equal(await tcpProbe('127.0.0.8', 80), 'ECONNREFUSED');
    const before = await state();
    const reject = write('observe-reject.json', withA({ label: 'a', prefix: '127.0.0.0/24', port: 80, protocol: 'tcp', action: 'reject' }));
    const r = exited(await tubectl(['load-bindings', reject]), 1);
    assert.match(r.stderr, /\n {2}changed +tcp +127\.0\.0\.0\/24 +80 +<observe:a> => <reject:a> +\d+ +\d+s ago\n/);
    await assertUnchanged(before);
    ok(await tubectl(['load-bindings', '--force', path.join(files, 'witha.json')]));
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
  });

  test('--live-window: 0 turns the check off; a hit older than the window is not live', async () => {
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
    const file = path.join(files, 'withdraw.json');
    ok(await tubectl(['load-bindings', '--live-window', '0', file]));
    ok(await tubectl(['load-bindings', '--force', path.join(files, 'witha.json')]));
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
    exited(await tubectl(['load-bindings', '--live-window', '1m', file]), 1);
    await sleep(2500);
    ok(await tubectl(['load-bindings', '--live-window', '1s', file]));
  });

  test('refuses to remove more than half of the bindings in force, and more than 100, whatever the traffic', async () => {
    const many = (n: number): Entry[] => Array.from({ length: n }, (_, i) => ({ label: 'b', prefix: `10.0.${i >> 8}.${i & 255}`, port: 443, protocol: 'tcp' }));
    ok(await tubectl(['load-bindings', '--force', write('many.json', many(150))]));
    const before = await state();
    const few = write('few.json', many(20));
    const r = exited(await tubectl(['load-bindings', few]), 1);
    assert.match(r.stderr, /^tubectl: refusing to load .*few\.json, nothing was changed:\n {2}it would remove 130 of the 150 bindings in force: more than half, and more than 100, is far more often a broken generator than an intention\n/);
    assert.doesNotMatch(r.stderr, /carried traffic/);
    assert.match(exited(await tubectl(['diff', few]), 0).stdout, /\n0 added, 130 removed, 0 changed, 20 unchanged; 130 of 150 bindings removed: load-bindings refuses this without --force\n$/);
    await assertUnchanged(before);
    // Exactly half is allowed.
    assert.match(ok(await tubectl(['load-bindings', write('half.json', many(75))])).stdout, /0 added, 75 removed/);
    ok(await tubectl(['load-bindings', path.join(files, 'many.json')]));
    const forced = ok(await tubectl(['load-bindings', '--force', few]));
    assert.match(forced.stdout, /0 added, 130 removed, 0 changed, 20 unchanged/);
    assert.equal(forced.stderr, 'tubectl: note: --force: removed 130 of 150 bindings\n');
  });
});

describe('unbind and bind', () => {
  test('unbind refuses a live binding, names it and its traffic; --force removes it', async () => {
    ok(await tubectl(['bind', 'a', 'tcp', '127.0.0.0/24', '80']));
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
    const before = await state();
    const r = exited(await tubectl(['unbind', 'a', 'tcp', '127.0.0.0/24', '80']), 1);
    assert.match(r.stderr, /^tubectl: refusing to remove tcp 127\.0\.0\.0\/24 80 -> a, nothing was changed: it carried traffic in the last 10m \(1 hit, last \d+s ago\); to remove it anyway: tubectl --bpffs \S+ unbind --force a tcp 127\.0\.0\.0\/24 80\n$/);
    // The command to copy acts on the same dispatcher: it names the --bpffs this one was given.
    assert.ok(r.stderr.includes(`anyway: tubectl --bpffs ${bpffs} unbind --force a `), r.stderr);
    await assertUnchanged(before);
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
    assert.equal(ok(await tubectl(['unbind', '--force', 'a', 'tcp', '127.0.0.0/24', '80'])).stdout, 'removed tcp 127.0.0.0/24 80 -> a\n');
    assert.equal(await tcpProbe('127.0.0.8', 80), 'ECONNREFUSED');
    // Never hit: no --force needed.
    ok(await tubectl(['bind', 'a', 'tcp', '127.0.0.0/24', '80']));
    ok(await tubectl(['unbind', 'a', 'tcp', '127.0.0.0/24', '80']));
  });

  test('bind that redirects a live binding proceeds and says so on stderr', async () => {
    ok(await tubectl(['bind', 'a', 'tcp', '127.0.0.0/24', '80']));
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
    const r = ok(await tubectl(['bind', 'b', 'tcp', '127.0.0.0/24', '80']));
    assert.equal(r.stdout, 'bound tcp 127.0.0.0/24 80 -> b (was tcp 127.0.0.0/24 80 -> a)\n');
    assert.match(r.stderr, /^tubectl: warning: tcp 127\.0\.0\.0\/24 80 -> a carried traffic in the last 10m \(1 hit, last \d+s ago\); its connections now go to b\n$/);
    assert.equal(await tcpProbe('127.0.0.8', 80), 'b');
    const rej = ok(await tubectl(['bind', '--reject', 'tcp', '127.0.0.0/24', '80']));
    assert.match(rej.stderr, /warning: tcp 127\.0\.0\.0\/24 80 -> b carried traffic in the last 10m \(2 hits, last \d+s ago\); its connections are now refused\n$/);
    assert.equal(ok(await tubectl(['bind', '--live-window', '0', 'a', 'tcp', '127.0.0.0/24', '80'])).stderr, '');
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
    // Observe sends nothing to its label, whatever the label says.
    const obs = ok(await tubectl(['bind', '--observe', 'b', 'tcp', '127.0.0.0/24', '80']));
    assert.match(obs.stderr, /^tubectl: warning: tcp 127\.0\.0\.0\/24 80 -> a carried traffic in the last 10m \(\d+ hits?, last \d+s ago\); its connections are now only observed: they go where a shorter binding, or the kernel's own lookup, sends them\n$/);
    assert.equal(await tcpProbe('127.0.0.8', 80), 'ECONNREFUSED');
    ok(await tubectl(['unbind', '--force', '--observe', 'b', 'tcp', '127.0.0.0/24', '80']));
  });
});

describe('rollback', () => {
  const A: Entry[] = [{ label: 'a', prefix: '127.0.0.0/24', port: 80, protocol: 'tcp' }];
  const B: Entry[] = [{ label: 'b', prefix: '127.0.0.0/24', port: 81, protocol: 'tcp' }];
  interface Gen { number: number; applied: string; digest: string | null; bindings: number }
  const generations = async (): Promise<{ inForce: Gen; previous: Gen | null }> =>
    (JSON.parse(ok(await tubectl(['status', '--json'])).stdout) as { generations: { inForce: Gen; previous: Gen | null } }).generations;

  before(async () => {
    ok(await tubectl(['unload']));
    ok(await tubectl(['load']));
    const d = Dispatcher.open({ bpffs });
    try {
      for (const name of ['a', 'b', 'c']) d.registerSocket(name, servers[name].fd);
    } finally {
      d.close();
    }
  });

  test('with no previous generation: a clear error, exit 1', async () => {
    assert.deepEqual((await generations()).previous, null);
    assert.match(ok(await tubectl(['status'])).stdout, /\n {2}previous: none\n/);
    for (const args of [['rollback'], ['rollback', '--dry-run']]) {
      const r = exited(await tubectl(args), 1);
      assert.equal(r.stderr, 'tubectl: there is no previous generation to roll back to (none was kept since the load, or a replace was interrupted): nothing was changed\n');
    }
  });

  test('restores the previous set, discarding later edits and saying so; twice returns forward', async () => {
    ok(await tubectl(['load-bindings', write('A.json', A)]));
    ok(await tubectl(['load-bindings', write('B.json', B)]));
    const g3 = await generations();
    assert.equal(g3.inForce.number, 3);
    assert.equal(g3.previous?.number, 2);
    assert.match(g3.inForce.digest ?? '', /^[0-9a-f]{16}$/);
    assert.match(ok(await tubectl(['status'])).stdout,
      /\n {2}in force: generation 3, applied \S+Z \(\d+s ago\), 1 binding, digest [0-9a-f]{16}\n {2}previous: generation 2, applied \S+Z \(\d+s ago\), 1 binding, digest [0-9a-f]{16}; tubectl rollback returns to it\n/);
    assert.equal(await tcpProbe('127.0.0.8', 81), 'b');
    ok(await tubectl(['bind', 'c', 'tcp', '127.0.0.0/24', '82']));  // an edit of generation 3
    assert.equal((await generations()).inForce.digest, null);

    // The dry run: the diff it would apply, the guard's verdict, nothing changed.
    const before = await state();
    const dry = exited(await tubectl(['rollback', '--dry-run']), 0).stdout.split('\n');
    assert.match(dry[0], /^rollback would go from generation 3 to generation 2 \(applied \S+Z, \d+s ago\)$/);
    assert.match(dry[1], /^change +protocol +prefix +port +label +hits +last hit$/);
    assert.match(dry[2], /^added +tcp +127\.0\.0\.0\/24 +80 +a +0 +never$/);
    assert.match(dry[3], /^removed +tcp +127\.0\.0\.0\/24 +81 +b +1 +\d+s ago$/);
    assert.match(dry[4], /^removed +tcp +127\.0\.0\.0\/24 +82 +c +0 +never$/);
    assert.equal(dry[5], '1 added, 2 removed, 0 changed, 0 unchanged; 1 live binding withdrawn or redirected (hit within 10m): rollback refuses this without --force');
    assert.equal(dry[6], 'note: bind or unbind changed generation 3 after it was applied; those edits are among the changes above and would go with it');
    exited(await tubectl(['rollback', '--dry-run', '--exit-code']), 3);
    await assertUnchanged(before);

    // b is live: refused without --force.
    const r = exited(await tubectl(['rollback']), 1);
    assert.match(r.stderr, /^tubectl: refusing to roll back, nothing was changed:\n {2}1 binding that carried traffic in the last 10m would be withdrawn or redirected:\n/);
    assert.match(r.stderr, /\n {2}removed +tcp +127\.0\.0\.0\/24 +81 +b +1 +\d+s ago\n/);
    assert.match(r.stderr, /\nsee the whole change with tubectl --bpffs \S+ rollback --dry-run; to apply it anyway: tubectl --bpffs \S+ rollback --force\n$/);
    await assertUnchanged(before);

    const back = ok(await tubectl(['rollback', '--force']));
    assert.match(back.stdout, /^rolled back from generation 3 to generation 2 \(applied \S+Z, \d+s ago\)\n/);
    assert.match(back.stdout, /\n1 added, 2 removed, 0 changed, 0 unchanged\nnote: bind or unbind changed generation 3 after it was applied; those edits are among the changes above, and a second rollback restores them\ngeneration 3 is now the previous one: tubectl rollback returns to it\n$/);
    assert.equal(back.stderr, '');
    assert.equal(await tcpProbe('127.0.0.8', 80), 'a');
    assert.equal(await tcpProbe('127.0.0.8', 81), 'ECONNREFUSED');
    assert.equal(await tcpProbe('127.0.0.8', 82), 'ECONNREFUSED');
    const g2 = await generations();
    assert.deepEqual([g2.inForce.number, g2.previous?.number], [2, 3]);
    assert.equal(g2.inForce.digest, g3.previous?.digest, 'generation 2 is the set its replace wrote');

    // Twice: forward again, the edit with it; the counters of b are its own.
    const doc = JSON.parse(ok(await tubectl(['rollback', '--force', '--json'])).stdout) as Record<string, unknown> & { added: Listed[]; removed: Listed[] };
    assert.deepEqual(Object.keys(doc), ['from', 'to', 'discardsEdits', 'added', 'removed', 'changed', 'unchanged', 'live']);
    assert.deepEqual([doc.from, doc.to, doc.discardsEdits], [2, 3, false]);
    assert.deepEqual(doc.added.map((b) => [b.label, b.port, b.hits]), [['b', 81, '1'], ['c', 82, '0']]);
    assert.deepEqual(doc.removed.map((b) => [b.label, b.port]), [['a', 80]]);
    assert.equal(await tcpProbe('127.0.0.8', 81), 'b');
    assert.equal(await tcpProbe('127.0.0.8', 82), 'c');
    assert.equal(await tcpProbe('127.0.0.8', 80), 'ECONNREFUSED');
    assert.deepEqual([(await generations()).inForce.number, (await generations()).previous?.number], [3, 2]);

    // Back to 2, then a replace: it discards 3 and is generation 4, not a second 3.
    ok(await tubectl(['rollback', '--force']));
    assert.match(ok(await tubectl(['load-bindings', '--force', path.join(files, 'B.json')])).stdout, /\(generation 4\)\n$/);
    assert.deepEqual([(await generations()).inForce.number, (await generations()).previous?.number], [4, 2]);
  });

  test('is one atomic flip: a connection loop during many rollbacks sees only the old or the new set', async () => {
    const fallback = await tcpServer('fallback', '0.0.0.0', 6000);
    const d = Dispatcher.open({ bpffs });
    try {
      // Set A and set B share no binding: a rollback that is not atomic shows
      // a moment with neither, and the connection falls through to `fallback`.
      ok(await tubectl(['load-bindings', '--force', write('loopA.json', [{ label: 'a', prefix: '127.0.0.0/24', port: 6000, protocol: 'tcp' }, { label: 'a', prefix: '127.0.0.7', port: 0, protocol: 'tcp' }])]));
      ok(await tubectl(['load-bindings', '--force', write('loopB.json', [{ label: 'b', prefix: '127.0.0.0/25', port: 0, protocol: 'tcp' }, { label: 'b', prefix: '127.0.0.6/31', port: 6000, protocol: 'tcp' }])]));
      const loop = await startProbeLoop('127.0.0.7', 6000);
      const flips = 200;
      for (let i = 0; i < flips; i++) {
        d.rollback();
        await new Promise((ok) => setImmediate(ok));
      }
      // A few through tubectl too, as an operator runs it.
      for (let i = 0; i < 4; i++) ok(await tubectl(['rollback', '--force']));
      const { total, seen } = await loop.stop();
      assert.ok(total > 0);
      for (const who of Object.keys(seen)) assert.ok(who === 'a' || who === 'b', `observed ${who}: ${JSON.stringify(seen)}`);
      assert.ok((seen.a ?? 0) > 0 && (seen.b ?? 0) > 0, `both sets served: ${JSON.stringify(seen)}`);
      // An even number of rollbacks: B is in force again.
      assert.equal(await tcpProbe('127.0.0.7', 6000), 'b');
      assert.deepEqual(d.generations().inForce.number, d.generations().previous!.number + 1);
    } finally {
      d.close();
      await fallback.close();
    }
  });
});
