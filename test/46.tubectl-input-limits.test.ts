// Input limits, as an operator meets them: tubectl as a subprocess against a
// loaded dispatcher in a throwaway namespace. Every refusal is one line on
// stderr naming what was wrong and what to do, exits 1 (the operation
// failed) or 2 (usage error), prints nothing on stdout, and leaves the
// bindings and the pins exactly as they were.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { assertBpffs } from '../src/bpffs.js';
import { ok, tubectlFor } from './lib/tubectl.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
const files = mkdtempSync(path.join(tmpdir(), 'tubectl-limits-'));

const write = (name: string, content: string | object): string => {
  const p = path.join(files, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};

/** What must not change: the bindings as listed, and every pin. */
async function state(): Promise<{ bindings: string; pins: string[] }> {
  const pins = readdirSync(bpffs, { recursive: true }).map(String).sort();
  return { bindings: ok(await tubectl(['bindings', '--json'])).stdout, pins };
}

/**
 * Runs tubectl (killed after 20 s, so a block fails the test instead of
 * hanging it) and checks the refusal: exit code, one clear line, no change.
 */
async function refused(args: string[], code: 1 | 2, message: RegExp): Promise<void> {
  const was = await state();
  const r = await tubectl(args, { prefix: ['timeout', '20'] });
  assert.equal(r.code, code, `exit ${r.code}: ${r.stderr.slice(0, 500)}`);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^tubectl: [^\n]+\n$/, 'one line');
  assert.ok(r.stderr.length < 600, `a short message, not ${r.stderr.length} characters`);
  assert.doesNotMatch(r.stderr, /RangeError|internal error|\n\s+at /);
  assert.match(r.stderr, message);
  assert.deepEqual(await state(), was, 'bindings --json and the pins are the same');
}

before(async () => {
  ok(await tubectl(['load']));
  ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '80']));
  ok(await tubectl(['bind', '--reject', 'udp', '::1', '53']));
});

after(async () => {
  await tubectl(['unload']);
  rmSync(files, { recursive: true, force: true });
});

describe('load-bindings reads only a regular file within 256 MiB', () => {
  test('/dev/zero is refused at once', async () => {
    await refused(['load-bindings', '/dev/zero'], 1, /^tubectl: cannot read bindings file \/dev\/zero: it is a character device, give a regular file$/m);
  });

  test('a FIFO nobody writes to is refused without blocking', async () => {
    const fifo = path.join(files, 'bindings.fifo');
    execFileSync('mkfifo', [fifo]);
    await refused(['load-bindings', fifo], 1, /cannot read bindings file \S+bindings\.fifo: it is a FIFO \(named pipe\), give a regular file/);
  });

  test('a directory is refused', async () => {
    const dir = path.join(files, 'a-directory');
    mkdirSync(dir);
    await refused(['load-bindings', dir], 1, /cannot read bindings file \S+a-directory: it is a directory/);
  });

  test('a file over the limit is refused before it is read, naming the limit', async () => {
    const big = path.join(files, 'big.json');
    writeFileSync(big, '');
    truncateSync(big, 257 * 2 ** 20); // sparse
    await refused(['load-bindings', big], 1,
      /^tubectl: bindings file \S+big\.json is 257 MiB, over the limit of 256 MiB: 1048576 bindings, the most a dispatcher holds, take less than 256 MiB/);
  });

  test('a missing file says so', async () => {
    await refused(['load-bindings', path.join(files, 'nope.json')], 1, /^tubectl: cannot read bindings file \S+nope\.json: no such file$/m);
  });
});

