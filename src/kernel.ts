// What the kernel must offer the dispatcher, checked before the program is
// loaded, so that an older kernel gets a sentence naming the version it
// needs instead of a verifier log.
import { release } from 'node:os';
import { TubularError } from './errors.js';
import type { KernelFeatures, Native } from './native.js';

const NEEDS: ReadonlyArray<{ feature: keyof KernelFeatures; what: string; since: string }> = [
  { feature: 'skLookup', what: 'sk_lookup programs', since: '5.9' },
  { feature: 'skAssign', what: 'bpf_sk_assign from sk_lookup', since: '5.9' },
  { feature: 'ktimeCoarse', what: 'the bpf_ktime_get_coarse_ns helper (per-binding last hit)', since: '5.11' },
  { feature: 'loop', what: 'the bpf_loop helper (the longest-prefix walk)', since: '5.17' },
];

/** What is missing, each with the kernel version that has it; empty when nothing is. */
export function missingFeatures(f: KernelFeatures): Array<{ what: string; since: string }> {
  return NEEDS.filter((n) => !f[n.feature]).map(({ what, since }) => ({ what, since }));
}

/** Throws a clear error when the kernel lacks something the dispatcher needs. */
export function requireKernel(sys: Native, kernel = release()): void {
  const missing = missingFeatures(sys.probeFeatures());
  if (missing.length === 0) return;
  const newest = missing.map((m) => m.since).sort((a, b) => Number(a.split('.')[0]) - Number(b.split('.')[0]) || Number(a.split('.')[1]) - Number(b.split('.')[1])).at(-1);
  throw new TubularError('EINCOMPAT', `this kernel (${kernel}) lacks ${missing.map((m) => `${m.what} (Linux ${m.since})`).join(', ')}: ` +
    `the dispatcher needs Linux ${newest} or newer`);
}
