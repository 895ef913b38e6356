// Input limits, without a dispatcher: every value echoed in a message is
// bounded, ports and prefixes are spelled one way, a bindings file cannot
// exhaust the stack or the heap nor be read two ways, files are read within
// a limit and only when regular, and --netns and --bpffs are what they
// claim. In-process, no root needed.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { parseBinding, toJSON } from '../src/binding.js';
import { packBindingsFile } from '../src/bindings-file-packed.js';
import { BINDINGS_FILE_LIMITS, BINDINGS_FILE_MAX_BYTES } from '../src/bindings-file-limits.js';
import { parseBindingsFile } from '../src/bindings-file.js';
import { assertBpffs } from '../src/bpffs.js';
import { TubularError } from '../src/errors.js';
import { jsonPath, scanJSON } from '../src/json-scan.js';
import { labelProblem } from '../src/label.js';
import { LABEL_MAX_BYTES, MAX_BINDINGS } from '../src/layout.js';
import { netnsInode } from '../src/netns.js';
import { parsePrefix } from '../src/prefix.js';
import { parseDomain, parsePort, parseProtocol } from '../src/protocol.js';
import { QUOTE_MAX, quote, quoteIfNeeded } from '../src/quote.js';
import { UsageError, boundQuotedTokens } from '../src/cli/errors.js';
import { run, type Io } from '../src/cli/main.js';
import { toJSONText } from '../src/cli/output.js';
import { formatBytes, readRegularFile } from '../src/read-file.js';
import { PID_FILE_MAX_BYTES, parsePidArgs, passedSockets } from '../src/cli/register.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tubular-limits-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string): string => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};

/** A message fit for an operator: one line, bounded, no stack trace. */
function clear(message: string, max = 600): void {
  assert.ok(!message.includes('\n'), `one line: ${message}`);
  assert.ok(message.length <= max, `at most ${max} characters, got ${message.length}: ${message.slice(0, 200)}...`);
  assert.doesNotMatch(message, /\bat .*\(.*:\d+:\d+\)|RangeError|Maximum call stack/);
}

/** Asserts fn throws a TubularError of `code` whose message is clear and matches every pattern. */
function refuses(fn: () => unknown, code: string, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof TubularError, `a TubularError, not ${String(e)}`);
    assert.equal(e.code, code, e.message);
    clear(e.message);
    for (const re of patterns) assert.match(e.message, re);
    return true;
  });
}

const HUGE = 'x'.repeat(10_000_000);

