// What the kernel offers, and which variant of the program runs on it. The
// probes' answers decide before anything is loaded, so that an older kernel
// gets a sentence naming the version it needs, never a verifier log.
//
// Two programs are built from bpf/dispatcher.c: `full` (Linux 5.17) and
// `compat` (Linux 5.10), with the same maps and the same precedence rule.
// docs/ARCHITECTURE.md ("What differs between kernels") lists the rest.
import { readFileSync } from 'node:fs';
import { constants, release } from 'node:os';
import { TubularError } from './errors.js';
import type { KernelFeatures, Native } from './native.js';

export type ProgramVariant = 'full' | 'compat';
/** What an operator asks for: a variant, or `auto` (see chooseProgram). */
export type ProgramChoice = ProgramVariant | 'auto';
export const PROGRAM_CHOICES: readonly ProgramChoice[] = ['auto', 'full', 'compat'];
export const PROGRAM_VARIANTS: readonly ProgramVariant[] = ['full', 'compat'];

interface Need { feature: keyof KernelFeatures; what: string; since: string }

const BASE: readonly Need[] = [
  { feature: 'skLookup', what: 'sk_lookup programs', since: '5.9' },
  { feature: 'skAssign', what: 'bpf_sk_assign from sk_lookup', since: '5.9' },
];

/** Per variant: the object scripts/setup builds, the program's name in it (and in the kernel), what it needs. */
export const PROGRAMS: Record<ProgramVariant, { object: string; name: string; needs: readonly Need[] }> = {
  full: {
    object: 'build/bpf/dispatcher.o',
    name: 'dispatcher',
    needs: [
      ...BASE,
      { feature: 'loop', what: 'the bpf_loop helper (the longest-prefix walk)', since: '5.17' },
      { feature: 'ktimeCoarse', what: 'the bpf_ktime_get_coarse_ns helper (per-binding last hit)', since: '5.11' },
      { feature: 'ingressIfindex', what: 'ingress_ifindex in the sk_lookup context (uncounted explain questions)', since: '5.17' },
    ],
  },
  compat: { object: 'build/bpf/dispatcher-compat.o', name: 'dispatch_compat', needs: BASE },
};

/** The variant a loaded program is, from its name in the kernel; null for a name no variant has. */
export function variantOfProgram(name: string): ProgramVariant | null {
  return PROGRAM_VARIANTS.find((v) => PROGRAMS[v].name === name) ?? null;
}

/** What a variant lacks on a kernel, each with the Linux version that has it; empty when nothing is missing. */
export function missingFeatures(f: KernelFeatures, variant: ProgramVariant = 'full'): Array<{ what: string; since: string }> {
  return PROGRAMS[variant].needs.filter((n) => !f[n.feature]).map(({ what, since }) => ({ what, since }));
}

/** [major, minor] of a version such as "5.10.0-32-cloud-amd64" or "6.1"; [0, 0] when unreadable. */
export function kernelVersion(text: string): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

const byVersion = (a: string, b: string): number => {
  const [x, y] = [kernelVersion(a), kernelVersion(b)];
  return x[0] - y[0] || x[1] - y[1];
};

export interface ProgramDecision {
  variant: ProgramVariant;
  /** why this variant, for people: shown by load and upgrade */
  why: string;
}

const lacking = (missing: Array<{ what: string; since: string }>): string =>
  missing.map((m) => `${m.what} (Linux ${m.since})`).join(', ');

/**
 * Which program to load. `auto` is the variant in force when there is one
 * (an upgrade keeps what an operator chose), else the full program when
 * the kernel has everything it needs, else the compat program. A variant
 * named explicitly is loaded if the kernel can run it; otherwise a clear
 * error names the Linux version it needs.
 */
