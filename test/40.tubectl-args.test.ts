// tubectl without a dispatcher: argument parsing, filters, the bindings
// file, output, and exit codes of usage errors. In-process, no root needed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { parseBinding, toJSON } from '../src/binding.js';
import { parseBindingsFile } from '../src/bindings-file.js';
import { TubularError } from '../src/errors.js';
import { normalizeArgv } from '../src/cli/argv.js';
import { bindingFromArgs, matchesFilter, parseFilter } from '../src/cli/binding.js';
import { UsageError } from '../src/cli/errors.js';
import { gidInGroupFile } from '../src/cli/loading.js';
import { run, type Io } from '../src/cli/main.js';
import { labelCell, table, toJSONText } from '../src/cli/output.js';
import { parsePidArgs, passedSockets, socketMatch } from '../src/cli/register.js';

function fakeIo(env: Record<string, string> = {}): Io & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => { out += s; } },
    stderr: { write: (s: string) => { err += s; } },
    getenv: (name) => env[name],
    pid: 4242,
    out: () => out,
    err: () => err,
  };
}

describe('global options', () => {
  test("tubular's single-dash -netns and -bpffs become --netns and --bpffs, before the verb only", () => {
    assert.deepEqual(normalizeArgv(['-netns', '/run/netns/a', '-bpffs=/x', 'status']), ['--netns', '/run/netns/a', '--bpffs=/x', 'status']);
    assert.deepEqual(normalizeArgv(['--bpffs', '/x', 'bindings', '-netns']), ['--bpffs', '/x', 'bindings', '-netns']);
    assert.deepEqual(normalizeArgv(['bind', 'a', 'tcp', '::1', '80']), ['bind', 'a', 'tcp', '::1', '80']);
  });
});

describe('bind arguments', () => {
  test('label, protocol, prefix and port; an address is a /32 or /128', () => {
    const notes: string[] = [];
    assert.deepEqual(toJSON(bindingFromArgs('bind', ['web', 'tcp', '127.0.0.1', '80'], {}, notes)),
      { label: 'web', protocol: 'tcp', prefix: '127.0.0.1/32', port: 80, action: 'steer' });
    assert.equal(toJSON(bindingFromArgs('bind', ['dns', 'UDP', '::1', '0'], {}, notes)).prefix, '::1/128');
    assert.deepEqual(notes, []);
  });

  test('host bits are cleared with a note', () => {
    const notes: string[] = [];
    assert.equal(toJSON(bindingFromArgs('bind', ['web', 'tcp', '127.0.0.1/24', '80'], {}, notes)).prefix, '127.0.0.0/24');
    assert.match(notes[0], /127\.0\.0\.1\/24 has host bits set; using 127\.0\.0\.0\/24/);
  });

  test('--reject takes an optional label', () => {
    assert.deepEqual(toJSON(bindingFromArgs('bind', ['tcp', '127.0.0.0/28', '25'], { reject: true }, [])),
      { label: '', protocol: 'tcp', prefix: '127.0.0.0/28', port: 25, action: 'reject' });
    assert.equal(toJSON(bindingFromArgs('bind', ['smtp', 'tcp', '127.0.0.0/28', '25'], { reject: true }, [])).label, 'smtp');
  });

  test('malformed arguments are usage errors naming the bad token', () => {
    const usage = (re: RegExp) => (e: unknown) => e instanceof UsageError && re.test(e.message);
    assert.throws(() => bindingFromArgs('bind', ['web', 'tcp', '127.0.0.300', '80'], {}, []), usage(/invalid prefix "127\.0\.0\.300"/));
    assert.throws(() => bindingFromArgs('bind', ['web', 'sctp', '127.0.0.1', '80'], {}, []), usage(/invalid protocol "sctp"/));
    assert.throws(() => bindingFromArgs('bind', ['web', 'tcp', '127.0.0.1', '65536'], {}, []), usage(/invalid port "65536"/));
    assert.throws(() => bindingFromArgs('bind', ['we b', 'tcp', '127.0.0.1', '80'], {}, []), usage(/invalid label "we b"/));
    assert.throws(() => bindingFromArgs('bind', ['tcp', '127.0.0.1', '80'], {}, []), usage(/takes <label> <protocol>.*got 3 arguments/));
  });
});

