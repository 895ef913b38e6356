// The variants of the program (src/kernel.ts) and whether this kernel runs
// each: data-plane tests run against every variant this kernel runs; for a
// variant it cannot run (the full program needs Linux 5.17) they check the
// refusal instead.
import assert from 'node:assert/strict';
import { release } from 'node:os';
import { test } from 'node:test';
import { Dispatcher } from '../../src/dispatcher.js';
import { TubularError } from '../../src/errors.js';
import { PROGRAM_VARIANTS, type ProgramVariant, chooseProgram, missingFeatures } from '../../src/kernel.js';
import { native } from '../../src/native.js';

export interface VariantCase {
  program: ProgramVariant;
  /** why this kernel cannot run it, or false */
  lacks: string | false;
}

export function variantCases(): VariantCase[] {
  const features = native().probeFeatures();
  return PROGRAM_VARIANTS.map((program) => {
    const missing = missingFeatures(features, program);
    return { program, lacks: missing.length === 0 ? false : `lacks ${missing.map((m) => m.what).join(', ')}` };
  });
}

/** The variant `tubectl load` picks on this kernel. */
export function autoVariant(): ProgramVariant {
  return chooseProgram('auto', native().probeFeatures(), release()).variant;
}

/** Asking for a variant this kernel cannot run: refused with the Linux version it needs, nothing created. */
export function assertRefused(program: ProgramVariant, opts: { bpffs: string }): void {
  const loaded = Dispatcher.isLoaded(opts);
  assert.throws(() => Dispatcher.create({ ...opts, program }),
    (err: unknown) => err instanceof TubularError && err.code === 'EINCOMPAT' && /needs Linux \d+\.\d+ or newer/.test(err.message));
  assert.equal(Dispatcher.isLoaded(opts), loaded);
}

/** The test that stands for a variant's tests on a kernel that cannot run it. */
export function refusedTest(c: VariantCase, opts: { bpffs: string }): void {
  test(`the ${c.program} program is refused on this kernel, which ${c.lacks}`, () => assertRefused(c.program, opts));
}
