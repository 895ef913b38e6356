// Reading verbs: status, list, version. `version` must stay cheap, so the
// control plane is imported only by the verbs that open the dispatcher.
import type { DestinationStatus, Status } from '../dispatcher.js';
import type { Protocol } from '../protocol.js';
import { type Env, withDispatcher } from './env.js';
import { UsageError } from './errors.js';
import { table, writeJSON } from './output.js';
import type { RejectRow } from './rejects.js';

/** The layout of pinned state this build reads and writes (see src/layout.ts). */
async function layoutVersion(): Promise<number> {
  return (await import('../layout.js')).LAYOUT_VERSION;
}

export async function version(env: Env): Promise<void> {
  const { version: versionInfo } = await import('./version-info.js');
  const doc = { ...versionInfo(), layoutVersion: await layoutVersion() };
  if (env.json) writeJSON(env, doc);
  else env.stdout.write(`tubectl ${doc.version} (node ${doc.node}, state layout ${doc.layoutVersion})\n`);
}

/** A destination as --json shows it: counters and the socket cookie as decimal strings. */
export interface DestinationJSON {
  label: string;
  domain: 'ipv4' | 'ipv6';
  protocol: Protocol;
  id: number;
  bindings: number;
  socket: string | null;
  lookups: string;
  misses: string;
  errors: string;
}

export interface RejectJSON {
  protocol: Protocol;
  prefix: string;
  port: number;
  rejected: string;
}

export function destinationJSON(d: DestinationStatus): DestinationJSON {
  return {
    label: d.label, domain: d.domain, protocol: d.protocol, id: d.id, bindings: d.bindings,
    socket: d.socket === null ? null : d.socket.toString(),
    lookups: d.lookups.toString(), misses: d.misses.toString(), errors: d.errors.toString(),
  };
}

function destinationsTable(list: readonly DestinationJSON[]): string {
  if (list.length === 0) return 'no destinations\n';
  return table(['label', 'domain', 'protocol', 'socket', 'bindings', 'lookups', 'misses', 'errors'],
    list.map((d) => [d.label, d.domain, d.protocol, d.socket ?? 'none', String(d.bindings), d.lookups, d.misses, d.errors]),
    [4, 5, 6, 7]);
}

interface Snapshot {
  status: Status;
  destinations: DestinationStatus[];
  rejects: RejectRow[];
}

/** What `status` reads, in one open of the dispatcher. Not loaded: writes {"loaded": false} for --json, then throws. */
async function snapshot(env: Env): Promise<Snapshot> {
  const { TubularError } = await import('../errors.js');
  try {
    const { rejectRows } = await import('./rejects.js');
    return await withDispatcher(env, true, (d) => ({
      status: d.status(), destinations: d.destinations(), rejects: rejectRows(d.bindings(), d.rejectCounters()),
    }));
  } catch (err) {
    if (env.json && err instanceof TubularError && err.code === 'ENOTLOADED') writeJSON(env, { loaded: false, netns: env.netns });
    throw err;
  }
}

export async function status(env: Env, label?: string): Promise<void> {
  if (label !== undefined) {
    const problem = (await import('../label.js')).labelProblem(label);
    if (problem) throw new UsageError(problem, 'status');
  }
  const snap = await snapshot(env);
  const destinations = snap.destinations.filter((d) => label === undefined || d.label === label).map(destinationJSON);
  const rejects: RejectJSON[] = snap.rejects.map((r) => ({ ...r, rejected: r.rejected.toString() }));
  const s = snap.status;
  if (env.json) {
    writeJSON(env, {
      loaded: true, netns: s.netns, netnsInode: s.netnsInode, stateDir: s.stateDir, programId: s.programId, linkId: s.linkId,
      layoutVersion: s.layoutVersion, bindings: s.bindings, destinations, rejects,
    });
    return;
  }
  const id = (v: number | null): string => (v === null ? 'unknown (reading it needs root)' : String(v));
  env.stdout.write(`dispatcher loaded in ${s.netns} (netns inode ${s.netnsInode})\n` +
    `  state:    ${s.stateDir} (layout ${s.layoutVersion})\n` +
    `  program:  ${id(s.programId)}\n` +
    `  link:     ${id(s.linkId)}\n` +
    `  bindings: ${s.bindings}\n\n` +
    `Destinations${label === undefined ? '' : ` of ${label}`}:\n${destinationsTable(destinations)}\n` +
    'Reject bindings:\n' +
    (rejects.length === 0 ? 'none\n'
      : table(['protocol', 'prefix', 'port', 'rejected'], rejects.map((r) => [r.protocol, r.prefix, String(r.port), r.rejected]), [2, 3])));
}

/** tubular's old name: the destinations and their sockets. */
export async function list(env: Env): Promise<void> {
  const destinations = (await withDispatcher(env, true, (d) => d.destinations())).map(destinationJSON);
  if (env.json) writeJSON(env, { destinations });
  else env.stdout.write(destinationsTable(destinations));
}
