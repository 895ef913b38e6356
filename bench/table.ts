// The printed report: plain text tables, one per part, then the targets.
import type { ControlPlaneResult } from './controlplane.js';
import type { CaseName, LookupFigure } from './dataplane.js';
import { CASES } from './dataplane.js';
import type { DaemonResult } from './daemon.js';
import type { Machine } from './machine.js';
import type { PartsResult } from './parts.js';
import type { Verdict } from './targets.js';
import type { TrafficFigure } from './traffic.js';

/** Columns of text: numbers right-aligned, the columns listed in `left` left-aligned. */
function grid(rows: string[][], left: readonly number[] = [0]): string {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (left.includes(c) ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ').trimEnd()).join('\n');
}

const sizeName = (n: number): string => (n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n));

/** One variant's figures (see bench/dataplane.ts). */
export function dataPlaneTable(figures: readonly LookupFigure[], sizes: readonly number[], why = 'this kernel runs no variant of the program'): string {
  if (figures.length === 0) return `not measured: ${why}`;
  const rows: string[][] = [['case', 'family', ...sizes.map((s) => `${sizeName(s)} bindings`)]];
  for (const c of CASES) {
    for (const family of [4, 6] as const) {
      rows.push([c, `IPv${family}`, ...sizes.map((size) => {
        const f = figures.find((x) => x.bindings === size && x.case === (c as CaseName) && x.family === family);
        return f ? `${f.ns.toFixed(0)} ns (${f.ratio.toFixed(1)}x)` : '-';
      })]);
    }
  }
  const floors = figures.map((f) => f.floorNs);
  return `${grid(rows)}\n(x = ratio to the floor, an empty sk_lookup program timed in the same rounds: ${Math.min(...floors).toFixed(0)}-${Math.max(...floors).toFixed(0)} ns)`;
}

/** What the kernel's parts of a lookup cost on this machine (see bench/parts.ts). */
export function partsTable(p: PartsResult | undefined, m: Machine): string {
  if (!p) return 'not measured';
  const ns = (x: number): string => `${x.toFixed(1)} ns`;
  const rows = [['part', 'cost'],
    ['an empty sk_lookup program (the floor)', ns(p.floor)],
    ['a call of a helper that does nothing, and its return', ns(p.call)],
    [`a hash-map lookup that finds its key (24-byte keys, as the binding set's; ${sizeName(p.keys)} keys)`, ns(p.lookup24)],
    ['the same with 8-byte keys', ns(p.lookup8)],
    ['a socket taken from a sockmap and released', ns(p.take)],
    ['... and assigned to the connection: the hand-over that ends every hit', ns(p.handOver)],
    ['the least a hit can cost: the floor, one lookup and the hand-over', ns(p.leastHit)]];
  const mit = Object.entries(m.mitigations).map(([k, v]) => `${k}: ${v}`).join('; ');
  return `${grid(rows)}\n(each part a program of its own, bench/floor.bpf.c, timed in the same rounds; the floor and the last line: ns per run;\n` +
    'the others: ns over the floor, per call or lookup.\n' +
    `CPU mitigations on calls and returns: ${mit || 'not reported by this kernel'})`;
}

export function trafficTable(t: readonly TrafficFigure[]): string {
  if (t.length === 0) return 'not measured';
  const rows = [['protocol', 'through dispatcher', 'direct', 'ratio'],
    ...t.map((f) => [f.protocol === 'tcp' ? 'TCP connections/s' : 'UDP exchanges/s', f.dispatched.toFixed(0), f.direct.toFixed(0), `${(f.ratio * 100).toFixed(1)}%`])];
  return grid(rows);
}

export function controlTable(c: ControlPlaneResult): string {
  if (!c.available) return `not measured: ${c.reason}`;
  const rows = [['operation', 'median', 'runs (ms)'], ...c.figures.map((f) => [f.command, `${(f.seconds * 1000).toFixed(0)} ms`, f.runs.map((r) => (r * 1000).toFixed(0)).join(' ')])];
  return `${grid(rows, [0, 2])}\npeak RSS of tubectl load-bindings 100k: ${c.peakRssKiB === undefined ? 'not measured' : `${(c.peakRssKiB / 1024).toFixed(0)} MiB`}`;
}

/**
 * How cost grows with the work: tubectl load-bindings (into an empty
 * dispatcher, unchanged, 1% changed) and its peak RSS, next to the cost of
 * one lookup at the same size (the slowest hit and the slowest miss).
 */
export function scaleTable(c: ControlPlaneResult, lookups: readonly LookupFigure[]): string {
  if (!c.available) return `not measured: ${c.reason}`;
  const ms = (s: number): string => `${(s * 1000).toFixed(0)} ms`;
  const worst = (size: number, cases: readonly CaseName[]): string => {
    const at = lookups.filter((f) => f.bindings === size && cases.includes(f.case));
    return at.length ? `${Math.max(...at.map((f) => f.ns)).toFixed(0)} ns` : '-';
  };
  const rows = [['bindings', 'load into empty', 'per binding', 'unchanged', '1% changed', 'then 1% more', 'peak RSS', 'lookup hit', 'lookup miss'],
    ...c.scale.map((f) => [sizeName(f.bindings), ms(f.load), `${((f.load * 1e6) / f.bindings).toFixed(1)} µs`, ms(f.unchanged), ms(f.first), ms(f.changed),
      f.peakRssKiB === undefined ? '-' : `${(f.peakRssKiB / 1024).toFixed(0)} MiB`,
      worst(f.bindings, ['hit-port', 'hit-wildcard']), worst(f.bindings, ['miss'])])];
  return `${grid(rows)}\n(tubectl as a subprocess, wall time, median of rounds. 1% changed: right after the load, the standby generation empty;\n` +
    'then 1% more: the standby holds the file before, as when a generator rewrites the file now and then. ' +
    'Lookup: the slowest hit and miss of either family, BPF_PROG_TEST_RUN)';
}

export function daemonTable(d: DaemonResult): string {
  if (!d.available) return `not measured: ${d.reason}`;
  return grid([
    ['register round trip', 'p50', 'p99', 'requests/s', 'RSS at rest', 'RSS after load'],
    [`${d.clients} concurrent clients`, `${(d.p50Us! / 1000).toFixed(2)} ms`, `${(d.p99Us! / 1000).toFixed(2)} ms`, d.requestsPerSecond!.toFixed(0),
      `${(d.rssAtRestKiB! / 1024).toFixed(0)} MiB`, `${(d.rssAfterLoadKiB! / 1024).toFixed(0)} MiB`],
  ]);
}

export function targetTable(v: readonly Verdict[]): string {
  return grid([['target', 'verdict', 'observed'], ...v.map((x) => [x.target, x.met === null ? 'NOT MEASURED' : x.met ? 'met' : 'NOT MET', x.observed])], [0, 1, 2]);
}

export function report(m: Machine, parts: { title: string; body: string }[], note = ''): string {
  const head = `tubular-ts benchmark: ${m.cpu} (${m.cores} cores), kernel ${m.kernel}, node ${m.node}, ${m.date}, load average ${m.loadAverage}${note}`;
  return [head, ...parts.map((p) => `\n== ${p.title}\n${p.body}`)].join('\n');
}