describe('bindings filter', () => {
  const b = (label: string, protocol: string, prefix: string, port: number) => parseBinding({ label, protocol, prefix, port });
  const all = [b('a', 'tcp', '127.0.0.0/8', 0), b('b', 'tcp', '127.0.0.0/24', 80), b('c', 'udp', '127.0.0.1', 53), b('d', 'tcp', '::1', 443)];
  const pick = (...args: (string | undefined)[]) => all.filter((x) => matchesFilter(x, parseFilter(args))).map((x) => x.label);

  test('no filter lists everything; any means both protocols', () => {
    assert.deepEqual(pick(), ['a', 'b', 'c', 'd']);
    assert.deepEqual(pick('any'), ['a', 'b', 'c', 'd']);
    assert.deepEqual(pick('udp'), ['c']);
  });

  test('a prefix matches the bindings it contains', () => {
    assert.deepEqual(pick('any', '127.0.0.0/16'), ['b', 'c']);
    assert.deepEqual(pick('tcp', '127.0.0.0/8'), ['a', 'b']);
    assert.deepEqual(pick('any', '::/0'), ['d']);
  });

  test('a port matches bindings for it and for every port', () => {
    assert.deepEqual(pick('tcp', '0.0.0.0/0', '80'), ['a', 'b']);
    assert.deepEqual(pick('tcp', '0.0.0.0/0', '0'), ['a', 'b']);
  });

  test('bad filters are usage errors', () => {
    assert.throws(() => parseFilter(['tcpp']), (e: unknown) => e instanceof UsageError && /"tcpp"/.test(e.message));
    assert.throws(() => parseFilter(['any', 'nope']), (e: unknown) => e instanceof UsageError && /"nope"/.test(e.message));
  });
});

