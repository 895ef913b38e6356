// The dispatcher of one network namespace: its program, its link and the
// pinned maps that hold its state, under <bpffs>/<netns inode>_dispatcher/.
//
// Every method is synchronous: each is a handful of bpf() syscalls. Writers
// hold the writers' lock (statedir.ts) for one method, repair what a dead
// predecessor left (recovery.ts) and mark their intent while they change
// several maps, so the next writer recomputes what a crash may have left
// inconsistent. Readers take no lock. Nothing here depends on a process of
// ours staying alive: the pins are the state.
import { closeSync, openSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { type Binding, bindingId, sameTarget } from './binding.js';
import { BindingStore, PENDING_SET, pinAt } from './binding-store.js';
import {
  type PackedBindings, bindingAt, bindingKey, bindingValue, destinationOf, destinationSlots, diffBindingSets,
  indexBindingSet, packBindingSet, packValues, packedFromDump, unpackBindings,
} from './bindingset.js';
import { BpfMap, mismatch } from './bpfmap.js';
import { type DestinationEntry, type DestinationKey, destinationName } from './destination.js';
import { DestinationTable, bindingCounts, referencedIds } from './destination-table.js';
import { TubularError, context, isSystemError } from './errors.js';
import { BLOCKS_FILTER, type FilterSpec, LENGTHS_FILTER, exactFilter, planFilter, setFilterBit } from './filters.js';
import {
  ACTION_REJECT, BINDING_KEY_SIZE, BINDING_VALUE_SIZE, BPF_LINK_TYPE_NETNS, BPF_MAP_TYPE_HASH, BPF_PROG_TYPE_SK_LOOKUP,
  DESTINATION_KEY_SIZE, DESTINATION_VALUE_SIZE, LAYOUT_VERSION, MAP_SPECS, MAX_BINDINGS, MAX_DESTINATIONS, META_DIGEST, META_INTENT,
  META_MAGIC, META_STAMP, type MapName, NO_DESTINATION, OBJECT_MAPS, PIN, SOCKET_SLOTS, assertLittleEndian, decodeBindingKey,
  readU32, readU64, u32, writeU64,
} from './layout.js';
import { DEFAULT_LOCK_TIMEOUT_MS } from './lock.js';
import { type Native, native } from './native.js';
import { programObjectPath } from './paths.js';
import { formatPrefix, type Prefix } from './prefix.js';
import type { Protocol } from './protocol.js';
import { planRecovery, type RecoveryFacts } from './recovery.js';
import { registrableKind } from './socket.js';
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
}

export interface OpenOptions extends DispatcherOptions {
  readOnly?: boolean;
}

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
  linkId: number | null;
  /** false when the link no longer attaches the program (an unload was interrupted): nothing is steered; null when unreadable */
  attached: boolean | null;
  layoutVersion: number;
  bindings: number;
}

export interface BindResult {
  /** the binding this one replaced (same protocol, prefix and port) */
  replaced?: Binding;
}

export interface ReplaceResult {
  added: number;
  removed: number;
  changed: number;
  unchanged: number;
}

export interface Registration extends DestinationKey {
  id: number;
  /** the cookie of the (first) socket registered */
  cookie: bigint;
  cookies: bigint[];
  /** the cookie of the (first) socket this registration replaced */
  replaced: bigint | null;
}

export interface RegisterOptions {
  /** the uid registering through tubulard (null or absent: root's tools) */
  owner?: number | null;
}

/** Destination ids kept for root: registrations by other users never take the last of them. */
export const ROOT_RESERVED_DESTINATIONS = 64;

const ALL_MAPS: readonly MapName[] = [...OBJECT_MAPS, 'destinations'];
const PENDING_PROGRAM = `${PIN.program}_new`;
const metaValue = (): bigint => (BigInt(META_MAGIC) << 32n) | BigInt(LAYOUT_VERSION);

/** 64 bits of SHA-256 over a packed set, never 0. */
function setDigest(keys: Buffer, values: Buffer): bigint {
  const d = createHash('sha256').update(keys).update(values).digest().readBigUInt64LE(0);
  return d === 0n ? 1n : d;
}