describe('quote: echoed values are bounded', () => {
  test('short strings are JSON-quoted as they are', () => {
    assert.equal(quote('web'), '"web"');
    assert.equal(quote(''), '""');
    assert.equal(quote('a"b\n'), '"a\\"b\\n"');
    assert.equal(quote(undefined), 'nothing');
    assert.equal(quote(80), '80');
    assert.equal(quote(null), 'null');
    assert.equal(quote({ a: [1, 'x'] }), '{"a":[1,"x"]}');
  });

  test('long strings are cut, with a marker and the original length', () => {
    const q = quote(HUGE);
    assert.equal(q, `"${'x'.repeat(QUOTE_MAX)}..." (10000000 characters)`);
    assert.equal(quote('y'.repeat(100), 10), `"${'y'.repeat(10)}..." (100 characters)`);
    // A surrogate pair is not split.
    assert.equal(quote(`${'a'.repeat(9)}😀😀`, 10), `"${'a'.repeat(9)}..." (13 characters)`);
  });

  test('large and deep arrays and objects are shown shallowly and cut', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 100_000; i++) deep = [deep];
    assert.equal(quote(deep), '[[[[...]]]]');
    const wide = quote(Array.from({ length: 1_000_000 }, () => HUGE));
    assert.ok(wide.length < 2 * QUOTE_MAX + 40, wide);
    assert.match(wide, /^\["x+\.\.\. \(an array of 1000000 items\)$/);
    assert.match(quote(Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i]))), /\.\.\. \(an object of 100 fields\)$/);
  });

  test('paths stay plain when short and printable', () => {
    assert.equal(quoteIfNeeded('/run/netns/edge'), '/run/netns/edge');
    assert.equal(quoteIfNeeded('a b.json'), 'a b.json');
    assert.equal(quoteIfNeeded(' a'), '" a"');
    assert.equal(quoteIfNeeded('a"b'), '"a\\"b"');
    assert.match(quoteIfNeeded(`/${HUGE}`), /^"\/x+\.\.\." \(10000001 characters\)$/);
  });

  test("commander's quoted tokens are cut too", () => {
    assert.equal(boundQuotedTokens("unknown command 'frob'"), "unknown command 'frob'");
    assert.match(boundQuotedTokens(`unknown command '${'z'.repeat(100_000)}'`), /^unknown command 'z{64}\.\.\.' \(100000 characters\)$/);
  });

  test('every parser echoes a bounded value', () => {
    refuses(() => parsePrefix(HUGE), 'EINVAL', /^invalid prefix "x{64}\.\.\." \(10000000 characters\)/);
    refuses(() => parsePrefix(`${HUGE}/24`), 'EINVAL', /invalid prefix/);
    refuses(() => parseProtocol(HUGE), 'EINVAL', /^invalid protocol "x{64}\.\.\." \(10000000 characters\): use tcp or udp$/);
    refuses(() => parseDomain(HUGE), 'EINVAL', /^invalid domain "x{64}\.\.\."/);
    refuses(() => parsePort(HUGE), 'EINVAL', /^invalid port "x{64}\.\.\."/);
    const label = labelProblem(HUGE) ?? '';
    clear(label);
    assert.match(label, /^invalid label "x{64}\.\.\." \(10000000 characters\): a label is at most 64 characters$/);
  });
});

describe('ports are decimal digits, 0-65535', () => {
  test('accepted: digits without a leading zero; 0 alone', () => {
    for (const [text, port] of [['0', 0], ['1', 1], ['80', 80], ['65535', 65535]] as const) assert.equal(parsePort(text), port);
    assert.equal(parsePort(443), 443);
  });

  test('refused: spaces, leading zeros, signs, hex, fractions, exponents, out of range', () => {
    for (const bad of [' 80', '80 ', '\t80', '080', '00', '+80', '-0', '-1', '0x50', '80.0', '1e2', '8_0', '', '65536', '99999999999', '٨٠']) {
      refuses(() => parsePort(bad), 'EINVAL', new RegExp(`^invalid port ${quote(bad).replace(/[.+\\]/g, '\\$&')}: a port is decimal digits`));
    }
    for (const bad of [-1, -0, 80.5, 65536, Number.NaN, Infinity]) refuses(() => parsePort(bad), 'EINVAL', /^invalid port/);
  });

  test('the command line refuses them as usage errors', async () => {
    for (const port of [' 80', '080', '+80', '0x50', '80.0', '1e2']) {
      const io = fakeIo();
      assert.equal(await run(['bind', 'web', 'tcp', '127.0.0.1', port], io), 2, port);
      assert.match(io.err(), /^tubectl: invalid port "[^"]+": a port is decimal digits .*\(see tubectl bind --help\)\n$/);
    }
  });
});

