// What the reading verbs see: bindings, destinations, counters, status.
// Readers take no lock. The binding set is opened by the id the data plane
// uses (binding-store.ts); labels are read after the set, and read again if
// a destination the set uses went away in between.
import type { BindingStats } from './binding-stats.js';
import { type PackedBindings, destinationSlots, packedFromDump, valueAction, valueStat } from './bindingset.js';
import { type DestinationEntry, destinationName } from './destination.js';
import { type DestinationTable, bindingCounts, referencedIds, roomProblem } from './destination-table.js';
import { isSystemError } from './errors.js';
import type { Generations } from './generations.js';
import { ACTION_REJECT, BINDING_KEY_SIZE, LAYOUT_VERSION, PIN, decodeBindingKey } from './layout.js';
import { type ProgramVariant, variantOfProgram } from './kernel.js';
import { type LinkFacts, linkFacts, runningProgramPin, withPinned } from './links.js';
import type { Native } from './native.js';
import { formatPrefix, type Prefix } from './prefix.js';
import type { Protocol } from './protocol.js';
import type { Location, StateDir } from './statedir.js';

export interface DestinationStatus extends DestinationEntry {
  /** how many bindings of the set in force point here */
  bindings: number;
  /** the cookie of the first registered socket, or null when none is registered */
  socket: bigint | null;
  /** the cookies of every registered socket (the members of one SO_REUSEPORT group) */
  sockets: bigint[];
  lookups: bigint;
  misses: bigint;
  errors: bigint;
}

/** A destination as a register sees it: who holds it and whether a socket is registered. */
export interface DestinationRegistration extends DestinationEntry {
  registered: boolean;
}

export interface RejectCounter {
  protocol: Protocol;
  prefix: Prefix;
  port: number;
  rejected: bigint;
}

export interface Status {
  netns: string;
  netnsInode: number;
  stateDir: string;
  programId: number | null;
  /** which program runs: full or compat (src/kernel.ts); null when reading it needs root, or for a program of no known variant */
  programVariant: ProgramVariant | null;
  linkId: number | null;
  /** whether the link still attaches the program to the namespace (null: reading it needs root) */
  attached: boolean | null;
  layoutVersion: number;
  bindings: number;
}

/** What get() returns, or null when reading it needs root. */
function privileged<T>(get: () => T): T | null {
  try {
    return get();
  } catch (err) {
    if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) return null;
    throw err;
  }
}

export class ReadModel {
  constructor(
    private readonly sys: Native,
    private readonly loc: Location,
    private readonly dir: StateDir,
    private readonly gens: Generations,
    private readonly dests: DestinationTable,
    private readonly stats: BindingStats,
  ) {}

  /** The set of a generation slot (default: the one in force). */
  packedBindings(slot?: number): PackedBindings {
    for (let attempt = 0; ; attempt++) {
      const { keys, values, count } = this.gens.withSet((s) => s.dump(), slot);
      const labels = this.dests.labels();
      const used = referencedIds(values, count);
      const missing = used.some((u, id) => u === 1 && !labels.has(id));
      if (!missing || attempt >= 3) return packedFromDump(keys, values, count, (id) => labels.get(id));
    }
  }

  /**
   * Why a replace with `next` would be refused for lack of destination room,
   * as the replace itself judges it (undefined: it fits).
   */
  destinationRoom(next: PackedBindings): string | undefined {
    const known = this.dests.entries();
    const names = new Set(known.map(destinationName));
    const missing = destinationSlots(next).slots.filter((d) => !names.has(destinationName(d))).length;
    const used = (): Uint8Array => {
      const { values, count } = this.gens.withSet((s) => s.dump());
      return referencedIds(values, count);
    };
    return roomProblem(missing, this.dests.room(missing, used, known).free);
  }

  destinations(): DestinationStatus[] {
    const { values, count } = this.gens.withSet((s) => s.dump());
    const counts = bindingCounts(values, count);
    const metrics = this.dests.metrics();
    return this.dests.entries().map((d) => {
      const sockets = this.dests.sockets(d.id);
      const [lookups, misses, errors] = metrics(d.id);
      return { ...d, bindings: counts[d.id], socket: sockets[0] ?? null, sockets, lookups, misses, errors };
    }).sort((a, b) => a.label.localeCompare(b.label) || a.domain.localeCompare(b.domain) || a.protocol.localeCompare(b.protocol));
  }

  /**
   * The destinations with their owner and whether a socket is registered:
   * no counters, no binding set. Only the destinations `only` accepts are
   * looked up in the socket slots (up to 8 lookups each); the others say
   * registered: false.
   */
  registrations(only: (d: DestinationEntry) => boolean = () => true): DestinationRegistration[] {
    return this.dests.entries().map((d) => ({ ...d, registered: only(d) && this.dests.hasSocket(d.id) }));
  }

  /** Refusals per reject binding of the set in force: its hits. */
  rejectCounters(): RejectCounter[] {
    const { keys, values, count } = this.gens.withSet((s) => s.dump());
    const rejects: number[] = [];
    for (let i = 0; i < count; i++) if (valueAction(values, i) === ACTION_REJECT) rejects.push(i);
    const traffic = this.stats.many(Uint32Array.from(rejects, (i) => valueStat(values, i)));
    const out: RejectCounter[] = rejects.map((i, n) => {
      const k = decodeBindingKey(keys, i * BINDING_KEY_SIZE);
      return { protocol: k.protocol === 6 ? 'tcp' : 'udp', prefix: { family: k.family, bytes: k.addr, length: k.prefixlen }, port: k.port, rejected: traffic[n].hits };
    });
    return out.sort((a, b) => formatPrefix(a.prefix).localeCompare(formatPrefix(b.prefix)) || a.port - b.port);
  }

  /** The id and variant of the program the link runs; null when reading it needs root (or there is no pin). */
  program(): { id: number; variant: ProgramVariant | null } | null {
    return this.programAt(this.running()?.pin ?? PIN.program);
  }

  /** The pin of the program the link runs (see runningProgramPin) and whether the link is attached; null when reading them needs root. */
  running(): { pin: string; attached: boolean } | null {
    const link = privileged(() => linkFacts(this.sys, this.dir.at(PIN.link), this.loc.ino));
    return link === null ? null : { pin: this.runningPin(link), attached: link?.attached ?? false };
  }

  private runningPin(link: LinkFacts | undefined | null): string {
    return privileged(() => runningProgramPin(this.sys, (name) => this.dir.at(name), link ?? undefined)) ?? PIN.program;
  }

  private programAt(pin: string): { id: number; variant: ProgramVariant | null } | null {
    return privileged(() => withPinned(this.sys, this.dir.at(pin), (fd) => {
      const info = this.sys.progInfo(fd);
      return { id: info.id, variant: variantOfProgram(info.name) };
    }) ?? null);
  }

  status(): Status {
    const bindings = this.gens.withSet((s) => s.dump().count);
    const link = privileged(() => linkFacts(this.sys, this.dir.at(PIN.link), this.loc.ino));
    const program = this.programAt(this.runningPin(link));
    return {
      netns: this.loc.netns,
      netnsInode: this.loc.ino,
      stateDir: this.loc.dir,
      programId: program?.id ?? null,
      programVariant: program?.variant ?? null,
      linkId: link?.id ?? null,
      attached: link === null ? null : link?.attached ?? false,
      layoutVersion: LAYOUT_VERSION,
      bindings,
    };
  }
}
