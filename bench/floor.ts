// The reference programs (floor.bpf.c): the empty sk_lookup program (the
// floor of the data plane's figures), and the kernel's parts of a lookup,
// each alone (bench/parts.ts). Compiled on first use into
// build/bench (not build/bpf, whose objects the install and the package
// ship) and loaded for timing only: never attached.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { native } from '../src/native.js';
import { packageRoot } from '../src/paths.js';

const SOURCE = path.join(packageRoot, 'bench/floor.bpf.c');
const OBJECT = path.join(packageRoot, 'build/bench/floor.o');

export const REFERENCE_PROGRAMS = ['floor_prog', 'calls', 'lookups24', 'lookups8', 'take_socket', 'hand_over'] as const;
export type ReferenceProgram = typeof REFERENCE_PROGRAMS[number];
/** How many calls or lookups one run of `calls`, `lookups24` and `lookups8` makes (REPEAT in floor.bpf.c). */
export const REFERENCE_REPEAT = 8;
/** The maps of floor.bpf.c, shared by all its programs. */
export const REFERENCE_MAPS = ['hash24', 'hash8', 'one_socket'] as const;
export type ReferenceMap = typeof REFERENCE_MAPS[number];

function compile(): void {
  if (existsSync(OBJECT) && statSync(OBJECT).mtimeMs >= statSync(SOURCE).mtimeMs) return;
  mkdirSync(path.dirname(OBJECT), { recursive: true });
  const arch = execFileSync('gcc', ['-dumpmachine'], { encoding: 'utf8' }).trim();
  execFileSync('clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', `-I/usr/include/${arch}`, '-c', SOURCE, '-o', OBJECT]);
}

export interface References {
  progs: Record<ReferenceProgram, number>;
  maps: Record<ReferenceMap, number>;
  close(): void;
}

/** Loads every reference program on one set of maps (the first load creates them, the others reuse them). */
export function loadReferences(): References {
  compile();
  const n = native();
  const progs: Partial<Record<ReferenceProgram, number>> = {};
  let maps: Record<string, number> = {};
  const close = (): void => {
    for (const fd of [...Object.values(progs), ...Object.values(maps)]) n.close(fd);
  };
  try {
    for (const name of REFERENCE_PROGRAMS) {
      const obj = n.loadObject(OBJECT, name, maps);
      progs[name] = obj.progFd;
      if (Object.keys(maps).length === 0) maps = obj.maps;
      else for (const fd of Object.values(obj.maps)) n.close(fd);
    }
    for (const name of REFERENCE_MAPS) if (maps[name] === undefined) throw new Error(`${OBJECT} has no map ${name}`);
  } catch (err) {
    close();
    throw err;
  }
  return { progs: progs as Record<ReferenceProgram, number>, maps: maps as Record<ReferenceMap, number>, close };
}
