// npm run bench: the data plane against its floor and the kernel's parts, real traffic, the
// control plane as operators run it, and tubulard, in a throwaway namespace.
// Prints a report and writes bench/results.json. See docs/PERFORMANCE.md.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Dispatcher } from '../src/dispatcher.js';
import type { ProgramVariant } from '../src/kernel.js';
import { packageRoot } from '../src/paths.js';
import { type ControlPlaneResult, measureControlPlane } from './controlplane.js';
import { type DataPlaneResult, fixtures, measureDataPlane } from './dataplane.js';
import { type DaemonResult, measureDaemon } from './daemon.js';
import { loadReferences } from './floor.js';
import { isolate } from './isolate.js';
import { machine } from './machine.js';
import { type PartsResult, measureParts } from './parts.js';
import { registerHitSockets } from './sockets.js';
import { controlTable, daemonTable, dataPlaneTable, partsTable, report, scaleTable, targetTable, trafficTable } from './table.js';
import { verdicts } from './targets.js';
import { type TrafficFigure, measureTraffic, trafficBindings } from './traffic.js';
import { bindingsOf, entries } from './workload.js';

// BENCH_QUICK=1: fewer and shorter rounds, a smoke run. BENCH_ONLY=control
// (or dataplane, traffic, daemon; comma-separated) runs only those parts:
// for working on one of them. The report says what it left out. Checked
// before anything runs: a misspelt setting must not measure something else.
const PARTS = ['dataplane', 'traffic', 'control', 'daemon'];
function settings(): { quick: boolean; only: Set<string> | undefined } {
  const q = process.env.BENCH_QUICK ?? '';
  if (!['', '0', '1'].includes(q)) fail(`BENCH_QUICK=${JSON.stringify(q.slice(0, 40))}: use 1 for a quick run, or leave it unset`);
  const names = process.env.BENCH_ONLY ? process.env.BENCH_ONLY.split(',').map((p) => p.trim()) : undefined;
  const unknown = names?.filter((n) => !PARTS.includes(n)) ?? [];
  if (names && (unknown.length > 0 || names.length === 0)) fail(`BENCH_ONLY=${JSON.stringify((process.env.BENCH_ONLY ?? '').slice(0, 80))}: the parts are ${PARTS.join(', ')} (comma-separated)`);
  return { quick: q === '1', only: names ? new Set(names) : undefined };
}
function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}
const { quick, only } = settings();
const { bpffs } = isolate();
const started = Date.now();
const log = (line: string): void => { process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(3)} s] ${line}\n`); };
const work = mkdtempSync(path.join(tmpdir(), 'tubular-bench-'));
// The work files (100 MB of bindings files at 1M) go however the run ends.
process.on('exit', () => rmSync(work, { recursive: true, force: true }));
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => process.exit(130));
const host = machine();
const runs = (part: string): boolean => !only || only.has(part);

// Data plane and traffic share one dispatcher and its sockets.
const sizes = [0, 1000, 10_000, 100_000, 1_000_000];
let dp: DataPlaneResult = { figures: [], programs: [], replaceSeconds: {} };
let parts: PartsResult | undefined;
let traffic: TrafficFigure[] = [];
const figuresOf = (program: ProgramVariant) => dp.figures.filter((f) => f.program === program);
if (runs('dataplane') || runs('traffic')) {
  const d = Dispatcher.create({ bpffs });
  const hits = await registerHitSockets(d);
  // Both variants of the program on the same sets; the targets are the full program's.
  if (runs('dataplane')) {
    // The floor of every figure and the kernel's parts: one load of floor.bpf.c.
    const refs = loadReferences();
    try {
      const rounds = quick ? 3 : 9;
      const repeat = quick ? 20_000 : 200_000;
      dp = measureDataPlane(d, hits.cookies, { sizes, programs: ['full', 'compat'], rounds, repeat, floor: refs.progs.floor_prog, log });
      parts = await measureParts(refs, { keys: 100_000, rounds, repeat, log });
    } finally {
      refs.close();
    }
  }
  if (runs('traffic')) {
    d.replaceBindings([...bindingsOf(entries(50_000)), ...fixtures(), ...trafficBindings()]);
    log('traffic: 100k bindings in force');
    traffic = await measureTraffic(d, { rounds: quick ? 2 : 10, roundMs: quick ? 300 : 1000, concurrency: 8, log });
  }
  await hits.close();
  d.close();
  Dispatcher.unload({ bpffs });
}

const control: ControlPlaneResult = runs('control')
  ? measureControlPlane({ bpffs, dir: work, repeats: quick ? 1 : 3, scale: [1000, 10_000, 1_000_000], log })
  : { available: false, reason: 'left out (BENCH_ONLY)', figures: [], scale: [] };
const daemon: DaemonResult = runs('daemon')
  ? await measureDaemon({ bpffs, dir: work, ms: quick ? 1000 : 3000, clients: 8, log })
  : { available: false, reason: 'left out (BENCH_ONLY)' };
const targets = verdicts(figuresOf('full'), parts, traffic, control, daemon);
const leftOut = (part: string): string | undefined => (runs(part) ? undefined : 'left out (BENCH_ONLY)');
const note = [quick ? 'quick run (BENCH_QUICK=1): fewer, shorter rounds' : '', only ? `only ${[...only].join(', ')}` : ''].filter(Boolean).join('; ');
const text = report(host, [
  { title: 'Data plane: ns per lookup of a TCP connection (BPF_PROG_TEST_RUN, median of rounds)', body: dataPlaneTable(figuresOf('full'), sizes, leftOut('dataplane')) },
  { title: 'Data plane, the compat program (for kernels before 5.17) on this kernel: ns per lookup', body: dataPlaneTable(figuresOf('compat'), sizes, leftOut('dataplane')) },
  { title: 'Data plane: what this machine charges for the kernel\'s parts of a lookup (BPF_PROG_TEST_RUN, median of rounds)', body: partsTable(parts, host) },
  { title: 'Real traffic on loopback, 100k bindings in force (median of rounds)', body: trafficTable(traffic) },
  { title: 'Control plane: tubectl as a subprocess, wall time', body: controlTable(control) },
  { title: 'Scale: load-bindings and one lookup at 1k to 1M bindings', body: scaleTable(control, figuresOf('full')) },
  { title: 'tubulard', body: daemonTable(daemon) },
  { title: 'Targets', body: targetTable(targets) },
], note ? ` (${note})` : '');
process.stdout.write(`${text}\n`);
const results = { machine: host, seconds: (Date.now() - started) / 1000, quick, only: only ? [...only] : undefined, dataPlane: dp, parts, traffic, controlPlane: control, daemon, targets };
writeFileSync(path.join(packageRoot, 'bench/results.json'), `${JSON.stringify(results, null, 2)}\n`);
log(`wrote bench/results.json in ${((Date.now() - started) / 1000).toFixed(0)} s`);
