// The dispatcher of one network namespace: its program, its link and the
// pinned maps that hold its state, under <bpffs>/<netns inode>_dispatcher/.
//
// Every method is synchronous: each is a handful of bpf() syscalls. Writers
// take an exclusive flock on the state directory for the duration of one
// method; readers take it shared, briefly. Nothing here depends on a process
// of ours staying alive: the pins are the state.
import { chmodSync, chownSync, existsSync, mkdirSync, openSync, closeSync, readdirSync, renameSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { type Binding, bindingId, sameTarget } from './binding.js';
import {
  type PackedBindings, bindingAt, bindingKey, bindingValue, destinationOf, destinationSlots, diffBindingSets,
  indexBindingSet, packBindingSet, packValues, packedFromDump, unpackBindings,
} from './bindingset.js';
import { type DestinationEntry, type DestinationKey, destinationName } from './destination.js';
import { TubularError, context, isSystemError } from './errors.js';
import {
  BINDING_KEY_SIZE, BINDING_VALUE_SIZE, BPF_ANY, BPF_F_RDONLY, BPF_MAP_TYPE_HASH, DESTINATION_KEY_SIZE,
  DESTINATION_METRICS_SIZE, DESTINATION_VALUE_SIZE, LAYOUT_VERSION, MAX_BINDINGS, MAX_DESTINATIONS, setCapacity,
  META_MAGIC, NO_DESTINATION, OBJECT_MAPS, PIN, SOCKET_VALUE_SIZE, decodeBindingKey, readU32, readU64, u32, writeU64,
} from './layout.js';
import { BLOCKS_FILTER, type FilterSpec, LENGTHS_FILTER, type Packed, planFilter, setFilterBit } from './filters.js';
import { withLock } from './lock.js';
import { native } from './native.js';
import { DEFAULT_BPFFS, DEFAULT_NETNS, netnsInode } from './netns.js';
import { programObjectPath, stateDirName } from './paths.js';
import { formatPrefix, type Prefix } from './prefix.js';
import type { Protocol } from './protocol.js';
import { registrableKind } from './socket.js';
import { DestinationTable } from './destination-table.js';

export interface DispatcherOptions {
  /** network namespace path; default: the caller's (/proc/self/ns/net) */
  netns?: string;
  /** bpffs mount; default /sys/fs/bpf */
  bpffs?: string;
}

export interface CreateOptions extends DispatcherOptions {
  /** gid that may read the state (status, bindings, metrics) without root */
  group?: number;
}

export interface OpenOptions extends DispatcherOptions {
  readOnly?: boolean;
}

export interface DestinationStatus extends DestinationEntry {
  /** the registered socket's cookie, or null when none is registered */
  socket: bigint | null;
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
  cookie: bigint;
  /** the cookie of the socket this one replaced */
  replaced: bigint | null;
}

type MapName = typeof OBJECT_MAPS[number] | 'destinations';
const ALL_MAPS: readonly MapName[] = [...OBJECT_MAPS, 'destinations'];
const STATE_MODE = 0o750;
const PIN_MODE = 0o640;

function resolve(opts: DispatcherOptions): { netns: string; bpffs: string; ino: number; dir: string } {
  const netns = opts.netns ?? DEFAULT_NETNS;
  const bpffs = opts.bpffs ?? DEFAULT_BPFFS;
  const ino = netnsInode(netns);
  return { netns, bpffs, ino, dir: path.join(bpffs, stateDirName(ino)) };
}

const notLoaded = (netns: string, dir: string): TubularError =>
  new TubularError('ENOTLOADED', `no dispatcher is loaded in network namespace ${netns} (no ${dir}): run tubectl load`);

const ZERO = u32(0);
const metaValue = (): bigint => (BigInt(META_MAGIC) << 32n) | BigInt(LAYOUT_VERSION);
/** meta slot holding the digest of the binding set a replace wrote (0: unknown) */
const META_DIGEST = u32(1);

/** 64 bits of SHA-256 over a packed set, never 0. */
function setDigest(keys: Buffer, values: Buffer): bigint {
  const d = createHash('sha256').update(keys).update(values).digest().readBigUInt64LE(0);
  return d === 0n ? 1n : d;
}

/** Removes a directory of pins (bpffs has no recursive delete). */
function removePins(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) unlinkSync(path.join(dir, name));
  rmdirSync(dir);
}

