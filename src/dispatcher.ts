// The dispatcher of one network namespace: its program, its link and the
// pinned maps that hold its state, under <bpffs>/<netns inode>_dispatcher/.
//
// Every method is synchronous: each is a handful of bpf() syscalls. Writers
// hold the writers' lock (statedir.ts) for one method, repair what a dead
// predecessor left (recovery.ts) and mark their intent while they change
// several maps, so the next writer recomputes what a crash may have left
// inconsistent. Readers take no lock. Nothing here depends on a process of
// ours staying alive: the pins are the state.
import { closeSync, openSync, renameSync, unlinkSync } from 'node:fs';
import { type Action, type Binding, bindingId, sameTarget, unbindArgs } from './binding.js';
import { setDigest } from './digest.js';
import { BindingStats, type Traffic, allocateStats, markStats } from './binding-stats.js';
import { Generations, pendingPin, pinAt } from './generations.js';
import {
  type PackedBindings, bindingAt, bindingKey, bindingValue, destinationOf, destinationSlots, diffBindingSets,
  indexBindingSet, packBindingSet, packedFromDump, precedenceOrder, unpackBindings, valueDestination, valueStat, valuesWithStats,
} from './bindingset.js';
import { BpfMap, type Dump, mismatch } from './bpfmap.js';
import { type DestinationEntry, type DestinationKey, destinationName } from './destination.js';
import { DestinationTable, referencedIds, roomProblem } from './destination-table.js';
import { perfmonCapable } from './capabilities.js';
import { TubularError, context, isSystemError } from './errors.js';
import { BLOCKS_FILTER, type FilterSpec, LENGTHS_FILTER, filterPatch, setFilterBit } from './filters.js';
import {
  ACTION_STEER, BINDING_KEY_SIZE, BINDING_VALUE_SIZE, BPF_MAP_TYPE_HASH, BPF_PROG_TYPE_SK_LOOKUP, DESTINATION_KEY_SIZE, DESTINATION_VALUE_SIZE,
  GENERATIONS, INNER_KINDS, JOURNAL_CAPACITY, LAYOUT_VERSION, MAP_SPECS, MAX_BINDINGS, MAX_DESTINATIONS, META_INTENT, META_JOURNAL, META_MAGIC, META_NEXT_EPOCH, META_NEXT_STAT, META_STAMP,
  META_UNSETTLED, META_WRITES, type MapName, NO_DESTINATION, OBJECT_MAPS, PIN, SOCKET_SLOTS, assertLittleEndian, innerPin, metaGeneration, readU64, setCapacity, u32, writeU64,
} from './layout.js';
import { DEFAULT_LOCK_TIMEOUT_MS } from './lock.js';
import { type LoadedObject, type Native, type SocketInfo, native } from './native.js';
import { PROGRAMS, type ProgramChoice, type ProgramDecision, type ProgramVariant, programFor, variantOfProgram } from './kernel.js';
import { programObjectPath } from './paths.js';
import { planRecovery, type RecoveryFacts } from './recovery.js';
import { type SourceSample, clearSources, readSources } from './sources.js';
import { type SetChange, compareSets } from './setdiff.js';
import { type PackedSet, type StandbyPatch, patchable, standbyPatch } from './standby.js';
import { type Changes, Journal, changedKeys, patchFromJournal } from './journal.js';
import type { KeyIndex } from './keyindex.js';
import { type DestinationRegistration, type DestinationStatus, ReadModel, type RejectCounter, type Status } from './readmodel.js';
import { checkNamespace, registrableGroup } from './registration.js';
import { reconcile } from './reconcile.js';
import { waitAll } from './waits.js';
import { type LinkFacts, PENDING_PROGRAM, type SkLookupLink, linkFacts, pinnedProgramId, skLookupLinks, withPinned } from './links.js';
import { type Location, StateDir, createStateDir, detachLink, locate, removeStaleFor } from './statedir.js';

export interface DispatcherOptions {
  /** network namespace path; default: the caller's (/proc/self/ns/net) */
  netns?: string;
  /** bpffs mount; default /sys/fs/bpf */
  bpffs?: string;
  /** how long a writer waits for another writer (default 10 s; 0: fail at once with EBUSY) */
  lockTimeoutMs?: number;
  /** the syscall layer; tests may pass their own */
  sys?: Native;
}

export interface CreateOptions extends DispatcherOptions {
  /** gid that may read the state (status, bindings, metrics) without root */
  group?: number;
  /** which program: full, compat, or auto (the default: full when the kernel has what it needs) */
  program?: ProgramChoice;
}

export interface OpenOptions extends DispatcherOptions {
  readOnly?: boolean;
}




export type { DestinationRegistration, DestinationStatus, RejectCounter, Status, SetChange, SourceSample, Traffic };

export interface BindResult {
  /** the binding this one replaced (same protocol, prefix and port) */
  replaced?: Binding;
  /** the traffic of the binding it replaced */
  replacedTraffic?: Traffic;
}

export interface ReplaceResult {
  added: number;
  removed: number;
  changed: number;
  unchanged: number;
  /** the generation now in force (unchanged when the set was) */
  generation: number;
}

/** A set as a parser gives it to a replace. */
export interface ParsedSet {
  set: PackedBindings;
  /** the set's keys, indexed, when the parser made one (a key twice is refused either way) */
  index?: KeyIndex;
  /** false: loading the same bytes again must parse them again (parsing them told the operator something) */
  recognisable?: boolean;
  /** each binding's destination, when the parser worked them out (as destinationSlots) */
  slots?: { slotOf: Int32Array; slots: DestinationKey[] };
  /** the bindings file it was read from: the digest of the bytes parsed, and the file's size in bytes (recorded, to recognise the file) */
  file?: { digest: bigint; size: number };
}

/** A bindings file for replaceBindingsFile. */
export interface BindingsSource {
  /** the file's size in bytes */
  size: number;
  /** 64 bits of SHA-256 over the file's bytes, never 0 (fileDigest in digest.ts): asked only of a file the size of the one the set in force was read from */
  digest(): bigint;
  /** its set (with `file`), or undefined when it cannot be parsed here (see replaceBindingsFile) */
  parse(): ParsedSet | undefined;
}

type StandbySet = PackedSet & { index: KeyIndex };

/** A generation: a binding set that a replace (or the load) put in force. */
export interface GenerationRecord {
  /** 1 for the set of the load, then one more for each replace */
  number: number;
  /** when it was put in force */
  applied: Date;
  /** 16 hex digits of SHA-256 over the set as a replace wrote it; null once bind or unbind changed it */
  digest: string | null;
  bindings: number;
}

export interface Registration extends DestinationKey {
  id: number;
  /** the cookie of the (first) socket registered */
  cookie: bigint;
  cookies: bigint[];
  /** the cookie of the (first) socket this registration replaced */
  replaced: bigint | null;
}

/**
 * Called under the writers' lock with what a change would do, before it
 * does anything: throwing refuses the change (the guard of load-bindings,
 * unbind and rollback). `current` carries stat indices; `traffic` reads them.
 */
export type ChangeCheck = (current: PackedBindings, next: PackedBindings, change: SetChange, traffic: (stats: Uint32Array) => Traffic[]) => void;