type Maps = Record<MapName, BpfMap>;

export class Dispatcher {
  readonly netns: string;
  readonly netnsInode: number;
  readonly stateDir: string;
  readonly readOnly: boolean;
  private readonly dests: DestinationTable;
  private readonly store: BindingStore;
  private closed = false;

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
    this.store = new BindingStore(sys, dir, maps.bindings, readOnly);
  }

  /** Whether a dispatcher is loaded in the namespace. */
  static isLoaded(opts: DispatcherOptions = {}): boolean {
    return StateDir.exists(locate(opts));
  }

  /**
   * Loads the program, creates and pins its maps, and attaches it to the
   * namespace. Built in a temporary directory and renamed into place, so a
   * failure at any step leaves nothing behind.
   */
  static create(opts: CreateOptions = {}): Dispatcher {
    assertLittleEndian();
    const sys = opts.sys ?? native();
    const loc = locate(opts);
    createStateDir(loc, opts.group, sys, (at) => {
      const fds: number[] = [];
      const keep = (fd: number): number => { fds.push(fd); return fd; };
      try {
        const pin = (fd: number, name: string): void => pinAt(sys, fd, at(name), opts.group);
        const obj = context('load the BPF program', () => sys.loadObject(programObjectPath(), 'dispatcher', {}));
        keep(obj.progFd);
        Object.values(obj.maps).forEach(keep);
        const destinations = keep(context('create the destinations map', () =>
          sys.mapCreate(BPF_MAP_TYPE_HASH, 'destinations', DESTINATION_KEY_SIZE, DESTINATION_VALUE_SIZE, MAX_DESTINATIONS, 0)));
        const set = keep(context('create a binding set', () =>
          sys.mapCreate(BPF_MAP_TYPE_HASH, 'binding_set', BINDING_KEY_SIZE, BINDING_VALUE_SIZE, 1024, 0)));
        sys.mapUpdate(obj.maps.bindings, u32(0), u32(set), 0);
        const meta = Buffer.alloc(8);
        writeU64(meta, metaValue(), 0);
        sys.mapUpdate(obj.maps.meta, u32(META_STAMP), meta, 0);
        for (const name of OBJECT_MAPS) pin(obj.maps[name], name);
        pin(destinations, PIN.destinations);
        pin(set, PIN.bindingSet);
        pin(obj.progFd, PIN.program);
        const nsFd = context(`open network namespace ${loc.netns}`, () => openSync(loc.netns, 'r'));
        try {
          pin(keep(context(`attach to network namespace ${loc.netns}`, () => sys.linkCreateNetns(obj.progFd, nsFd))), PIN.link);
        } finally {
          closeSync(nsFd);
        }
      } finally {
        for (const fd of fds) sys.close(fd);
      }
    });
    return Dispatcher.open(opts);
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
    if (this.readOnly) throw new TubularError('EPERM', 'the dispatcher was opened read-only: writing needs root');
    assertLittleEndian();
    return this.dir.withLock(this.lockTimeoutMs, () => {
      this.recover();
      return fn();
    });
  }

  /**
   * Runs a change of several maps with the intent mark set: if this process
   * dies inside, the next writer recomputes everything derived from the
   * binding set. A change that fails is reconciled at once.
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

  /** The id of the program pinned at name, or undefined. */
  private pinnedProgram(name: string): number | undefined {
    try {
      const fd = this.sys.getPinned(this.dir.at(name), 0);
      try { return this.sys.progInfo(fd).id; } finally { this.sys.close(fd); }
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  private link(): { progId: number; attached: boolean; id: number } | undefined {
    let fd: number;
    try {
      fd = this.sys.getPinned(this.dir.at(PIN.link), 0);
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) return undefined;
      throw err;
    }
    try {
      const info = this.sys.linkInfo(fd);
      return { id: info.id, progId: info.progId, attached: info.type === BPF_LINK_TYPE_NETNS && info.netnsIno === this.loc.ino };
    } finally {
      this.sys.close(fd);
    }
  }

  /** Repairs what a writer that died part-way left: see recovery.ts. */
  private recover(): void {
    const link = this.link();
    const facts: RecoveryFacts = {
      setInForce: this.store.idInForce(),
      pinnedSet: this.store.pinnedId(PIN.bindingSet),
      pendingSet: this.store.pinnedId(PENDING_SET),
      linkProgram: link?.progId,
      linkAttached: link?.attached ?? false,
      pendingProgram: this.pinnedProgram(PENDING_PROGRAM),
      intent: this.getMeta(META_INTENT) !== 0n,
    };
    const plan = planRecovery(facts);
    if (plan.halfUnloaded) {
      throw new TubularError('ENOTLOADED', `the dispatcher in ${this.loc.dir} is detached (an unload was interrupted): ` +
        'no traffic is steered; run tubectl unload to finish it, then tubectl load');
    }
    for (const step of plan.steps) {
      switch (step) {
        case 'adopt-pending-set': renameSync(this.dir.at(PENDING_SET), this.dir.at(PIN.bindingSet)); break;
        case 'drop-pending-set': unlinkSync(this.dir.at(PENDING_SET)); break;
        case 'adopt-pending-program': renameSync(this.dir.at(PENDING_PROGRAM), this.dir.at(PIN.program)); break;
        case 'drop-pending-program': unlinkSync(this.dir.at(PENDING_PROGRAM)); break;
        case 'reconcile': this.reconcile(); this.setMeta(META_INTENT, 0n); break;
      }
    }
    if (plan.unpinnedSet) {
      throw new TubularError('EINCOMPAT', `the binding set in force in ${this.loc.dir} is not pinned, and this tubectl cannot repair that: ` +
        'tubectl unload and load again (bindings and registrations are lost)');
    }
  }

  /**
   * Recomputes everything derived from the binding set in force: both
   * filters exactly, unused destinations collected, counters of bindings
   * that are no longer reject bindings dropped, the replace digest cleared.
   */
  private reconcile(): void {
    this.setMeta(META_DIGEST, 0n);
    const set = this.store.with((s) => s.dump());
    for (const f of this.filters()) {
      const exact = exactFilter(f.spec, set);
      f.map.updateBatch(exact.keys, exact.values, exact.count);
    }
    this.dests.collect(referencedIds(set.values, set.count));
    const rejects = new Set<string>();
    for (let i = 0; i < set.count; i++) {
      if (readU32(set.values, i * BINDING_VALUE_SIZE + 4) === ACTION_REJECT) {
        rejects.add(set.keys.toString('hex', i * BINDING_KEY_SIZE, (i + 1) * BINDING_KEY_SIZE));
      }
    }
    const counters = this.maps.reject_metrics.dump();
    const stale: Buffer[] = [];
    for (let i = 0; i < counters.count; i++) {
      const key = counters.keys.subarray(i * BINDING_KEY_SIZE, (i + 1) * BINDING_KEY_SIZE);
      if (!rejects.has(key.toString('hex'))) stale.push(Buffer.from(key));
    }
    if (stale.length > 0) this.maps.reject_metrics.deleteBatch(Buffer.concat(stale), stale.length);
  }

  /** The two filters in front of the binding set, with their maps. */
  private filters(): Array<{ spec: FilterSpec; map: BpfMap }> {
    return [{ spec: LENGTHS_FILTER, map: this.maps.lengths }, { spec: BLOCKS_FILTER, map: this.maps.blocks }];
  }

  /**
   * The destination for d, created when missing. A full table is first
   * cleared of destinations the set in force does not use; `reserve` ids
   * stay free for root.
   */
  private ensureDestination(d: DestinationKey, reserve = 0): DestinationEntry {
    let known = this.dests.entries();
    const found = known.find((e) => e.label === d.label && e.domain === d.domain && e.protocol === d.protocol);
    if (found) return found;
    if (known.length + 1 > MAX_DESTINATIONS - reserve) {
      this.collectDestinations();
      known = this.dests.entries();
    }
    if (known.length + 1 > MAX_DESTINATIONS - reserve) {
      throw new TubularError('ENOSPC', reserve > 0
        ? `the last ${reserve} of ${MAX_DESTINATIONS} destinations are kept for root and ${known.length} are in use: ask root to unregister labels no longer needed`
        : `all ${MAX_DESTINATIONS} destinations are in use: unbind labels or unregister sockets you no longer need`);
    }
    return this.dests.ensure(d, known);
  }

  /** Deletes destinations no binding in force uses and no socket serves. */
  private collectDestinations(): number {
    const { values, count } = this.store.with((s) => s.dump());
    return this.dests.collect(referencedIds(values, count));
  }

  private storeDigest(digest: bigint): void {
    this.setMeta(META_DIGEST, digest);
  }

  // ---- bindings ----

  /** Adds a binding, or replaces the one with the same protocol, prefix and port. */
  bind(b: Binding): BindResult {
    return this.write(() => this.store.with((set) => {
      const key = bindingKey(b);
      const old = set.lookup(key, Buffer.alloc(BINDING_VALUE_SIZE));
      const oldId = old ? readU32(old, 0) : NO_DESTINATION;
      const labels = old ? this.dests.labels() : undefined;
      const replaced = old ? unpackBindings(key, old, 1, (id) => labels!.get(id))[0] : undefined;
      if (replaced && sameTarget(replaced, b)) return { replaced };
      const dest = destinationOf(b);
      return this.changing(() => {
        this.storeDigest(0n);
        const entry = dest ? this.ensureDestination(dest) : undefined;
        // Make the length and the block bit visible before the binding, so
        // the program never skips a lookup that would match.
        for (const f of this.filters()) {
          const at = f.spec.at(key, 0);
          if (at >= 0) setFilterBit(f.map.fd, f.spec, at, true, this.sys);
        }
        this.insert(set, key, bindingValue(entry ? entry.id : NO_DESTINATION, b.action));
        if (replaced?.action === 'reject' && b.action !== 'reject') this.maps.reject_metrics.delete(key);
        if (oldId !== NO_DESTINATION && oldId !== entry?.id) this.collectDestinations();
        return replaced ? { replaced } : {};
      });
    }));
  }

  /** Inserts into the set in force; a full set is first rebuilt twice as large, and swapped in. */
  private insert(set: BpfMap, key: Buffer, value: Buffer): void {
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
    const bigger = this.store.create(count + 1);
    try {
      bigger.updateBatch(keys, values, count);
      bigger.update(key, value);
      this.store.swap(bigger);
    } finally {
      bigger.close();
    }
  }

  /** Removes the binding with this protocol, prefix and port; label, if given, must match. */
  unbind(b: Pick<Binding, 'protocol' | 'prefix' | 'port'> & { label?: string }): Binding {
    return this.write(() => this.store.with((set) => {
      const key = bindingKey(b);
      const value = set.lookup(key, Buffer.alloc(BINDING_VALUE_SIZE));
      const name = bindingId(b);
      if (!value) throw new TubularError('ENOENT', `there is no binding ${name}: tubectl bindings lists them`);
      const labels = this.dests.labels();
      const existing = unpackBindings(key, value, 1, (id) => labels.get(id))[0];
      if (b.label !== undefined && b.label !== existing.label) {
        throw new TubularError('EINVAL', `the binding ${name} belongs to ${existing.label ? `label "${existing.label}"` : 'no label'}, not "${b.label}": nothing was changed`);
      }
      return this.changing(() => {
        this.storeDigest(0n);
        set.delete(key);
        this.maps.reject_metrics.delete(key);
        // Clear the length bit and the block bit only when no other binding needs them.
        const rest = set.dump();
        for (const f of this.filters()) {
          const at = f.spec.at(key, 0);
          let needed = at < 0;
          for (let i = 0; i < rest.count && !needed; i++) needed = f.spec.at(rest.keys, i * BINDING_KEY_SIZE) === at;
          if (!needed) setFilterBit(f.map.fd, f.spec, at, false, this.sys);
        }
        if (readU32(value, 0) !== NO_DESTINATION) this.dests.collect(referencedIds(rest.values, rest.count));
        return existing;
      });
    }));
  }

  /** All bindings, most preferred first. */
  bindings(): Binding[] {
    this.check();
    const set = this.packedBindings();
    return Array.from({ length: set.count }, (_, i) => bindingAt(set, i));
  }

  /**
   * All bindings, packed (see bindingset.ts), in no particular order: what
   * tubectl bindings formats. Read without a lock: the set is read first,
   * then the labels; a destination collected in between is read again.
   */
  packedBindings(): PackedBindings {
    this.check();
    for (let attempt = 0; ; attempt++) {
      const { keys, values, count } = this.store.with((s) => s.dump());
      const labels = this.dests.labels();
      const used = referencedIds(values, count);
      const missing = used.some((u, id) => u === 1 && !labels.has(id));
      if (!missing || attempt >= 3) return packedFromDump(keys, values, count, (id) => labels.get(id));
    }
  }

  /**
   * Replaces the whole binding set at once. The new set is built in a new
   * map and swapped in with one update, so every connection sees exactly the
   * old set or exactly the new one. An identical set changes nothing.
   */
  replaceBindings(next: readonly Binding[]): ReplaceResult {
    return this.replacePackedBindings(packBindingSet(next));
  }

  /** replaceBindings for a packed set (see bindingset.ts), as tubectl load-bindings parses a file. */
  replacePackedBindings(next: PackedBindings): ReplaceResult {
    // Everything is compared in the encoding the map holds: the packed keys
    // of the new set, diffed against a dump of the set in force.
    const { index } = indexBindingSet(next);
    if (next.count > MAX_BINDINGS) {
      throw new TubularError('ENOSPC', `${next.count} bindings exceed the capacity of ${MAX_BINDINGS}`);
    }
    const keys = next.keys;
    return this.write(() => {
      let known = this.dests.entries();
      const idOf = (list: DestinationEntry[]): Map<string, number> => new Map(list.map((d) => [destinationName(d), d.id]));
      // Values with the ids of destinations that exist; a missing one is a change.
      const { slotOf, slots } = destinationSlots(next);
      let byName = idOf(known);
      const ids = Int32Array.from(slots, (d) => byName.get(destinationName(d)) ?? -1);
      let values = packValues(next, slotOf, ids);
      // The same file again: every destination exists and the bytes are
      // those the last replace wrote, with no change since.
      const stored = this.getMeta(META_DIGEST);
      if (stored !== 0n && !ids.includes(-1) && setDigest(keys, values) === stored) {
        return { added: 0, removed: 0, changed: 0, unchanged: next.count };
      }
      const pending = (i: number): boolean => slotOf[i] >= 0 && ids[slotOf[i]] < 0;
      const current = this.store.with((s) => s.dump());
      const { staleRejects, removedKeys, addedKeys, ...result } = diffBindingSets({ index, values, count: next.count, pending }, current);
      if (result.added === 0 && result.removed === 0 && result.changed === 0) {
        this.storeDigest(setDigest(keys, values));
        return result;
      }
      // Room for the new destinations, checked before anything is created:
      // first without the destinations nothing in force uses.
      let missing = slots.flatMap((_, k) => (ids[k] < 0 ? [k] : []));
      if (known.length + missing.length > MAX_DESTINATIONS) {
        this.dests.collect(referencedIds(current.values, current.count), known);
        known = this.dests.entries();
        byName = idOf(known);
        slots.forEach((d, k) => { ids[k] = byName.get(destinationName(d)) ?? -1; });
        missing = slots.flatMap((_, k) => (ids[k] < 0 ? [k] : []));
      }
      if (known.length + missing.length > MAX_DESTINATIONS) {
        throw new TubularError('ENOSPC', `the file names ${missing.length} new destinations (label, address family, protocol) ` +
          `but only ${MAX_DESTINATIONS - known.length} of ${MAX_DESTINATIONS} are free: nothing was changed; use fewer labels`);
      }
      return this.changing(() => {
        this.storeDigest(0n);
        this.dests.create(missing.map((k) => slots[k]), known).forEach((id, m) => { ids[missing[m]] = id; });
        values = packValues(next, slotOf, ids);
        const set = this.store.create(next.count);
        try {
          context('fill the new binding set', () => set.updateBatch(keys, values, next.count));
          // Filters: widen to old | new, swap, then narrow to new. The
          // program may skip a lookup only if no binding in force needs it.
          // The swap returns once no program can still see the old set, and
          // the program reads the set before the filters, so narrowing
          // afterwards never hides a binding from a lookup in flight.
          const plans = this.filters().map((f) => ({ map: f.map, plan: planFilter(f.spec, current, next, removedKeys, addedKeys) }));
          for (const p of plans) p.map.updateBatch(p.plan.widen.keys, p.plan.widen.values, p.plan.widen.count);
          this.store.swap(set);
          for (const p of plans) p.map.updateBatch(p.plan.narrow.keys, p.plan.narrow.values, p.plan.narrow.count);
        } finally {
          set.close();
        }
        this.dests.collect(referencedIds(values, next.count));
        // Counters of reject bindings that are gone.
        if (staleRejects.length > 0) {
          const staleKeys = Buffer.alloc(staleRejects.length * BINDING_KEY_SIZE);
          staleRejects.forEach((j, k) => current.keys.copy(staleKeys, k * BINDING_KEY_SIZE, j * BINDING_KEY_SIZE, (j + 1) * BINDING_KEY_SIZE));
          this.maps.reject_metrics.deleteBatch(staleKeys, staleRejects.length);
        }
        this.storeDigest(setDigest(keys, values));
        return result;
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
    const infos = all.map((fd) => context('inspect the socket', () => this.sys.socketInfo(fd)));
    const kinds = infos.map(registrableKind);
    const kind = kinds[0];
    if (all.length > 1) {
      const first = infos[0];
      const group = infos.every((i, n) => i.reusePort && kinds[n].domain === kind.domain && kinds[n].protocol === kind.protocol &&
        i.address === first.address && i.port === first.port);
      if (!group) {
        throw new TubularError('EBADSOCK', `${all.length} sockets for ${label} ${kind.domain} ${kind.protocol} are not one SO_REUSEPORT group: ` +
          'register one socket per family and protocol, or the members of one group (same address and port, SO_REUSEPORT set)');
      }
    }
    for (const fd of all) this.checkNamespace(fd);
    const owner = opts.owner ?? null;
    return this.write(() => this.changing(() => {
      const dest = this.ensureDestination({ label, ...kind }, owner !== null && owner !== 0 ? ROOT_RESERVED_DESTINATIONS : 0);
      const replaced = this.dests.sockets(dest.id)[0] ?? null;
      this.dests.setSockets(dest, all);
      this.dests.setOwner(dest, owner);
      return { label, ...kind, id: dest.id, cookie: infos[0].cookie, cookies: infos.map((i) => i.cookie), replaced };
    }));
  }

  /**
   * Refuses a socket of another network namespace: the data plane could
   * never hand it a connection. In the caller's own namespace the
   * namespace cookies are compared (no privilege needed); elsewhere the
   * socket's namespace is asked for (CAP_NET_ADMIN).
   */
  private checkNamespace(fd: number): void {
    const refuse = (what: string): never => {
      throw new TubularError('EBADSOCK', `the socket belongs to another network namespace (${what}) than the dispatcher's ` +
        `(${this.loc.netns}): create it inside that namespace`);
    };
    if (statSync('/proc/self/ns/net').ino === this.loc.ino) {
      const cookie = context('find the socket\'s network namespace', () => this.sys.socketNetnsCookie(fd));
      if (cookie !== this.sys.ownNetnsCookie()) refuse(`cookie ${cookie}`);
      return;
    }
    const ino = context('find the socket\'s network namespace', () => this.sys.socketNetnsInode(fd));
    if (ino !== this.loc.ino) refuse(`inode ${ino}`);
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
        this.collectDestinations();
      });
    });
  }

  // ---- reading ----

  /** Destinations with their sockets, binding counts and counters, sorted by label. */
  destinations(): DestinationStatus[] {
    this.check();
    const { values, count } = this.store.with((s) => s.dump());
    const counts = bindingCounts(values, count);
    const metrics = this.dests.metrics();
    return this.dests.entries().map((d) => {
      const sockets = this.dests.sockets(d.id);
      const [lookups, misses, errors] = metrics(d.id);
      return { ...d, bindings: counts[d.id], socket: sockets[0] ?? null, sockets, lookups, misses, errors };
    }).sort((a, b) => a.label.localeCompare(b.label) || a.domain.localeCompare(b.domain) || a.protocol.localeCompare(b.protocol));
  }

  /** Refusals counted per reject binding. */
  rejectCounters(): RejectCounter[] {
    this.check();
    const m = this.maps.reject_metrics;
    const cpus = m.valueBytes / 8;
    const { keys, values, count } = m.dump();
    const out: RejectCounter[] = [];
    for (let i = 0; i < count; i++) {
      const k = decodeBindingKey(keys, i * BINDING_KEY_SIZE);
      let rejected = 0n;
      for (let c = 0; c < cpus; c++) rejected += readU64(values, (i * cpus + c) * 8);
      out.push({ protocol: k.protocol === 6 ? 'tcp' : 'udp', prefix: { family: k.family, bytes: k.addr, length: k.prefixlen }, port: k.port, rejected });
    }
    return out.sort((a, b) => formatPrefix(a.prefix).localeCompare(formatPrefix(b.prefix)) || a.port - b.port);
  }

  /** Refusals by reject bindings that found the per-binding counters full. */
  uncountedRejects(): bigint {
    this.check();
    const v = this.maps.reject_overflow.lookup(u32(0));
    if (!v) return 0n;
    let sum = 0n;
    for (let off = 0; off < v.length; off += 8) sum += readU64(v, off);
    return sum;
  }

  status(): Status {
    this.check();
    const info = <T>(get: () => T): T | null => {
      try {
        return get();
      } catch (err) {
        if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) return null;
        throw err;
      }
    };
    const bindings = this.store.with((s) => s.dump().count);
    const link = info(() => ({ pinned: this.link() }));
    return {
      netns: this.netns,
      netnsInode: this.netnsInode,
      stateDir: this.stateDir,
      programId: info(() => this.pinnedProgram(PIN.program) ?? null),
      linkId: link?.pinned?.id ?? null,
      attached: link === null ? null : link.pinned?.attached ?? false,
      layoutVersion: LAYOUT_VERSION,
      bindings,
    };
  }

  /**
   * Replaces the running program with the one built with this code, keeping
   * every map. The new program is pinned before the link switches to it,
   * and the link swaps programs atomically: no connection is dropped.
   */
  upgrade(): { from: number; to: number } {
    return this.write(() => {
      const reuse: Record<string, number> = {};
      for (const name of OBJECT_MAPS) reuse[name] = this.maps[name].fd;
      const obj = context('load the BPF program', () => this.sys.loadObject(programObjectPath(), 'dispatcher', reuse));
      const link = context('open the link', () => this.sys.getPinned(this.dir.at(PIN.link), 0));
      try {
        const to = this.sys.progInfo(obj.progFd);
        if (to.type !== BPF_PROG_TYPE_SK_LOOKUP) throw new TubularError('EINCOMPAT', `the built program has type ${to.type}, not sk_lookup`);
        const from = this.sys.linkInfo(link).progId;
        pinAt(this.sys, obj.progFd, this.dir.at(PENDING_PROGRAM), this.dir.gid);
        context('replace the program of the link', () => this.sys.linkUpdate(link, obj.progFd));
        renameSync(this.dir.at(PENDING_PROGRAM), this.dir.at(PIN.program));
        return { from, to: to.id };
      } finally {
        this.sys.close(link);
        this.sys.close(obj.progFd);
        for (const fd of Object.values(obj.maps)) this.sys.close(fd);
      }
    });
  }
}