/** Clears leftovers of creates or unloads that died half-way. (bpffs forbids dots in names.) */
function removeStale(bpffs: string, ino: number): void {
  const prefix = `${stateDirName(ino)}_`;
  for (const name of readdirSync(bpffs)) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(name.lastIndexOf('_') + 1));
    if (Number.isInteger(pid) && pid !== process.pid && !existsSync(`/proc/${pid}`)) removePins(path.join(bpffs, name));
  }
}

export class Dispatcher {
  readonly netns: string;
  readonly netnsInode: number;
  readonly stateDir: string;
  readonly readOnly: boolean;
  private readonly dirFd: number;
  private readonly maps: Record<MapName, number>;
  private readonly dests: DestinationTable;
  private closed = false;

  private constructor(netns: string, ino: number, dir: string, readOnly: boolean, dirFd: number, maps: Record<MapName, number>) {
    this.netns = netns;
    this.netnsInode = ino;
    this.stateDir = dir;
    this.readOnly = readOnly;
    this.dirFd = dirFd;
    this.maps = maps;
    this.dests = new DestinationTable(maps);
  }

  /** Whether a dispatcher is loaded in the namespace. */
  static isLoaded(opts: DispatcherOptions = {}): boolean {
    return existsSync(resolve(opts).dir);
  }

  /**
   * Loads the program, creates and pins its maps, and attaches it to the
   * namespace. Built in a temporary directory and renamed into place, so a
   * failure at any step leaves nothing behind.
   */
  static create(opts: CreateOptions = {}): Dispatcher {
    const { netns, bpffs, ino, dir } = resolve(opts);
    if (existsSync(dir)) {
      throw new TubularError('ELOADED', `a dispatcher is already loaded in network namespace ${netns} (${dir}): use tubectl upgrade to replace its program, or tubectl unload first`);
    }
    const n = native();
    removeStale(bpffs, ino);
    const tmp = path.join(bpffs, `${stateDirName(ino)}_create_${process.pid}`);
    const fds: number[] = [];
    const keep = (fd: number): number => { fds.push(fd); return fd; };
    try {
      context(`create ${tmp}`, () => mkdirSync(tmp, { mode: STATE_MODE }));
      if (opts.group !== undefined) chownSync(tmp, -1, opts.group);
      chmodSync(tmp, STATE_MODE);
      const pin = (fd: number, name: string): void => pinWithMode(fd, path.join(tmp, name), opts.group);
      const obj = context('load the BPF program', () => n.loadObject(programObjectPath(), 'dispatcher', {}));
      keep(obj.progFd);
      Object.values(obj.maps).forEach(keep);
      const destinations = keep(context('create the destinations map', () =>
        n.mapCreate(BPF_MAP_TYPE_HASH, 'destinations', DESTINATION_KEY_SIZE, DESTINATION_VALUE_SIZE, MAX_DESTINATIONS, 0)));
      const set = keep(createBindingSet(0));
      n.mapUpdate(obj.maps.bindings, ZERO, u32(set), BPF_ANY);
      const meta = Buffer.alloc(8);
      writeU64(meta, metaValue(), 0);
      n.mapUpdate(obj.maps.meta, ZERO, meta, BPF_ANY);
      for (const name of OBJECT_MAPS) pin(obj.maps[name], name);
      pin(destinations, PIN.destinations);
      pin(set, PIN.bindingSet);
      pin(obj.progFd, PIN.program);
      const nsFd = keep(context(`open network namespace ${netns}`, () => openSync(netns, 'r')));
      const link = keep(context(`attach to network namespace ${netns}`, () => n.linkCreateNetns(obj.progFd, nsFd)));
      pin(link, PIN.link);
      try {
        renameSync(tmp, dir);
      } catch (err) {
        if (isSystemError(err, 'ENOTEMPTY') || isSystemError(err, 'EEXIST')) {
          throw new TubularError('ELOADED', `a dispatcher was loaded in network namespace ${netns} at the same time: use that one`);
        }
        throw err;
      }
    } catch (err) {
      try { removePins(tmp); } catch { /* the original error matters more */ }
      throw err;
    } finally {
      for (const fd of fds) n.close(fd);
    }
    return Dispatcher.open(opts);
  }

