// A handle on one BPF map: its fd, its name and its sizes, checked against
// what the code expects when it is opened (cilium/ebpf's Map is the model).
// The handle owns the fd: close() it, or let the Dispatcher do it.
import { TubularError, context, isSystemError } from './errors.js';
import { BPF_ANY, BPF_F_MMAPABLE, BPF_F_NO_PREALLOC, BPF_F_RDONLY, type MapSpec } from './layout.js';
import type { MapInfo, Native } from './native.js';
import { waitAll } from './waits.js';

const PERCPU = new Set([5, 6, 10]); // PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH
/** Batches of at least this many elements are written by two threads (startUpdateBatch). */
const SPLIT_BATCH = 16_384;

/** A map's entries: `count` keys and values, packed. */
export interface Dump { keys: Buffer; values: Buffer; count: number }

export class BpfMap {
  private closed = false;

  /**
   * @param writable whether the fd may write: only such an fd maps an
   * mmapable array (the kernel refuses any mapping of a read-only one)
   */
  private constructor(readonly sys: Native, readonly name: string, readonly fd: number, readonly info: MapInfo, readonly writable: boolean) {}

  /** Wraps an fd this code just created or loaded; takes ownership. */
  static adopt(sys: Native, name: string, fd: number): BpfMap {
    return new BpfMap(sys, name, fd, sys.mapInfo(fd), true);
  }

  /**
   * Opens a pinned map and checks its type, sizes and flags (a spec's
   * maxEntries is an upper bound when `upTo` is set), so a map written by
   * another version, or planted, is refused before anything reads it.
   */
  static open(sys: Native, file: string, name: string, spec: MapSpec, opts: { readOnly?: boolean; upTo?: boolean } = {}): BpfMap {
    const fd = context(`open ${name}`, () => sys.getPinned(file, opts.readOnly ? BPF_F_RDONLY : 0));
    try {
      const info = sys.mapInfo(fd);
      const problem = mismatch(info, spec, opts.upTo ?? false);
      if (problem) {
        throw new TubularError('EINCOMPAT', `the pinned map ${name} is not what this version expects (${problem}): ` +
          'it was written by another version, or replaced; use the matching tubectl, or tubectl unload and load again');
      }
      return new BpfMap(sys, name, fd, info, !opts.readOnly);
    } catch (err) {
      sys.close(fd);
      throw err;
    }
  }

  get id(): number {
    return this.info.id;
  }

  /** Bytes of one value as the syscalls see it (per-CPU maps: one slot per possible CPU). */
  get valueBytes(): number {
    return PERCPU.has(this.info.type) ? Math.ceil(this.info.valueSize / 8) * 8 * this.sys.numPossibleCpus() : this.info.valueSize;
  }

  lookup(key: Buffer, value: Buffer = Buffer.alloc(this.valueBytes)): Buffer | undefined {
    return this.sys.mapLookup(this.fd, key, value) ? value : undefined;
  }

  /** Values of `count` packed keys (missing ones zero), one call into the addon. */
  lookupMany(keys: Buffer, count: number): Buffer {
    const values = Buffer.alloc(count * this.valueBytes);
    if (count > 0) this.sys.mapLookupMany(this.fd, keys, values, count);
    return values;
  }

  /**
   * The entries of these indices of an array, packed: read through a
   * mapping (no syscall per entry) when the array is mmapable and this fd
   * may map it, else looked up one by one.
   */
  gather(indices: Uint32Array): Buffer {
    if (indices.length === 0) return Buffer.alloc(0);
    if (!this.writable || !(this.info.flags & BPF_F_MMAPABLE)) {
      const keys = Buffer.from(indices.buffer, indices.byteOffset, indices.byteLength); // host-order u32 keys
      return this.lookupMany(keys, indices.length);
    }
    const values = Buffer.alloc(indices.length * this.info.valueSize);
    this.sys.arrayGather(this.fd, indices, values);
    return values;
  }

