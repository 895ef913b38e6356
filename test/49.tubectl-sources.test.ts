// Observe, then reject, with real traffic in a throwaway namespace: an
// observe binding counts connections and where they come from without
// changing where they go; turned into reject it refuses them, and its counts
// and sources carry on. Then the bound of the sources table, with volume
// sent through BPF_PROG_TEST_RUN.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { tcpServer, type Served } from './lib/traffic.js';
import { ok, tubectlFor } from './lib/tubectl.js';
import { parseBinding } from '../src/binding.js';
import { Dispatcher } from '../src/dispatcher.js';
import { BpfMap } from '../src/bpfmap.js';
import { ACTION_OBSERVE, MAP_SPECS, PIN } from '../src/layout.js';
import { native } from '../src/native.js';
import { probe } from '../src/probe.js';
import { formatPrefix } from '../src/prefix.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
let web: Served;

/** Connects from `from` (bound before connecting); resolves to the server's name or the error code. */
function connectFrom(from: string, host: string, port: number, localPort?: number): Promise<string> {
  return new Promise((resolve) => {
    const c = net.connect({ host, port, localAddress: from, localPort });
    let data = '';
    c.setTimeout(5000, () => { c.destroy(); resolve('timeout'); });
    c.on('data', (d) => { data += d; });
    c.on('end', () => resolve(data));
    c.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}

interface SourcesDoc {
  bindings: Array<{
    binding: { label: string; protocol: string; prefix: string; port: number; action: string; hits: string; lastHit: string | null };
    hits: string;
    lastHit: string | null;
    sources: Array<{ prefix: string; hits: string; lastSeen: string | null }>;
  }>;
}
const sourcesJSON = async (...args: string[]): Promise<SourcesDoc> => JSON.parse(ok(await tubectl(['sources', '--json', ...args])).stdout) as SourcesDoc;
const counts = (d: SourcesDoc['bindings'][number]) => d.sources.map((s) => [s.prefix, s.hits]);

/**
 * A source address in 127.BLOCK.0.0/24 that no connection of this file has
 * used. A connection whose four-tuple meets the server's TIME_WAIT from an
 * earlier one runs the lookup twice when the binding now rejects (the SYN
 * meets the TIME_WAIT, which answers with an ACK; the client resets and
 * sends its SYN again a second later): real behaviour of the kernel, and an
 * extra hit in counts this file checks exactly.
 */
let lastHost = 0;
const freshSource = (block: number): string => `127.${block}.0.${++lastHost}`;

/** Sends once from 127.1.0.0/24, twice from 127.2.0.0/24 and three times from 127.3.0.0/24 to 127.0.0.200:80; returns the answers. */
async function sendFromThreeBlocks(): Promise<string[]> {
  const out: string[] = [];
  for (const [block, times] of [[1, 1], [2, 2], [3, 3]] as const) {
    for (let i = 0; i < times; i++) out.push(await connectFrom(freshSource(block), '127.0.0.200', 80));
  }
  return out;
}

before(async () => {
  ok(await tubectl(['load']));
  web = await tcpServer('web');
  ok(await tubectl(['register-pid', String(process.pid), 'web', 'tcp', '127.0.0.1', String(web.port)]));
  ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '0']));
  ok(await tubectl(['bind', '--observe', 'tcp', '127.0.0.128/25', '80']));
});

after(async () => {
  await web.close();
  await tubectl(['unload']);
});