describe('prefixes: no zone, no white space', () => {
  test('a zone is refused with what to write instead', () => {
    refuses(() => parsePrefix('::1%lo'), 'EINVAL', /^invalid prefix "::1%lo": a zone \("%lo"\) is not allowed.*write "::1"$/);
    refuses(() => parsePrefix('fe80::1%eth0/64'), 'EINVAL', /zone \("%eth0"\).*write "fe80::1\/64"$/);
    refuses(() => parsePrefix(`fe80::1%${HUGE}`), 'EINVAL', /zone \("%x+\.\.\." \(10000001 characters\)\)/);
    refuses(() => parsePrefix('127.0.0.1%1'), 'EINVAL', /zone/);
  });

  test('white space around a prefix is refused, not trimmed', () => {
    for (const bad of [' ::1', '::1 ', '10.0.0.0/8\n', '\t10.0.0.0/8']) refuses(() => parsePrefix(bad), 'EINVAL', /remove the white space/);
  });

  test('register-pid refuses a zone in its address', () => {
    assert.throws(() => parsePidArgs(['12', 'web', 'tcp', 'fe80::1%lo', '80']), (e: unknown) => e instanceof UsageError && /zone/.test(e.message));
  });
});

describe('the JSON scan', () => {
  const limits = { maxDepth: 4, maxItems: 3, maxKeys: 3, maxValues: 12 };

  test('limits: depth, items, fields, values', () => {
    assert.deepEqual(scanJSON('[[[[1]]]]', limits).exceeded, undefined);
    assert.deepEqual(scanJSON('[[[[[1]]]]]', limits).exceeded, { limit: 'maxDepth', path: [0, 0, 0, 0], offset: 4 });
    assert.deepEqual(scanJSON('{"a": [1, 2, 3, 4]}', limits).exceeded, { limit: 'maxItems', path: ['a'], offset: 14 });
    assert.equal(scanJSON('{"a": [1, 2, 3]}', limits).exceeded, undefined);
    assert.deepEqual(scanJSON('[{"a":1,"b":2,"c":3,"d":4}]', limits).exceeded?.limit, 'maxKeys');
    assert.deepEqual(scanJSON('[[1,2,3],[1,2,3],[1,2,3],[1]]', { ...limits, maxItems: 4 }).exceeded?.limit, 'maxValues');
  });

  test('a key twice in one object, however spelled; not across objects', () => {
    assert.deepEqual(scanJSON('{"bindings": [], "bindings": []}', BINDINGS_FILE_LIMITS).duplicate, { path: [], key: 'bindings' });
    assert.deepEqual(scanJSON('{"b": [{"port": 1}, {"port": 1, "p\\u006frt": 2}]}', BINDINGS_FILE_LIMITS).duplicate, { path: ['b', 1], key: 'port' });
    assert.equal(scanJSON('{"b": [{"port": 1}, {"port": 1}], "a": {"port": 1}}', BINDINGS_FILE_LIMITS).duplicate, undefined);
    const many = `{${Array.from({ length: 40 }, (_, i) => `"k${i}": 1`).join(', ')}, "k7": 2}`;
    assert.deepEqual(scanJSON(many, BINDINGS_FILE_LIMITS).duplicate, { path: [], key: 'k7' });
  });

  test('strings may hold quotes, brackets and colons', () => {
    const s = scanJSON('{"a\\"[{": "]}\\\\", "b": ["{\\"x\\":1}", ":,"], "a\\"[{": 0}', limits);
    assert.equal(s.exceeded, undefined);
    assert.deepEqual(s.duplicate, { path: [], key: 'a"[{' });
  });

  test('numbers not written as plain digits are found, with where and how', () => {
    const s = scanJSON('{"bindings": [{"port": 80.0}, {"port": 1e2}, {"port": -0}, {"port": 0}, {"port": 443}]}', BINDINGS_FILE_LIMITS);
    assert.deepEqual([...s.unplain], [['bindings[0].port', '80.0'], ['bindings[1].port', '1e2'], ['bindings[2].port', '-0']]);
    assert.equal(s.unplainCount, 3);
  });

  test('text that is not JSON still ends', () => {
    for (const bad of ['', '"', '{"a', '[[[', ']]]}}}', '{"a" "a"', 'nul', '\\', '"\\']) assert.ok(scanJSON(bad, limits));
  });

  test('paths quote keys that are not plain names', () => {
    assert.equal(jsonPath(['bindings', 3, 'port']), 'bindings[3].port');
    assert.equal(jsonPath([]), '(top level)');
    assert.equal(jsonPath(['a b', HUGE]), `["a b"]["${'x'.repeat(QUOTE_MAX)}..." (10000000 characters)]`);
  });
});

