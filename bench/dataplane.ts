// Data plane: ns per lookup of the real program, by BPF_PROG_TEST_RUN, at
// several binding-set sizes, next to the empty program (the floor) timed in
// the same rounds. Each variant of the program this kernel runs (full and
// compat, src/kernel.ts) is loaded on the same maps and timed in the same
// rounds. Every case is checked for the right answer before it is timed, so a
// fast wrong answer cannot be reported.
import type { Binding } from '../src/binding.js';
import { Dispatcher } from '../src/dispatcher.js';
import { type ProgramVariant, missingFeatures } from '../src/kernel.js';
import { native } from '../src/native.js';
import { parsePrefix } from '../src/prefix.js';
import { type ProbePacket as Lookup, loadProgramOn, lookupContext as skLookupContext, selectedCookie } from '../src/probe.js';
import { median } from './stats.js';
import { bindingsOf, entries } from './workload.js';

export type CaseName = 'miss' | 'hit-port' | 'hit-wildcard' | 'no-socket' | 'reject' | 'observe';
export const CASES: readonly CaseName[] = ['miss', 'hit-port', 'hit-wildcard', 'no-socket', 'reject', 'observe'];

export interface LookupFigure {
  program: ProgramVariant;
  bindings: number;
  case: CaseName;
  family: 4 | 6;
  protocol: 'tcp' | 'udp';
  /** median ns per run of the dispatcher */
  ns: number;
  /** median ns per run of the empty program, same rounds */
  floorNs: number;
  ratio: number;
  /** every round, for the record */
  rounds: { ns: number[]; floorNs: number[] };
}

/** The sockets a hit must land on: cookie by "protocol family". */
export type Cookies = Map<string, bigint>;

const fixturePrefix = (family: 4 | 6, n: number): string => (family === 4 ? `10.255.${n}.0/24` : `2001:db8:ff0${n}::/48`);
const probeAddress = (family: 4 | 6, n: number): string => (family === 4 ? `10.255.${n}.77` : `2001:db8:ff0${n}::77`);

/**
 * What each case binds and probes. The fixtures use the mix's longest-but-one
 * length class at the wildcard-heavy end: every probe has to rule out the
 * longer lengths first, the realistic worst case.
 */
const SPEC: Record<CaseName, { n: number; bind?: { port: number; label: string; action?: 'reject' | 'observe' }; port: number }> = {
  'miss': { n: 9, port: 8080 },
  'hit-port': { n: 2, bind: { port: 443, label: 'hit' }, port: 443 },
  'hit-wildcard': { n: 1, bind: { port: 0, label: 'hit' }, port: 8080 },
  'no-socket': { n: 3, bind: { port: 80, label: 'nosocket' }, port: 80 },
  'reject': { n: 4, bind: { port: 53, label: '', action: 'reject' }, port: 53 },
  // Counted, then the walk goes on and finds nothing behind it: the kernel decides.
  'observe': { n: 5, bind: { port: 8081, label: '', action: 'observe' }, port: 8081 },
};

export function fixtures(): Binding[] {
  const out: Binding[] = [];
  for (const c of CASES) {
    const b = SPEC[c].bind;
    if (!b) continue;
    for (const family of [4, 6] as const) {
      for (const protocol of ['tcp', 'udp'] as const) {
        out.push({ label: b.label, protocol, prefix: parsePrefix(fixturePrefix(family, SPEC[c].n)).prefix, port: b.port, action: b.action ?? 'steer' });
      }
    }
  }
  return out;
}

function lookupFor(c: CaseName, family: 4 | 6, protocol: 'tcp' | 'udp'): Lookup {
  return { protocol, family, address: parsePrefix(probeAddress(family, SPEC[c].n)).prefix.bytes, port: SPEC[c].port };
}

/** Runs the program once and fails unless it gave the answer the case expects. */
function check(prog: number, c: CaseName, l: Lookup, cookies: Cookies): void {
  const r = native().progTestRun(prog, skLookupContext(l), 1);
  const cookie = selectedCookie(r.ctxOut);
  const want = c === 'miss' || c === 'observe' ? { retval: 1, cookie: 0n }
    : c === 'no-socket' || c === 'reject' ? { retval: 0, cookie: 0n }
      : { retval: 1, cookie: cookies.get(`${l.protocol} ${l.family}`)! };
  if (r.retval !== want.retval || cookie !== want.cookie) {
    throw new Error(`wrong answer for ${c} ${l.protocol} IPv${l.family}: retval ${r.retval} cookie ${cookie}, expected retval ${want.retval} cookie ${want.cookie}`);
  }
}

