// Where things are: the state directory in bpffs and the compiled program.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const stateDirName = (netnsIno: number): string => `${netnsIno}_dispatcher`;

/** A compiled sk_lookup object (built by scripts/setup): `relative` is PROGRAMS[variant].object (src/kernel.ts). */
export function programObjectPath(relative = 'build/bpf/dispatcher.o'): string {
  const p = path.join(packageRoot, relative);
  if (!existsSync(p)) throw new Error(`BPF program not built (${p} missing): run scripts/setup`);
  return p;
}

export { packageRoot };
