// `tubectl sources`: where the traffic of observe and reject bindings comes
// from. The data plane samples it per source block (IPv4 /24, IPv6 /48) in
// a bounded LRU table; this verb joins the sample to the bindings in force
// and shows, per binding, its total, its last hit and its busiest blocks:
// who an observe binding would cut off once it is switched to reject.
import { bindingId, toJSON } from '../binding.js';
import type { Traffic } from '../binding-stats.js';
import { type PackedBindings, bindingAt, keyId, precedenceOrder } from '../bindingset.js';
import { formatAge, isoSecond } from '../duration.js';
import { TubularError, invalid } from '../errors.js';
import { ACTION_STEER, BINDING_KEY_SIZE } from '../layout.js';
import { formatPrefix, parsePrefix } from '../prefix.js';
import { parsePort, parseProtocol } from '../protocol.js';
import { quote } from '../quote.js';
import type { SourceSample } from '../sources.js';
import { type BindingDoc, bindingDoc } from './changes.js';
import { type Env, withDispatcher } from './env.js';
import { UsageError, parsing } from './errors.js';
import { labelCell, table, writeJSON } from './output.js';

/** How many source blocks each binding shows unless --top says otherwise. */
export const DEFAULT_TOP = 10;
/** The most --top accepts. */
export const MAX_TOP = 1000;

/** One sampled source block of a binding, as Dispatcher.sources() returns it (the epoch is not needed here). */
export type SourceCount = Pick<SourceSample, 'stat' | 'prefix' | 'hits' | 'lastSeen'>;

/** An observe or reject binding with its traffic and its busiest sources. */
export interface SourceReport {
  binding: BindingDoc;
  hits: bigint;
  lastHit: Date | null;
  /** the top sources, most active first */
  sources: SourceCount[];
  /** how many source blocks were sampled in all (sources holds the top of them) */
  sampled: number;
}

/** --top: decimal digits without a leading zero, 1-1000. */
export function parseTop(text: string | undefined): number {
  if (text === undefined) return DEFAULT_TOP;
  if (!/^[1-9][0-9]{0,3}$/.test(text) || Number(text) > MAX_TOP) {
    throw invalid(`invalid --top ${quote(text)}: give how many source blocks to show per binding, 1-${MAX_TOP}, in decimal digits`);
  }
  return Number(text);
}

/** Most active first: more hits, then seen more recently, then by address. */
export function compareSources(a: SourceCount, b: SourceCount): number {
  if (a.hits !== b.hits) return a.hits > b.hits ? -1 : 1;
  const seen = (b.lastSeen?.getTime() ?? 0) - (a.lastSeen?.getTime() ?? 0);
  if (seen !== 0) return seen;
  if (a.prefix.family !== b.prefix.family) return a.prefix.family - b.prefix.family;
  for (let i = 0; i < a.prefix.bytes.length; i++) {
    if (a.prefix.bytes[i] !== b.prefix.bytes[i]) return a.prefix.bytes[i] - b.prefix.bytes[i];
  }
  return a.prefix.length - b.prefix.length;
}

/** The `top` most active of `all`, without sorting all of them when there are many. */
export function topSources(all: readonly SourceCount[], top: number): SourceCount[] {
  if (all.length <= top) return [...all].sort(compareSources);
  const out: SourceCount[] = [];
  for (const s of all) {
    if (out.length === top && compareSources(s, out[top - 1]) >= 0) continue;
    let at = out.length;
    while (at > 0 && compareSources(s, out[at - 1]) < 0) at--;
    out.splice(at, 0, s);
    if (out.length > top) out.pop();
  }
  return out;
}

/**
 * The observe and reject bindings of `set` that `pick` keeps, joined to
 * their traffic and sampled sources: the busiest bindings first (then in
 * precedence order), each with its `top` busiest sources.
 */
export function sourceReports(
  set: PackedBindings,
  traffic: (stats: Uint32Array) => Traffic[],
  samples: readonly SourceCount[],
  top: number,
  pick: (i: number) => boolean = () => true,
): SourceReport[] {
  const stats = set.stats ?? new Uint32Array(set.count);
  const order = precedenceOrder(set, (i) => set.actions[i] !== ACTION_STEER && pick(i));
  const counts = traffic(Uint32Array.from(order, (i) => stats[i]));
  const byStat = new Map<number, SourceCount[]>(order.map((i) => [stats[i], []]));
  for (const s of samples) byStat.get(s.stat)?.push(s);
  const reports = order.map((i, r): SourceReport => {
    const all = byStat.get(stats[i]) ?? [];
    return {
      binding: bindingDoc({ ...toJSON(bindingAt(set, i)), ...counts[r] }),
      hits: counts[r].hits,
      lastHit: counts[r].lastHit,
      sources: topSources(all, top),
      sampled: all.length,
    };
  });
  // A stable sort keeps precedence order among bindings with equal hits.
  return reports.sort((a, b) => (a.hits === b.hits ? 0 : a.hits > b.hits ? -1 : 1));
}