export interface RegisterOptions {
  /** the uid registering through tubulard (null or absent: root's tools) */
  owner?: number | null;
  /** what socketInfo() said of each fd just before, in order (tubulard inspects them first, to check and group them); read when absent */
  infos?: readonly SocketInfo[];
}

/** Destination ids kept for root: registrations by other users never take the last of them. */
export const ROOT_RESERVED_DESTINATIONS = 64;

const ALL_MAPS: readonly MapName[] = [...OBJECT_MAPS, 'destinations', 'journal'];
const metaValue = (): bigint => (BigInt(META_MAGIC) << 32n) | BigInt(LAYOUT_VERSION);

type Maps = Record<MapName, BpfMap>;

/**
 * Runs parse while both maps (or the first) are dumped on threads of
 * their own, and waits for the dumps (also when parse throws).
 */
function whileDumping(a: BpfMap, b: BpfMap | undefined, parse: () => ParsedSet | undefined): { parsed: ParsedSet | undefined; current: Dump; standby?: Dump } {
  const waits: Array<() => Dump> = [a.startDump()];
  let parsed: ParsedSet | undefined;
  let failure: { err: unknown } | undefined;
  try {
    if (b) waits.push(b.startDump());
    parsed = parse();
  } catch (err) {
    failure = { err };
  }
  // Every dump is waited for before its map can be closed.
  const dumps = waits.map((wait) => {
    try {
      return wait();
    } catch (err) {
      failure ??= { err };
      return undefined;
    }
  });
  if (failure) throw failure.err;
  return { parsed, current: dumps[0]!, standby: dumps[1] };
}

export class Dispatcher {
  readonly netns: string;
  readonly netnsInode: number;
  readonly stateDir: string;
  readonly readOnly: boolean;
  private readonly dests: DestinationTable;
  private readonly gens: Generations;
  private readonly stats: BindingStats;
  private readonly reader: ReadModel;
  private readonly journal: Journal;
  private closed = false;
  /** META_WRITES as this handle's last write left it, when that write completed; undefined: unknown */
  private lastWrite: bigint | undefined;
  /** inside a write: writes made now are part of it (see batch) */
  private writing = false;
  /** the write's check refused it before it changed anything (see refusable) */
  private refused = false;
  /** Set by create(): which program it loaded, and why. */
  created?: ProgramDecision;
  /** Set by create(): the sk_lookup links of the namespace besides its own (another dispatcher, say); undefined when not known (no CAP_SYS_ADMIN). */
  otherLinks?: SkLookupLink[];

  private constructor(
    private readonly sys: Native,
    private readonly loc: Location,
    private readonly dir: StateDir,
    private readonly maps: Maps,
    readOnly: boolean,
    private readonly lockTimeoutMs: number,
  ) {
    this.netns = loc.netns;
    this.netnsInode = loc.ino;
    this.stateDir = loc.dir;
    this.readOnly = readOnly;
    this.dests = new DestinationTable(maps);
    this.gens = new Generations(sys, dir, maps, readOnly);
    this.stats = new BindingStats(maps.binding_stats);
    this.reader = new ReadModel(sys, loc, dir, this.gens, this.dests, this.stats);
    this.journal = new Journal(maps.journal, { get: () => this.getMeta(META_JOURNAL) === 1n, set: (whole) => this.setMeta(META_JOURNAL, whole ? 1n : 0n) });
  }

  /** Whether a dispatcher is loaded in the namespace. */
  static isLoaded(opts: DispatcherOptions = {}): boolean {
    return StateDir.exists(locate(opts));
  }

  /**
   * Loads the program, creates and pins its maps, and attaches it to the
   * namespace. Built in a temporary directory and renamed into place, so a
   * failure at any step leaves nothing behind. The empty set of the load is
   * generation 1.
   */
  static create(opts: CreateOptions = {}): Dispatcher {
    assertLittleEndian();
    const sys = opts.sys ?? native();
    const loc = locate(opts);
    const choice = opts.program ?? 'auto';
    let program = programFor(sys, choice);
    let ownLink = 0;
    createStateDir(loc, opts.group, sys, (at) => {
      const fds: number[] = [];
      const keep = (fd: number): number => { fds.push(fd); return fd; };
      try {
        const pin = (fd: number, name: string): void => pinAt(sys, fd, at(name), opts.group);
        const loaded = loadDecided(sys, choice, program);
        const obj = loaded.obj;
        program = loaded.decision;
        keep(obj.progFd);
        Object.values(obj.maps).forEach(keep);
        const destinations = keep(context('create the destinations map', () =>
          sys.mapCreate(BPF_MAP_TYPE_HASH, 'destinations', DESTINATION_KEY_SIZE, DESTINATION_VALUE_SIZE, MAX_DESTINATIONS, 0)));
        const journal = keep(context('create the journal', () =>
          sys.mapCreate(BPF_MAP_TYPE_HASH, 'journal', BINDING_KEY_SIZE, MAP_SPECS.journal.valueSize, JOURNAL_CAPACITY, 0)));
        for (let slot = 0; slot < GENERATIONS; slot++) {
          const set = keep(context('create a binding set', () =>
            sys.mapCreate(BPF_MAP_TYPE_HASH, 'binding_set', BINDING_KEY_SIZE, BINDING_VALUE_SIZE, 1024, 0)));
          const lengths = keep(context('create a filter', () => sys.mapCreate(2, 'lengths', 4, 32, 2 << 16, 0)));
          const blocks = keep(context('create a filter', () => sys.mapCreate(2, 'blocks', 4, 8, 1 << 20, 0)));
          sys.mapUpdate(obj.maps.bindings, u32(slot), u32(set), 0);
          sys.mapUpdate(obj.maps.lengths, u32(slot), u32(lengths), 0);
          sys.mapUpdate(obj.maps.blocks, u32(slot), u32(blocks), 0);
          pin(set, innerPin('binding_set', slot));
          pin(lengths, innerPin('lengths', slot));
          pin(blocks, innerPin('blocks', slot));
        }
        const word = (v: bigint): Buffer => { const b = Buffer.alloc(8); writeU64(b, v, 0); return b; };
        sys.mapUpdate(obj.maps.meta, u32(META_STAMP), word(metaValue()), 0);
        sys.mapUpdate(obj.maps.meta, u32(metaGeneration(0).number), word(1n), 0);
        sys.mapUpdate(obj.maps.meta, u32(metaGeneration(0).applied), word(BigInt(Date.now())), 0);
        // Both sets are empty: the journal, empty, is whole.
        sys.mapUpdate(obj.maps.meta, u32(META_JOURNAL), word(1n), 0);
        for (const name of OBJECT_MAPS) pin(obj.maps[name], name);
        pin(destinations, PIN.destinations);
        pin(journal, PIN.journal);
        pin(obj.progFd, PIN.program);
        const nsFd = context(`open network namespace ${loc.netns}`, () => openSync(loc.netns, 'r'));
        try {
          const link = keep(context(`attach to network namespace ${loc.netns}`, () => sys.linkCreateNetns(obj.progFd, nsFd)));
          ownLink = sys.linkInfo(link).id;
          pin(link, PIN.link);
        } finally {
          closeSync(nsFd);
        }
      } finally {
        for (const fd of fds) sys.close(fd);
      }
    });
    const d = Dispatcher.open(opts);
    d.created = program;
    // Only a warning rides on this: no failure of it may fail a load that is done.
    try {
      d.otherLinks = skLookupLinks(sys, loc.ino)?.filter((l) => l.id !== ownLink);
    } catch {
      d.otherLinks = undefined;
    }
    return d;
  }

