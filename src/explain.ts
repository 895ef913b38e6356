// `tubectl explain`: where a connection to an address and port goes, and
// why, as the control plane reads the maps; and whether the loaded
// program, asked the same question, answers the same. Pure: the verb
// (cli/explain.ts) reads the maps and runs the program.
import { type Binding, bindingId, comparePrecedence } from './binding.js';
import { type PackedBindings, bindingAt, keyPort } from './bindingset.js';
import { type RegisteredDestination, targetText } from './check.js';
import { destinationName } from './destination.js';
import { AF, BINDING_KEY_SIZE, IPPROTO } from './layout.js';
import type { Family } from './prefix.js';
import { type Protocol, domainOf } from './protocol.js';

export interface Lookup {
  protocol: Protocol;
  family: Family;
  /** 4 or 16 bytes, network order */
  address: Uint8Array;
  port: number;
}

export interface Match {
  /** index into the set */
  index: number;
  binding: Binding;
  /** why it wins, or why it loses to the winner */
  reason: string;
}

/** What the program does with a lookup: SK_PASS or SK_DROP, and the socket it selected. */
export interface Verdict {
  verdict: 'pass' | 'drop';
  /** the selected socket's cookie; null when none was selected, or when it cannot be told (reuseport) */
  cookie: bigint | null;
  /** the program selected a socket of an SO_REUSEPORT group: BPF_PROG_TEST_RUN does not say which */
  reuseport?: boolean;
}

export interface Explanation {
  /** the bindings that match, most preferred first: the winner, then the losers */
  matches: Match[];
  /** the destination of a winning steer binding, with its sockets (none: nothing registered) */
  destination: RegisteredDestination | null;
  /** what the data plane should do, from the maps */
  expected: Verdict;
  /** one line: where the connection goes */
  summary: string;
}

/** Whether binding i of the set matches the lookup. */
function matchesAt(set: PackedBindings, i: number, q: Lookup): boolean {
  const k = set.keys;
  const off = i * BINDING_KEY_SIZE;
  if (k[off] !== IPPROTO[q.protocol] || k[off + 1] !== AF[q.family]) return false;
  const port = keyPort(k, off);
  if (port !== 0 && port !== q.port) return false;
  const len = k[off + 2];
  for (let byte = 0; byte * 8 < len; byte++) {
    const bits = Math.min(8, len - byte * 8);
    const mask = (0xff << (8 - bits)) & 0xff;
    if ((q.address[byte] & mask) !== k[off + 8 + byte]) return false;
  }
  return true;
}

/** The bindings that match a lookup, most preferred first. */
export function matchingBindings(set: PackedBindings, q: Lookup): Array<{ index: number; binding: Binding }> {
  const out: Array<{ index: number; binding: Binding }> = [];
  for (let i = 0; i < set.count; i++) if (matchesAt(set, i, q)) out.push({ index: i, binding: bindingAt(set, i) });
  return out.sort((a, b) => comparePrecedence(a.binding, b.binding));
}

/** Why `loser` loses to `winner`; both match the same lookup. */
export function lossReason(winner: Binding, loser: Binding): string {
  if (winner.prefix.length > loser.prefix.length) return `loses: /${winner.prefix.length} is longer than /${loser.prefix.length}`;
  return `loses: at /${loser.prefix.length}, port ${winner.port} beats port 0`;
}

function winReason(winner: Binding, runnerUp: Binding | undefined): string {
  const longest = `wins: the longest matching prefix, /${winner.prefix.length}`;
  if (runnerUp && runnerUp.prefix.length === winner.prefix.length) return `${longest}, and port ${winner.port} beats port 0 there`;
  return longest;
}

/** Where a lookup goes, as the maps say: set is the binding set in force, destinations every destination. */
export function explainLookup(set: PackedBindings, destinations: readonly RegisteredDestination[], q: Lookup): Explanation {
  const all = matchingBindings(set, q);
  // Observe bindings decide nothing: the one in front of the decider counts
  // the connection (the first), the walk goes on past every one.
  const found = all.filter((m) => m.binding.action !== 'observe');
  const winner = found[0]?.binding;
  const counting = all.find((m) => m.binding.action === 'observe');
  const counts = counting && (!winner || comparePrecedence(counting.binding, winner) < 0) ? counting.binding : undefined;
  const matches = all.map((m, n) => ({
    ...m,
    reason: m.binding.action === 'observe'
      ? (m.binding === counts ? 'observes: counted, then passed over (observe bindings decide nothing)' : 'observes: passed over (another observe binding counted it)')
      : m.binding === winner ? winReason(m.binding, found[1]?.binding) : lossReason(winner!, m.binding),
  }));
  if (!winner) {
    return { matches, destination: null, expected: { verdict: 'pass', cookie: null }, summary: "no binding: the kernel's normal lookup (bind())" };
  }
  const wins = `${describe(winner)} wins`;
  if (winner.action === 'reject') return { matches, destination: null, expected: { verdict: 'drop', cookie: null }, summary: `refused: ${wins}` };
  const key = { label: winner.label, domain: domainOf(q.family), protocol: q.protocol };
  const d = destinations.find((x) => destinationName(x) === destinationName(key));
  const destination: RegisteredDestination = { ...key, sockets: d?.sockets ?? [] };
  if (destination.sockets.length === 0) {
    return { matches, destination, expected: { verdict: 'drop', cookie: null }, summary: `refused: ${wins}, but no ${key.domain} ${key.protocol} socket is registered for ${winner.label}` };
  }
  // The program hands the connection to the first socket registered.
  return { matches, destination, expected: { verdict: 'pass', cookie: destination.sockets[0] }, summary: `goes to ${winner.label}: ${wins}` };
}

/** "tcp 127.0.0.0/24 80 -> web", as tubectl bind prints a binding. */
export function describe(b: Binding): string {
  return `${bindingId(b)} -> ${targetText(b.label, b.action)}`;
}

/**
 * Whether the program's verdict is the one the maps call for. A socket of
 * an SO_REUSEPORT group cannot be told apart: any selected socket agrees
 * with a destination that has sockets.
 */
export function agrees(expected: Verdict, got: Verdict): boolean {
  if (expected.verdict !== got.verdict) return false;
  if (expected.cookie === null) return got.cookie === null && !got.reuseport;
  return got.reuseport === true || got.cookie === expected.cookie;
}

/** The program's verdict as people read it. */
export function verdictText(v: Verdict): string {
  if (v.verdict === 'drop') return 'SK_DROP (refused)';
  if (v.reuseport) return 'SK_PASS with a socket of an SO_REUSEPORT group (the kernel does not say which member when asked this way)';
  return v.cookie === null ? "SK_PASS without a socket (the kernel's normal lookup)" : `SK_PASS with socket ${v.cookie}`;
}
