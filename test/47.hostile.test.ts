// Hostile local users against the state in bpffs: a member of the read
// group, and any user at all on a world-writable bpffs (a plain bpffs
// mount is mode 1777). None of them may block a writer, redirect root's
// commands to other state, make root delete their files, or squat a
// namespace without root being told plainly.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { NOBODY, addGroup, asNobody } from './lib/nobody.js';
import { installed } from './lib/installed.js';
import { ok, tubectlFor } from './lib/tubectl.js';
import { netnsInode } from '../src/netns.js';

const { bpffs } = isolate();
const tubectl = tubectlFor(bpffs);
const group = `tubh${process.pid}`;
let gid: number;
const ino = netnsInode('/proc/self/ns/net');
const stateDir = path.join(bpffs, `${ino}_dispatcher`);
const other = `tubh${process.pid}`;
const children: ChildProcess[] = [];

/** Runs a command as nobody, in the group or not, in the background. */
function nobodyInBackground(withGroup: boolean, argv: string[]): ChildProcess {
  return background([...asNobody(withGroup ? gid : undefined), ...argv]);
}

/** A command in a process group of its own, so that stop() ends it and every child holding its lock. */
function background(argv: string[]): ChildProcess {
  const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  children.push(child);
  return child;
}

function stop(c: ChildProcess): void {
  try { process.kill(-c.pid!, 'SIGKILL'); } catch { /* gone */ }
}

function runAsNobody(withGroup: boolean, argv: string[]): { code: number | null; stderr: string } {
  try {
    const [cmd, ...args] = asNobody(withGroup ? gid : undefined);
    execFileSync(cmd, [...args, ...argv],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    return { code: 0, stderr: '' };
  } catch (err) {
    const e = err as { status: number | null; stderr: Buffer };
    return { code: e.status, stderr: String(e.stderr) };
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Waits until a background flock holds its lock: it prints once it does. */
const holding = (c: ChildProcess): Promise<void> => new Promise((ok, fail) => {
  c.stdout!.once('data', () => ok());
  c.once('exit', (code) => fail(new Error(`the lock holder exited (${code}) before holding the lock`)));
});

before(async () => {
  gid = addGroup(group);
  installed(); // makes sure other users can run things from a world-readable copy if they need to
  assert.equal(statSync(bpffs).mode & 0o7777, 0o1777, 'a plain bpffs mount is world-writable with the sticky bit');
  ok(await tubectl(['load', '--group', group]));
  ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '80']));
});

after(async () => {
  for (const c of children) stop(c);
  await tubectl(['unload']);
  execFileSync('groupdel', [group]);
  try { execFileSync('ip', ['netns', 'del', other], { stdio: 'ignore' }); } catch { /* not made */ }
});

describe('a member of the read group', () => {
  for (const mode of ['-s', '-x']) {
    test(`flock ${mode} on the state directory does not stop root's writes`, async () => {
      const holder = nobodyInBackground(true, ['flock', mode, stateDir, 'sh', '-c', 'echo held; sleep 30']);
      await holding(holder);
      const started = Date.now();
      ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '81']));
      ok(await tubectl(['unbind', 'web', 'tcp', '127.0.0.0/24', '81']));
      assert.ok(Date.now() - started < 5000, `writes took ${Date.now() - started} ms`);
      stop(holder);
    });
  }

  test('cannot open the writers\' lock at all', () => {
    const r = runAsNobody(true, ['flock', '-n', '-x', path.join(stateDir, 'lock'), 'true']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /Permission denied/);
  });
});

describe('a writer that holds the lock', () => {
  test('makes another writer give up after --lock-timeout, naming it; nothing changes', async () => {
    const holder = background(['flock', '-x', path.join(stateDir, 'lock'), 'sh', '-c', 'echo held; sleep 30']);
    await holding(holder);
    const before = ok(await tubectl(['bindings', '--json'])).stdout;
    const started = Date.now();
    const r = await tubectl(['--lock-timeout', '0.5', 'bind', 'web', 'tcp', '127.0.0.0/24', '82']);
    const took = Date.now() - started;
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^tubectl: the dispatcher's state is being changed by pid \d+ \(flock -x .*\) \(waited 0\.5 s\): try again when it is done\n$/);
    assert.ok(took >= 500 && took < 5000, `gave up after ${took} ms`);
    // Readers take no lock at all.
    assert.equal(ok(await tubectl(['bindings', '--json'])).stdout, before);
    stop(holder);
    await sleep(50);
    ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '82']));
    ok(await tubectl(['unbind', 'web', 'tcp', '127.0.0.0/24', '82']));
  });
});