describe('load-bindings refuses hostile and ambiguous JSON', () => {
  test('deep nesting is an invalid file, not a stack overflow', async () => {
    const depth = 1_000_000;
    await refused(['load-bindings', write('deep.json', `{"bindings": ${'['.repeat(depth)}${']'.repeat(depth)}}`)], 1,
      /deep\.json is invalid, nothing was changed: arrays and objects nest more than 16 deep \(at bindings(\[0\])+, character \d+\)/);
  });

  test('a 100 MB bad value is echoed in a few dozen characters', async () => {
    const huge = write('huge-value.json', `{"bindings": [{"label": "web", "prefix": "${'x'.repeat(100_000_000)}", "port": 80}]}`);
    await refused(['load-bindings', huge], 1, /bindings\[0\]\.prefix = "x{64}\.\.\." \(100000000 characters\): invalid prefix/);
  });

  test('a duplicate "bindings" key is refused, not read as the last one', async () => {
    const doc = '{"bindings": [{"label": "web", "prefix": "127.0.0.0/24", "port": 80, "protocol": "tcp"}], "bindings": []}';
    await refused(['load-bindings', write('dup-bindings.json', doc)], 1,
      /dup-bindings\.json is invalid, nothing was changed: the top level holds the field "bindings" twice \(JSON keeps only the last, silently\): keep one$/m);
  });

  test('a duplicate key in an entry is refused with its name', async () => {
    const doc = '{"bindings": [{"label": "web", "prefix": "127.0.0.0/24", "port": 80, "port": 443}]}';
    await refused(['load-bindings', write('dup-port.json', doc)], 1, /: bindings\[0\] holds the field "port" twice/);
  });

  for (const port of ['80.0', '1e2', '-0']) {
    test(`port ${port} is refused: a port is plain digits`, async () => {
      const doc = `{"bindings": [{"label": "web", "prefix": "127.0.0.0/24", "port": ${port}}]}`;
      await refused(['load-bindings', write(`port-${port}.json`, doc)], 1,
        new RegExp(`bindings\\[0\\]\\.port = ${port.replace('.', '\\.')}: a port is written as plain digits, 0-65535`));
    });
  }

  test('a string port stays refused', async () => {
    await refused(['load-bindings', write('port-string.json', { bindings: [{ label: 'web', prefix: '127.0.0.0/24', port: ' 80' }] })], 1,
      /bindings\[0\]\.port = " 80": expected a number/);
  });

  test('a zone in a prefix is refused', async () => {
    await refused(['load-bindings', write('zone.json', { bindings: [{ label: 'web', prefix: 'fe80::1%lo', port: 80 }] })], 1,
      /bindings\[0\]\.prefix = "fe80::1%lo": invalid prefix "fe80::1%lo": a zone \("%lo"\) is not allowed/);
  });
});

describe('ports and addresses on the command line', () => {
  for (const port of [' 80', '080', '+80', '0x50', '80.0', '1e2', '65536']) {
    test(`port ${JSON.stringify(port)} is a usage error for bind, unbind and bindings`, async () => {
      const message = new RegExp(`^tubectl: invalid port ${JSON.stringify(port).replace(/[.+]/g, '\\$&')}: a port is decimal digits without a leading zero`);
      await refused(['bind', 'web', 'tcp', '127.0.0.0/24', port], 2, message);
      await refused(['unbind', 'web', 'tcp', '127.0.0.0/24', port], 2, message);
      await refused(['bindings', 'tcp', '127.0.0.0/8', port], 2, message);
    });
  }

  test('a zone is a usage error for bind, bindings and register-pid', async () => {
    const zone = /invalid prefix "::1%lo": a zone \("%lo"\) is not allowed, bindings match an address on every interface: write "::1"/;
    await refused(['bind', 'web', 'tcp', '::1%lo', '80'], 2, zone);
    await refused(['bindings', 'tcp', '::1%lo'], 2, zone);
    await refused(['register-pid', String(process.pid), 'web', 'tcp', '::1%lo', '80'], 2, zone);
  });

  test('a long argument is echoed cut', async () => {
    await refused(['bind', 'x'.repeat(100_000), 'tcp', '127.0.0.1', '80'], 2, /^tubectl: invalid label "x{64}\.\.\." \(100000 characters\)/);
    await refused(['bind', 'web', 'tcp', 'y'.repeat(100_000), '80'], 2, /^tubectl: invalid prefix "y{64}\.\.\." \(100000 characters\)/);
  });

  test('register-pid refuses a pid file that is not a small regular file', async () => {
    const fifo = path.join(files, 'pid.fifo');
    execFileSync('mkfifo', [fifo]);
    await refused(['register-pid', fifo, 'web', 'tcp', '127.0.0.1', '80'], 2, /cannot read pid file \S+pid\.fifo: it is a FIFO/);
    await refused(['register-pid', '/dev/zero', 'web', 'tcp', '127.0.0.1', '80'], 2, /cannot read pid file \/dev\/zero: it is a character device/);
    await refused(['register-pid', write('big.pid', '1'.repeat(5000)), 'web', 'tcp', '127.0.0.1', '80'], 2, /pid file \S+ is 4\.9 KiB, over the limit of 4 KiB/);
  });
});

