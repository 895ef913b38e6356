// The variants of the program (src/kernel.ts) and whether this kernel runs
// each: data-plane tests run against every variant, and say which one they
// skip on an older kernel (the full program needs Linux 5.17).
import { release } from 'node:os';
import { PROGRAM_VARIANTS, type ProgramVariant, chooseProgram, missingFeatures } from '../../src/kernel.js';
import { native } from '../../src/native.js';

export interface VariantCase {
  program: ProgramVariant;
  /** why this kernel cannot run it (for node:test's skip), or false */
  skip: string | false;
}

export function variantCases(): VariantCase[] {
  const features = native().probeFeatures();
  return PROGRAM_VARIANTS.map((program) => {
    const missing = missingFeatures(features, program);
    return { program, skip: missing.length === 0 ? false : `this kernel (${release()}) lacks ${missing.map((m) => m.what).join(', ')}` };
  });
}

/** The variant `tubectl load` picks on this kernel. */
export function autoVariant(): ProgramVariant {
  return chooseProgram('auto', native().probeFeatures(), release()).variant;
}
