// `tubectl check`: configurations that refuse or misroute traffic nobody
// asked to refuse or misroute. Pure: it reads a binding set, its traffic
// and the registered sockets, and returns findings, each with the binding
// it is about, a message that names the label, and a command that fixes it.
//
// - blackhole (error): a steer binding whose destination (label, family
//   of the prefix, protocol) has no socket: every connection it decides is
//   refused. An unreachable binding decides none, so it is reported as
//   unreachable only.
// - unreachable (error): a binding that can never win (reachability.ts).
// - reject-covers-live (warning): a reject binding that beats a steer
//   binding with a hit in the live window: the HTTPS-only switch thrown.
// - orphan-socket (warning): registered sockets no steer binding leads to.
import { type Action, unbindArgs } from './binding.js';
import type { Traffic } from './binding-stats.js';
import { type PackedBindings, actionOf, keyFamily, keyId, keyPort, keyPrefixText, keyProtocol, labelAt, precedenceOrder } from './bindingset.js';
import { type DestinationKey, destinationName } from './destination.js';
import { formatAge, formatDuration } from './duration.js';
import { ACTION_REJECT, BINDING_KEY_SIZE } from './layout.js';
import { DEFAULT_LIVE_WINDOW_MS } from './guard.js';
import { buildForest } from './prefix-forest.js';
import { domainOf } from './protocol.js';
import { PORT_COUNT, bindingsInFront, reachability } from './reachability.js';

export type Severity = 'error' | 'warning';
export type FindingKind = 'blackhole' | 'unreachable' | 'reject-covers-live' | 'orphan-socket';
const KIND_ORDER: readonly FindingKind[] = ['blackhole', 'unreachable', 'reject-covers-live', 'orphan-socket'];

/** A destination and the cookies of its registered sockets (none: nothing registered). */
export interface RegisteredDestination extends DestinationKey {
  readonly sockets: readonly bigint[];
}

export interface CheckInput {
  set: PackedBindings;
  /** per binding of the set, its traffic; absent: no binding counts as live */
  traffic?: readonly Traffic[];
  destinations: readonly RegisteredDestination[];
  /** ms since the epoch */
  now: number;
  /** a steer binding with a hit this recently is live; 0: none is */
  liveWindowMs: number;
  /** the ports a connection can have (tests use fewer) */
  portCount?: number;
  /** how fixes name tubectl (with the --netns and --bpffs of the run; default "tubectl") */
  tubectl?: string;
}

export interface Finding {
  severity: Severity;
  kind: FindingKind;
  /** the binding it is about (an index into the set), or -1 for an orphan socket */
  binding: number;
  /** bindings it concerns besides: those in front of an unreachable one, the live ones behind a reject */
  related: number[];
  /** whether there are more related bindings than `related` lists */
  moreRelated: boolean;
  label: string;
  /** the destination of an orphan socket */
  destination?: RegisteredDestination;
  message: string;
  /** what to run to fix it */
  fix: string;
}

/** How many related bindings a message names. */
export const RELATED_LIMIT = 5;

/** Where a binding sends what it decides: its label, or "reject"/"observe" (with its label, if any). */
export function targetText(label: string, action: Action): string {
  return action === 'steer' ? label : label ? `${action} (${label})` : action;
}

/** "tcp 127.0.0.0/24 80 -> web", as `tubectl bind` prints a binding. */
export function describeAt(set: PackedBindings, i: number): string {
  return `${keyId(set.keys, i * BINDING_KEY_SIZE)} -> ${targetText(labelAt(set, i), actionOf(set.actions[i]))}`;
}

/**
 * The tubectl command that removes binding i; with --force when the binding
 * had traffic recently enough for unbind's guard to refuse it otherwise.
 */
