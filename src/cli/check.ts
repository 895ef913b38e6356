// tubectl check: configurations that refuse or misroute traffic nobody
// asked for (see src/check.ts). Exits 1 when it finds anything, 0 when
// clean, so that it can gate a deployment.
import { toJSON, type BindingJSON } from '../binding.js';
import type { Traffic } from '../binding-stats.js';
import { type PackedBindings, bindingAt, withoutObserve } from '../bindingset.js';
import { type Finding, check as runCheck, plural } from '../check.js';
import { parseDuration } from '../duration.js';
import { type Env, tubectlAs, withDispatcher } from './env.js';
import { EXIT_FAILED, ExitStatus, parsing } from './errors.js';
import { writeJSON } from './output.js';

export interface CheckOptions {
  /** --live-window, e.g. "10m"; "0" leaves traffic out */
  liveWindow?: string;
}

export const DEFAULT_LIVE_WINDOW = '10m';
/** Findings of one kind and label shown as text before the rest is counted. */
const TEXT_LIMIT = 10;

/** A binding as `tubectl bindings --json` shows it, with its traffic. */
export interface BindingTrafficJSON extends BindingJSON {
  /** decimal string */
  hits: string;
  /** ISO 8601 UTC, or null: never */
  lastHit: string | null;
}

export interface FindingJSON {
  severity: Finding['severity'];
  kind: Finding['kind'];
  binding: BindingTrafficJSON | null;
  label: string;
  message: string;
  fix: string;
  related: BindingTrafficJSON[];
  destination?: { label: string; domain: string; protocol: string; sockets: string[] };
}

function bindingJSON(set: PackedBindings, traffic: readonly Traffic[] | undefined, i: number): BindingTrafficJSON {
  const t = traffic?.[i];
  return { ...toJSON(bindingAt(set, i)), hits: (t?.hits ?? 0n).toString(), lastHit: t?.lastHit ? t.lastHit.toISOString() : null };
}

export function findingJSON(set: PackedBindings, traffic: readonly Traffic[] | undefined, f: Finding): FindingJSON {
  const out: FindingJSON = {
    severity: f.severity, kind: f.kind, binding: f.binding < 0 ? null : bindingJSON(set, traffic, f.binding),
    label: f.label, message: f.message, fix: f.fix, related: f.related.map((i) => bindingJSON(set, traffic, i)),
  };
  const d = f.destination;
  if (d) out.destination = { label: d.label, domain: d.domain, protocol: d.protocol, sockets: d.sockets.map(String) };
  return out;
}

/** The findings for people: each with its fix; at most TEXT_LIMIT of one kind and label. */
export function findingsText(findings: readonly Finding[]): string {
  const shown = new Map<string, number>();
  let out = '';
  for (const f of findings) {
    const group = `${f.kind} ${f.label}`;
    const n = (shown.get(group) ?? 0) + 1;
    shown.set(group, n);
    if (n <= TEXT_LIMIT) out += `${f.severity}: ${f.kind}: ${f.message}\n  fix: ${f.fix}\n`;
  }
  for (const [group, n] of shown) {
    if (n <= TEXT_LIMIT) continue;
    const [kind, label] = group.split(' ');
    out += `... and ${n - TEXT_LIMIT} more ${kind} findings for ${label ? `label ${label}` : 'bindings without a label'} (tubectl check --json lists them all)\n`;
  }
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.length - errors;
  return `${out}${out ? '\n' : ''}${plural(errors, 'error')}, ${plural(warnings, 'warning')}\n`;
}

export async function check(env: Env, opts: CheckOptions = {}): Promise<void> {
  const liveWindowMs = parsing('check', () => parseDuration(opts.liveWindow ?? DEFAULT_LIVE_WINDOW, '--live-window'));
  const { all, set, traffic, destinations } = await withDispatcher(env, true, (d) => {
    // Observe bindings decide nothing: they can neither blackhole, hide nor be hidden.
    const all = d.packedBindings();
    const set = withoutObserve(all);
    return { all: all.count, set, traffic: set.stats ? d.traffic(set.stats) : undefined, destinations: d.destinations() };
  });
  const findings = runCheck({ set, traffic, destinations, now: Date.now(), liveWindowMs, tubectl: tubectlAs(env) });
  if (env.json) {
    writeJSON(env, { findings: findings.map((f) => findingJSON(set, traffic, f)) });
  } else if (findings.length === 0) {
    const registered = destinations.filter((d) => d.sockets.length > 0).length;
    env.stdout.write(`no problems found (${plural(all, 'binding')}, ${plural(registered, 'registered destination')})\n`);
  } else {
    env.stdout.write(findingsText(findings));
  }
  if (findings.length > 0) throw new ExitStatus(EXIT_FAILED);
}