describe('--bpffs and --netns must be what they claim', () => {
  test('--bpffs on another filesystem names the real problem, for every verb', async () => {
    const plain = mkdtempSync(path.join(files, 'not-bpffs-'));
    const notBpffs = /^tubectl: \S+not-bpffs-\S+ is not a bpffs mount \(filesystem type 0x[0-9a-f]+\): mount one there with mount -t bpf bpf \S+, or pass --bpffs/;
    for (const verb of [['load'], ['status'], ['bindings'], ['bind', 'web', 'tcp', '127.0.0.1', '80'], ['load-bindings', write('ok.json', { bindings: [] })],
      ['unload'], ['upgrade'], ['unregister', 'web', 'ipv4', 'tcp']]) {
      await refused(['--bpffs', plain, ...verb], 1, notBpffs);
    }
    assert.deepEqual(readdirSync(plain), [], 'nothing was created there');
  });

  test('a bpffs mount (and a directory in one) passes the check', () => {
    assertBpffs(bpffs);
    const inside = path.join(bpffs, `dir${process.pid}`);
    mkdirSync(inside);
    try {
      assertBpffs(inside);
    } finally {
      rmSync(inside, { recursive: true });
    }
  });

  test('a missing --bpffs has its own message', async () => {
    await refused(['--bpffs', path.join(files, 'nowhere'), 'load'], 1, /^tubectl: bpffs path \S+nowhere does not exist: mount one with mount -t bpf bpf PATH, or pass --bpffs/);
  });

  test('--netns that is not a network namespace is refused, for reading and writing', async () => {
    const message = /^tubectl: \/etc\/passwd is not a network namespace \(not a namespace file\): pass \/run\/netns\/NAME or \/proc\/PID\/ns\/net$/m;
    for (const verb of [['load'], ['status'], ['bindings'], ['bind', 'web', 'tcp', '127.0.0.1', '80'], ['unload']]) {
      await refused(['--netns', '/etc/passwd', ...verb], 1, message);
    }
    await refused(['--netns', '/proc/self/ns/mnt', 'load'], 1, /^tubectl: \/proc\/self\/ns\/mnt is not a network namespace \(a mount namespace\)/);
    await refused(['--netns', '/dev/null', 'load'], 1, /^tubectl: \/dev\/null is not a network namespace/);
    await refused(['--netns', '/run/netns/no-such-namespace', 'load'], 1, /^tubectl: network namespace \/run\/netns\/no-such-namespace does not exist/);
  });
});

test('after all this, the dispatcher still works: strict spellings are accepted', async () => {
  ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.7', '0']));
  ok(await tubectl(['load-bindings', write('good.json', { bindings: [{ label: 'web', prefix: '127.0.0.0/24', port: 80 }, { label: 'dns', prefix: '::1', port: 53, protocol: 'udp' }] })]));
  const b = JSON.parse(ok(await tubectl(['bindings', '--json'])).stdout) as { bindings: { label: string; port: number }[] };
  assert.deepEqual(b.bindings.map((x) => `${x.label} ${x.port}`), ['dns 53', 'web 80', 'web 80']);
});