describe('bindings file', () => {
  const parse = (doc: unknown) => parseBindingsFile(JSON.stringify(doc), 'b.json');
  const rejects = (doc: unknown, ...res: RegExp[]) => assert.throws(() => typeof doc === 'string' ? parseBindingsFile(doc, 'b.json') : parse(doc), (e: unknown) => {
    assert.ok(e instanceof TubularError && e.code === 'EINVAL', String(e));
    for (const re of res) assert.match(e.message, re);
    return true;
  });

  test("tubular's format: each entry binds tcp and udp", () => {
    const { bindings, notes } = parse({ bindings: [{ label: 'foo', prefix: '127.0.0.0/24', port: 80 }] });
    assert.deepEqual(bindings.map(toJSON), [
      { label: 'foo', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80, action: 'steer' },
      { label: 'foo', protocol: 'udp', prefix: '127.0.0.0/24', port: 80, action: 'steer' },
    ]);
    assert.deepEqual(notes, []);
  });

  test('extensions: protocol, reject with or without label; an empty list is allowed', () => {
    const { bindings } = parse({ bindings: [
      { label: 'dns', prefix: '::1', port: 53, protocol: 'udp' },
      { prefix: '127.0.0.0/28', port: 25, action: 'reject' },
      { label: 'web', prefix: '127.0.0.1', port: 0, action: 'steer', protocol: 'tcp' },
    ] });
    assert.deepEqual(bindings.map((b) => `${b.protocol} ${toJSON(b).prefix} ${b.port} ${b.action} ${b.label}`),
      ['udp ::1/128 53 steer dns', 'tcp 127.0.0.0/28 25 reject ', 'udp 127.0.0.0/28 25 reject ', 'tcp 127.0.0.1/32 0 steer web']);
    assert.deepEqual(parse({ bindings: [] }).bindings, []);
  });

  test('the output of bindings --json loads back: hits and lastHit are ignored', () => {
    const doc = { bindings: [toJSON(parseBinding({ label: 'x', protocol: 'tcp', prefix: '10.0.0.0/8', port: 1 }))] };
    assert.deepEqual(parse(doc).bindings.map(toJSON), doc.bindings);
    const listed = { bindings: [{ ...doc.bindings[0], hits: '12', lastHit: '2025-07-14T21:52:03Z' }, { ...doc.bindings[0], port: 2, hits: '0', lastHit: null }] };
    assert.deepEqual(parse(listed).bindings.map((b) => toJSON(b).port), [1, 2]);
    rejects({ bindings: [{ ...doc.bindings[0], hits: 12 }] }, /bindings\[0\]\.hits = 12: expected a string/);
    rejects({ bindings: [{ ...doc.bindings[0], hits: '-1' }] }, /bindings\[0\]\.hits = "-1": expected a decimal string/);
    rejects({ bindings: [{ ...doc.bindings[0], lastHit: 0 }] }, /bindings\[0\]\.lastHit = 0: expected a string/);
    rejects({ bindings: [{ ...doc.bindings[0], misses: '0' }] }, /unknown field "misses" \(an entry holds only label, prefix, port, protocol, action; hits and lastHit are ignored\)/);
  });

  test('host bits are cleared with a note naming the entry', () => {
    const { bindings, notes } = parse({ bindings: [{ label: 'a', prefix: '127.0.0.1/24', port: 1 }] });
    assert.equal(toJSON(bindings[0]).prefix, '127.0.0.0/24');
    assert.match(notes[0], /^bindings\[0\]: 127\.0\.0\.1\/24 has host bits set/);
  });

  test('each problem names the entry, the field and the bad value', () => {
    rejects('{"bindings": [', /b\.json is not valid JSON/);
    rejects({}, /bindings is missing/);
    rejects({ bindings: {} }, /bindings = \{\}: expected an array/);
    rejects({ bindings: [], extra: 1 }, /extra = 1: unknown field "extra"/);
    rejects({ bindings: [{ label: 'foo', prefix: '127.0.0.1', port: 0, bogus: false }] }, /bindings\[0\]\.bogus = false: unknown field "bogus"/);
    rejects({ bindings: [{ label: 'bar', prefix: '127.0.0.2', port: 99999999 }] }, /bindings\[0\]\.port = 99999999: a port is 0-65535/);
    rejects({ bindings: [{ label: 'bar', prefix: '127.0.0.2', port: -1 }] }, /bindings\[0\]\.port = -1: a port is 0-65535/);
    rejects({ bindings: [{ label: 'bar', prefix: '127.0.0.2', port: '80' }] }, /bindings\[0\]\.port = "80": expected a number/);
    rejects({ bindings: [{ label: 'bar', prefix: '127.0.0.2', port: 8.5 }] }, /bindings\[0\]\.port = 8\.5: expected a whole number/);
    rejects({ bindings: [{ label: 'baz', prefix: '127.0.0.3' }] }, /bindings\[0\]\.port is missing/);
    rejects({ bindings: [{ label: 'baz', port: 1 }] }, /bindings\[0\]\.prefix is missing/);
    rejects({ bindings: [{ prefix: '127.0.0.3', port: 1 }] }, /bindings\[0\]\.label is missing/);
    rejects({ bindings: [{ label: 'a', prefix: '127.0.0.300', port: 1 }] }, /bindings\[0\]\.prefix = "127\.0\.0\.300": invalid prefix "127\.0\.0\.300"/);
    rejects({ bindings: [{ label: 'a b', prefix: '127.0.0.1', port: 1 }] }, /bindings\[0\]\.label = "a b": invalid label/);
    rejects({ bindings: [{ label: 'a', prefix: '127.0.0.1', port: 1, protocol: 'sctp' }] }, /bindings\[0\]\.protocol = "sctp": use "tcp" or "udp"/);
    rejects({ bindings: [{ label: 'a', prefix: '127.0.0.1', port: 1, action: 'drop' }] }, /bindings\[0\]\.action = "drop": use "steer" or "reject"/);
  });

  test('duplicates: same protocol, prefix and port, after expansion and masking', () => {
    rejects({ bindings: [{ label: 'a', prefix: '127.0.0.0/24', port: 80 }, { label: 'b', prefix: '127.0.0.9/24', port: 80, protocol: 'udp' }] },
      /bindings\[1\] = .*duplicates bindings\[0\] \(both are udp 127\.0\.0\.0\/24 80\)/);
    rejects({ bindings: [{ label: 'a', prefix: '::1', port: 80, protocol: 'tcp' }, { prefix: '::1/128', port: 80, action: 'reject' }] },
      /bindings\[1\] = .*duplicates bindings\[0\] \(both are tcp ::1\/128 80\)/);
    // Different ports or protocols are not duplicates.
    assert.equal(parse({ bindings: [{ label: 'a', prefix: '::1', port: 80, protocol: 'tcp' }, { label: 'a', prefix: '::1', port: 80, protocol: 'udp' }] }).bindings.length, 2);
  });

  test('several problems are reported together, then cut short', () => {
    const many = { bindings: Array.from({ length: 30 }, (_, i) => ({ label: 'a', prefix: `127.0.0.${i}`, port: 70000 })) };
    rejects(many, /bindings\[0\]\.port/, /bindings\[19\]\.port/, /and 10 more/);
  });
});