  /** Opens the pinned state of a loaded dispatcher, checking every map against this version's layout. */
  static open(opts: OpenOptions = {}): Dispatcher {
    const sys = opts.sys ?? native();
    const loc = locate(opts);
    const readOnly = opts.readOnly ?? false;
    const dir = StateDir.open(loc);
    const maps: Partial<Maps> = {};
    try {
      // The stamp first: state of another layout gets that message, not a size mismatch.
      const meta = BpfMap.open(sys, dir.at(PIN.meta), PIN.meta, MAP_SPECS.meta, { readOnly, upTo: true });
      maps.meta = meta;
      const stamp = readU64(meta.lookup(u32(META_STAMP)) ?? Buffer.alloc(8), 0);
      if (stamp !== metaValue() || mismatch(meta.info, MAP_SPECS.meta)) {
        const version = stamp >> 32n === BigInt(META_MAGIC) ? Number(stamp & 0xffffffffn) : 'unknown';
        throw new TubularError('EINCOMPAT', `the dispatcher in ${loc.dir} has state layout ${version}, this tubectl understands ${LAYOUT_VERSION}: ` +
          'use the matching version, or tubectl unload and load again (bindings and registrations are lost)');
      }
      for (const name of ALL_MAPS) {
        if (name !== 'meta') maps[name] = BpfMap.open(sys, dir.at(name), name, MAP_SPECS[name], { readOnly });
      }
    } catch (err) {
      for (const m of Object.values(maps)) m.close();
      dir.close();
      throw err;
    }
    return new Dispatcher(sys, loc, dir, maps as Maps, readOnly, opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS);
  }

