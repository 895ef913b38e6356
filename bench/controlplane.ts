// The control plane as an operator runs it: tubectl as a subprocess, wall
// time from spawn to exit, output to a pipe. Each operation runs a few times
// in sequence and the median is reported; peak RSS comes from /usr/bin/time
// (the Debian package `time`) on one more run of each load into an empty
// dispatcher. The scale sweep loads 1k, 10k, 100k and 1M bindings the same
// way, so that the table shows how each cost grows with the work.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Dispatcher } from '../src/dispatcher.js';
import { packageRoot } from '../src/paths.js';
import { median } from './stats.js';
import { type Entry, entries } from './workload.js';

/** tubectl as an operator runs it: bin/tubectl, which starts its bundle (scripts/setup builds it). */
const CLI = path.join(packageRoot, 'bin/tubectl');

export type Operation = 'load-100k' | 'load-unchanged' | 'load-1pct-first' | 'load-1pct' | 'load-shrink-2k' | 'list-100k' | 'bind-one' | 'version' | 'node-e-0';

export interface ControlFigure {
  operation: Operation;
  command: string;
  /** median seconds */
  seconds: number;
  runs: number[];
}

/** One size of the scale sweep: medians in seconds, peak RSS in KiB. */
export interface ScaleFigure {
  bindings: number;
  /** load-bindings into an empty dispatcher */
  load: number;
  /** the same file again */
  unchanged: number;
  /** 1% of the entries relabelled, right after the load (the standby, the generation before, is empty) */
  first: number;
  /** 1% more relabelled (the standby is the version before: what a file regenerated now and then meets) */
  changed: number;
  peakRssKiB?: number;
  runs: { load: number[]; unchanged: number[]; first: number[]; changed: number[] };
}

export interface ControlPlaneResult {
  available: boolean;
  /** why not, when not available */
  reason?: string;
  figures: ControlFigure[];
  /** peak RSS of tubectl load-bindings 100k into an empty dispatcher, KiB */
  peakRssKiB?: number;
  scale: ScaleFigure[];
}

function fileOf(list: readonly Entry[]): string {
  return JSON.stringify({
    bindings: list.map((e) => (e.reject ? { prefix: e.prefix, port: e.port, action: 'reject' } : { label: e.label, prefix: e.prefix, port: e.port })),
  });
}

/**
 * Versions of a file as a generator rewrites it: each relabels 1% of the
 * entries of the one before (new labels: new destinations too).
 */
const relabelled = (list: readonly Entry[], version: number): Entry[] =>
  list.map((e, i) => (i % 100 === 42 + version && !e.reject ? { ...e, label: `${e.label}v${version}` } : e));

/** Writes the files of one size: the base, and two versions, each 1% changed from the one before. */
function versions(dir: string, name: string, list: readonly Entry[]): { base: string; first: string; second: string } {
  const v1 = relabelled(list, 1);
  const files = { base: path.join(dir, `${name}.json`), first: path.join(dir, `${name}-v1.json`), second: path.join(dir, `${name}-v2.json`) };
  writeFileSync(files.base, fileOf(list));
  writeFileSync(files.first, fileOf(v1));
  writeFileSync(files.second, fileOf(relabelled(v1, 2)));
  return files;
}

/** Runs argv (under `wrap`, e.g. /usr/bin/time); wall time from spawn to exit. */
function run(argv0: string[], wrap: string[] = [], env: NodeJS.ProcessEnv = process.env): { seconds: number; stdout: string; stderr: string } {
  const argv = [...wrap, ...argv0];
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', maxBuffer: 1 << 30, env });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { seconds, stdout: r.stdout, stderr: r.stderr };
}

/** The environment without NODE_EXTRA_CA_CERTS, as bin/tubectl starts node. */
function withoutExtraCaCerts(): NodeJS.ProcessEnv {
  const { NODE_EXTRA_CA_CERTS: _, ...env } = process.env;
  return env;
}

/** Peak RSS in KiB of one run, from /usr/bin/time. */
function peakRss(args: string[]): number | undefined {
  const m = /peak-rss-kib (\d+)/.exec(run(args, ['/usr/bin/time', '-f', 'peak-rss-kib %M']).stderr);
  return m ? Number(m[1]) : undefined;
}