export function chooseProgram(choice: ProgramChoice, f: KernelFeatures, kernel: string, inForce: ProgramVariant | null = null): ProgramDecision {
  const base = missingFeatures(f, 'compat');
  if (base.length > 0) throw new TubularError('EINCOMPAT', `this kernel (${kernel}) lacks ${lacking(base)}: tubular needs Linux 5.10 or newer`);
  const fullMissing = missingFeatures(f, 'full');
  if (choice === 'full' || (choice === 'auto' && inForce === 'full')) {
    if (fullMissing.length > 0) {
      const newest = fullMissing.map((m) => m.since).sort(byVersion).at(-1);
      throw new TubularError('EINCOMPAT', `this kernel (${kernel}) lacks ${lacking(fullMissing)}: the full program needs Linux ${newest} or newer; ` +
        '--program compat (or auto) runs on Linux 5.10 and newer');
    }
    return { variant: 'full', why: choice === 'full' ? 'as asked' : 'the variant in force' };
  }
  if (choice === 'compat') return { variant: 'compat', why: 'as asked' };
  if (inForce === 'compat') return { variant: 'compat', why: 'the variant in force (--program full or auto changes it)' };
  if (fullMissing.length === 0) return { variant: 'full', why: 'this kernel has everything it needs' };
  return { variant: 'compat', why: `this kernel lacks ${lacking(fullMissing)}` };
}

/** Probes the kernel, then chooses (see chooseProgram). */
export function programFor(sys: Native, choice: ProgramChoice, inForce: ProgramVariant | null = null, kernel = release()): ProgramDecision {
  // libbpf's probes take a refusal for a missing feature: a caller without
  // the privilege to load programs must hear that, not that the kernel is old.
  const errno = sys.probeLoad();
  if (errno === constants.errno.EPERM || errno === constants.errno.EACCES) throw new TubularError('EPERM', 'the kernel refused to load a BPF program');
  return chooseProgram(choice, sys.probeFeatures(), kernel, inForce);
}

/** The kernel version from which users without CAP_BPF may read pinned state while kernel.unprivileged_bpf_disabled is set. */
export const UNPRIVILEGED_READ_SINCE = '6.5';

/**
 * Before Linux 6.5 (commit "bpf: Move unprivileged checks into map_create()
 * and bpf_prog_load()"), every bpf() call of a user without CAP_BPF fails
 * with EPERM while kernel.unprivileged_bpf_disabled is non-zero: the group
 * owning the state cannot read it, whatever the file modes say. Returns the
 * sentence that says so, or undefined when that is not why a reader was refused.
 */
export function unprivilegedReadProblem(kernel: string, sysctl: number | null, uid: number): string | undefined {
  if (uid === 0 || sysctl === null || sysctl === 0 || byVersion(kernel, UNPRIVILEGED_READ_SINCE) >= 0) return undefined;
  const undo = sysctl === 2
    ? 'or set kernel.unprivileged_bpf_disabled=0 (which also lets every user load socket filter programs)'
    : 'or boot with kernel.unprivileged_bpf_disabled=0 (1 cannot be changed until a reboot; 0 also lets every user load socket filter programs)';
  return `this kernel (${kernel}) refuses every bpf() call from users without CAP_BPF while kernel.unprivileged_bpf_disabled is ${sysctl}, ` +
    `so the group owning the state cannot read it; Linux ${UNPRIVILEGED_READ_SINCE} and newer allow it: run this command as root, ${undo}`;
}

/** kernel.unprivileged_bpf_disabled, or null when it cannot be read. */
export function unprivilegedBpfDisabled(): number | null {
  try {
    const v = Number(readFileSync('/proc/sys/kernel/unprivileged_bpf_disabled', 'utf8').trim());
    return Number.isInteger(v) ? v : null;
  } catch {
    return null;
  }
}

/** The version that gives BPF_PROG_TEST_RUN to sk_lookup programs (tubectl explain). */
export const TEST_RUN_SINCE = 'Linux 5.13 (5.10.135 in the 5.10 series)';