export function unbindCommand(set: PackedBindings, i: number, input?: Pick<CheckInput, 'traffic' | 'now' | 'tubectl'>): string {
  const hit = input?.traffic?.[i]?.lastHit;
  const force = hit && input.now - hit.getTime() <= DEFAULT_LIVE_WINDOW_MS ? '--force ' : '';
  return `${input?.tubectl ?? 'tubectl'} unbind ${force}${unbindArgs(actionOf(set.actions[i]), labelAt(set, i), keyId(set.keys, i * BINDING_KEY_SIZE))}`;
}

export const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

function list(set: PackedBindings, items: readonly number[], more: boolean, extra: (i: number) => string = () => ''): string {
  return items.map((i) => `${describeAt(set, i)}${extra(i)}`).join('; ') + (more ? '; and more' : '');
}

export function check(input: CheckInput): Finding[] {
  const { set } = input;
  const tubectl = input.tubectl ?? 'tubectl';
  const k = set.keys;
  const forest = buildForest(set);
  const reach = reachability(set, forest, input.portCount ?? PORT_COUNT);
  const findings: Finding[] = [];
  const steer = (i: number): boolean => set.actions[i] !== ACTION_REJECT;
  const destinationAt = (i: number): DestinationKey => {
    const off = i * BINDING_KEY_SIZE;
    return { label: labelAt(set, i), domain: domainOf(keyFamily(k, off)), protocol: keyProtocol(k, off) };
  };
  const registered = new Map<string, RegisteredDestination>();
  for (const d of input.destinations) if (d.sockets.length > 0) registered.set(destinationName(d), d);

  const kinds = new Map<string, string>();
  const socketsOf = (label: string): string => {
    let text = kinds.get(label);
    if (text === undefined) {
      const others = input.destinations.filter((x) => x.label === label && x.sockets.length > 0).map((x) => `${x.domain} ${x.protocol}`);
      text = others.length === 0 ? `${label} has no socket registered at all` : `${label} has sockets for ${others.join(', ')} only`;
      kinds.set(label, text);
    }
    return text;
  };

  for (let i = 0; i < set.count; i++) {
    const label = labelAt(set, i);
    if (reach.unreachable[i]) {
      const port = keyPort(k, i * BINDING_KEY_SIZE);
      const { found, more } = bindingsInFront(set, forest, reach, i, RELATED_LIMIT);
      const how = port !== 0 ? `longer bindings for port ${port} or every port cover all of ${keyPrefixText(k, i * BINDING_KEY_SIZE)}`
        : reach.strictAny[forest.nodeOf[i]] ? `longer bindings for every port cover all of ${keyPrefixText(k, i * BINDING_KEY_SIZE)}`
          : 'every port has a binding that beats it';
      findings.push({
        severity: 'error', kind: 'unreachable', binding: i, related: found, moreRelated: more, label,
        message: `${describeAt(set, i)} can never decide a connection: ${how} (${list(set, found, more)})`,
        fix: `remove it (${unbindCommand(set, i, input)}), or remove or narrow the bindings in front of it if ${label ? label : 'it'} should get this traffic`,
      });
    } else if (steer(i) && !registered.has(destinationName(destinationAt(i)))) {
      const d = destinationAt(i);
      const has = socketsOf(label);
      findings.push({
        severity: 'error', kind: 'blackhole', binding: i, related: [], moreRelated: false, label,
        message: `${describeAt(set, i)} refuses every connection it decides: no ${d.domain} ${d.protocol} socket is registered for ${label} (${has})`,
        fix: `register the service's socket (${tubectl} register-pid PID ${label} ${d.protocol} ADDRESS PORT), or remove the binding (${unbindCommand(set, i, input)})`,
      });
    }
  }

  findings.push(...rejectsOverLive(input, forest, reach.unreachable));

  // Orphans: registered sockets no steer binding leads to.
  const led = new Set<string>();
  for (let i = 0; i < set.count; i++) if (steer(i)) led.add(destinationName(destinationAt(i)));
  for (const d of registered.values()) {
    if (led.has(destinationName(d))) continue;
    const n = d.sockets.length;
    findings.push({
      severity: 'warning', kind: 'orphan-socket', binding: -1, related: [], moreRelated: false, label: d.label, destination: d,
      message: `${n === 1 ? 'the socket' : `the ${n} sockets`} registered for ${destinationName(d)} (cookie ${d.sockets.join(', ')}) ` +
        `${n === 1 ? 'gets' : 'get'} no traffic: no binding steers ${d.domain} ${d.protocol} connections to ${d.label}`,
      fix: `bind prefixes to it (${tubectl} bind ${d.label} ${d.protocol} PREFIX PORT), or unregister it (${tubectl} unregister ${d.label} ${d.domain} ${d.protocol})`,
    });
  }
  return sortFindings(set, findings);
}

