// Where the state is without --bpffs (src/defaults-file.ts): the environment,
// then /etc/default/tubular as systemd and sh both read it, then
// /sys/fs/bpf. Pure: a temporary file, no root.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { DEFAULTS_FILE_MAX_BYTES, bpffsFromDefaults, defaultBpffs } from '../src/defaults-file.js';
import { TubularError } from '../src/errors.js';

const dir = mkdtempSync(path.join(tmpdir(), 'tubular-defaults-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const file = (text: string): string => {
  const f = path.join(dir, `f${Math.random().toString(36).slice(2)}`);
  writeFileSync(f, text);
  return f;
};
const noEnv = (): undefined => undefined;
const refused = (re: RegExp) => (err: unknown) => err instanceof TubularError && err.code === 'EINVAL' && re.test(err.message);

test('the spellings systemd and sh agree on: bare, quoted, comments, the last one wins', () => {
  assert.equal(bpffsFromDefaults('TUBULAR_BPFFS=/run/a\n'), '/run/a');
  assert.equal(bpffsFromDefaults('TUBULAR_BPFFS="/run/b"'), '/run/b');
  assert.equal(bpffsFromDefaults("  TUBULAR_BPFFS='/run/c d'  \n"), '/run/c d');
  assert.equal(bpffsFromDefaults('export OTHER=1\nTUBULAR_BPFFS=/run/e\n'), '/run/e', 'another variable exported is not ours to judge');
  assert.equal(bpffsFromDefaults('# TUBULAR_BPFFS=/not/this\n\nOTHER=$x\nTUBULAR_BPFFS=/one\nTUBULAR_BPFFS=/two\n'), '/two');
  assert.equal(bpffsFromDefaults('# nothing set\nTUBULAR_BPFFSX=/no\n'), undefined);
  assert.equal(bpffsFromDefaults(''), undefined);
});

test('export, which sh takes and systemd ignores (the units would use another path), is refused with the line', () => {
  assert.throws(() => bpffsFromDefaults('# set by hand\nexport TUBULAR_BPFFS=/run/bpffs\n', '/etc/default/tubular'),
    refused(/^\/etc\/default\/tubular line 2: systemd ignores a line that starts with export, so the units would not see this TUBULAR_BPFFS: write TUBULAR_BPFFS=PATH without export, or pass --bpffs PATH$/));
});

test('what only a shell would make sense of is refused with the line and what to do', () => {
  assert.throws(() => bpffsFromDefaults('\nTUBULAR_BPFFS=$RUNTIME/bpffs\n', '/etc/default/tubular'),
    refused(/^\/etc\/default\/tubular line 2: TUBULAR_BPFFS="\$RUNTIME\/bpffs" uses shell expansion.*pass --bpffs PATH$/));
  assert.throws(() => bpffsFromDefaults('TUBULAR_BPFFS=`pick`'), refused(/shell expansion/));
  assert.throws(() => bpffsFromDefaults('TUBULAR_BPFFS=run/bpffs'), refused(/line 1: TUBULAR_BPFFS="run\/bpffs" is not an absolute path/));
  assert.throws(() => bpffsFromDefaults('TUBULAR_BPFFS='), refused(/TUBULAR_BPFFS="" is not an absolute path/));
  assert.throws(() => bpffsFromDefaults('TUBULAR_BPFFS="/run/a'), refused(/line 1: .*opens a quote it does not close/));
  assert.throws(() => bpffsFromDefaults('TUBULAR_BPFFS=/run/a # where'), refused(/space outside quotes/));
  // A long value is cut in the message.
  assert.throws(() => bpffsFromDefaults(`TUBULAR_BPFFS=${'y'.repeat(10_000)}`), (err: unknown) => err instanceof TubularError && err.message.length < 300);
});

test('the environment first, then the file, then /sys/fs/bpf; a missing file is no error', () => {
  const f = file('TUBULAR_BPFFS=/run/from-file\n');
  assert.deepEqual(defaultBpffs((n) => (n === 'TUBULAR_BPFFS' ? '/run/from-env' : undefined), f), { path: '/run/from-env', from: 'environment' });
  assert.deepEqual(defaultBpffs((n) => (n === 'TUBULAR_BPFFS' ? '' : undefined), f), { path: '/run/from-file', from: 'file' });
  assert.deepEqual(defaultBpffs(noEnv, f), { path: '/run/from-file', from: 'file' });
  assert.deepEqual(defaultBpffs(noEnv, file('# only comments\n')), { path: '/sys/fs/bpf', from: 'built-in' });
  assert.deepEqual(defaultBpffs(noEnv, path.join(dir, 'absent')), { path: '/sys/fs/bpf', from: 'built-in' });
  assert.throws(() => defaultBpffs(() => 'relative', f), refused(/^the environment: TUBULAR_BPFFS="relative" is not an absolute path/));
});

test('a file larger than the limit is refused, not read whole', () => {
  const big = file(`TUBULAR_BPFFS=/run/a\n${'#'.repeat(DEFAULTS_FILE_MAX_BYTES)}\n`);
  assert.throws(() => defaultBpffs(noEnv, big), refused(/^defaults file \S+ is [\d.]+ KiB, over the limit of 64 KiB: it is meant to hold a few lines: shorten it; or pass --bpffs PATH$/));
  const exact = file(`TUBULAR_BPFFS=/run/a\n${'#'.repeat(DEFAULTS_FILE_MAX_BYTES - 21)}`);
  assert.equal(defaultBpffs(noEnv, exact).path, '/run/a');
});

test('a defaults file that is not a regular file (a directory here) is refused, named, with what to do', () => {
  const sub = path.join(dir, 'a-directory');
  mkdirSync(sub);
  assert.throws(() => defaultBpffs(noEnv, sub),
    refused(/^cannot read defaults file \S+a-directory: it is a directory, give a regular file; or pass --bpffs PATH$/));
});
