// Runs the built tubectl as a subprocess, as an operator would, and
// collects its exit status and output.
import { spawn, type SpawnOptions } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** dist/src/cli/main.js, next to the compiled tests. */
export const TUBECTL = path.resolve(here, '../../src/cli/main.js');

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** run through this wrapper, e.g. ['setpriv', '--reuid=65534', ...] */
  prefix?: string[];
  /** the tubectl entry point to run (default TUBECTL; another user needs installed().tubectl) */
  tubectl?: string;
  stdio?: SpawnOptions['stdio'];
}

/** Runs any command to completion. */
export function runCommand(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<Result> {
  return new Promise((ok, fail) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => { stdout += d; });
    child.stderr?.on('data', (d) => { stderr += d; });
    child.once('error', fail);
    child.once('close', (code) => ok({ code, stdout, stderr }));
  });
}

/** A tubectl bound to one bpffs: tubectl(['bind', ...]). */
export function tubectlFor(bpffs: string, base: RunOptions = {}) {
  return (args: readonly string[], opts: RunOptions = {}): Promise<Result> => {
    const all = { ...base, ...opts };
    const argv = [...(all.prefix ?? []), process.execPath, all.tubectl ?? TUBECTL, '--bpffs', bpffs, ...args];
    return runCommand(argv[0], argv.slice(1), all);
  };
}

/** Fails with the command's output unless it exited 0. */
export function ok(r: Result): Result {
  if (r.code !== 0) throw new Error(`tubectl exited ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}