describe('any user, on a world-writable bpffs', () => {
  test('a symlink planted where a temporary directory would go never makes root delete its target', async () => {
    const victim = path.join(bpffs, '..', `victim-${process.pid}`);
    mkdirSync(victim);
    writeFileSync(path.join(victim, 'precious'), 'keep me');
    try {
      // Old-style and new-style names of a create or unload in progress.
      for (const name of [`${ino}_dispatcher_create_99999`, `${ino}_dispatcher_create_0123456789abcdef`, `${ino}_dispatcher_unload_fedcba9876543210`]) {
        const r = runAsNobody(false, ['ln', '-s', victim, path.join(bpffs, name)]);
        assert.equal(r.code, 0, r.stderr);
      }
      ok(await tubectl(['unload']));
      ok(await tubectl(['load', '--group', group]));
      ok(await tubectl(['bind', 'web', 'tcp', '127.0.0.0/24', '80']));
      assert.equal(readFileSync(path.join(victim, 'precious'), 'utf8'), 'keep me');
    } finally {
      for (const name of readdirSync(bpffs)) if (name.startsWith(`${ino}_dispatcher_`)) rmSync(path.join(bpffs, name));
      rmSync(victim, { recursive: true });
    }
  });

  test('a symlink to another namespace\'s state is refused, and that state is untouched', async () => {
    execFileSync('ip', ['netns', 'add', other]);
    const theirs = tubectlFor(bpffs, {});
    const otherNs = `/run/netns/${other}`;
    ok(await theirs(['--netns', otherNs, 'load']));
    ok(await theirs(['--netns', otherNs, 'bind', 'b', 'tcp', '127.0.0.0/24', '80']));
    // A namespace with no dispatcher of its own yet: a fresh one.
    execFileSync('ip', ['netns', 'add', `${other}x`]);
    try {
      const victimIno = netnsInode(`/run/netns/${other}x`);
      const link = path.join(bpffs, `${victimIno}_dispatcher`);
      assert.equal(runAsNobody(false, ['ln', '-s', `${netnsInode(otherNs)}_dispatcher`, link]).code, 0);
      for (const verb of [['unload'], ['bind', 'x', 'tcp', '127.0.0.1', '1'], ['status'], ['load']]) {
        const r = await theirs(['--netns', `/run/netns/${other}x`, ...verb]);
        assert.equal(r.code, 1, `${verb.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, /is not a directory root created \(a symbolic link or a file\)/, verb.join(' '));
        assert.doesNotMatch(r.stderr, /\n\s+at /);
      }
      const s = JSON.parse(ok(await theirs(['--netns', otherNs, 'status', '--json'])).stdout) as { bindings: number; attached: boolean };
      assert.deepEqual([s.bindings, s.attached], [1, true]);
      rmSync(link);
    } finally {
      execFileSync('ip', ['netns', 'del', `${other}x`]);
      await theirs(['--netns', otherNs, 'unload']);
    }
  });

  test('a bpffs mounted with mode=0755, as the threat model advises, lets nobody else create names', () => {
    const strict = path.join(bpffs, '..', `strict-bpffs-${process.pid}`);
    mkdirSync(strict);
    execFileSync('mount', ['-t', 'bpf', '-o', 'mode=0755', 'bpf', strict]);
    try {
      assert.equal(statSync(strict).mode & 0o777, 0o755);
      const r = runAsNobody(false, ['mkdir', path.join(strict, `${ino}_dispatcher`)]);
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /Permission denied/);
    } finally {
      execFileSync('umount', [strict]);
      rmSync(strict, { recursive: true });
    }
  });

  test('a directory squatting a namespace\'s name is refused with a message saying what to do', async () => {
    ok(await tubectl(['unload']));
    assert.equal(runAsNobody(false, ['mkdir', stateDir]).code, 0);
    try {
      for (const verb of [['load'], ['status'], ['bind', 'x', 'tcp', '127.0.0.1', '1'], ['unload']]) {
        const r = await tubectl(verb);
        assert.equal(r.code, 1, `${verb.join(' ')}: ${r.stderr}`);
        assert.match(r.stderr, new RegExp(`^tubectl: ${stateDir} is owned by uid ${NOBODY}, not root: it is not a dispatcher's state .*remove it`), verb.join(' '));
      }
    } finally {
      rmSync(stateDir, { recursive: true });
    }
    ok(await tubectl(['load', '--group', group]));
    assert.ok(existsSync(path.join(stateDir, 'lock')));
  });
});
