// The targets of the benchmark issue, checked against the figures.
import type { ControlPlaneResult, Operation } from './controlplane.js';
import type { DaemonResult } from './daemon.js';
import type { LookupFigure } from './dataplane.js';
import type { PartsResult } from './parts.js';
import type { TrafficFigure } from './traffic.js';

export interface Verdict {
  target: string;
  /** true met, false not met, null not measured */
  met: boolean | null;
  observed: string;
}

export function verdicts(lookups: readonly LookupFigure[], parts: PartsResult | undefined, traffic: readonly TrafficFigure[], control: ControlPlaneResult,
  daemon: DaemonResult): Verdict[] {
  const out: Verdict[] = [];
  for (const [size, limit] of [[100_000, 60], [1_000_000, 70]] as const) {
    const at = lookups.filter((f) => f.bindings === size);
    const worst = at.reduce((a, b) => (b.ns > a.ns ? b : a), at[0]);
    const over = at.filter((f) => f.ns > limit).map((f) => `${f.case} IPv${f.family} ${f.ns.toFixed(0)}`);
    out.push({
      target: `data plane at ${size >= 1_000_000 ? `${size / 1_000_000}M` : `${size / 1000}k`} bindings: every case <= ${limit} ns per lookup`,
      met: at.length ? over.length === 0 : null,
      observed: at.length ? `worst ${worst.case} IPv${worst.family} ${worst.ns.toFixed(0)} ns${over.length ? `; over: ${over.join(', ')}` : ''}` +
        `${parts ? `; the least a hit can cost here: ${parts.leastHit.toFixed(0)} ns` : ''}` : 'not measured',
    });
  }
  const tcp = traffic.find((t) => t.protocol === 'tcp');
  out.push({
    target: 'TCP connections per second through the dispatcher >= 97% of direct',
    met: tcp ? tcp.ratio >= 0.97 : null,
    observed: tcp ? `${(tcp.ratio * 100).toFixed(1)}%` : 'not measured',
  });
  const sec = (op: Operation): number | undefined => control.figures.find((f) => f.operation === op)?.seconds;
  const notMeasured = `not measured${control.reason ? `: ${control.reason}` : ''}`;
  const limits: [Operation, number, string][] = [
    ['load-100k', 0.3, 'load-bindings 100k into empty <= 0.3 s'],
    ['load-unchanged', 0.15, 'load-bindings 100k unchanged <= 0.15 s'],
    ['load-1pct-first', 0.15, 'load-bindings 100k, 1% changed right after the load (standby empty) <= 0.15 s'],
    ['load-1pct', 0.15, 'load-bindings 100k, 1% changed (standby: the file before) <= 0.15 s'],
    ['load-shrink-2k', 0.4, 'load-bindings shrink to 2k <= 0.4 s'],
    ['list-100k', 0.4, 'bindings listing 100k <= 0.4 s'],
  ];
  for (const [op, limit, target] of limits) {
    const s = sec(op);
    out.push({ target, met: s === undefined ? null : s <= limit, observed: s === undefined ? notMeasured : `${s.toFixed(3)} s` });
  }
  const million = control.scale.find((f) => f.bindings === 1_000_000);
  out.push({
    target: 'load-bindings 1M into empty <= 3 s',
    met: million ? million.load <= 3 : null,
    observed: million ? `${million.load.toFixed(3)} s` : notMeasured,
  });
  const mib = (kib: number | undefined): string => (kib === undefined ? notMeasured : `${(kib / 1024).toFixed(0)} MiB`);
  for (const [size, kib, limit] of [[100_000, control.peakRssKiB, 64], [1_000_000, million?.peakRssKiB, 400]] as const) {
    out.push({
      target: `peak RSS of load-bindings ${size >= 1_000_000 ? `${size / 1_000_000}M` : `${size / 1000}k`} into empty <= ${limit} MiB`,
      met: kib === undefined ? null : kib <= limit * 1024,
      observed: mib(kib),
    });
  }
  const { requestsPerSecond: rate, p50Us, p99Us } = daemon;
  const measured = daemon.available && rate !== undefined && p50Us !== undefined && p99Us !== undefined;
  out.push({
    target: 'tubulard register, 8 concurrent clients: >= 5000/s, p50 <= 1 ms, p99 <= 5 ms',
    met: measured ? rate >= 5000 && p50Us <= 1000 && p99Us <= 5000 : null,
    observed: measured ? `${rate.toFixed(0)}/s, p50 ${(p50Us / 1000).toFixed(2)} ms, p99 ${(p99Us / 1000).toFixed(2)} ms` : `not measured${daemon.reason ? `: ${daemon.reason}` : ''}`,
  });
  const bind = sec('bind-one');
  const node = sec('node-e-0');
  out.push({
    target: 'one bind at 100k bindings <= node -e 0 + 25 ms',
    met: bind === undefined || node === undefined ? null : bind <= node + 0.025,
    observed: bind === undefined || node === undefined ? 'not measured' : `${(bind * 1000).toFixed(0)} ms vs ${(node * 1000).toFixed(0)} ms + 25 ms`,
  });
  return out;
}
