// A program the kernel's verifier refuses: the addon says it was the
// verifier, load says so in a few lines instead of libbpf's 4 KiB, and
// `load` (auto) falls back to the compat program when the verifier of an
// untested kernel refuses the full one. The refusal is real: a small
// sk_lookup program that reads through a number, compiled here.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { autoVariant } from './lib/variants.js';
import { Dispatcher } from '../src/dispatcher.js';
import { TubularError } from '../src/errors.js';
import { type Native, native } from '../src/native.js';
import { netnsInode } from '../src/netns.js';

const { bpffs } = isolate();
const stateDir = path.join(bpffs, `${netnsInode('/proc/self/ns/net')}_dispatcher`);

const BAD = `#include <linux/bpf.h>
__attribute__((section("sk_lookup"), used))
int refused(struct bpf_sk_lookup *ctx) {
  return *(int *)(unsigned long)ctx->remote_port; /* a number is no pointer */
}
char _license[] __attribute__((section("license"), used)) = "GPL";
`;
// The same refusal after 15,000 instructions: the verifier's log, megabytes
// long, is far more than the addon keeps of libbpf's output.
const LATE = `#include <linux/bpf.h>
__attribute__((section("sk_lookup"), used))
int refused(struct bpf_sk_lookup *ctx) {
  unsigned int x = ctx->remote_port;
#pragma clang loop unroll(full)
  for (int i = 0; i < 3000; i++) x ^= (x >> 3) + i;
  return *(int *)(unsigned long)x;
}
char _license[] __attribute__((section("license"), used)) = "GPL";
`;

type AddonError = Error & { code?: string; verifier?: boolean };

/** The error the addon throws for a program the verifier refuses. */
function verifierError(source: string): AddonError {
  const dir = mkdtempSync(path.join(tmpdir(), 'tubular-verifier-'));
  writeFileSync(path.join(dir, 'bad.c'), source);
  const machine = execFileSync('gcc', ['-dumpmachine'], { encoding: 'utf8' }).trim();
  execFileSync('clang', ['-O2', '-target', 'bpf', `-I/usr/include/${machine}`, '-c', path.join(dir, 'bad.c'), '-o', path.join(dir, 'bad.o')]);
  try {
    native().loadObject(path.join(dir, 'bad.o'), 'refused', {});
  } catch (err) {
    return err as AddonError;
  }
  throw new Error('the verifier took a program that reads through a number');
}

const refusal = verifierError(BAD);

test('the addon marks a refusal by the verifier as one, with the end of its log', () => {
  assert.equal(refusal.verifier, true);
  assert.equal(refusal.code, 'EACCES');
  assert.match(refusal.message, /^bpf_object__load: /);
  assert.match(refusal.message, /invalid mem access/);
});

test('... also when the log is too long to keep (its start is gone from what the addon keeps)', () => {
  const late = verifierError(LATE);
  assert.ok(late.message.length <= 4200 + 100, `${late.message.length}`);
  assert.doesNotMatch(late.message, /BEGIN PROG LOAD LOG/);
  assert.equal(late.verifier, true);
});

test('a failure that is not the verifier\'s is not marked so', () => {
  assert.throws(() => native().loadObject('/nonexistent/bad.o', 'refused', {}), (e: Error & { verifier?: boolean }) => e.verifier === false);
});

/** The syscall layer, with a verifier that refuses the full program (the real refusal, above). */
const refusingFull: Native = {
  ...native(),
  loadObject(file, name, reuse) {
    if (name === 'dispatcher') throw refusal;
    return native().loadObject(file, name, reuse);
  },
};

test('asked for the full program, load says the verifier refused it, in a few lines, and creates nothing', () => {
  assert.throws(() => Dispatcher.create({ bpffs, program: 'full', sys: refusingFull }), (e: unknown) => {
    assert.ok(e instanceof TubularError && e.code === 'EINCOMPAT', String(e));
    assert.match(e.message, /^this kernel's verifier refused the full program \(tubectl load --program compat loads the other one\); the end of its log:\n {2}/);
    assert.ok(e.message.split('\n').length <= 7, e.message);
    assert.match(e.message, /invalid mem access/);
    return true;
  });
  assert.equal(existsSync(stateDir), false);
});

test('load (auto) falls back to the compat program when the verifier refuses the full one, and says why', () => {
  const d = Dispatcher.create({ bpffs, sys: refusingFull });
  try {
    // (A kernel without what the full program needs never asks the verifier about it.)
    if (autoVariant() === 'full') assert.deepEqual(d.created, { variant: 'compat', why: 'this kernel\'s verifier refused the full program' });
    assert.equal(d.created?.variant, 'compat');
    assert.equal(d.status().programVariant, 'compat');
  } finally {
    d.close();
    Dispatcher.unload({ bpffs });
  }
});

test('a load that signals interrupt each time libbpf tries is not a verifier refusal: it says so, and creates nothing', () => {
  // The verifier stops at a pending signal (EAGAIN) and libbpf asks again a
  // few times; node's CPU profiler, sampling every 100 µs, sends SIGPROF
  // faster than a load can finish.
  const profiles = mkdtempSync(path.join(tmpdir(), 'tubular-prof-'));
  try {
    const launch = path.join(path.dirname(new URL(import.meta.url).pathname), '..', 'src', 'launch.cjs');
    const before = readdirSync(bpffs);
    const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', profiles, '--cpu-prof-interval', '100', launch, 'tubectl', '--bpffs', bpffs, 'load'], { encoding: 'utf8' });
    assert.equal(r.status, 1, `the load was to be interrupted (exit ${r.status}): ${r.stderr}`);
    assert.match(r.stderr, /^tubectl: loading the (full|compat) BPF program was interrupted by signals each time libbpf tried; nothing was loaded: run the command again\n$/);
    assert.equal(existsSync(stateDir), false);
    assert.deepEqual(readdirSync(bpffs), before, 'nothing left in the bpffs');
  } finally {
    if (existsSync(stateDir)) Dispatcher.unload({ bpffs });
    rmSync(profiles, { recursive: true, force: true });
  }
});