describe('bindings file limits', () => {
  const rejects = (text: string, ...patterns: RegExp[]): void => {
    assert.equal(packBindingsFile(text), undefined, 'the fast path leaves it to the reference parser');
    refuses(() => parseBindingsFile(text, 'b.json'), 'EINVAL', /^b\.json is invalid, nothing was changed: /, ...patterns);
  };
  const entry = (port: string, extra = ''): string => `{"bindings": [{"label": "web", "prefix": "127.0.0.1", "port": ${port}${extra}}]}`;

  test('deep nesting is refused before JSON.parse, without a stack overflow', () => {
    const depth = 1_000_000;
    rejects(`{"bindings": ${'['.repeat(depth)}${']'.repeat(depth)}}`, /nest more than 16 deep/);
    rejects(`${'{"a": '.repeat(depth)}1${'}'.repeat(depth)}`, /nest more than 16 deep/);
    // Within the limit, a deep value is reported and shown shallowly.
    rejects(`{"bindings": [{"label": ${'['.repeat(12)}${']'.repeat(12)}, "prefix": "::1", "port": 1}]}`,
      /bindings\[0\]\.label = \[\[\[\[\.\.\.\]\]\]\]: expected a string/);
  });

  test('too many entries or fields are refused before JSON.parse', () => {
    rejects(`{"bindings": [${'0,'.repeat(MAX_BINDINGS)}0]}`, /bindings holds more than 1048576 items: a dispatcher holds at most 1048576 bindings/);
    rejects(`{"bindings": [], ${Array.from({ length: 100 }, (_, i) => `"x${i}": 0`).join(', ')}}`, /holds more than 64 fields/);
  });

  test('a key given twice is refused with its name', () => {
    rejects('{"bindings": [{"label": "web", "prefix": "127.0.0.1", "port": 80}], "bindings": []}',
      /: the top level holds the field "bindings" twice \(JSON keeps only the last, silently\): keep one$/);
    rejects(entry('80', ', "port": 81'), /: bindings\[0\] holds the field "port" twice/);
    rejects(entry('80', ', "label": "web"'), /: bindings\[0\] holds the field "label" twice/);
  });

  test('a port is a plain JSON integer; a string port stays refused', () => {
    for (const port of ['80.0', '1e2', '8e1', '-0', '0.0']) rejects(entry(port), new RegExp(`bindings\\[0\\]\\.port = ${port.replace('.', '\\.')}: a port is written as plain digits`));
    rejects(entry('"80"'), /bindings\[0\]\.port = "80": expected a number/);
    rejects(entry('" 80"'), /bindings\[0\]\.port = " 80": expected a number/);
    assert.equal(parseBindingsFile(entry('80'), 'b.json').bindings.length, 2);
    assert.equal(packBindingsFile(entry('0'))?.set.count, 2);
  });

  test('zones and white space in prefixes are refused', () => {
    rejects('{"bindings": [{"label": "web", "prefix": "::1%lo", "port": 80}]}', /bindings\[0\]\.prefix = "::1%lo": invalid prefix "::1%lo": a zone/);
    rejects('{"bindings": [{"label": "web", "prefix": " ::1", "port": 80}]}', /remove the white space/);
  });

  test('a huge bad value or key is echoed bounded', () => {
    rejects(`{"bindings": [{"label": "web", "prefix": "${HUGE}", "port": 80}]}`, /prefix = "x{64}\.\.\." \(10000000 characters\)/);
    rejects(`{"bindings": [{"label": "${HUGE}", "prefix": "::1", "port": 80}]}`, /label = "x{64}\.\.\." \(10000000 characters\)/);
    rejects(`{"bindings": [{"label": "web", "prefix": "::1", "port": 80, "${HUGE}": 1}]}`, /unknown field "x{64}\.\.\." \(10000000 characters\)/);
    rejects(`{"bindings": [{"label": "web", "prefix": "::1", "port": ${'9'.repeat(1_000_000)}}]}`, /port = Infinity: expected a number/);
    rejects(`{"bindings": [{"label": "web", "prefix": "::1", "port": 1.${'0'.repeat(1_000_000)}}]}`, /port = 1\.0{30}\.\.\. \(1000002 characters\): a port is written as plain digits/);
  });

  test('many unknown fields are listed only in part', () => {
    const text = `{"bindings": [{"label": "web", "prefix": "::1", "port": 80, ${Array.from({ length: 60 }, (_, i) => `"x${i}": 0`).join(', ')}}]}`;
    assert.throws(() => parseBindingsFile(text, 'b.json'), (e: unknown) => e instanceof TubularError && /\.\.\. and 55 more unknown fields/.test(e.message) &&
      e.message.split('\n').length <= 8);
  });

  test(`the size limit (${formatBytes(BINDINGS_FILE_MAX_BYTES)}) holds ${MAX_BINDINGS} bindings as bindings --json prints them, with the longest labels and prefixes`, () => {
    const b = parseBinding({ label: 'l'.repeat(LABEL_MAX_BYTES), protocol: 'tcp', prefix: 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124', port: 65535 });
    const two = toJSONText({ bindings: [toJSON(b), toJSON(b)] });
    const one = toJSONText({ bindings: [toJSON(b)] });
    const perBinding = two.length - one.length;
    const worst = one.length + (MAX_BINDINGS - 1) * perBinding;
    assert.ok(worst < BINDINGS_FILE_MAX_BYTES * 0.95, `${worst} bytes`);
    assert.ok(worst > 200e6, `the limit is not needlessly generous: ${worst} bytes`);
  });
});

describe('reading a file within a limit', () => {
  const limit = { what: 'test file', maxBytes: 100, advice: 'make it smaller' };

  test('a regular file up to the limit is read', () => {
    assert.equal(readRegularFile(file('ok.json', 'a'.repeat(100)), limit), 'a'.repeat(100));
    assert.match(readRegularFile('/proc/self/status', { ...limit, maxBytes: 1 << 20 }), /^Name:/m); // size 0 in stat
  });

  test('one byte more is refused, naming the file and the limit', () => {
    refuses(() => readRegularFile(file('big.json', 'a'.repeat(101)), limit), 'EINVAL',
      /^test file \S+big\.json is 101 bytes, over the limit of 100 bytes: make it smaller$/);
    refuses(() => readRegularFile('/proc/self/status', { ...limit, maxBytes: 10 }), 'EINVAL', /^test file \/proc\/self\/status is over the limit of 10 bytes/);
  });

  test('devices, FIFOs and directories are refused without reading or blocking', () => {
    refuses(() => readRegularFile('/dev/zero', limit), 'EINVAL', /^cannot read test file \/dev\/zero: it is a character device, give a regular file$/);
    refuses(() => readRegularFile(dir, limit), 'EINVAL', /it is a directory/);
    const fifo = path.join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    refuses(() => readRegularFile(fifo, limit), 'EINVAL', /it is a FIFO \(named pipe\), give a regular file/);
  });

  test('a missing file or a long name gives a bounded message', () => {
    refuses(() => readRegularFile(path.join(dir, 'nope.json'), limit), 'ENOENT', /^cannot read test file \S+nope\.json: no such file$/);
    refuses(() => readRegularFile(`/${'n'.repeat(100_000)}`, limit), 'EINVAL', /^cannot read test file "\/n+\.\.\." \(100001 characters\): ENAMETOOLONG/);
  });

  test('byte counts read well', () => {
    assert.equal(formatBytes(BINDINGS_FILE_MAX_BYTES), '256 MiB');
    assert.equal(formatBytes(300 * 2 ** 20 + 1), '300.0 MiB');
    assert.equal(formatBytes(1), '1 byte');
  });
});

describe('pid files and LISTEN_FDS', () => {
  const usage = (re: RegExp) => (e: unknown): boolean => {
    assert.ok(e instanceof UsageError, String(e));
    clear(e.message);
    assert.match(e.message, re);
    return true;
  };

  test('a pid is decimal without leading zeros (above 4194304 it is no such process)', () => {
    assert.equal(parsePidArgs(['4194305', 'web', 'tcp', '127.0.0.1', '80']).pid, 4194305);
    for (const bad of ['0', '0123', '99999999999', '99999999999999999999']) {
      assert.throws(() => parsePidArgs([bad, 'web', 'tcp', '127.0.0.1', '80']), usage(/^invalid pid "\d+": a process id is 1-4194304/));
    }
  });

  test('a pid file is a small regular file holding one pid', () => {
    const fifo = path.join(dir, 'pid-fifo');
    execFileSync('mkfifo', [fifo]);
    assert.throws(() => parsePidArgs([fifo, 'web', 'tcp', '127.0.0.1', '80']), usage(/it is a FIFO/));
    assert.throws(() => parsePidArgs(['/dev/zero', 'web', 'tcp', '127.0.0.1', '80']), usage(/it is a character device/));
    assert.throws(() => parsePidArgs([file('big.pid', '1'.repeat(PID_FILE_MAX_BYTES + 1)), 'web', 'tcp', '127.0.0.1', '80']),
      usage(/^pid file \S+ is 4\.0 KiB, over the limit of 4 KiB/));
    assert.throws(() => parsePidArgs([file('bad.pid', `12${HUGE}`), 'web', 'tcp', '127.0.0.1', '80']), usage(/over the limit/));
    assert.throws(() => parsePidArgs([file('word.pid', 'x'.repeat(1000)), 'web', 'tcp', '127.0.0.1', '80']),
      usage(/holds "x{20}\.\.\." \(1000 characters\), not a process id/));
    assert.equal(parsePidArgs([file('ok.pid', '345\n'), 'web', 'tcp', '127.0.0.1', '80']).pid, 345);
  });

  test('LISTEN_FDS is 1-1024, echoed bounded', () => {
    const env = (vars: Record<string, string>) => ({ getenv: (n: string) => vars[n], pid: 77 });
    for (const fds of ['0', '01', '1025', '99999999999', HUGE]) {
      refuses(() => passedSockets(env({ LISTEN_FDS: fds, LISTEN_PID: '77' }), 'web'), 'EINVAL', /^LISTEN_FDS="[^"]*"( \(\d+ characters\))? should be the number of sockets passed \(1-1024\)$/);
    }
    refuses(() => passedSockets(env({ LISTEN_FDS: '1', LISTEN_PID: HUGE }), 'web'), 'EINVAL', /^LISTEN_PID="x{64}\.\.\." \(10000000 characters\) is not this process/);
  });
});

describe('--netns must be a network namespace', () => {
  test('the namespace of this process is one', () => {
    assert.equal(netnsInode('/proc/self/ns/net'), statSync('/proc/self/ns/net').ino);
  });

  test('anything else is refused, saying what to pass', () => {
    refuses(() => netnsInode('/etc/passwd'), 'EINVAL', /^\/etc\/passwd is not a network namespace \(not a namespace file\): pass \/run\/netns\/NAME or \/proc\/PID\/ns\/net$/);
    refuses(() => netnsInode('/proc/self/ns/mnt'), 'EINVAL', /^\/proc\/self\/ns\/mnt is not a network namespace \(a mount namespace\)/);
    refuses(() => netnsInode('/dev/null'), 'EINVAL', /is not a network namespace/);
    refuses(() => netnsInode(dir), 'EINVAL', /is not a network namespace/);
    const fifo = path.join(dir, 'ns-fifo');
    execFileSync('mkfifo', [fifo]);
    refuses(() => netnsInode(fifo), 'EINVAL', /is not a network namespace/);
  });

  test('a missing path keeps its message', () => {
    refuses(() => netnsInode('/nonexistent/ns'), 'ENOENT', /^network namespace \/nonexistent\/ns does not exist: pass a path such as \/run\/netns\/NAME/);
    refuses(() => netnsInode(`/${HUGE}`), 'EINVAL', /^"\/x+\.\.\." \(10000001 characters\) is not a network namespace \(the name is too long\)/);
  });
});

describe('--bpffs must be a bpffs mount', () => {
  test('another filesystem is refused, saying how to mount one', () => {
    refuses(() => assertBpffs(dir), 'EINVAL', /is not a bpffs mount \(filesystem type 0x[0-9a-f]+\): mount one there with mount -t bpf bpf \S+, or pass --bpffs/);
  });

  test('a missing path, or a file, has its own message', () => {
    refuses(() => assertBpffs(path.join(dir, 'nope')), 'ENOENT', /^bpffs path \S+nope does not exist: mount one with mount -t bpf bpf PATH, or pass --bpffs/);
    refuses(() => assertBpffs(file('plain', '')), 'EINVAL', /is not a directory/);
  });
});

function fakeIo(): Io & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => { out += s; } },
    stderr: { write: (s: string) => { err += s; } },
    getenv: () => undefined,
    pid: 4242,
    out: () => out,
    err: () => err,
  };
}