/** Whether tubectl is built and answers `version`. */
export function tubectlProblem(): string | undefined {
  const r = spawnSync(CLI, ['version'], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `tubectl version exited ${r.status}: ${(r.stderr || r.error?.message || '').trim()}`;
}

export interface ControlPlaneOptions {
  bpffs: string;
  dir: string;
  repeats: number;
  /** sizes of the scale sweep besides 100k (measured by the main rows), in bindings */
  scale: readonly number[];
  log: (line: string) => void;
}

/** Needs an empty bpffs: creates a dispatcher there and removes it again. */
export function measureControlPlane(opts: ControlPlaneOptions): ControlPlaneResult {
  const problem = tubectlProblem();
  if (problem) return { available: false, reason: problem, figures: [], scale: [] };
  const tubectl = (...args: string[]): string[] => [CLI, '--bpffs', opts.bpffs, ...args];
  const full = entries(50_000, 7);
  const v = versions(opts.dir, 'bindings-100k', full);
  const files = { small: path.join(opts.dir, 'bindings-2k.json'), empty: path.join(opts.dir, 'empty.json') };
  writeFileSync(files.small, fileOf(full.slice(0, 1000)));
  writeFileSync(files.empty, fileOf([]));

  const runs: Record<Operation, number[]> = {
    'load-100k': [], 'load-unchanged': [], 'load-1pct-first': [], 'load-1pct': [], 'load-shrink-2k': [], 'list-100k': [], 'bind-one': [], 'version': [], 'node-e-0': [],
  };
  const commands: Record<Operation, string> = {
    'load-100k': 'tubectl load-bindings bindings-100k.json     (empty -> 100k)',
    'load-unchanged': 'tubectl load-bindings bindings-100k.json     (again, unchanged)',
    'load-1pct-first': 'tubectl load-bindings bindings-100k-v1.json  (1% relabelled; standby empty)',
    'load-1pct': 'tubectl load-bindings bindings-100k-v2.json  (1% more; standby: the file before)',
    'load-shrink-2k': 'tubectl load-bindings --force bindings-2k.json (100k -> 2k)',
    'list-100k': 'tubectl bindings > pipe                    (100k)',
    'bind-one': 'tubectl bind svc tcp 10.255.200.0/24 80     (100k in force)',
    'version': 'tubectl version',
    'node-e-0': 'node -e 0                  (environment as bin/tubectl gives it)',
  };
  Dispatcher.create({ bpffs: opts.bpffs }).close();
  let peakRssKiB: number | undefined;
  const scale: ScaleFigure[] = [];
  // Into empty means both generations empty: a dispatcher loaded afresh
  // (after a replace with the empty file, the standby would still hold the
  // set before, and a load would only patch it).
  const afresh = (): void => { run(tubectl('unload')); run(tubectl('load')); };
  try {
    for (let r = 0; r < opts.repeats; r++) {
      if (r > 0) afresh();
      runs['load-100k'].push(run(tubectl('load-bindings', v.base)).seconds);
      runs['load-unchanged'].push(run(tubectl('load-bindings', v.base)).seconds);
      runs['load-1pct-first'].push(run(tubectl('load-bindings', v.first)).seconds);
      runs['load-1pct'].push(run(tubectl('load-bindings', v.second)).seconds);
      const list = run(tubectl('bindings'));
      runs['list-100k'].push(list.seconds);
      const lines = list.stdout.split('\n').length;
      if (lines < 100_000) throw new Error(`tubectl bindings printed ${lines} lines for 100k bindings`);
      // One bind with 100k bindings in force.
      runs['bind-one'].push(run(tubectl('bind', 'svc', 'tcp', '10.255.200.0/24', '80')).seconds);
      run(tubectl('unbind', 'svc', 'tcp', '10.255.200.0/24', '80'));
      // --force: the guard refuses removing more than half of the bindings in force.
      runs['load-shrink-2k'].push(run(tubectl('load-bindings', '--force', files.small)).seconds);
      opts.log(`control plane round ${r + 1}: load ${runs['load-100k'][r].toFixed(3)} s, unchanged ${runs['load-unchanged'][r].toFixed(3)} s, ` +
        `1% ${runs['load-1pct-first'][r].toFixed(3)} s then ${runs['load-1pct'][r].toFixed(3)} s, list ${runs['list-100k'][r].toFixed(3)} s, shrink ${runs['load-shrink-2k'][r].toFixed(3)} s, bind ${runs['bind-one'][r].toFixed(3)} s`);
    }
    for (let r = 0; r < opts.repeats + 2; r++) {
      runs.version.push(run(tubectl('version')).seconds);
      // In the environment bin/tubectl gives node: without NODE_EXTRA_CA_CERTS (see bin/tubectl).
      runs['node-e-0'].push(run([process.execPath, '-e', '0'], [], withoutExtraCaCerts()).seconds);
    }
    // Peak RSS: one more load into an empty dispatcher, under /usr/bin/time.
    afresh();
    peakRssKiB = peakRss(tubectl('load-bindings', v.base));

    for (const size of [...opts.scale, 100_000].sort((a, b) => a - b)) {
      if (size === 100_000) {
        scale.push({
          bindings: size, load: median(runs['load-100k']), unchanged: median(runs['load-unchanged']), first: median(runs['load-1pct-first']),
          changed: median(runs['load-1pct']), peakRssKiB,
          runs: { load: runs['load-100k'], unchanged: runs['load-unchanged'], first: runs['load-1pct-first'], changed: runs['load-1pct'] },
        });
        continue;
      }
      const f = versions(opts.dir, `bindings-${size}`, entries(size / 2, 7));
      const s: ScaleFigure['runs'] = { load: [], unchanged: [], first: [], changed: [] };
      for (let r = 0; r < opts.repeats; r++) {
        afresh();
        s.load.push(run(tubectl('load-bindings', f.base)).seconds);
        s.unchanged.push(run(tubectl('load-bindings', f.base)).seconds);
        s.first.push(run(tubectl('load-bindings', f.first)).seconds);
        s.changed.push(run(tubectl('load-bindings', f.second)).seconds);
      }
      afresh();
      const rss = peakRss(tubectl('load-bindings', f.base));
      afresh();
      const figure = { bindings: size, load: median(s.load), unchanged: median(s.unchanged), first: median(s.first), changed: median(s.changed), peakRssKiB: rss, runs: s };
      scale.push(figure);
      opts.log(`control plane at ${size} bindings: load ${figure.load.toFixed(3)} s, unchanged ${figure.unchanged.toFixed(3)} s, ` +
        `1% ${figure.first.toFixed(3)} s then ${figure.changed.toFixed(3)} s, peak RSS ${rss === undefined ? '?' : (rss / 1024).toFixed(0)} MiB`);
    }
  } finally {
    Dispatcher.unload({ bpffs: opts.bpffs });
  }
  const figures = (Object.keys(runs) as Operation[]).map((operation) => ({ operation, command: commands[operation], seconds: median(runs[operation]), runs: runs[operation] }));
  return { available: true, figures, peakRssKiB, scale };
}
