// How tubectl shows a change of bindings. diff (load-bindings --dry-run),
// rollback and the guard's refusals share one table and one JSON shape:
//
//   change   protocol  prefix        port  label            hits  last hit
//   removed  tcp       127.0.0.0/24    80  web                12  3s ago
//   changed  tcp       127.0.0.7/32     0  host => <reject>    4  2m ago
//   added    tcp       127.0.0.0/25     0  b                   0  never
import type { BindingJSON } from '../binding.js';
import { type ChangeReport, type ChangeRow, type TrafficBinding, rowBinding } from '../change-report.js';
import { type GuardPolicy, judgeRows } from '../guard.js';
import { formatAge, formatDuration, isoSecond } from '../duration.js';
import { labelCell, table } from './output.js';

/** A binding as --json shows it: the bindings-file entry, plus `hits` (decimal string) and `lastHit` (ISO 8601 UTC or null). */
export interface BindingDoc extends BindingJSON {
  hits: string;
  lastHit: string | null;
}

export function bindingDoc(b: TrafficBinding): BindingDoc {
  return { label: b.label, protocol: b.protocol, prefix: b.prefix, port: b.port, action: b.action, hits: b.hits.toString(), lastHit: isoSecond(b.lastHit) };
}

/** The document of diff --json (rollback adds its own fields). */
export interface ChangeDoc {
  added: BindingDoc[];
  removed: BindingDoc[];
  changed: Array<{ from: BindingDoc; to: BindingDoc }>;
  unchanged: number;
  /** removed or changed bindings with a hit within the live window */
  live: BindingDoc[];
}

export function changeDoc(report: ChangeReport, policy: GuardPolicy): ChangeDoc {
  const verdict = judgeRows(report.rows, report.removed, report.inForce, policy);
  return {
    added: report.rows.flatMap((r) => (r.kind === 'added' ? [bindingDoc(r.to)] : [])),
    removed: report.rows.flatMap((r) => (r.kind === 'removed' ? [bindingDoc(r.from)] : [])),
    changed: report.rows.flatMap((r) => (r.kind === 'changed' ? [{ from: bindingDoc(r.from), to: bindingDoc(r.to) }] : [])),
    unchanged: report.unchanged,
    live: verdict.live.flatMap((r) => (r.from ? [bindingDoc(r.from)] : [])),
  };
}

/** The label column of a row: `web`, `<reject>`, or `web => <reject>` for a changed binding. */
function rowLabel(r: ChangeRow): string {
  return r.kind === 'changed' ? `${labelCell(r.from)} => ${labelCell(r.to)}` : labelCell(rowBinding(r));
}

/** The table of rows; the counters shown are those of the binding in force (of the one added, for added). */
export function changeTable(rows: readonly ChangeRow[], now: number, indent = ''): string {
  const text = table(['change', 'protocol', 'prefix', 'port', 'label', 'hits', 'last hit'], rows.map((r) => {
    const b = rowBinding(r);
    return [r.kind, b.protocol, b.prefix, String(b.port), rowLabel(r), b.hits.toString(), formatAge(b.lastHit, now)];
  }), [3, 5]);
  return indent ? text.replace(/^(?=.)/gm, indent) : text;
}

/**
 * The one-line summary: counts, then (given the verb about to do the
 * change) what its guard would say. `no changes: 6 bindings unchanged` when
 * there is nothing to do.
 */
export function changeSummary(report: ChangeReport, policy: GuardPolicy, verb?: string): string {
  if (report.rows.length === 0) return `no changes: ${report.unchanged} binding${report.unchanged === 1 ? '' : 's'} unchanged`;
  const counts = `${report.added} added, ${report.removed} removed, ${report.changed} changed, ${report.unchanged} unchanged`;
  if (verb === undefined) return counts;
  const v = judgeRows(report.rows, report.removed, report.inForce, policy);
  const why: string[] = [];
  if (v.blocking.length > 0) {
    why.push(`${v.blocking.length} live binding${v.blocking.length === 1 ? '' : 's'} withdrawn or redirected (hit within ${formatDuration(policy.liveWindowMs)})`);
  }
  if (v.mass) why.push(`${v.mass.removed} of ${v.mass.inForce} bindings removed`);
  return why.length === 0 ? counts : `${counts}; ${why.join(', ')}: ${verb} refuses this without --force`;
}

/** Table (when there is a change) and summary line. */
export function changeText(report: ChangeReport, policy: GuardPolicy, verb?: string): string {
  const rows = report.rows.length === 0 ? '' : changeTable(report.rows, policy.now);
  return `${rows}${changeSummary(report, policy, verb)}\n`;
}