describe('tubectl refuses bad places and long tokens before acting', () => {
  const fails = async (args: string[], code: number, re: RegExp): Promise<void> => {
    const io = fakeIo();
    assert.equal(await run(args, io), code, io.err());
    assert.equal(io.out(), '');
    assert.match(io.err(), /^tubectl: [^\n]*\n(\(tubectl --help[^\n]*\n)?$/);
    clear(io.err().split('\n')[0]);
    assert.match(io.err(), re);
  };

  test('--bpffs that is not a bpffs, for every verb touching state', async () => {
    for (const verb of [['status'], ['list'], ['bindings'], ['load'], ['unload'], ['upgrade'], ['bind', 'web', 'tcp', '127.0.0.1', '80'],
      ['unbind', 'web', 'tcp', '127.0.0.1', '80'], ['load-bindings', '/dev/zero'], ['unregister', 'web', 'ipv4', 'tcp']]) {
      await fails(['--bpffs', dir, ...verb], 1, /is not a bpffs mount/);
    }
  });

  test('--netns that is not a network namespace', async () => {
    await fails(['--netns', '/etc/passwd', '--bpffs', dir, 'bindings'], 1, /^tubectl: \/etc\/passwd is not a network namespace/);
    await fails(['--netns', '/etc/passwd', '--bpffs', dir, 'load'], 1, /^tubectl: \/etc\/passwd is not a network namespace/);
  });

  test('long tokens in usage errors are cut', async () => {
    await fails([HUGE.slice(0, 100_000)], 2, /^tubectl: unknown command 'x{64}\.\.\.' \(100000 characters\)/);
    await fails(['status', HUGE.slice(0, 100_000)], 2, /^tubectl: invalid label "x{64}\.\.\." \(100000 characters\)/);
    await fails(['load', '--group', '-x'], 2, /^tubectl: invalid group "-x": a group name is 1-256 characters and does not start with -/);
    await fails(['load', '--group', '99999999999'], 2, /^tubectl: invalid group "99999999999": a gid is 0-4294967294/);
    await fails(['load', '--group', HUGE.slice(0, 1000)], 2, /^tubectl: invalid group "x{64}\.\.\." \(1000 characters\)/);
  });
});