test('observed connections still reach web; sources shows each source /24 with its count, busiest first', async () => {
  assert.deepEqual(await sendFromThreeBlocks(), Array(6).fill('web'));
  // Outside the observe binding (the lower /25, another port): steered, not sampled.
  assert.equal(await connectFrom('127.4.0.1', '127.0.0.7', 80), 'web');
  assert.equal(await connectFrom('127.4.0.1', '127.0.0.200', 443), 'web');

  const doc = await sourcesJSON();
  assert.equal(doc.bindings.length, 1);
  const [b] = doc.bindings;
  assert.deepEqual({ ...b.binding, lastHit: null }, { label: '', protocol: 'tcp', prefix: '127.0.0.128/25', port: 80, action: 'observe', hits: '6', lastHit: null });
  assert.equal(b.hits, '6');
  assert.match(b.lastHit ?? '', /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  assert.deepEqual(counts(b), [['127.3.0.0/24', '3'], ['127.2.0.0/24', '2'], ['127.1.0.0/24', '1']]);
  for (const s of b.sources) assert.match(s.lastSeen ?? '', /Z$/);

  const top = await sourcesJSON('--top', '2', 'tcp', '127.0.0.128/25', '80');
  assert.deepEqual(counts(top.bindings[0]), [['127.3.0.0/24', '3'], ['127.2.0.0/24', '2']]);

  // check judges the steer binding and counts both.
  assert.equal(ok(await tubectl(['check'])).stdout, 'no problems found (2 bindings, 1 registered destination)\n');

  const text = ok(await tubectl(['sources', '--top', '2'])).stdout;
  assert.match(text, /^tcp 127\.0\.0\.128\/25 80 <observe>: 6 hits, last hit \d+s ago\n  source +hits +last seen\n  127\.3\.0\.0\/24 +3 +\d+s ago\n  127\.2\.0\.0\/24 +2 +\d+s ago\n  \.\.\. 1 more source block sampled/);
});

test('arguments are checked strictly', async () => {
  for (const args of [['--top', '0'], ['--top', '1001'], ['--top', '07'], ['--top', 'ten'], ['tcp'], ['tcp', '127.0.0.128/25'],
    ['tcp', '127.0.0.128/25', '80', 'extra'], ['sctp', '127.0.0.128/25', '80'], ['tcp', '127.0.0.300/25', '80'], ['tcp', '127.0.0.128/25', '080'],
    ['--reset', 'tcp', '127.0.0.128/25', '80'], ['--reset', '--top', '5']]) {
    const r = await tubectl(['sources', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^tubectl: /);
  }
  const steer = await tubectl(['sources', 'tcp', '127.0.0.0/24', '0']);
  assert.equal(steer.code, 1);
  assert.match(steer.stderr, /steers traffic: only observe and reject bindings/);
  const none = await tubectl(['sources', 'udp', '127.0.0.128/25', '80']);
  assert.equal(none.code, 1);
  assert.match(none.stderr, /udp 127\.0\.0\.128\/25 80 does not exist/);
});

test('flipped to reject, the same sources are refused, and the counts carry on', async () => {
  let r = await tubectl(['bind', '--reject', 'tcp', '127.0.0.128/25', '80']);
  if (r.code !== 0) r = await tubectl(['bind', '--reject', '--force', 'tcp', '127.0.0.128/25', '80']);
  ok(r);
  assert.match(r.stdout, /bound tcp 127\.0\.0\.128\/25 80 -> reject \(was tcp 127\.0\.0\.128\/25 80 -> observe\)/);
  assert.deepEqual(await sendFromThreeBlocks(), Array(6).fill('ECONNREFUSED'));
  assert.equal(await connectFrom('127.4.0.1', '127.0.0.7', 80), 'web');

  const [b] = (await sourcesJSON()).bindings;
  assert.equal(b.binding.action, 'reject');
  assert.equal(b.hits, '12');
  assert.deepEqual(counts(b), [['127.3.0.0/24', '6'], ['127.2.0.0/24', '4'], ['127.1.0.0/24', '2']]);
});

test('metrics: tubular_observed_total for observe bindings, rejects beside it, no per-source series', async () => {
  ok(await tubectl(['bind', '--observe', 'web-plain', 'tcp', '127.0.0.0/25', '80']));
  // No socket for web-plain, and none needed: no blackhole.
  assert.match((await tubectl(['check', '--live-window', '0'])).stdout, /^no problems found \(3 bindings, 1 registered destination\)\n$/);
  assert.equal(await connectFrom('127.5.0.1', '127.0.0.7', 80), 'web');
  assert.equal(await connectFrom('127.5.0.1', '127.0.0.8', 80), 'web');
  const { startMetricsServer } = await import('../src/cli/metrics.js');
  const server = await startMetricsServer({ stdout: process.stdout, stderr: process.stderr, getenv: () => undefined, pid: process.pid,
    netns: '/proc/self/ns/net', bpffs, json: false }, '127.9.0.1', '0'); // outside the /24 that web takes on every port
  try {
    const text = await (await fetch(`http://127.9.0.1:${server.port}/metrics`)).text();
    assert.match(text, /# TYPE tubular_observed_total counter\n/);
    assert.match(text, /\ntubular_observed_total\{protocol="tcp",prefix="127\.0\.0\.0\/25",port="80"\} 2\n/);
    assert.match(text, /\ntubular_rejects_total\{protocol="tcp",prefix="127\.0\.0\.128\/25",port="80"\} 12\n/);
    assert.doesNotMatch(text, /127\.[1-5]\.0\.0/);
    // web-plain only names the observe binding: a destination with no
    // socket and no steer binding, which TubularDestinationSocketMissing
    // (socket_registered == 0 and bindings > 0) must not page for.
    assert.match(text, /\ntubular_destination_socket_registered\{label="web-plain",domain="ipv4",protocol="tcp"\} 0\n/);
    assert.match(text, /\ntubular_destination_bindings\{label="web-plain",domain="ipv4",protocol="tcp"\} 0\n/);
    assert.match(text, /\ntubular_destination_bindings\{label="web",domain="ipv4",protocol="tcp"\} 1\n/);
  } finally {
    await server.close();
    ok(await tubectl(['unbind', '--observe', '--force', 'web-plain', 'tcp', '127.0.0.0/25', '80']));
  }
});

test('--reset clears the sample and keeps the hit counts', async () => {
  const r = ok(await tubectl(['sources', '--reset']));
  assert.match(r.stdout, /^cleared /);
  const [b] = (await sourcesJSON()).bindings;
  assert.equal(b.hits, '12');
  assert.deepEqual(b.sources, []);
  assert.equal(await connectFrom(freshSource(2), '127.0.0.200', 80), 'ECONNREFUSED');
  assert.deepEqual(counts((await sourcesJSON()).bindings[0]), [['127.2.0.0/24', '1']]);
});

test('a refused connection that meets an earlier one\'s TIME_WAIT is decided twice (as TUBECTL.md says)', async () => {
  // The same four-tuple as a connection web served and closed first: its SYN
  // meets web's TIME_WAIT, which runs the lookup (refused) and answers with
  // an ACK; the client resets it and sends the SYN again, refused again.
  // (Port 61001 is above the ephemeral range, so nothing else takes it.)
  assert.equal(await connectFrom('127.6.0.1', '127.0.0.201', 81, 61001), 'web');
  ok(await tubectl(['bind', '--reject', 'tcp', '127.0.0.201', '81']));
  try {
    assert.equal(await connectFrom('127.6.0.1', '127.0.0.201', 81, 61001), 'ECONNREFUSED');
    const once = (await sourcesJSON('tcp', '127.0.0.201/32', '81')).bindings[0];
    assert.equal(once.hits, '2');
    assert.equal(await connectFrom('127.6.0.1', '127.0.0.201', 81, 61002), 'ECONNREFUSED');
    assert.equal((await sourcesJSON('tcp', '127.0.0.201/32', '81')).bindings[0].hits, '3');
  } finally {
    ok(await tubectl(['unbind', '--reject', '--force', 'tcp', '127.0.0.201', '81']));
  }
});

test('the sources table stays within its bound under a scan from more blocks than it holds, and keeps the newest', () => {
  const d = Dispatcher.open({ bpffs });
  const prog = native().getPinned(path.join(d.stateDir, PIN.program), 0);
  const table = BpfMap.open(native(), path.join(d.stateDir, PIN.sources), 'sources', MAP_SPECS.sources, { readOnly: true });
  try {
    const max = table.info.maxEntries;
    assert.equal(max, 131072);
    // TUBECTL.md: about 14 MiB of kernel memory, the figure bpftool shows.
    const memlock = Number(/^memlock:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${table.fd}`, 'utf8'))![1]);
    assert.ok(memlock > 13 * 2 ** 20 && memlock < 15 * 2 ** 20, `${memlock} bytes`);
    d.bind(parseBinding({ protocol: 'tcp', prefix: '10.0.0.0/8', port: 80, action: 'observe' }));
    const blocks = max + max / 4;
    const remote = new Uint8Array(4);
    const address = Uint8Array.of(10, 0, 0, 1);
    for (let i = 0; i < blocks; i++) {
      remote.set([11 + (i >>> 16), (i >>> 8) & 255, i & 255, 1]);
      probe(prog, { protocol: 'tcp', family: 4, address, port: 80, remote });
    }
    const entries = table.dump().count;
    assert.ok(entries <= max, `${entries} entries, more than ${max}`);
    const sampled = d.sources();
    assert.ok(sampled.length > max / 2, `only ${sampled.length} entries kept`);
    const seen = new Set(sampled.map((s) => formatPrefix(s.prefix)));
    for (let i = blocks - 1000; i < blocks; i++) {
      const p = `${11 + (i >>> 16)}.${(i >>> 8) & 255}.${i & 255}.0/24`;
      assert.ok(seen.has(p), `the recent block ${p} was evicted`);
    }
    // Every connection is counted in the binding's total, evicted or not.
    const set = d.packedBindings();
    const observe = Array.from({ length: set.count }, (_, i) => i).filter((i) => set.actions[i] === ACTION_OBSERVE);
    assert.equal(observe.length, 1);
    assert.equal(d.traffic(Uint32Array.of(set.stats![observe[0]]))[0].hits, BigInt(blocks));
  } finally {
    table.close();
    native().close(prog);
    d.close();
  }
});
