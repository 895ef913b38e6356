// tubectl metrics: a subprocess serving /metrics, scraped over HTTP on
// loopback in a throwaway namespace.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { autoVariant } from './lib/variants.js';
import { tcpProbe, tcpServer, udpProbe, type Served } from './lib/traffic.js';
import { TUBECTL, ok, tubectlFor } from './lib/tubectl.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
let web: Served;
let server: ChildProcess;
let url: string;

/** Parses the text format into "name{labels}" -> value. */
function parse(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

async function scrape(path = '/metrics'): Promise<{ status: number; type: string | null; text: string }> {
  const r = await fetch(`${url}${path}`);
  return { status: r.status, type: r.headers.get('content-type'), text: await r.text() };
}

before(async () => {
  ok(await tubectl(['load']));
  web = await tcpServer('web');
  ok(await tubectl(['register-pid', String(process.pid), 'web', 'tcp', '127.0.0.1', String(web.port)]));
  ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '80']));
  ok(await tubectl(['bind', 'gone', 'tcp', '127.0.0.0/24', '81']));
  ok(await tubectl(['bind', '--reject', 'udp', '127.0.0.0/28', '53']));
  server = spawn(process.execPath, [TUBECTL, '--bpffs', bpffs, 'metrics', '127.0.0.1', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  url = await new Promise<string>((resolve, fail) => {
    let out = '';
    server.stdout!.on('data', (d) => {
      out += d;
      const m = /serving metrics on (http:\/\/127\.0\.0\.1:\d+)\/metrics\n/.exec(out);
      if (m) resolve(m[1]);
    });
    server.once('exit', (code) => fail(new Error(`metrics exited early (${code}): ${out}`)));
  });
});

after(async () => {
  if (server.exitCode === null) server.kill('SIGKILL');
  await web.close();
  await tubectl(['unload']);
});

test('per-destination counters and gauges, and rejects, in the Prometheus text format', async () => {
  assert.equal(await tcpProbe('127.0.0.8', 80), 'web');
  assert.equal(await tcpProbe('127.0.0.9', 80), 'web');
  assert.equal(await tcpProbe('127.0.0.9', 81), 'ECONNREFUSED');
  assert.equal(await udpProbe('127.0.0.3', 53), 'ECONNREFUSED');
  const r = await scrape();
  assert.equal(r.status, 200);
  assert.match(r.type ?? '', /^text\/plain; version=0\.0\.4/);
  assert.match(r.text, /# TYPE tubular_destination_lookups_total counter/);
  assert.match(r.text, /# TYPE tubular_destination_socket_registered gauge/);
  const m = parse(r.text);
  const web4 = '{label="web",domain="ipv4",protocol="tcp"}';
  const gone4 = '{label="gone",domain="ipv4",protocol="tcp"}';
  assert.equal(m.get('tubular_dispatcher_loaded'), 1);
  assert.equal(m.get(`tubular_destination_lookups_total${web4}`), 2);
  assert.equal(m.get(`tubular_destination_misses_total${web4}`), 0);
  assert.equal(m.get(`tubular_destination_errors_total${web4}`), 0);
  assert.equal(m.get(`tubular_destination_socket_registered${web4}`), 1);
  assert.equal(m.get(`tubular_destination_bindings${web4}`), 1);
  assert.equal(m.get(`tubular_destination_lookups_total${gone4}`), 1);
  assert.equal(m.get(`tubular_destination_misses_total${gone4}`), 1);
  assert.equal(m.get(`tubular_destination_socket_registered${gone4}`), 0);
  assert.equal(m.get('tubular_rejects_total{protocol="udp",prefix="127.0.0.0/28",port="53"}'), 1);
  assert.ok([...m.keys()].some((k) => k.startsWith('tubular_build_info{')));
  assert.equal(m.get(`tubular_program_info{variant="${autoVariant()}"}`), 1); // what load picked on this kernel

  // Each scrape reads afresh.
  assert.equal(await tcpProbe('127.0.0.8', 80), 'web');
  assert.equal(parse((await scrape()).text).get(`tubular_destination_lookups_total${web4}`), 3);
});

test('other paths are 404', async () => {
  const r = await scrape('/');
  assert.equal(r.status, 404);
  assert.match(r.text, /\/metrics/);
});

test('after unload the server keeps answering: loaded 0, no destinations', async () => {
  ok(await tubectl(['unload']));
  try {
    const m = parse((await scrape()).text);
    assert.equal(m.get('tubular_dispatcher_loaded'), 0);
    assert.equal([...m.keys()].filter((k) => k.startsWith('tubular_destination_')).length, 0);
  } finally {
    ok(await tubectl(['load']));
  }
});

test('SIGTERM stops it with exit 0', async () => {
  const done = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)));
  server.kill('SIGTERM');
  assert.equal(await done, 0);
});

test('localhost is the one name it listens on; it looks no other up', async () => {
  const other = spawn(process.execPath, [TUBECTL, '--bpffs', bpffs, 'metrics', 'localhost', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const where = await new Promise<string>((resolve, fail) => {
      let out = '';
      other.stdout!.on('data', (d) => {
        out += d;
        const m = /serving metrics on (http:\/\/\S+)\/metrics\n/.exec(out);
        if (m) resolve(m[1]);
      });
      other.once('exit', (code) => fail(new Error(`metrics exited early (${code}): ${out}`)));
    });
    assert.equal((await fetch(`${where}/metrics`)).status, 200);
  } finally {
    other.kill('SIGKILL');
  }
});