describe('register arguments', () => {
  test('socket activation: LISTEN_PID must be ours, names pick the sockets', () => {
    const env = (vars: Record<string, string>) => ({ getenv: (n: string) => vars[n], pid: 77 });
    assert.deepEqual(passedSockets(env({ LISTEN_FDS: '2', LISTEN_PID: '77' }), 'web'), [{ fd: 3, name: undefined }, { fd: 4, name: undefined }]);
    assert.deepEqual(passedSockets(env({ LISTEN_FDS: '2', LISTEN_PID: '77', LISTEN_FDNAMES: 'dns:web' }), 'web'), [{ fd: 4, name: 'web' }]);
    assert.deepEqual(passedSockets(env({ LISTEN_FDS: '2', LISTEN_PID: '77', LISTEN_FDNAMES: 'a:b' }), 'web').map((s) => s.fd), [3, 4]);
    assert.throws(() => passedSockets(env({}), 'web'), /LISTEN_FDS is not set/);
    assert.throws(() => passedSockets(env({ LISTEN_FDS: 'x', LISTEN_PID: '77' }), 'web'), /LISTEN_FDS="x"/);
    assert.throws(() => passedSockets(env({ LISTEN_FDS: '1', LISTEN_PID: '78' }), 'web'), /LISTEN_PID=78 is not this process \(77\)/);
    assert.throws(() => passedSockets(env({ LISTEN_FDS: '1' }), 'web'), /LISTEN_PID is not set/);
  });

  test('register-pid: pid, label, protocol, ip, port', () => {
    const a = parsePidArgs(['12', 'web', 'tcp', '127.0.0.1', '80']);
    assert.equal(a.pid, 12);
    assert.equal(a.address.length, 32);
    assert.throws(() => parsePidArgs(['12', 'web', 'tcp', '127.0.0.0/8', '80']), (e: unknown) => e instanceof UsageError && /not a prefix/.test(e.message));
    assert.throws(() => parsePidArgs(['/nonexistent.pid', 'web', 'tcp', '127.0.0.1', '80']), (e: unknown) => e instanceof UsageError && /invalid pid/.test(e.message));
    const dir = mkdtempSync(path.join(tmpdir(), 'tubectl-'));
    try {
      writeFileSync(path.join(dir, 'x.pid'), '345\n');
      assert.equal(parsePidArgs([path.join(dir, 'x.pid'), 'web', 'udp', '::1', '53']).pid, 345);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });

  test('a socket matches its address, or the wildcard of the family', () => {
    const want = parsePidArgs(['1', 'web', 'tcp', '127.0.0.1', '80']);
    const info = (address: string, over: object = {}) => ({ domain: 2, type: 1, protocol: 6, listening: true, reusePort: false, address, port: 80, cookie: 1n, ...over });
    assert.equal(socketMatch(info('127.0.0.1'), want), 2);
    assert.equal(socketMatch(info('0.0.0.0'), want), 1);
    assert.equal(socketMatch(info('127.0.0.2'), want), 0);
    assert.equal(socketMatch(info('127.0.0.1', { port: 81 }), want), 0);
    assert.equal(socketMatch(info('127.0.0.1', { listening: false }), want), 0);
    assert.equal(socketMatch(info('127.0.0.1', { type: 2, protocol: 17 }), want), 0);
    const v6 = parsePidArgs(['1', 'dns', 'udp', '::1', '53']);
    assert.equal(socketMatch({ domain: 10, type: 2, protocol: 17, listening: false, reusePort: false, address: '::', port: 53, cookie: 1n }, v6), 1);
  });
});

describe('output', () => {
  test('tables align, JSON keeps 64-bit values as strings', () => {
    assert.equal(table(['a', 'n'], [['xyz', '5'], ['b', '123']], [1]), 'a      n\nxyz    5\nb    123\n');
    assert.equal(JSON.parse(toJSONText({ c: 2n ** 64n - 1n })).c, '18446744073709551615');
    assert.equal(labelCell({ label: '', action: 'reject' }), '<reject>');
    assert.equal(labelCell({ label: 'web', action: 'steer' }), 'web');
  });

  test('group(5) lookup', () => {
    assert.equal(gidInGroupFile('root:x:0:\ntubular:x:998:alice,bob\n', 'tubular'), 998);
    assert.equal(gidInGroupFile('root:x:0:\n', 'tubular'), undefined);
  });
});

describe('exit codes of usage errors', () => {
  const cases: [string[], RegExp][] = [
    [[], /Usage: tubectl/],
    [['frob'], /unknown command 'frob'/],
    [['bind', 'web'], /bind takes <label> <protocol> <prefix\[\/mask\]> <port>, got 1 argument/],
    [['bind', 'web', 'tcp', '127.0.0.300', '80'], /invalid prefix "127\.0\.0\.300"/],
    [['unregister', 'web', 'ipv5', 'tcp'], /invalid domain "ipv5"/],
    [['bindings', 'sctp'], /invalid protocol "sctp"/],
    [['metrics', '127.0.0.1', '99999'], /invalid port "99999"/],
    [['metrics', '127.0.0.300', '9090'], /invalid address "127\.0\.0\.300": give an IP address/],
    [['metrics', 'example.com', '9090'], /invalid address "example\.com"/],
    [['bind', 'has space', 'tcp', '127.0.0.1', '80'], /invalid label "has space"/],
    [['register-pid', '1', 'web', 'tcp'], /missing required argument 'ip'/],
    [['status', 'a', 'b'], /too many arguments/],
    [['status', '--bogus'], /unknown option '--bogus'/],
    [['diff'], /missing required argument 'file'/],
    [['diff', 'f.json', '--live-window', '10'], /--live-window: invalid duration "10": give a unit/],
    [['load-bindings', '--live-window', '-5m', 'f.json'], /--live-window: invalid duration/],
    [['load-bindings', '--exit-code', 'f.json'], /--exit-code goes with --dry-run/],
    [['rollback', '--exit-code'], /--exit-code goes with --dry-run/],
    [['rollback', 'now'], /too many arguments/],
    [['unbind', '--live-window', '1x', 'web', 'tcp', '127.0.0.1', '80'], /--live-window: invalid duration/],
  ];
  for (const [args, re] of cases) {
    test(`tubectl ${args.join(' ')} exits 2`, async () => {
      const io = fakeIo();
      assert.equal(await run(args, io), 2);
      assert.match(io.err(), re);
      assert.doesNotMatch(io.err(), /\n\s+at /); // no stack trace
      assert.equal(io.out(), '');
    });
  }

  test('--help and version exit 0', async () => {
    const io = fakeIo();
    assert.equal(await run(['--help'], io), 0);
    assert.match(io.out(), /Exit status: 0 success, 1 the operation failed/);
    assert.match(io.out(), /3 differences found \(diff, --dry-run, only with --exit-code\)/);
    const v = fakeIo();
    assert.equal(await run(['version', '--json'], v), 0);
    const doc = JSON.parse(v.out()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc), ['version', 'node', 'layoutVersion']);
    assert.equal(doc.node, process.version);
  });

  test('register without socket activation fails with exit 1 and says why', async () => {
    const io = fakeIo();
    assert.equal(await run(['register', 'web'], io), 1);
    assert.match(io.err(), /^tubectl: no sockets were passed \(LISTEN_FDS is not set\)/);
  });
});
