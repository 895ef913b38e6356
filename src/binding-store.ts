// The binding set in force: the inner map in slot 0 of `bindings`, pinned
// as `binding_set` so that readers without CAP_SYS_ADMIN can open it.
//
// A swap pins the new set as `binding_set_new`, updates the slot (atomic
// for the data plane) and renames the pin over `binding_set`. Readers do
// not trust the pin's name: they open the pinned set whose id is the one
// in the slot, so a writer that dies between the swap and the rename never
// makes them show a set the data plane is not using.
import { chmodSync, chownSync, renameSync } from 'node:fs';
import { BpfMap } from './bpfmap.js';
import { TubularError, context, isSystemError } from './errors.js';
import { BINDING_KEY_SIZE, BINDING_SET_SPEC, BINDING_VALUE_SIZE, BPF_ANY, BPF_MAP_TYPE_HASH, PIN, readU32, setCapacity, u32 } from './layout.js';
import type { Native } from './native.js';
import { PIN_MODE, type StateDir } from './statedir.js';

export const PENDING_SET = `${PIN.bindingSet}_new`;
const ZERO = u32(0);
const sleeper = new Int32Array(new SharedArrayBuffer(4));

export class BindingStore {
  constructor(private readonly sys: Native, private readonly dir: StateDir, private readonly outer: BpfMap, private readonly readOnly: boolean) {}

  /** The id of the set the data plane uses. */
  idInForce(): number {
    const v = this.outer.lookup(ZERO, Buffer.alloc(4));
    if (!v) throw new TubularError('EINCOMPAT', 'the dispatcher has no binding set in force: tubectl unload and load again');
    return readU32(v, 0);
  }

  /** The pinned id of `name`, or undefined when there is no such pin. */
  pinnedId(name: string): number | undefined {
    let fd: number;
    try {
      fd = this.sys.getPinned(this.dir.at(name), this.readOnly ? 8 : 0);
    } catch (err) {
      if (isSystemError(err, 'ENOENT')) return undefined;
      throw err;
    }
    try {
      return this.sys.mapInfo(fd).id;
    } finally {
      this.sys.close(fd);
    }
  }

  /**
   * Opens the set in force: the pin (or the pending pin) whose id is in the
   * slot. A writer between its swap and its rename is waited for, briefly.
   */
  open(): BpfMap {
    for (let attempt = 0; attempt < 40; attempt++) {
      const want = this.idInForce();
      for (const name of [PIN.bindingSet, PENDING_SET]) {
        let set: BpfMap;
        try {
          set = BpfMap.open(this.sys, this.dir.at(name), name, BINDING_SET_SPEC, { readOnly: this.readOnly, upTo: true });
        } catch (err) {
          if (isSystemError(err, 'ENOENT')) continue;
          throw err;
        }
        if (set.id === want) return set;
        set.close();
      }
      Atomics.wait(sleeper, 0, 0, Math.min(1 << attempt, 25));
    }
    throw new TubularError('EBUSY', 'the binding set in force is not pinned: a writer is part-way through a change, or died in one; ' +
      'any tubectl command that changes state (run as root) repairs it');
  }

  with<T>(fn: (set: BpfMap) => T): T {
    const set = this.open();
    try {
      return fn(set);
    } finally {
      set.close();
    }
  }

  /** A new, empty set with room for `count` bindings. */
  create(count: number): BpfMap {
    const fd = context('create a binding set', () =>
      this.sys.mapCreate(BPF_MAP_TYPE_HASH, 'binding_set', BINDING_KEY_SIZE, BINDING_VALUE_SIZE, setCapacity(count), 0));
    return BpfMap.adopt(this.sys, 'binding_set', fd);
  }

  /** Makes `set` the set in force: pin as pending, one update of the slot, rename. */
  swap(set: BpfMap): void {
    pinAt(this.sys, set.fd, this.dir.at(PENDING_SET), this.dir.gid);
    this.outer.update(ZERO, u32(set.fd), BPF_ANY);
    renameSync(this.dir.at(PENDING_SET), this.dir.at(PIN.bindingSet));
  }
}

/** Pins fd at file, readable by the group that owns the state. */
export function pinAt(sys: Native, fd: number, file: string, gid: number | undefined): void {
  context(`pin ${file.replace(/^\/proc\/self\/fd\/\d+\//, '')}`, () => sys.pin(fd, file));
  if (gid !== undefined) chownSync(file, -1, gid);
  chmodSync(file, PIN_MODE);
}
