// Generations: the binding set in force and the previous one, each with its
// two filters, in slot 0 or 1 of the outer maps `bindings`, `lengths` and
// `blocks`; `generation` names the slot in force. Each inner map is also
// pinned as <kind>_<slot> (binding_set_0, lengths_1...) so that readers
// without CAP_SYS_ADMIN can open it, and so that its fd can be found again.
//
// Putting a map into a slot pins it as <kind>_<slot>_new, updates the slot
// and renames the pin into place. Nobody trusts a pin's name: an inner map
// is opened by the id its slot holds, from the pin or the pending pin, so a
// writer that dies between the update and the rename never makes anyone use
// a map the data plane does not.
//
// The standby slot may be rewritten only when no program still uses it:
// settle() waits for that (an update of an outer map returns only after an
// RCU grace period, when every program that started before it has ended).
// A flip does not wait: the next writer that rewrites the standby does,
// on a thread while it parses its file (settleStart), and the dispatcher's
// meta says whether a flip has not been waited for since (META_UNSETTLED).
import { chmodSync, chownSync, renameSync } from 'node:fs';
import { BpfMap } from './bpfmap.js';
import { TubularError, context, isSystemError } from './errors.js';
import {
  BINDING_KEY_SIZE, BINDING_VALUE_SIZE, BPF_ANY, BPF_F_RDONLY, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH, GENERATIONS, INNER_SPECS,
  type InnerKind, OUTER_OF, innerPin, readU32, setCapacity, u32,
} from './layout.js';
import { withPinned } from './links.js';
import { sleep } from './lock.js';
import type { Native } from './native.js';
import { PIN_MODE, type StateDir } from './statedir.js';

const ZERO = u32(0);
export const pendingPin = (kind: InnerKind, slot: number): string => `${innerPin(kind, slot)}_new`;

export interface Outer {
  bindings: BpfMap;
  lengths: BpfMap;
  blocks: BpfMap;
  generation: BpfMap;
}

export class Generations {
  constructor(private readonly sys: Native, private readonly dir: StateDir, private readonly outer: Outer, private readonly readOnly: boolean) {}

  /** The slot of the generation in force. */
  inForce(): number {
    const v = this.outer.generation.lookup(ZERO, Buffer.alloc(4));
    return v ? readU32(v, 0) & (GENERATIONS - 1) : 0;
  }

  /** The id of the inner map in a slot. */
  slotId(kind: InnerKind, slot: number): number {
    const v = this.outer[OUTER_OF[kind]].lookup(u32(slot), Buffer.alloc(4));
    if (!v) throw new TubularError('EINCOMPAT', `the dispatcher has no ${kind} in generation slot ${slot}: tubectl unload and load again`);
    return readU32(v, 0);
  }

  /** The id of the map pinned as `name`, or undefined. */
  pinnedId(name: string): number | undefined {
    return withPinned(this.sys, this.dir.at(name), (fd) => this.sys.mapInfo(fd).id, this.readOnly ? BPF_F_RDONLY : 0);
  }

  /** Opens the inner map in a slot: the pin, or the pending pin, whose id the slot holds. */
  open(kind: InnerKind, slot: number): BpfMap {
    const spec = INNER_SPECS[kind];
    for (let attempt = 0; attempt < 40; attempt++) {
      const want = this.slotId(kind, slot);
      for (const name of [innerPin(kind, slot), pendingPin(kind, slot)]) {
        let m: BpfMap;
        try {
          m = BpfMap.open(this.sys, this.dir.at(name), name, spec, { readOnly: this.readOnly, upTo: spec.upTo });
        } catch (err) {
          if (isSystemError(err, 'ENOENT')) continue;
          throw err;
        }
        if (m.id === want) return m;
        m.close();
      }
      sleep(Math.min(1 << attempt, 25));
    }
    throw new TubularError('EBUSY', `the ${kind} of generation slot ${slot} is not pinned: a writer is part-way through a change, or died in one; ` +
      'any tubectl command that changes state (run as root) repairs it');
  }