/** The document of sources --json. */
export function sourcesDoc(reports: readonly SourceReport[]): unknown {
  return {
    bindings: reports.map((r) => ({
      binding: r.binding,
      hits: r.hits.toString(),
      lastHit: isoSecond(r.lastHit),
      sources: r.sources.map((s) => ({ prefix: formatPrefix(s.prefix), hits: s.hits.toString(), lastSeen: isoSecond(s.lastSeen) })),
    })),
  };
}

/**
 * For people: per binding a heading line, then its sources as a table.
 *
 *   tcp 127.0.0.128/25 80 <observe>: 6 hits, last hit 3s ago
 *     source        hits  last seen
 *     127.3.0.0/24     3  3s ago
 *     127.1.0.0/24     1  3s ago
 *     ... 2 more source blocks sampled (--top shows more)
 */
export function sourcesText(reports: readonly SourceReport[], now: number): string {
  if (reports.length === 0) return 'no observe or reject bindings\n';
  return reports.map((r) => {
    const b = r.binding;
    const heading = `${b.protocol} ${b.prefix} ${b.port} ${labelCell(b)}: ${r.hits} hit${r.hits === 1n ? '' : 's'}, last hit ${formatAge(r.lastHit, now)}\n`;
    if (r.sources.length === 0) return `${heading}  no sources sampled\n`;
    const rows = table(['source', 'hits', 'last seen'],
      r.sources.map((s) => [formatPrefix(s.prefix), s.hits.toString(), formatAge(s.lastSeen, now)]), [1]);
    const more = r.sampled - r.sources.length;
    const tail = more > 0 ? `  ... ${more} more source block${more === 1 ? '' : 's'} sampled (--top shows more)\n` : '';
    return heading + rows.replace(/^(?=.)/gm, '  ') + tail;
  }).join('\n');
}

export interface SourcesOptions {
  top?: string;
  reset?: boolean;
}

/** Reads `[<protocol> <prefix[/mask]> <port>]`: all three, naming one binding (as bindingId spells it), or none. */
function bindingNamed(args: readonly (string | undefined)[], notes: string[]): string | undefined {
  const given = args.filter((a): a is string => a !== undefined);
  if (given.length === 0) return undefined;
  if (given.length !== 3) {
    throw new UsageError(`sources takes no binding or one, as <protocol> <prefix[/mask]> <port>; got ${given.length} argument${given.length === 1 ? '' : 's'}`, 'sources');
  }
  return parsing('sources', () => {
    const protocol = parseProtocol(given[0]);
    const { prefix, masked } = parsePrefix(given[1]);
    if (masked) notes.push(masked);
    return bindingId({ protocol, prefix, port: parsePort(given[2]) });
  });
}

export async function sources(env: Env, args: readonly (string | undefined)[], opts: SourcesOptions = {}): Promise<void> {
  if (opts.reset) {
    if (args.some((a) => a !== undefined)) throw new UsageError('--reset clears the whole sample: it takes no binding', 'sources');
    if (opts.top !== undefined) throw new UsageError('--top shows a sample; --reset clears it: give one or the other', 'sources');
    await withDispatcher(env, false, (d) => d.resetSources());
    if (env.json) writeJSON(env, { reset: true });
    else env.stdout.write('cleared the sources sampled for observe and reject bindings (their hit counts stay)\n');
    return;
  }
  const top = parsing('sources', () => parseTop(opts.top));
  const notes: string[] = [];
  const want = bindingNamed(args, notes);
  for (const n of notes) env.stderr.write(`tubectl: note: ${n}\n`);
  const reports = await withDispatcher(env, true, (d) => {
    const set = d.packedBindings();
    const pick = want === undefined ? undefined : (i: number) => keyId(set.keys, i * BINDING_KEY_SIZE) === want;
    const found = sourceReports(set, (stats) => d.traffic(stats), d.sources(), top, pick);
    if (want !== undefined && found.length === 0) {
      const steer = precedenceOrder(set, pick).length > 0;
      throw new TubularError('ENOENT', `the binding ${want} ${steer
        ? 'steers traffic: only observe and reject bindings sample their sources'
        : 'does not exist (tubectl bindings lists them)'}`);
    }
    return found;
  });
  if (env.json) writeJSON(env, sourcesDoc(reports));
  else env.stdout.write(sourcesText(reports, Date.now()));
}
