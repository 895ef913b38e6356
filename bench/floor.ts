// The empty sk_lookup program (floor.bpf.c), compiled on first use into
// build/bench (not build/bpf, whose objects the install and the package
// ship) and loaded for timing only: never attached.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { native } from '../src/native.js';
import { packageRoot } from '../src/paths.js';

const SOURCE = path.join(packageRoot, 'bench/floor.bpf.c');
const OBJECT = path.join(packageRoot, 'build/bench/floor.o');

function compile(): void {
  if (existsSync(OBJECT) && statSync(OBJECT).mtimeMs >= statSync(SOURCE).mtimeMs) return;
  mkdirSync(path.dirname(OBJECT), { recursive: true });
  const arch = execFileSync('gcc', ['-dumpmachine'], { encoding: 'utf8' }).trim();
  execFileSync('clang', ['-O2', '-g', '-Wall', '-Werror', '-target', 'bpf', `-I/usr/include/${arch}`, '-c', SOURCE, '-o', OBJECT]);
}

/** Loads the floor program; returns its fd (close it when done). */
export function loadFloor(): number {
  compile();
  const obj = native().loadObject(OBJECT, 'floor_prog', {});
  for (const fd of Object.values(obj.maps)) native().close(fd);
  return obj.progFd;
}