  /**
   * Detaches the program, then removes all state: bindings and
   * registrations are gone. Also finishes an unload that died part-way.
   * Returns how many leftovers of interrupted creates and unloads it removed.
   */
  static unload(opts: DispatcherOptions = {}): { leftovers: number } {
    const sys = opts.sys ?? native();
    const loc = locate(opts);
    const leftovers = removeStaleFor(loc, sys);
    let dir: StateDir;
    try {
      dir = StateDir.open(loc);
    } catch (err) {
      if (leftovers > 0 && err instanceof TubularError && err.code === 'ENOTLOADED') return { leftovers };
      throw err;
    }
    try {
      dir.withLock(opts.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, () => {
        // Detach first: from here on no connection is steered, whatever happens next.
        context('detach the program', () => detachLink(dir.at(PIN.link), sys));
        dir.retire(sys);
      });
    } finally {
      dir.close();
    }
    return { leftovers };
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const m of Object.values(this.maps)) m.close();
    this.dir.close();
  }

  private check(): void {
    if (this.closed) throw new Error('the dispatcher is closed');
  }

  private write<T>(fn: () => T): T {
    this.check();
    if (this.writing) return fn(); // part of a batch: under the lock, checked and counted already
    if (this.readOnly) throw new TubularError('EPERM', 'the dispatcher was opened read-only: writing needs root');
    assertLittleEndian();
    return this.dir.withLock(this.lockTimeoutMs, () => {
      // The count of writes begun tells whether any writer took the lock
      // since this handle's last write completed: only then can a dead
      // writer have left something to repair. A writer counts itself
      // before it changes anything, so one that dies part-way is counted.
      const writes = this.getMeta(META_WRITES);
      const ownWasLast = this.lastWrite === writes;
      this.lastWrite = undefined;
      this.recover(ownWasLast);
      const mine = BigInt.asUintN(64, writes + 1n);
      this.setMeta(META_WRITES, mine);
      this.writing = true;
      this.refused = false;
      let result: T;
      try {
        result = fn();
      } catch (err) {
        // Refused before changing anything (see refusable): the count goes
        // back too, so that the state is byte for byte what it was, and this
        // handle, having checked it, knows that no writer came since.
        if (this.refused) {
          this.setMeta(META_WRITES, writes);
          this.lastWrite = writes;
        }
        throw err;
      } finally {
        this.writing = false;
      }
      this.lastWrite = mine;
      return result;
    });
  }

  /**
   * Runs fn, whose writes (registerSocket, unregisterSocket...) then share
   * one turn of the writers' lock, one recovery check and one count:
   * tubulard makes the writes of requests that arrive together this way.
   * Each write is whole on its own (a failed one is reconciled as usual);
   * catch each one's error in fn to go on with the next.
   */
  batch<T>(fn: () => T): T {
    return this.write(() => {
      try {
        return fn();
      } finally {
        // A write of the batch may have changed state before another was refused: the count stays.
        this.refused = false;
      }
    });
  }

  /**
   * Runs a caller's check of a change (the guard), which comes before the
   * change writes anything: when it throws, write() undoes its count.
   */
  private refusable(check: () => void): void {
    try {
      check();
    } catch (err) {
      this.refused = true;
      throw err;
    }
  }

  /**
   * Runs a change of several maps with the intent mark set: if this process
   * dies inside, the next writer recomputes everything derived from the
   * binding sets. A change that fails is reconciled at once.
   */
  private changing<T>(fn: () => T): T {
    this.setMeta(META_INTENT, 1n);
    let result: T;
    try {
      result = fn();
    } catch (err) {
      try {
        this.reconcile();
        this.setMeta(META_INTENT, 0n);
      } catch { /* the mark stays: the next writer reconciles */ }
      throw err;
    }
    this.setMeta(META_INTENT, 0n);
    return result;
  }

  private getMeta(slot: number): bigint {
    return readU64(this.maps.meta.lookup(u32(slot)) ?? Buffer.alloc(8), 0);
  }

  private setMeta(slot: number, v: bigint): void {
    const b = Buffer.alloc(8);
    writeU64(b, v, 0);
    this.maps.meta.update(u32(slot), b);
  }

  private link(): LinkFacts | undefined {
    return linkFacts(this.sys, this.dir.at(PIN.link), this.loc.ino);
  }

  private pinnedProgram(name: string): number | undefined {
    return pinnedProgramId(this.sys, this.dir.at(name));
  }

  /**
   * Repairs what a writer that died part-way left: see recovery.ts. When
   * this handle's own write was the last (`ownWasLast`), no pin or slot
   * can have changed since it completed, and only the facts that a writer
   * of another version, or an unload (neither counts its writes), could
   * have left are read: the intent mark and the link. Anything else there
   * sends it through the whole check.
   */
  private recover(ownWasLast = false): void {
    const link = this.link();
    if (ownWasLast && link?.attached && this.getMeta(META_INTENT) === 0n) return;
    // Pending pins are made only by writers, under the lock this one holds:
    // one listing of the directory tells which exist, and only those are opened.
    const names = new Set(this.dir.names());
    const facts: RecoveryFacts = {
      inner: INNER_KINDS.flatMap((kind) => Array.from({ length: GENERATIONS }, (_, slot) => ({
        name: innerPin(kind, slot),
        inSlot: this.gens.slotId(kind, slot),
        pinned: this.gens.pinnedId(innerPin(kind, slot)),
        pending: names.has(pendingPin(kind, slot)) ? this.gens.pinnedId(pendingPin(kind, slot)) : undefined,
      }))),
      linkProgram: link?.progId,
      linkAttached: link?.attached ?? false,
      pendingProgram: names.has(PENDING_PROGRAM) ? this.pinnedProgram(PENDING_PROGRAM) : undefined,
      intent: this.getMeta(META_INTENT) !== 0n,
    };
    const plan = planRecovery(facts);
    if (plan.halfUnloaded) throw this.detached();
    for (const step of plan.steps) {
      switch (step.do) {
        case 'adopt': renameSync(this.dir.at(`${step.name}_new`), this.dir.at(step.name)); break;
        case 'drop': unlinkSync(this.dir.at(`${step.name}_new`)); break;
        case 'adopt-program': renameSync(this.dir.at(PENDING_PROGRAM), this.dir.at(PIN.program)); break;
        case 'drop-program': unlinkSync(this.dir.at(PENDING_PROGRAM)); break;
        case 'reconcile': this.reconcile(); this.setMeta(META_INTENT, 0n); break;
      }
    }
    if (plan.unpinned.length > 0) {
      throw new TubularError('EINCOMPAT', `${plan.unpinned.join(', ')} in ${this.loc.dir} ${plan.unpinned.length > 1 ? 'are' : 'is'} not pinned, ` +
        'and this tubectl cannot repair that: tubectl unload and load again (bindings and registrations are lost)');
    }
  }

  /**
   * Recomputes what is derived from the binding sets after a writer died
   * part-way (see reconcile.ts), and gives the generation in force a record
   * if the writer died between putting it in force and recording it.
   */
  private reconcile(): void {
    // A writer may have died part-way through a flip, or before anyone waited for it.
    this.gens.settle();
    this.setMeta(META_UNSETTLED, 0n);
    const g = this.gens.inForce();
    this.journal.invalidate();
    const { nextStat } = reconcile(this.gens, this.dests);
    this.setMeta(META_NEXT_STAT, BigInt(nextStat));
    if (this.getMeta(metaGeneration(g).number) === 0n) {
      const other = this.getMeta(metaGeneration(1 - g).number);
      this.setMeta(metaGeneration(g).digest, 0n);
      this.setMeta(metaGeneration(g).file, 0n);
      this.setMeta(metaGeneration(g).number, other + 1n);
      this.setMeta(metaGeneration(g).applied, BigInt(Date.now()));
    }
  }

  /**
   * Puts generation `slot` in force without waiting for the programs still
   * running with the other one: meta says so, and the next writer to
   * rewrite the standby waits first (see replace), as does recovery.
   */
  private flip(slot: number): void {
    this.setMeta(META_UNSETTLED, 1n);
    this.gens.flip(slot);
  }

  /** The two filters of a generation, each opened with its map. */
  private withFilters<T>(slot: number, fn: (filters: Array<{ spec: FilterSpec; map: BpfMap }>) => T): T {
    return this.gens.with('lengths', slot, (lengths) => this.gens.with('blocks', slot, (blocks) =>
      fn([{ spec: LENGTHS_FILTER, map: lengths }, { spec: BLOCKS_FILTER, map: blocks }])));
  }

  /** Destination ids and stat indices used by the binding sets of both generations (`known`: dumps by slot). */
  private inUse(known: ReadonlyMap<number, { values: Buffer; count: number }> = new Map()): { ids: Uint8Array; stats: Uint8Array } {
    const ids = new Uint8Array(MAX_DESTINATIONS);
    const stats = new Uint8Array(MAX_BINDINGS);
    for (let slot = 0; slot < GENERATIONS; slot++) {
      // A dump the caller already holds (under the lock, so still true) is not read again.
      const { values, count } = known.get(slot) ?? this.gens.withSet((s) => s.dump(), slot);
      referencedIds(values, count, ids);
      markStats(stats, values, count);
    }
    return { ids, stats };
  }

  /**
   * The destination for d, created when missing. A full table is first
   * cleared of destinations neither generation uses; `reserve` ids stay
   * free for root.
   */
  private ensureDestination(d: DestinationKey, reserve = 0): DestinationEntry {
    const existing = this.dests.lookup(d);
    if (existing) return existing;
    let used = this.dests.ids();
    if (used.count + 1 > MAX_DESTINATIONS - reserve) {
      this.dests.collect(this.inUse().ids);
      used = this.dests.ids();
    }
    if (used.count + 1 > MAX_DESTINATIONS - reserve) {
      throw new TubularError('ENOSPC', reserve > 0
        ? `the last ${reserve} of ${MAX_DESTINATIONS} destinations are kept for root and ${used.count} are in use: ask root to unregister labels no longer needed`
        : `all ${MAX_DESTINATIONS} destinations are in use: unbind labels or unregister sockets you no longer need`);
    }
    return this.dests.createIn([d], used)[0];
  }

  /**
   * A stat index no binding of either generation uses: the next free one
   * (meta), taken. When every index has been given out since the last
   * replace, the lowest one no binding uses, from both sets.
   */
  private freeStat(): number {
    const next = Number(this.getMeta(META_NEXT_STAT));
    if (next < MAX_BINDINGS) {
      this.setMeta(META_NEXT_STAT, BigInt(next + 1));
      return next;
    }
    return allocateStats(this.inUse().stats, 1)[0];
  }

  /** An epoch no binding_stat has had: meta's next one, taken (it only ever grows; 0 is the epoch of entries never given). */
  private nextEpoch(): number {
    const epoch = Math.max(1, Number(this.getMeta(META_NEXT_EPOCH) % 0xffffffffn));
    this.setMeta(META_NEXT_EPOCH, BigInt(epoch + 1));
    return epoch;
  }

  /** A change other than a replace to the set in force: it no longer matches its generation's digest. */
  private touched(slot: number): void {
    this.setMeta(metaGeneration(slot).digest, 0n);
  }

  // ---- bindings ----

  /**
   * Adds a binding to the set in force, or replaces the one with the same
   * protocol, prefix and port (which keeps its counters). The previous
   * generation is not changed: a rollback undoes this.
   */
  bind(b: Binding): BindResult {
    return this.write(() => {
      const g = this.gens.inForce();
      return this.gens.withSet((set) => {
        const key = bindingKey(b);
        const old = set.lookup(key, Buffer.alloc(BINDING_VALUE_SIZE));
        const labels = old ? this.dests.labels() : undefined;
        const replaced = old ? unpackBindings(key, old, 1, (id) => labels!.get(id))[0] : undefined;
        if (replaced && sameTarget(replaced, b)) return { replaced };
        const dest = destinationOf(b);
        return this.changing(() => {
          this.touched(g);
          this.journal.note(key);
          const entry = dest ? this.ensureDestination(dest) : undefined;
          let stat: number;
          if (old) {
            stat = valueStat(old, 0);
          } else {
            stat = this.freeStat();
            this.stats.zero(Uint32Array.of(stat), this.nextEpoch());
          }
          // Make the length and the block bit visible before the binding, so
          // the program never skips a lookup that would match.
          this.withFilters(g, (filters) => {
            for (const f of filters) {
              const at = f.spec.at(key, 0);
              if (at >= 0) setFilterBit(f.map.fd, f.spec, at, true, this.sys);
            }
          });
          this.insert(g, set, key, bindingValue(entry ? entry.id : NO_DESTINATION, b.action, stat));
          if (old && valueDestination(old, 0) !== entry?.id) this.dests.collect(this.inUse().ids);
          return replaced ? { replaced, replacedTraffic: this.stats.one(stat) } : {};
        });
      }, g);
    });
  }

  /** Inserts into a set; a full set is first rebuilt twice as large, and put in its slot. */
  private insert(slot: number, set: BpfMap, key: Buffer, value: Buffer): void {
    try {
      set.update(key, value);
      return;
    } catch (err) {
      if (!isSystemError(err, 'E2BIG')) throw err;
    }
    const { keys, values, count } = set.dump();
    if (count >= MAX_BINDINGS) {
      throw new TubularError('ENOSPC', `the binding set is full (${MAX_BINDINGS} bindings): unbind some first`);
    }
    const bigger = this.gens.createSet(count + 1);
    try {
      bigger.updateBatch(keys, values, count);
      bigger.update(key, value);
      this.gens.install('binding_set', slot, bigger);
    } finally {
      bigger.close();
    }
  }

  /**
   * Removes the binding with this protocol, prefix and port from the set in
   * force; action and label, if given, must match. `command` is how a
   * message names tubectl in a command to run (default "tubectl").
   */
  unbind(b: Pick<Binding, 'protocol' | 'prefix' | 'port'> & { label?: string; action?: Action },
    opts: { check?: (existing: Binding, traffic: Traffic) => void; command?: string } = {}): Binding {
    return this.write(() => {
      const g = this.gens.inForce();
      return this.gens.withSet((set) => {
        const key = bindingKey(b);
        const value = set.lookup(key, Buffer.alloc(BINDING_VALUE_SIZE));
        const name = bindingId(b);
        if (!value) throw new TubularError('ENOENT', `there is no binding ${name}: tubectl bindings lists them`);
        const labels = this.dests.labels();
        const existing = unpackBindings(key, value, 1, (id) => labels.get(id))[0];
        if (b.action !== undefined && b.action !== existing.action) {
          const a = (action: Action): string => `${action === 'observe' ? 'an' : 'a'} ${action} binding`;
          throw new TubularError('EINVAL', `the binding ${name} is ${a(existing.action)}${existing.label ? ` (label "${existing.label}")` : ''}, ` +
            `not ${a(b.action)}: nothing was changed; remove it with ${opts.command ?? 'tubectl'} unbind ${unbindArgs(existing.action, existing.label, name)}`);
        }
        if (b.label !== undefined && b.label !== existing.label) {
          throw new TubularError('EINVAL', `the binding ${name} belongs to ${existing.label ? `label "${existing.label}"` : 'no label'}, not "${b.label}": nothing was changed`);
        }
        if (opts.check) this.refusable(() => opts.check!(existing, this.stats.one(valueStat(value, 0))));
        return this.changing(() => {
          this.touched(g);
          this.journal.note(key);
          set.delete(key);
          // Clear the length bit and the block bit only when no other binding needs them.
          const rest = set.dump();
          this.withFilters(g, (filters) => {
            for (const f of filters) {
              const at = f.spec.at(key, 0);
              let needed = at < 0;
              for (let i = 0; i < rest.count && !needed; i++) needed = f.spec.at(rest.keys, i * BINDING_KEY_SIZE) === at;
              if (!needed) setFilterBit(f.map.fd, f.spec, at, false, this.sys);
            }
          });
          if (valueDestination(value, 0) !== NO_DESTINATION) this.dests.collect(this.inUse(new Map([[g, rest]])).ids);
          return existing;
        });
      }, g);
    });
  }

  /** All bindings of the set in force (or of a generation slot), most preferred first. */
  bindings(slot?: number): Binding[] {
    this.check();
    const set = this.packedBindings(slot);
    return Array.from({ length: set.count }, (_, i) => bindingAt(set, i));
  }

  /** All bindings, packed (see bindingset.ts), in no particular order: what tubectl bindings formats. */
  packedBindings(slot?: number): PackedBindings {
    this.check();
    return this.reader.packedBindings(slot);
  }

  /**
   * Sources sampled for the observe and reject bindings of the set in force
   * (join them to bindings by PackedBindings.stats).
   */
  sources(): SourceSample[] {
    this.check();
    const set = this.packedBindings();
    const stats = Uint32Array.from(precedenceOrder(set, (i) => set.actions[i] !== ACTION_STEER), (i) => set.stats![i]);
    const epochs = this.stats.epochs(stats);
    return readSources(this.maps.sources, new Map(Array.from(stats, (s, k) => [s, epochs[k]])));
  }

  /** Empties the sources sample, so that a fresh window can be measured; returns how many entries went. */
  resetSources(): number {
    return this.write(() => clearSources(this.maps.sources));
  }

  /** Traffic of bindings by their stat indices (PackedBindings.stats), in order. */
  traffic(stats: Uint32Array): Traffic[] {
    this.check();
    return this.stats.many(stats);
  }

  /**
   * Replaces the whole binding set at once, as a new generation. The new set
   * and its filters are written into the standby slot (patched where it
   * fits: only what differs from the set it held), then one update makes
   * it the generation in force, so every connection sees exactly the old
   * set or exactly the new one. The replaced set stays whole, for rollback.
   * An identical set changes nothing.
   */
  replaceBindings(next: readonly Binding[], opts: { check?: ChangeCheck } = {}): ReplaceResult {
    return this.replacePackedBindings(packBindingSet(next), opts);
  }

  /** replaceBindings for a packed set (see bindingset.ts). */
  replacePackedBindings(next: PackedBindings, opts: { check?: ChangeCheck } = {}): ReplaceResult {
    const { index } = indexBindingSet(next);
    return this.replace(undefined, () => ({ set: next, index }), opts)!;
  }

  /**
   * replaceBindings for a bindings file, as tubectl load-bindings reads one:
   * the file the set in force was last read from, unchanged since, is
   * recognised by the digest of its bytes and not parsed again. Otherwise
   * `source.parse()` is called, under the writers' lock; when it returns
   * undefined (the caller must parse another way first), nothing is
   * changed and undefined is returned.
   */
  replaceBindingsFile(source: BindingsSource, opts: { check?: ChangeCheck } = {}): ReplaceResult | undefined {
    return this.replace(source, source.parse, opts);
  }

  private replace(file: BindingsSource | undefined, parse: () => ParsedSet | undefined, opts: { check?: ChangeCheck }): ReplaceResult | undefined {
    return this.write(() => {
      const g = this.gens.inForce();
      const s = 1 - g;
      const meta = metaGeneration(g);
      const number = Number(this.getMeta(meta.number));
      // The same file again, and the set in force unchanged since (its digest
      // is cleared by any other change): nothing to read. A file of another
      // size is another file, and is not read for its digest.
      if (file !== undefined && this.getMeta(meta.digest) !== 0n) {
        const held = this.getMeta(meta.fileShape);
        if (held >> 32n === BigInt(file.size) && this.getMeta(meta.file) === file.digest()) {
          return { added: 0, removed: 0, changed: 0, unchanged: Number(held & 0xffffffffn), generation: number };
        }
      }
      const inForce = this.gens.open('binding_set', g);
      let standbySet: BpfMap | undefined;
      let settled: (() => void) | undefined;
      try {
        standbySet = this.gens.open('binding_set', s);
        // The last flip did not wait for the programs that may still run
        // with what is now the standby: that wait (an RCU grace period) runs
        // on a thread while the file is parsed, and ends before the standby
        // is written.
        let pending = this.getMeta(META_UNSETTLED) !== 0n ? this.gens.settleStart(standbySet) : undefined;
        settled = (): void => {
          if (!pending) return;
          const wait = pending;
          pending = undefined;
          wait();
          this.setMeta(META_UNSETTLED, 0n);
        };
        // The set in force is read on a thread of its own while the file is
        // parsed; so is the standby, unless the journal says where it differs.
        const journal = this.journal.read();
        const { parsed, current, standby } = whileDumping(inForce, journal ? undefined : standbySet, parse);
        if (!parsed) return undefined;
        return this.replaceWith(parsed, { g, number, current, standbySet, standby, journal, settled }, opts);
      } finally {
        try {
          settled?.();
        } finally {
          inForce.close();
          standbySet?.close();
        }
      }
    });
  }

  /** The rest of replace, with the new set parsed and both sets read. */
  private replaceWith(parsed: ParsedSet,
    at: { g: number; number: number; current: Dump; standbySet: BpfMap; standby?: Dump; journal?: { keys: Buffer; count: number }; settled: () => void },
    opts: { check?: ChangeCheck }): ReplaceResult {
    const { g, number, current } = at;
    const s = 1 - g;
    const next = parsed.set;
    const index = parsed.index ?? indexBindingSet(next).index;
    if (next.count > MAX_BINDINGS) {
      throw new TubularError('ENOSPC', `${next.count} bindings exceed the capacity of ${MAX_BINDINGS}`);
    }
    const keys = next.keys;
    const digest = setDigest(next);
    /** Records what a slot now holds: the file read (when it may be recognised) and the set's digest, last. */
    const record = (slot: number): void => {
      const m = metaGeneration(slot);
      const file = parsed.file;
      this.setMeta(m.file, file !== undefined && parsed.recognisable !== false ? file.digest : 0n);
      this.setMeta(m.fileShape, BigInt(next.count) | (file !== undefined ? BigInt(file.size) << 32n : 0n));
      this.setMeta(m.digest, digest);
    };
    // After a rollback the standby holds a later generation: numbers never repeat.
    const nextNumber = Math.max(number, Number(this.getMeta(metaGeneration(s).number))) + 1;
    let known = this.dests.entries();
    const idOf = (list: DestinationEntry[]): Map<string, number> => new Map(list.map((d) => [destinationName(d), d.id]));
    // Values with the ids of destinations that exist; a missing one is a change.
    const { slotOf, slots } = parsed.slots ?? destinationSlots(next);
    let byName = idOf(known);
    const ids = Int32Array.from(slots, (d) => byName.get(destinationName(d)) ?? -1);
    const diff = diffBindingSets({ index, count: next.count, slotOf, ids, actions: next.actions }, current);
    const result = { added: diff.added, removed: diff.removed, changed: diff.changed, unchanged: diff.unchanged };
    if (result.added === 0 && result.removed === 0 && result.changed === 0) {
      record(g);
      return { ...result, generation: number };
    }
    // Room for the new destinations, checked before anything changes: what
    // neither set in force nor a socket uses (the standby's own) can go.
    let missing = slots.flatMap((_, k) => (ids[k] < 0 ? [k] : []));
    const { free, collectable } = this.dests.room(missing.length, () => diff.usedIds, known);
    const crowded = collectable.length > 0;
    this.refusable(() => {
      const problem = roomProblem(missing.length, free);
      if (problem) {
        throw new TubularError('ENOSPC', `${problem}: nothing was changed; ` +
          'use fewer labels, or replace in two steps (first a file without the labels you drop, then one with the new labels)');
      }
    });
    if (opts.check) {
      const labels = new Map(known.map((d) => [d.id, d.label]));
      const packed = packedFromDump(current.keys, current.values, current.count, (id) => labels.get(id));
      const change: SetChange = {
        added: diff.addedKeys, removed: diff.removedKeys, changed: diff.changedKeys.map((from, k) => ({ from, to: diff.changedTo[k] })), unchanged: diff.unchanged,
      };
      this.refusable(() => opts.check!(packed, next, change, (st) => this.stats.many(st)));
    }
    // No program may still run with the standby once it is written.
    at.settled();
    return this.changing(() => {
      // The standby is about to change: it is no generation any more, and
      // no file or digest describes it. (No program uses it: see above.)
      const standbyMeta = metaGeneration(s);
      this.setMeta(standbyMeta.number, 0n);
      this.setMeta(standbyMeta.digest, 0n);
      this.setMeta(standbyMeta.file, 0n);
      this.journal.invalidate();
      // What only the standby used is free now (the room was checked above).
      if (crowded) {
        this.dests.remove(collectable);
        known = this.dests.entries();
        byName = idOf(known);
        slots.forEach((d, k) => { ids[k] = byName.get(destinationName(d)) ?? -1; });
        missing = slots.flatMap((_, k) => (ids[k] < 0 ? [k] : []));
      }
      this.dests.create(missing.map((k) => slots[k]), known).forEach((id, m) => { ids[missing[m]] = id; });
      // Counters: an unchanged or changed binding keeps its own, a new one
      // starts from zero at an index the set in force does not use (the
      // standby's are free: it is being rewritten): past the highest it
      // uses, or where there is no room there, the lowest free ones.
      const fresh = diff.addedKeys.length;
      const given = diff.nextStat + fresh <= MAX_BINDINGS
        ? Uint32Array.from({ length: fresh }, (_, k) => diff.nextStat + k)
        : allocateStats(markStats(new Uint8Array(MAX_BINDINGS), current.values, current.count), fresh);
      const nextStat = Math.max(diff.nextStat, given.length > 0 ? given[given.length - 1] + 1 : 0);
      // Indices given out stay below the next free one, before any is used.
      this.raiseNextStat(nextStat);
      this.stats.zero(given, this.nextEpoch());
      const values = valuesWithStats(next, slotOf, ids, diff.previous, current.values, given);
      const changes: Changes = { removed: diff.removedKeys, added: diff.addedKeys, changedFrom: diff.changedKeys, changedTo: diff.changedTo };
      const standby = { keys, values, count: next.count, index };
      const patching = patchable(at.standbySet.info.maxEntries, next.count, setCapacity);
      this.writeStandby(s, at.standbySet, patching, at.standby
        ? standbyPatch(at.standby, standby, patching)
        : patchFromJournal(at.journal!, at.standbySet.lookupMany(at.journal!.keys, at.journal!.count), current, standby, changes, patching), standby);
      // One update puts set and filters in force together.
      this.flip(s);
      this.setMeta(standbyMeta.number, BigInt(nextNumber));
      this.setMeta(standbyMeta.applied, BigInt(Date.now()));
      record(s);
      this.setMeta(META_NEXT_STAT, BigInt(nextStat));
      // Where the new set and the previous one (the set that was in force) differ: what this replace changed.
      const differ = changes.removed.length + changes.added.length + changes.changedTo.length <= JOURNAL_CAPACITY
        ? changedKeys(current, next, changes) : undefined;
      this.journal.rewrite(differ, at.journal);
      // Destinations neither generation uses (the set in force, now the
      // previous one, and the new set), and no socket serves.
      const used = diff.usedIds;
      for (const id of ids) used[id] = 1;
      this.dests.collect(used, known);
      return { ...result, generation: nextNumber };
    });
  }

  /**
   * Makes the standby slot hold `next`, with filters exact for it: the set
   * it holds is patched (`patching`: its map has room), else a new map is
   * filled and put in the slot. Only the entries of the filters that the keys
   * deleted or added touch are rewritten (they were exact for the set it held).
   *
   * The binding set is written on a thread of its own while this one
   * computes and writes the filters, and a new map is put in its slot on a
   * thread while the filters are written: they are different maps, no
   * program reads the standby (the wait before the first write), and a
   * writer that dies part-way leaves both filters to be recomputed from the
   * set (reconcile.ts) whatever order the writes reached.
   */
  private writeStandby(s: number, set: BpfMap, patching: boolean, patch: StandbyPatch, next: StandbySet): void {
    const fresh = patching ? undefined : this.gens.createSet(next.count);
    const waits: Array<() => void> = [];
    /** Runs fn, and waits for what runs on threads whether it fails or not. */
    const joined = (fn: () => void): void => {
      try {
        fn();
      } catch (err) {
        waitAll(waits, { err });
      }
      waitAll(waits);
    };
    try {
      joined(() => {
        if (fresh) {
          const filled = fresh.startUpdateBatch(next.keys, next.values, next.count);
          waits.push(() => context('fill the new binding set', filled));
        } else {
          context('patch the standby binding set', () => set.deleteBatch(patch.deletes.keys, patch.deletes.count));
          const written = set.startUpdateBatch(patch.updates.keys, patch.updates.values, patch.updates.count);
          waits.push(() => context('patch the standby binding set', written));
        }
        this.withFilters(s, (filters) => joined(() => {
          const changes = filters.map((f) => filterPatch(f.spec, patch.deletes, patch.arrived, next));
          if (fresh) {
            waitAll(waits);
            waits.push(this.gens.installStart('binding_set', s, fresh));
          }
          filters.forEach((f, k) => {
            const written = f.map.startUpdateBatch(changes[k].keys, changes[k].values, changes[k].count);
            waits.push(() => context(`write the standby's ${f.map.name} filter`, written));
          });
        }));
      });
    } finally {
      fresh?.close();
    }
  }

  /** Raises the next free stat index to at least `atLeast`. */
  private raiseNextStat(atLeast: number): void {
    if (BigInt(atLeast) > this.getMeta(META_NEXT_STAT)) this.setMeta(META_NEXT_STAT, BigInt(atLeast));
  }

  /** The generation in force and the previous one (null when there is none to go back to). */
  generations(): { inForce: GenerationRecord; previous: GenerationRecord | null } {
    this.check();
    const g = this.gens.inForce();
    const record = (slot: number): GenerationRecord | null => {
      const m = metaGeneration(slot);
      const n = Number(this.getMeta(m.number));
      if (n === 0) return null;
      const digest = this.getMeta(m.digest);
      return {
        number: n,
        applied: new Date(Number(this.getMeta(m.applied))),
        digest: digest === 0n ? null : digest.toString(16).padStart(16, '0'),
        bindings: this.gens.withSet((set) => set.dump().count, slot),
      };
    };
    const inForce = record(g) ?? { number: 0, applied: new Date(0), digest: null, bindings: this.gens.withSet((set) => set.dump().count, g) };
    return { inForce, previous: record(1 - g) };
  }

  /** The slot of the previous generation, or null when there is none. */
  previousSlot(): number | null {
    this.check();
    const s = 1 - this.gens.inForce();
    return this.getMeta(metaGeneration(s).number) === 0n ? null : s;
  }

  /**
   * Puts the previous generation back in force: one update, its set and
   * filters as they were. The generation that was in force becomes the
   * previous one, so a second rollback returns to it.
   */
  rollback(opts: { check?: ChangeCheck } = {}): { from: number; to: number } {
    return this.write(() => {
      const g = this.gens.inForce();
      const s = 1 - g;
      const to = Number(this.getMeta(metaGeneration(s).number));
      if (to === 0) {
        throw new TubularError('ENOENT', 'there is no previous generation to roll back to (none was kept since the load, or a replace was interrupted): nothing was changed');
      }
      const from = Number(this.getMeta(metaGeneration(g).number));
      if (opts.check) {
        const current = this.reader.packedBindings(g);
        const previous = this.reader.packedBindings(s);
        this.refusable(() => opts.check!(current, previous, compareSets(current, previous), (st) => this.stats.many(st)));
      }
      return this.changing(() => {
        this.flip(s);
        return { from, to };
      });
    });
  }

  // ---- sockets ----

  /**
   * Registers a socket for a label, or the members of one SO_REUSEPORT
   * group (same family, protocol, address and port, SO_REUSEPORT set).
   * Their domain and protocol choose the destination; whatever was
   * registered there is replaced. The registration lasts while the socket
   * is open in some process: the kernel removes a closed socket, and the
   * dispatcher then hands connections to the next member of the group, or
   * refuses them when none is left.
   */
  registerSocket(label: string, fds: number | readonly number[], opts: RegisterOptions = {}): Registration {
    const all = typeof fds === 'number' ? [fds] : [...fds];
    if (all.length === 0 || all.length > SOCKET_SLOTS) {
      throw new TubularError('EINVAL', `register 1 to ${SOCKET_SLOTS} sockets for a destination, not ${all.length}`);
    }
    if (opts.infos && opts.infos.length !== all.length) throw new TubularError('EINVAL', `${opts.infos.length} socket infos for ${all.length} sockets`);
    const infos = opts.infos ?? all.map((fd) => context('inspect the socket', () => this.sys.socketInfo(fd)));
    const kind = registrableGroup(label, infos);
    all.forEach((fd, k) => checkNamespace(this.sys, fd, this.loc, `socket #${k + 1}`));
    const owner = opts.owner ?? null;
    return this.write(() => this.changing(() => {
      const dest = this.ensureDestination({ label, ...kind }, owner !== null && owner !== 0 ? ROOT_RESERVED_DESTINATIONS : 0);
      const held = this.dests.slots(dest.id);
      const replaced = held.find((c) => c !== null) ?? null;
      this.dests.setSockets(dest, all, held);
      this.dests.setOwner(dest, owner);
      return { label, ...kind, id: dest.id, cookie: infos[0].cookie, cookies: infos.map((i) => i.cookie), replaced };
    }));
  }

  /** Removes the sockets of a destination; its bindings then refuse connections. */
  unregisterSocket(d: DestinationKey): void {
    this.write(() => {
      const dest = this.dests.lookup(d);
      if (!dest || !this.dests.hasSocket(dest.id)) {
        throw new TubularError('ENOENT', `no socket is registered for ${destinationName(d)}: tubectl list shows what is`);
      }
      this.changing(() => {
        this.dests.clearSockets(dest.id);
        this.dests.setOwner(dest, null);
        this.dests.collect(this.inUse().ids);
      });
    });
  }

  // ---- reading (no lock: see readmodel.ts) ----

  /** Destinations with their sockets, binding counts and counters, sorted by label. */
  destinations(): DestinationStatus[] {
    this.check();
    return this.reader.destinations();
  }

  /** Why load-bindings would refuse `next` for lack of destination room (undefined: it fits). */
  destinationRoom(next: PackedBindings): string | undefined {
    return this.reader.destinationRoom(next);
  }

  /**
   * Destinations with their owner and whether a socket is registered, for
   * a register's checks: a few bpf() calls where destinations() reads every
   * counter and the binding set. `only` limits the socket lookups.
   */
  registrations(only?: (d: DestinationEntry) => boolean): DestinationRegistration[] {
    this.check();
    return this.reader.registrations(only);
  }

  /** Refusals counted per reject binding. */
  rejectCounters(): RejectCounter[] {
    this.check();
    return this.reader.rejectCounters();
  }

  status(): Status {
    this.check();
    return this.reader.status();
  }

  /** The program in force and its variant (full or compat); null when reading it needs root. */
  program(): { id: number; variant: ProgramVariant | null } | null {
    this.check();
    return this.reader.program();
  }

  /**
   * The pinned file of the program the link runs, to ask it questions
   * (BPF_PROG_TEST_RUN); null when reading the link needs root. Throws
   * ENOTLOADED when an interrupted unload left the program detached: then
   * it decides nothing.
   */
  runningProgram(): string | null {
    this.check();
    const running = this.reader.running();
    if (running === null) return null;
    if (!running.attached) throw this.detached();
    return this.dir.at(running.pin);
  }

  private detached(): TubularError {
    return new TubularError('ENOTLOADED', `the dispatcher in ${this.loc.dir} is detached (an unload was interrupted): ` +
      'no traffic is steered; run tubectl unload to finish it, then tubectl load');
  }

  /**
   * Replaces the running program with the one built with this code, keeping
   * every map. The new program is pinned before the link switches to it,
   * and the link swaps programs atomically: no connection is dropped.
   * `program` chooses the variant; `auto` (the default) keeps the one in force.
   */
  upgrade(opts: { program?: ProgramChoice } = {}): { from: number; to: number; variant: ProgramVariant; previous: ProgramVariant | null; why: string } {
    return this.write(() => {
      const reuse: Record<string, number> = {};
      for (const name of OBJECT_MAPS) reuse[name] = this.maps[name].fd;
      const previous = withPinned(this.sys, this.dir.at(PIN.program), (fd) => variantOfProgram(this.sys.progInfo(fd).name)) ?? null;
      const { variant, why } = programFor(this.sys, opts.program ?? 'auto', previous);
      const obj = loadProgram(this.sys, variant, reuse, 'upgrade');
      const link = context('open the link', () => this.sys.getPinned(this.dir.at(PIN.link), 0));
      try {
        const to = this.sys.progInfo(obj.progFd);
        if (to.type !== BPF_PROG_TYPE_SK_LOOKUP) throw new TubularError('EINCOMPAT', `the built program has type ${to.type}, not sk_lookup`);
        const from = this.sys.linkInfo(link).progId;
        pinAt(this.sys, obj.progFd, this.dir.at(PENDING_PROGRAM), this.dir.gid);
        context('replace the program of the link', () => this.sys.linkUpdate(link, obj.progFd));
        renameSync(this.dir.at(PENDING_PROGRAM), this.dir.at(PIN.program));
        return { from, to: to.id, variant, previous, why };
      } finally {
        this.sys.close(link);
        this.sys.close(obj.progFd);
        for (const fd of Object.values(obj.maps)) this.sys.close(fd);
      }
    });
  }
}