  /** Opens the pinned state of a loaded dispatcher. */
  static open(opts: OpenOptions = {}): Dispatcher {
    const { netns, ino, dir } = resolve(opts);
    const readOnly = opts.readOnly ?? false;
    const n = native();
    let dirFd: number;
    try {
      dirFd = openSync(dir, 'r');
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) throw notLoaded(netns, dir);
      return context(`open ${dir}`, () => { throw err; });
    }
    const maps: Partial<Record<MapName, number>> = {};
    try {
      for (const name of ALL_MAPS) {
        maps[name] = context(`open ${path.join(dir, name)}`, () => n.getPinned(path.join(dir, name), readOnly ? BPF_F_RDONLY : 0));
      }
      const meta = Buffer.alloc(8);
      n.mapLookup(maps.meta!, ZERO, meta);
      const stamp = readU64(meta, 0);
      if (stamp !== metaValue()) {
        const version = Number(stamp & 0xffffffffn);
        throw new TubularError('EINCOMPAT', `the dispatcher in ${dir} has state layout ${version}, this tubectl understands ${LAYOUT_VERSION}: ` +
          'use the matching version, or tubectl unload and load again (bindings and registrations are lost)');
      }
    } catch (err) {
      for (const fd of Object.values(maps)) n.close(fd);
      closeSync(dirFd);
      throw err;
    }
    return new Dispatcher(netns, ino, dir, readOnly, dirFd, maps as Record<MapName, number>);
  }

  /** Detaches the program and removes all state: bindings and registrations are gone. */
  static unload(opts: DispatcherOptions = {}): void {
    const { netns, bpffs, ino, dir } = resolve(opts);
    let dirFd: number;
    try {
      dirFd = openSync(dir, 'r');
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) throw notLoaded(netns, dir);
      throw err;
    }
    try {
      withLock(dirFd, true, () => {
        const doomed = path.join(bpffs, `${stateDirName(ino)}_unload_${process.pid}`);
        context(`remove ${dir}`, () => renameSync(dir, doomed));
        removePins(doomed);
      });
    } finally {
      closeSync(dirFd);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const n = native();
    for (const fd of Object.values(this.maps)) n.close(fd);
    closeSync(this.dirFd);
  }

  private read<T>(fn: () => T): T {
    this.check();
    return withLock(this.dirFd, false, fn);
  }

  private write<T>(fn: () => T): T {
    this.check();
    if (this.readOnly) throw new TubularError('EPERM', 'the dispatcher was opened read-only: writing needs root');
    return withLock(this.dirFd, true, () => {
      this.recover();
      return fn();
    });
  }

  private check(): void {
    if (this.closed) throw new Error('the dispatcher is closed');
  }

  private pin(fd: number, name: string): void {
    pinWithMode(fd, path.join(this.stateDir, name), statSync(this.stateDir).gid);
  }

  /** The digest of the set in force, when the last change to it was a replace. */
  private storedDigest(): bigint {
    const v = Buffer.alloc(8);
    native().mapLookup(this.maps.meta, META_DIGEST, v);
    return readU64(v, 0);
  }

  private storeDigest(digest: bigint): void {
    const v = Buffer.alloc(8);
    writeU64(v, digest, 0);
    native().mapUpdate(this.maps.meta, META_DIGEST, v, BPF_ANY);
  }

  /** Finishes a replace that died between swapping the set and re-pinning it. */
  private recover(): void {
    const pending = path.join(this.stateDir, `${PIN.bindingSet}_new`);
    if (!existsSync(pending)) return;
    const n = native();
    const fd = n.getPinned(pending, 0);
    try {
      const current = Buffer.alloc(4);
      n.mapLookup(this.maps.bindings, ZERO, current);
      if (n.mapInfo(fd).id === readU32(current, 0)) renameSync(pending, path.join(this.stateDir, PIN.bindingSet));
      else unlinkSync(pending);
    } finally {
      n.close(fd);
    }
  }

  /** Runs fn with an fd of the binding set in force. */
  private withBindingSet<T>(fn: (fd: number) => T): T {
    const n = native();
    const fd = n.getPinned(path.join(this.stateDir, PIN.bindingSet), this.readOnly ? BPF_F_RDONLY : 0);
    try {
      return fn(fd);
    } finally {
      n.close(fd);
    }
  }

  // ---- bindings ----

  /** Adds a binding, or replaces the one with the same protocol, prefix and port. */
  bind(b: Binding): BindResult {
    return this.write(() => this.withBindingSet((set) => {
      const n = native();
      const key = bindingKey(b);
      const old = Buffer.alloc(BINDING_VALUE_SIZE);
      const existed = n.mapLookup(set, key, old);
      const oldId = existed ? readU32(old, 0) : NO_DESTINATION;
      const labels = existed ? this.dests.labels() : undefined;
      const replaced = existed ? unpackBindings(key, old, 1, (id) => labels!.get(id))[0] : undefined;
      if (replaced && sameTarget(replaced, b)) return { replaced };
      this.storeDigest(0n);
      const dest = destinationOf(b);
      const entry = dest ? this.dests.ensure(dest) : undefined;
      // Make the length and the block bit visible before the binding, so
      // the program never skips a lookup that would match.
      for (const f of this.filters()) {
        const at = f.spec.at(key, 0);
        if (at >= 0) setFilterBit(f.fd, f.spec, at, true);
      }
      this.insert(set, key, bindingValue(entry ? entry.id : NO_DESTINATION, b.action));
      if (entry && entry.id !== oldId) this.dests.setBindingCount(entry, entry.bindings + 1);
      if (oldId !== NO_DESTINATION && oldId !== entry?.id) this.dests.release(oldId);
      if (replaced?.action === 'reject' && b.action !== 'reject') n.mapDelete(this.maps.reject_metrics, key);
      return replaced ? { replaced } : {};
    }));
  }

  /** Inserts into the set in force; a full set is first rebuilt twice as large, and swapped in. */
  private insert(set: number, key: Buffer, value: Buffer): void {
    const n = native();
    try {
      n.mapUpdate(set, key, value, BPF_ANY);
      return;
    } catch (err) {
      if (!isSystemError(err, 'E2BIG')) throw err;
    }
    const { keys, values, count } = n.mapDump(set, BINDING_KEY_SIZE, BINDING_VALUE_SIZE);
    if (count >= MAX_BINDINGS) {
      throw new TubularError('ENOSPC', `the binding set is full (${MAX_BINDINGS} bindings): unbind some first`);
    }
    const bigger = createBindingSet(count + 1);
    try {
      if (count > 0) n.mapUpdateBatch(bigger, keys, values, count, BPF_ANY);
      n.mapUpdate(bigger, key, value, BPF_ANY);
      this.swapBindingSet(bigger);
    } finally {
      n.close(bigger);
    }
  }

  /** Makes `set` the binding set in force: one update of the outer map, then the pin. */
  private swapBindingSet(set: number): void {
    const pending = `${PIN.bindingSet}_new`;
    this.pin(set, pending);
    native().mapUpdate(this.maps.bindings, ZERO, u32(set), BPF_ANY);
    renameSync(path.join(this.stateDir, pending), path.join(this.stateDir, PIN.bindingSet));
  }

  /** Removes the binding with this protocol, prefix and port; label, if given, must match. */
  unbind(b: Pick<Binding, 'protocol' | 'prefix' | 'port'> & { label?: string }): Binding {
    return this.write(() => this.withBindingSet((set) => {
      const n = native();
      const key = bindingKey(b);
      const value = Buffer.alloc(BINDING_VALUE_SIZE);
      const name = bindingId(b);
      if (!n.mapLookup(set, key, value)) {
        throw new TubularError('ENOENT', `there is no binding ${name}: tubectl bindings lists them`);
      }
      const labels = this.dests.labels();
      const existing = unpackBindings(key, value, 1, (id) => labels.get(id))[0];
      if (b.label !== undefined && b.label !== existing.label) {
        throw new TubularError('EINVAL', `the binding ${name} belongs to ${existing.label ? `label "${existing.label}"` : 'no label'}, not "${b.label}": nothing was changed`);
      }
      this.storeDigest(0n);
      n.mapDelete(set, key);
      n.mapDelete(this.maps.reject_metrics, key);
      // Clear the length bit and the block bit only when no other binding needs them.
      const { keys, count } = n.mapDump(set, BINDING_KEY_SIZE, BINDING_VALUE_SIZE);
      for (const f of this.filters()) {
        const at = f.spec.at(key, 0);
        let needed = at < 0;
        for (let i = 0; i < count && !needed; i++) needed = f.spec.at(keys, i * BINDING_KEY_SIZE) === at;
        if (!needed) setFilterBit(f.fd, f.spec, at, false);
      }
      const id = readU32(value, 0);
      if (id !== NO_DESTINATION) this.dests.release(id);
      return existing;
    }));
  }

  /** All bindings, most preferred first. */
  bindings(): Binding[] {
    return this.read(() => this.readBindings());
  }

  private readBindings(): Binding[] {
    const set = this.readPackedBindings();
    return Array.from({ length: set.count }, (_, i) => bindingAt(set, i));
  }

  /** All bindings, packed (see bindingset.ts), in no particular order: what tubectl bindings formats. */
  packedBindings(): PackedBindings {
    return this.read(() => this.readPackedBindings());
  }

  private readPackedBindings(): PackedBindings {
    const labels = this.dests.labels();
    return this.withBindingSet((set) => {
      const { keys, values, count } = native().mapDump(set, BINDING_KEY_SIZE, BINDING_VALUE_SIZE);
      return packedFromDump(keys, values, count, (id) => labels.get(id));
    });
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
      const n = native();
      const known = this.dests.entries();
      const byName = new Map(known.map((d) => [destinationName(d), d]));
      // Values with the ids of destinations that exist; a missing one is a change.
      const { slotOf, slots } = destinationSlots(next);
      const ids = Int32Array.from(slots, (d) => byName.get(destinationName(d))?.id ?? -1);
      let values = packValues(next, slotOf, ids);
      // The same file again: every destination exists and the bytes are
      // those the last replace wrote, with no change since.
      const stored = this.storedDigest();
      if (stored !== 0n && !ids.includes(-1) && setDigest(keys, values) === stored) {
        return { added: 0, removed: 0, changed: 0, unchanged: next.count };
      }
      const pending = (i: number): boolean => slotOf[i] >= 0 && ids[slotOf[i]] < 0;
      const current = this.withBindingSet((set) => n.mapDump(set, BINDING_KEY_SIZE, BINDING_VALUE_SIZE));
      const { staleRejects, removedKeys, addedKeys, ...result } = diffBindingSets({ index, values, count: next.count, pending }, current);
      if (result.added === 0 && result.removed === 0 && result.changed === 0) {
        this.storeDigest(setDigest(keys, values));
        return result;
      }
      this.storeDigest(0n);

      // Destinations: create the missing ones, then count bindings per id.
      const missing = slots.flatMap((_, k) => (ids[k] < 0 ? [k] : []));
      this.dests.create(missing.map((k) => slots[k]), known).forEach((id, m) => { ids[missing[m]] = id; });
      values = packValues(next, slotOf, ids);
      const counts = new Map<number, number>();
      const perSlot = new Int32Array(slots.length);
      for (let i = 0; i < next.count; i++) if (slotOf[i] >= 0) perSlot[slotOf[i]]++;
      perSlot.forEach((c, k) => counts.set(ids[k], (counts.get(ids[k]) ?? 0) + c));
      const set = createBindingSet(next.count);
      try {
        if (next.count > 0) context('fill the new binding set', () => n.mapUpdateBatch(set, keys, values, next.count, BPF_ANY));
        // Filters: widen to old | new, swap, then narrow to new. The
        // program may skip a lookup only if no binding in force needs it.
        // The swap returns once no program can still see the old set, and
        // the program reads the set before the filters, so narrowing
        // afterwards never hides a binding from a lookup in flight.
        const plans = this.filters().map((f) => ({ fd: f.fd, plan: planFilter(f.spec, current, next, removedKeys, addedKeys) }));
        for (const p of plans) writeEntries(p.fd, p.plan.widen);
        this.swapBindingSet(set);
        for (const p of plans) writeEntries(p.fd, p.plan.narrow);
      } finally {
        n.close(set);
      }
      for (const d of known) this.dests.setBindingCount(d, counts.get(d.id) ?? 0);
      this.storeDigest(setDigest(keys, values));
      // Counters of reject bindings that are gone.
      if (staleRejects.length > 0) {
        const staleKeys = Buffer.alloc(staleRejects.length * BINDING_KEY_SIZE);
        staleRejects.forEach((j, k) => current.keys.copy(staleKeys, k * BINDING_KEY_SIZE, j * BINDING_KEY_SIZE, (j + 1) * BINDING_KEY_SIZE));
        n.mapDeleteBatch(this.maps.reject_metrics, staleKeys, staleRejects.length);
      }
      return result;
    });
  }

  /** The two filters in front of the binding set, with their maps. */
  private filters(): Array<{ spec: FilterSpec; fd: number }> {
    return [{ spec: LENGTHS_FILTER, fd: this.maps.lengths }, { spec: BLOCKS_FILTER, fd: this.maps.blocks }];
  }

  // ---- sockets ----

  /**
   * Registers a socket for a label. Its domain and protocol choose the
   * destination; a socket already there is replaced.
   */
  registerSocket(label: string, fd: number): Registration {
    const n = native();
    const info = context('inspect the socket', () => n.socketInfo(fd));
    const kind = registrableKind(info);
    return this.write(() => {
      const dest = this.dests.ensure({ label, ...kind });
      const key = u32(dest.id);
      const old = Buffer.alloc(SOCKET_VALUE_SIZE);
      const replaced = n.mapLookup(this.maps.sockets, key, old) ? readU64(old, 0) : null;
      const value = Buffer.alloc(SOCKET_VALUE_SIZE);
      writeU64(value, BigInt(fd), 0);
      context(`register the socket for ${destinationName(dest)}`, () => n.mapUpdate(this.maps.sockets, key, value, BPF_ANY));
      return { label, ...kind, id: dest.id, cookie: info.cookie, replaced };
    });
  }

  /** Removes the socket of a destination; its bindings then refuse connections. */
  unregisterSocket(d: DestinationKey): void {
    this.write(() => {
      const dest = this.dests.lookup(d);
      if (!dest || !this.dests.deleteSocket(dest.id)) {
        throw new TubularError('ENOENT', `no socket is registered for ${destinationName(d)}: tubectl list shows what is`);
      }
      this.dests.setBindingCount(dest, dest.bindings);
    });
  }

  // ---- reading ----

  /** Destinations with their socket and counters, sorted by label. */
  destinations(): DestinationStatus[] {
    return this.read(() => {
      const n = native();
      const cpus = n.numPossibleCpus();
      const { values: perCpu } = n.mapDump(this.maps.destination_metrics, 4, DESTINATION_METRICS_SIZE * cpus);
      const socket = Buffer.alloc(SOCKET_VALUE_SIZE);
      return this.dests.entries().map((d) => {
        const sum = [0n, 0n, 0n];
        for (let c = 0; c < cpus; c++) {
          const off = (d.id * cpus + c) * DESTINATION_METRICS_SIZE;
          for (let f = 0; f < 3; f++) sum[f] += readU64(perCpu, off + f * 8);
        }
        const has = n.mapLookup(this.maps.sockets, u32(d.id), socket);
        return { ...d, socket: has ? readU64(socket, 0) : null, lookups: sum[0], misses: sum[1], errors: sum[2] };
      }).sort((a, b) => a.label.localeCompare(b.label) || a.domain.localeCompare(b.domain) || a.protocol.localeCompare(b.protocol));
    });
  }

  /** Refusals counted per reject binding. */
  rejectCounters(): RejectCounter[] {
    return this.read(() => {
      const n = native();
      const cpus = n.numPossibleCpus();
      const { keys, values, count } = n.mapDump(this.maps.reject_metrics, BINDING_KEY_SIZE, 8 * cpus);
      const out: RejectCounter[] = [];
      for (let i = 0; i < count; i++) {
        const k = decodeBindingKey(keys, i * BINDING_KEY_SIZE);
        let rejected = 0n;
        for (let c = 0; c < cpus; c++) rejected += readU64(values, (i * cpus + c) * 8);
        out.push({
          protocol: k.protocol === 6 ? 'tcp' : 'udp',
          prefix: { family: k.family, bytes: k.addr, length: k.prefixlen },
          port: k.port,
          rejected,
        });
      }
      return out.sort((a, b) => formatPrefix(a.prefix).localeCompare(formatPrefix(b.prefix)) || a.port - b.port);
    });
  }

  status(): Status {
    return this.read(() => {
      const n = native();
      const info = (name: string, get: (fd: number) => number): number | null => {
        try {
          const fd = n.getPinned(path.join(this.stateDir, name), 0);
          try { return get(fd); } finally { n.close(fd); }
        } catch (err) {
          if (isSystemError(err, 'EACCES') || isSystemError(err, 'EPERM')) return null;
          throw err;
        }
      };
      const bindings = this.withBindingSet((set) => n.mapDump(set, BINDING_KEY_SIZE, BINDING_VALUE_SIZE).count);
      return {
        netns: this.netns,
        netnsInode: this.netnsInode,
        stateDir: this.stateDir,
        programId: info(PIN.program, (fd) => n.progInfo(fd).id),
        linkId: info(PIN.link, (fd) => n.linkInfo(fd).id),
        layoutVersion: LAYOUT_VERSION,
        bindings,
      };
    });
  }

  /**
   * Replaces the running program with the one built with this code, keeping
   * every map. The link swaps programs atomically: no connection is dropped.
   */
  upgrade(): { from: number; to: number } {
    return this.write(() => {
      const n = native();
      const reuse: Record<string, number> = {};
      for (const name of OBJECT_MAPS) reuse[name] = this.maps[name];
      const obj = context('load the BPF program', () => n.loadObject(programObjectPath(), 'dispatcher', reuse));
      const link = n.getPinned(path.join(this.stateDir, PIN.link), 0);
      try {
        const from = n.linkInfo(link).progId;
        context('replace the program of the link', () => n.linkUpdate(link, obj.progFd));
        const pending = `${PIN.program}_new`;
        this.pin(obj.progFd, pending);
        renameSync(path.join(this.stateDir, pending), path.join(this.stateDir, PIN.program));
        return { from, to: n.progInfo(obj.progFd).id };
      } finally {
        n.close(link);
        n.close(obj.progFd);
        for (const fd of Object.values(obj.maps)) n.close(fd);
      }
    });
  }
}

function writeEntries(fd: number, p: Packed): void {
  if (p.count > 0) native().mapUpdateBatch(fd, p.keys, p.values, p.count, BPF_ANY);
}

function createBindingSet(count: number): number {
  return context('create a binding set', () =>
    native().mapCreate(BPF_MAP_TYPE_HASH, 'binding_set', BINDING_KEY_SIZE, BINDING_VALUE_SIZE, setCapacity(count), 0));
}

function pinWithMode(fd: number, file: string, gid: number | undefined): void {
  context(`pin ${file}`, () => native().pin(fd, file));
  if (gid !== undefined) chownSync(file, -1, gid);
  chmodSync(file, PIN_MODE);
}
