// Which program runs on which kernel, decided from the probes' answers
// before anything is loaded: an older kernel gets the compat program, or a
// sentence naming the version it needs, never a verifier log.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { testRunRefusal } from '../src/cli/explain.js';
import { TubularError } from '../src/errors.js';
import { chooseProgram, kernelVersion, missingFeatures, unprivilegedReadProblem, variantOfProgram } from '../src/kernel.js';
import type { KernelFeatures } from '../src/native.js';

const all: KernelFeatures = { skLookup: true, skAssign: true, loop: true, ktimeCoarse: true, ingressIfindex: true, testRun: true };
// What libbpf's probes and ours find on Debian's 5.10 (test 41 checks it under qemu, in scripts/test-kernels' 5.10 row).
const linux510: KernelFeatures = { ...all, loop: false, ktimeCoarse: false, ingressIfindex: false };
const incompat = (pattern: RegExp) => (e: unknown) => e instanceof TubularError && e.code === 'EINCOMPAT' && pattern.test(e.message);

test('auto: the full program where the kernel has everything it needs, else the compat one, saying why', () => {
  assert.deepEqual(missingFeatures(all), []);
  assert.equal(chooseProgram('auto', all, '6.18.0').variant, 'full');
  const old = chooseProgram('auto', linux510, '5.10.0-32-cloud-amd64');
  assert.equal(old.variant, 'compat');
  assert.equal(old.why, 'this kernel lacks the bpf_loop helper (the longest-prefix walk) (Linux 5.17), ' +
    'the bpf_ktime_get_coarse_ns helper (per-binding last hit) (Linux 5.11), ' +
    'ingress_ifindex in the sk_lookup context (uncounted explain questions) (Linux 5.17)');
  // One missing feature is enough.
  assert.equal(chooseProgram('auto', { ...all, ingressIfindex: false }, '5.16.0').variant, 'compat');
});

test('auto keeps the variant in force, so an upgrade keeps what an operator chose', () => {
  assert.equal(chooseProgram('auto', all, '6.18.0', 'compat').variant, 'compat');
  assert.equal(chooseProgram('auto', all, '6.18.0', 'full').variant, 'full');
  assert.equal(chooseProgram('full', all, '6.18.0', 'compat').variant, 'full');
  assert.equal(chooseProgram('compat', all, '6.18.0', 'full').variant, 'compat');
});

test('the full program asked for on 5.10 is refused, naming 5.17 and the way out', () => {
  assert.throws(() => chooseProgram('full', linux510, '5.10.0-32-cloud-amd64'), (e: unknown) =>
    e instanceof TubularError && e.code === 'EINCOMPAT' &&
    e.message === 'this kernel (5.10.0-32-cloud-amd64) lacks the bpf_loop helper (the longest-prefix walk) (Linux 5.17), ' +
      'the bpf_ktime_get_coarse_ns helper (per-binding last hit) (Linux 5.11), ' +
      'ingress_ifindex in the sk_lookup context (uncounted explain questions) (Linux 5.17): ' +
      'the full program needs Linux 5.17 or newer; --program compat (or auto) runs on Linux 5.10 and newer');
  assert.equal(chooseProgram('compat', linux510, '5.10.0').variant, 'compat');
});

test('a kernel without sk_lookup gets no program at all, whatever is asked', () => {
  for (const choice of ['auto', 'full', 'compat'] as const) {
    assert.throws(() => chooseProgram(choice, { ...linux510, skLookup: false, skAssign: false }, '5.4.0'),
      incompat(/^this kernel \(5\.4\.0\) lacks sk_lookup programs \(Linux 5\.9\), .*: tubular needs Linux 5\.10 or newer$/));
  }
});

test('the variant of a loaded program is read from its name', () => {
  assert.equal(variantOfProgram('dispatcher'), 'full');
  assert.equal(variantOfProgram('dispatch_compat'), 'compat');
  assert.equal(variantOfProgram('something_else'), null);
  assert.deepEqual(kernelVersion('5.10.0-32-cloud-amd64'), [5, 10]);
  assert.deepEqual(kernelVersion('6.18.44-fc'), [6, 18]);
});

test('readers refused by an older kernel with unprivileged BPF disabled are told the version and the sysctl', () => {
  const msg = unprivilegedReadProblem('6.1.0-50-cloud-amd64', 2, 1000);
  assert.equal(msg, 'this kernel (6.1.0-50-cloud-amd64) refuses every bpf() call from users without CAP_BPF while kernel.unprivileged_bpf_disabled is 2, ' +
    'so the group owning the state cannot read it; Linux 6.5 and newer allow it: run this command as root, ' +
    'or set kernel.unprivileged_bpf_disabled=0 (which also lets every user load socket filter programs)');
  assert.match(unprivilegedReadProblem('5.10.0', 1, 1000)!, /is 1, .*1 cannot be changed until a reboot/);
  assert.equal(unprivilegedReadProblem('6.5.0', 2, 1000), undefined);   // the check moved to map and program creation
  assert.equal(unprivilegedReadProblem('6.18.0', 2, 1000), undefined);
  assert.equal(unprivilegedReadProblem('5.10.0', 0, 1000), undefined);  // unprivileged BPF allowed: the file modes decide
  assert.equal(unprivilegedReadProblem('5.10.0', 2, 0), undefined);     // root
  assert.equal(unprivilegedReadProblem('5.10.0', null, 1000), undefined);
});

test('explain on a kernel without test runs of sk_lookup programs names the version that has them', () => {
  const enotsupp = Object.assign(new Error('bpf_prog_test_run: Operation not supported'), { code: 'ENOTSUPP', errno: 524 });
  const e = testRunRefusal(enotsupp, '5.10.100');
  assert.ok(e instanceof TubularError && e.code === 'EINCOMPAT');
  assert.match(e.message, /^this kernel \(5\.10\.100\) cannot run an sk_lookup program .*needs Linux 5\.13 \(5\.10\.135 in the 5\.10 series\)/);
  assert.equal(testRunRefusal(Object.assign(new Error('x'), { code: 'EPERM' }), '5.10.100'), undefined);
});