/**
 * Loads a variant of the program (reusing the maps given), with what the
 * variant is called in errors. A refusal by the kernel's verifier is said
 * as one, with the last lines of its log (not the 4 KiB libbpf keeps).
 */
function loadProgram(sys: Native, variant: ProgramVariant, reuse: Record<string, number>, verb: 'load' | 'upgrade' = 'load'): LoadedObject {
  const { object, name } = PROGRAMS[variant];
  try {
    return sys.loadObject(programObjectPath(object), name, reuse);
  } catch (err) {
    // The verifier stops when a signal is pending (EAGAIN); libbpf asked
    // again, and every time a signal came first: nothing was refused.
    if (isSystemError(err, 'EAGAIN')) {
      throw new TubularError('EBUSY', `loading the ${variant} BPF program was interrupted by signals each time libbpf tried; ` +
        'nothing was loaded: run the command again', { cause: err });
    }
    if (!verifierRefused(err)) return context(`load the ${variant} BPF program`, () => { throw err; });
    if (!perfmonCapable()) {
      throw new TubularError('EPERM', `this kernel's verifier refused the ${variant} program to a process without CAP_PERFMON ` +
        '(older kernels, 6.1 among them, check its stack use more strictly then)', { cause: err });
    }
    // The verifier's own lines, without libbpf's around them.
    const log = err.message.split('\n').slice(1).map((l) => l.trimEnd()).filter((l) => l !== '' && !/^libbpf: |^-- (BEGIN|END) PROG LOAD LOG --$/.test(l));
    const last = log.slice(-VERIFIER_LINES).map((l) => `  ${l.length > 200 ? `${l.slice(0, 200)}...` : l}`);
    const other = variant === 'full' ? ` (tubectl ${verb} --program compat loads the other one)` : '';
    throw new TubularError('EINCOMPAT', `this kernel's verifier refused the ${variant} program${other}; the end of its log:\n${last.join('\n')}`, { cause: err });
  }
}

/** How many lines of the verifier's log a refusal shows. */
const VERIFIER_LINES = 6;

/** Whether the addon marked this failure of loadObject as a refusal by the kernel's verifier. */
const verifierRefused = (err: unknown): err is Error => isSystemError(err) && (err as { verifier?: unknown }).verifier === true;

/** loadProgram's message for a refusal by the verifier (not for a missing capability). */
const isVerifierRefusal = (err: unknown): boolean => err instanceof TubularError && err.code === 'EINCOMPAT' && verifierRefused(err.cause);

/**
 * Loads the variant decided; when the choice was `auto` and the kernel's
 * verifier refuses the full program (a kernel whose verifier differs from
 * those tested), the compat one, which asks less of it.
 */
function loadDecided(sys: Native, choice: ProgramChoice, decision: ProgramDecision): { obj: LoadedObject; decision: ProgramDecision } {
  try {
    return { obj: loadProgram(sys, decision.variant, {}), decision };
  } catch (err) {
    if (choice !== 'auto' || decision.variant !== 'full' || !isVerifierRefusal(err)) throw err;
    return { obj: loadProgram(sys, 'compat', {}), decision: { variant: 'compat', why: 'this kernel\'s verifier refused the full program' } };
  }
}
