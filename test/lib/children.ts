// Child processes of integration tests: they inherit the test's namespaces.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Path of a compiled helper next to this file. */
export const helper = (name: string): string => path.join(here, `${name}.js`);

export interface Loop { child: ChildProcess; stop(): Promise<{ total: number; seen: Record<string, number> }> }

/** Starts probe-loop against host:port and waits until it runs. */
export async function startProbeLoop(host: string, port: number): Promise<Loop> {
  const child = spawn(process.execPath, [helper('probe-loop'), host, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  await new Promise<void>((ok, fail) => {
    const check = (): void => { if (out.includes('ready\n')) ok(); };
    child.stdout!.on('data', check);
    child.once('exit', (code) => fail(new Error(`probe loop exited early (${code})`)));
  });
  return {
    child,
    stop: () => new Promise((ok, fail) => {
      child.once('exit', () => {
        try { ok(JSON.parse(out.split('\n').filter(Boolean).pop()!)); } catch (e) { fail(e); }
      });
      child.stdin!.end();
    }),
  };
}

/** Runs a helper to completion; rejects on a non-zero exit. */
export function runHelper(name: string, args: string[], extraFds: number[] = []): Promise<string> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [helper(name), ...args], { stdio: ['ignore', 'pipe', 'pipe', ...extraFds] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.stderr!.on('data', (d) => { err += d; });
    child.once('exit', (code) => (code === 0 ? ok(out) : fail(new Error(`${name} exited ${code}: ${err}`))));
  });
}
