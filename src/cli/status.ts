// Reading verbs: status, list, version. `version` must stay cheap, so the
// control plane is imported only by the verbs that open the dispatcher.
import type { DestinationStatus, GenerationRecord, Status } from '../dispatcher.js';
import type { ProgramVariant } from '../kernel.js';
import type { Protocol } from '../protocol.js';
import { type Env, withDispatcher } from './env.js';
import { formatAge, isoSecond } from '../duration.js';
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

/** What status says of each program variant (src/kernel.ts; docs/ARCHITECTURE.md has the details). */
const VARIANT_TEXT: Record<ProgramVariant, string> = {
  full: 'full: walks prefix lengths in bpf_loop',
  compat: 'compat: an unrolled walk, for kernels without bpf_loop',
};

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

/** A generation as status --json shows it. */
export interface GenerationJSON {
  number: number;
  /** ISO 8601 UTC */
  applied: string;
  /** 16 hex digits of SHA-256 over the set as a replace wrote it; null once bind or unbind changed it */
  digest: string | null;
  bindings: number;
}

export function generationJSON(g: GenerationRecord): GenerationJSON {
  return { number: g.number, applied: isoSecond(g.applied) ?? '', digest: g.digest, bindings: g.bindings };
}

/** One line of text for a generation. */
function generationText(g: GenerationJSON, at: Date, now: number): string {
  const digest = g.digest ?? (g.number === 1 && g.bindings === 0 ? 'none' : 'none, changed by bind or unbind since');
  return `generation ${g.number}, applied ${g.applied} (${formatAge(at, now)}), ${g.bindings} binding${g.bindings === 1 ? '' : 's'}, digest ${digest}`;
}

interface Snapshot {
  status: Status;
  generations: { inForce: GenerationRecord; previous: GenerationRecord | null };
  destinations: DestinationStatus[];
  rejects: RejectRow[];
}

/** What `status` reads, in one open of the dispatcher. Not loaded: writes {"loaded": false} for --json, then throws. */
async function snapshot(env: Env): Promise<Snapshot> {
  const { TubularError } = await import('../errors.js');
  try {
    const { rejectRows } = await import('./rejects.js');
    return await withDispatcher(env, true, (d) => ({
      status: d.status(), generations: d.generations(), destinations: d.destinations(), rejects: rejectRows(d.bindings(), d.rejectCounters()),
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
  const { inForce, previous } = snap.generations;
  const generations = { inForce: generationJSON(inForce), previous: previous && generationJSON(previous) };
  if (env.json) {
    writeJSON(env, {
      loaded: true, netns: s.netns, netnsInode: s.netnsInode, stateDir: s.stateDir, programId: s.programId,
      program: { id: s.programId, variant: s.programVariant }, linkId: s.linkId, attached: s.attached,
      layoutVersion: s.layoutVersion, bindings: s.bindings, destinations, rejects, generations,
    });
    return;
  }
  const now = Date.now();
  const id = (v: number | null): string => (v === null ? 'unknown (reading it needs root)' : String(v));
  const detached = s.attached === false ? ', detached: no traffic is steered (an unload was interrupted: run tubectl unload, then tubectl load)' : '';
  env.stdout.write(`dispatcher loaded in ${s.netns} (netns inode ${s.netnsInode})\n` +
    `  state:    ${s.stateDir} (layout ${s.layoutVersion})\n` +
    `  program:  ${id(s.programId)}${s.programVariant === null ? '' : ` (${VARIANT_TEXT[s.programVariant]})`}\n` +
    `  link:     ${id(s.linkId)}${detached}\n` +
    `  bindings: ${s.bindings}\n` +
    `  in force: ${generationText(generations.inForce, inForce.applied, now)}\n` +
    `  previous: ${previous && generations.previous ? `${generationText(generations.previous, previous.applied, now)}; tubectl rollback returns to it` : 'none'}\n\n` +
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