/** Reject bindings in front of steer bindings with a hit in the live window. */
function rejectsOverLive(input: CheckInput, f: ReturnType<typeof buildForest>, unreachable: Uint8Array): Finding[] {
  const { set, traffic } = input;
  if (!traffic || input.liveWindowMs <= 0) return [];
  const k = set.keys;
  const liveAt = new Map<number, number[]>(); // node -> its live steer bindings
  for (let i = 0; i < set.count; i++) {
    const hit = traffic[i]?.lastHit;
    if (set.actions[i] === ACTION_REJECT || !hit || input.now - hit.getTime() > input.liveWindowMs) continue;
    const x = f.nodeOf[i];
    const at = liveAt.get(x);
    if (at) at.push(i); else liveAt.set(x, [i]);
  }
  if (liveAt.size === 0) return [];
  const out: Finding[] = [];
  for (let r = 0; r < set.count; r++) {
    if (set.actions[r] !== ACTION_REJECT || unreachable[r]) continue;
    const port = keyPort(k, r * BINDING_KEY_SIZE);
    const behind: number[] = [];
    const x = f.nodeOf[r];
    // At the same prefix only a port-0 binding loses to a specific port.
    if (port !== 0) for (const s of liveAt.get(x) ?? []) if (keyPort(k, s * BINDING_KEY_SIZE) === 0) behind.push(s);
    for (let a = f.parent[x]; a >= 0; a = f.parent[a]) {
      for (const s of liveAt.get(a) ?? []) {
        const sp = keyPort(k, s * BINDING_KEY_SIZE);
        if (port === 0 || sp === 0 || sp === port) behind.push(s);
      }
    }
    if (behind.length === 0) continue;
    const shown = behind.slice(0, RELATED_LIMIT);
    const more = behind.length > shown.length;
    const traffic = (s: number): string => ` (${plural(Number(input.traffic?.[s].hits ?? 0n), 'hit')}, last ${formatAge(input.traffic?.[s].lastHit ?? null, input.now)})`;
    const label = labelAt(set, r);
    out.push({
      severity: 'warning', kind: 'reject-covers-live', binding: r, related: shown, moreRelated: more, label,
      message: `${describeAt(set, r)} refuses connections that ${plural(behind.length, 'steer binding')} with traffic in the last ` +
        `${formatDuration(input.liveWindowMs)} would otherwise get: ${list(set, shown, more, traffic)}`,
      fix: `if refusing them is not intended, remove the reject binding (${unbindCommand(set, r, input)})`,
    });
  }
  return out;
}

/** Errors first, then by kind, then by the precedence of the binding (orphans by destination). */
function sortFindings(set: PackedBindings, findings: Finding[]): Finding[] {
  const rank = new Int32Array(set.count);
  precedenceOrder(set).forEach((i, r) => { rank[i] = r; });
  const key = (x: Finding): number => (x.severity === 'error' ? 0 : 4 + KIND_ORDER.length) + KIND_ORDER.indexOf(x.kind);
  const name = (x: Finding): string => (x.destination ? destinationName(x.destination) : '');
  const keyed = findings.map((x) => ({ x, k: key(x), r: x.binding < 0 ? set.count : rank[x.binding] }));
  keyed.sort((a, b) => a.k - b.k || a.r - b.r || (a.r === set.count ? name(a.x).localeCompare(name(b.x)) : 0));
  return keyed.map((e) => e.x);
}