  with<T>(kind: InnerKind, slot: number, fn: (m: BpfMap) => T): T {
    const m = this.open(kind, slot);
    try {
      return fn(m);
    } finally {
      m.close();
    }
  }

  /** Runs fn with the binding set of a slot (default: the one in force). */
  withSet<T>(fn: (set: BpfMap) => T, slot = this.inForce()): T {
    return this.with('binding_set', slot, fn);
  }

  /** A new, empty binding set with room for `count` bindings. */
  createSet(count: number): BpfMap {
    const fd = context('create a binding set', () =>
      this.sys.mapCreate(BPF_MAP_TYPE_HASH, 'binding_set', BINDING_KEY_SIZE, BINDING_VALUE_SIZE, setCapacity(count), 0));
    return BpfMap.adopt(this.sys, 'binding_set', fd);
  }

  /** A new, zeroed filter. */
  createFilter(kind: 'lengths' | 'blocks'): BpfMap {
    const spec = INNER_SPECS[kind];
    const fd = context(`create a ${kind} filter`, () => this.sys.mapCreate(BPF_MAP_TYPE_ARRAY, kind, spec.keySize, spec.valueSize, spec.maxEntries, 0));
    return BpfMap.adopt(this.sys, kind, fd);
  }

  /** Puts map into a slot: pin as pending, one update of the outer map, rename. */
  install(kind: InnerKind, slot: number, map: BpfMap): void {
    pinAt(this.sys, map.fd, this.dir.at(pendingPin(kind, slot)), this.dir.gid);
    this.outer[OUTER_OF[kind]].update(u32(slot), u32(map.fd), BPF_ANY);
    renameSync(this.dir.at(pendingPin(kind, slot)), this.dir.at(innerPin(kind, slot)));
  }

  /**
   * install() with the update of the outer map (it returns after an RCU
   * grace period) on a thread: returns what waits for it and renames the
   * pin. Keep map open until then.
   */
  installStart(kind: InnerKind, slot: number, map: BpfMap): () => void {
    pinAt(this.sys, map.fd, this.dir.at(pendingPin(kind, slot)), this.dir.gid);
    const handle = this.sys.mapUpdateStart(this.outer[OUTER_OF[kind]].fd, u32(slot), u32(map.fd), BPF_ANY);
    return () => {
      context(`put the new ${kind} in slot ${slot}`, () => this.sys.mapUpdateFinish(handle));
      renameSync(this.dir.at(pendingPin(kind, slot)), this.dir.at(innerPin(kind, slot)));
    };
  }

  /**
   * Makes `slot` the generation in force: one update. Programs that started
   * before it may still run with the other one; settle() before rewriting it.
   */
  flip(slot: number): void {
    this.outer.generation.update(ZERO, u32(slot), BPF_ANY);
  }

  /**
   * Returns once no program still runs with a generation other than the one
   * in force: rewrites the standby's set into its own slot, and an update
   * of a map-in-map returns only after an RCU grace period.
   */
  settle(): void {
    this.withSet((set) => this.settleStart(set)(), 1 - this.inForce());
  }

  /**
   * settle() on a thread of its own: returns what waits for it. `standby`
   * is the standby's binding set, open until then.
   */
  settleStart(standby: BpfMap): () => void {
    const slot = 1 - this.inForce();
    const handle = this.sys.mapUpdateStart(this.outer.bindings.fd, u32(slot), u32(standby.fd), BPF_ANY);
    return () => context('wait until no program uses the standby generation', () => this.sys.mapUpdateFinish(handle));
  }
}

/** Pins fd at file, readable by the group that owns the state. */
export function pinAt(sys: Native, fd: number, file: string, gid: number | undefined): void {
  context(`pin ${file.replace(/^\/proc\/self\/fd\/\d+\//, '')}`, () => sys.pin(fd, file));
  if (gid !== undefined) chownSync(file, -1, gid);
  chmodSync(file, PIN_MODE);
}