export interface DataPlaneOptions {
  sizes: readonly number[];
  /** the variants to time, where the kernel runs them */
  programs: readonly ProgramVariant[];
  rounds: number;
  repeat: number;
  /** the empty program (floor.bpf.c), timed next to every case; the caller closes it */
  floor: number;
  log: (line: string) => void;
}

export interface DataPlaneResult {
  figures: LookupFigure[];
  /** the variants timed (a variant this kernel cannot run is left out) */
  programs: ProgramVariant[];
  /** seconds replaceBindings took for each size, through the API */
  replaceSeconds: Record<number, number>;
}

/**
 * Each variant the kernel runs, loaded on the dispatcher's own maps (not
 * attached: BPF_PROG_TEST_RUN needs no link), so that they answer from the
 * same binding set and are timed in the same rounds.
 */
function loadVariants(d: Dispatcher, wanted: readonly ProgramVariant[], log: (line: string) => void): Map<ProgramVariant, number> {
  const features = native().probeFeatures();
  const progs = new Map<ProgramVariant, number>();
  for (const program of wanted) {
    const missing = missingFeatures(features, program);
    if (missing.length > 0) log(`data plane: the ${program} program is not timed: this kernel lacks ${missing.map((m) => m.what).join(', ')}`);
    else progs.set(program, loadProgramOn(d.stateDir, program));
  }
  return progs;
}

/** Measures every case at every size, for each variant; the dispatcher must already have its sockets registered. */
export function measureDataPlane(d: Dispatcher, cookies: Cookies, opts: DataPlaneOptions): DataPlaneResult {
  const n = native();
  const { floor } = opts;
  const figures: LookupFigure[] = [];
  const replaceSeconds: Record<number, number> = {};
  const fixed = fixtures();
  const progs = loadVariants(d, opts.programs, opts.log);
  try {
    for (const size of opts.sizes) {
      const set = [...bindingsOf(entries(size / 2)), ...fixed];
      const t0 = process.hrtime.bigint();
      d.replaceBindings(set);
      replaceSeconds[size] = Number(process.hrtime.bigint() - t0) / 1e9;
      opts.log(`data plane: ${size} bindings (+${fixed.length} fixtures) in place after ${replaceSeconds[size].toFixed(2)} s`);
      for (const c of CASES) {
        for (const family of [4, 6] as const) figures.push(...timeCase(progs, floor, size, c, family, cookies, opts));
      }
    }
  } finally {
    for (const fd of progs.values()) n.close(fd);
  }
  return { figures, programs: [...progs.keys()], replaceSeconds };
}

/** One case, every variant and the floor in the same rounds. */
function timeCase(progs: Map<ProgramVariant, number>, floor: number, size: number, c: CaseName, family: 4 | 6, cookies: Cookies, opts: DataPlaneOptions): LookupFigure[] {
  const n = native();
  const protocol = 'tcp' as const;
  const l = lookupFor(c, family, protocol);
  const ctx = skLookupContext(l);
  const ns = new Map<ProgramVariant, number[]>();
  for (const [program, prog] of progs) {
    check(prog, c, l, cookies);
    check(prog, c, { ...l, protocol: 'udp' }, cookies);
    n.progTestRun(prog, ctx, opts.repeat); // warm caches
    ns.set(program, []);
  }
  const floorNs: number[] = [];
  for (let r = 0; r < opts.rounds; r++) {
    floorNs.push(n.progTestRun(floor, ctx, opts.repeat).durationNs);
    for (const [program, prog] of progs) ns.get(program)!.push(n.progTestRun(prog, ctx, opts.repeat).durationNs);
  }
  return [...progs.keys()].map((program) => {
    const rounds = ns.get(program)!;
    const fig = { program, bindings: size, case: c, family, protocol, ns: median(rounds), floorNs: median(floorNs), ratio: median(rounds) / median(floorNs), rounds: { ns: rounds, floorNs } };
    opts.log(`  ${program.padEnd(6)} ${c.padEnd(12)} IPv${family}: ${fig.ns.toFixed(1)} ns (floor ${fig.floorNs.toFixed(1)} ns)`);
    return fig;
  });
}