  /** Writes packed entries at these indices of an mmapable array, through a mapping. */
  scatter(indices: Uint32Array, values: Buffer): void {
    if (indices.length > 0) this.sys.arrayScatter(this.fd, indices, values);
  }

  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    this.sys.mapUpdate(this.fd, key, value, flags);
  }

  /** false when the key was not there (a sockmap says EINVAL for an empty slot: also false) */
  delete(key: Buffer): boolean {
    try {
      return this.sys.mapDelete(this.fd, key);
    } catch (err) {
      if (isSystemError(err, 'EINVAL') && this.info.type === 15) return false;
      throw err;
    }
  }

  updateBatch(keys: Buffer, values: Buffer, count: number, flags = BPF_ANY): void {
    if (count > 0) this.sys.mapUpdateBatch(this.fd, keys, values, count, flags);
  }

  /**
   * updateBatch on threads of its own: two for a large batch, each writing
   * half (the kernel's hash and array maps take concurrent writers; filling
   * 100k bindings takes half the time). Returns what waits for them and
   * throws the first failure; keys and values must not change until then.
   */
  startUpdateBatch(keys: Buffer, values: Buffer, count: number, flags = BPF_ANY): () => void {
    const parts = count >= SPLIT_BATCH ? 2 : count > 0 ? 1 : 0;
    const keySize = this.info.keySize;
    const valueSize = this.valueBytes;
    const waits: Array<() => void> = [];
    let failed: { err: unknown } | undefined;
    for (let p = 0, from = 0; p < parts; p++) {
      const to = p === parts - 1 ? count : Math.ceil(count / parts);
      try {
        const handle = this.sys.mapUpdateBatchStart(this.fd, keys.subarray(from * keySize, to * keySize),
          values.subarray(from * valueSize, to * valueSize), to - from, flags);
        const finish = (): void => { this.sys.mapUpdateBatchFinish(handle); };
        // A part's error counts what it wrote of its own elements: say which they are.
        const part = `elements ${from + 1} to ${to} of ${count}`;
        waits.push(parts > 1 ? () => context(part, finish) : finish);
      } catch (err) {
        failed = { err };
        break;
      }
      from = to;
    }
    return () => waitAll(waits, failed);
  }

  deleteBatch(keys: Buffer, count: number): void {
    if (count > 0) this.sys.mapDeleteBatch(this.fd, keys, count);
  }

  dump(): Dump {
    return this.sys.mapDump(this.fd, this.info.keySize, this.valueBytes);
  }

  /**
   * Starts a dump on a thread of its own (it only reads the map) and
   * returns what waits for it: call it before closing the map.
   */
  startDump(): () => Dump {
    const handle = this.sys.mapDumpStart(this.fd, this.info.keySize, this.valueBytes);
    return () => this.sys.mapDumpFinish(handle);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sys.close(this.fd);
  }
}

/** What differs between a map and its spec, or undefined. */
export function mismatch(info: Pick<MapInfo, 'type' | 'keySize' | 'valueSize' | 'maxEntries' | 'flags'>, spec: MapSpec, upTo = false): string | undefined {
  if (info.type !== spec.type) return `type ${info.type}, expected ${spec.type}`;
  if (info.keySize !== spec.keySize) return `key size ${info.keySize}, expected ${spec.keySize}`;
  if (info.valueSize !== spec.valueSize) return `value size ${info.valueSize}, expected ${spec.valueSize}`;
  if (upTo ? info.maxEntries > spec.maxEntries : info.maxEntries !== spec.maxEntries) {
    return `${info.maxEntries} entries, expected ${upTo ? 'at most ' : ''}${spec.maxEntries}`;
  }
  // Only the flags a spec is about: preallocation and mmap (the kernel may add others).
  const want = spec.flags ?? 0;
  const about = BPF_F_NO_PREALLOC | BPF_F_MMAPABLE;
  if ((info.flags & about) !== (want & about)) return `flags ${info.flags}, expected ${want}`;
  return undefined;
}
