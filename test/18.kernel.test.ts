// An older kernel gets a sentence naming the version it needs, never a
// verifier log: the probes' answers decide, before anything is loaded.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TubularError } from '../src/errors.js';
import { missingFeatures, requireKernel } from '../src/kernel.js';
import type { KernelFeatures, Native } from '../src/native.js';

const all: KernelFeatures = { skLookup: true, skAssign: true, loop: true, ktimeCoarse: true };
const kernel = (f: Partial<KernelFeatures>): Native => ({ probeFeatures: () => ({ ...all, ...f }) }) as unknown as Native;

test('a kernel with every feature passes', () => {
  assert.deepEqual(missingFeatures(all), []);
  requireKernel(kernel({}), '6.18.0');
});

test('a 5.10 kernel (no bpf_loop, no coarse clock) is told it needs 5.17', () => {
  assert.throws(() => requireKernel(kernel({ loop: false, ktimeCoarse: false }), '5.10.0-30-cloud-amd64'), (e: unknown) =>
    e instanceof TubularError && e.code === 'EINCOMPAT' &&
    e.message === 'this kernel (5.10.0-30-cloud-amd64) lacks the bpf_ktime_get_coarse_ns helper (per-binding last hit) (Linux 5.11), ' +
      'the bpf_loop helper (the longest-prefix walk) (Linux 5.17): the dispatcher needs Linux 5.17 or newer');
});

test('a kernel without sk_lookup names 5.9', () => {
  assert.throws(() => requireKernel(kernel({ skLookup: false, skAssign: false }), '5.4.0'), /needs Linux 5\.9 or newer$/);
});
