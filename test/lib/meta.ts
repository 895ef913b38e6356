// Reading and writing a slot of a dispatcher's `meta` map from its pin, as
// a test inspects (or plants) what the control plane keeps there.
import path from 'node:path';
import { PIN, readU64, u32, writeU64 } from '../../src/layout.js';
import { native } from '../../src/native.js';

function withMeta<T>(stateDir: string, fn: (fd: number) => T): T {
  const sys = native();
  const fd = sys.getPinned(path.join(stateDir, PIN.meta), 0);
  try {
    return fn(fd);
  } finally {
    sys.close(fd);
  }
}

/** meta[slot] of the dispatcher in stateDir. */
export function readMeta(stateDir: string, slot: number): bigint {
  return withMeta(stateDir, (fd) => {
    const v = Buffer.alloc(8);
    native().mapLookup(fd, u32(slot), v);
    return readU64(v, 0);
  });
}

/** Sets meta[slot] of the dispatcher in stateDir. */
export function writeMeta(stateDir: string, slot: number, value: bigint): void {
  withMeta(stateDir, (fd) => {
    const v = Buffer.alloc(8);
    writeU64(v, value, 0);
    native().mapUpdate(fd, u32(slot), v, 0);
  });
}
