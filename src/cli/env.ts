// What every verb runs against: where to write, what to read from the
// environment, and which dispatcher (netns + bpffs). Verbs take an Env
// instead of touching `process`, so tests can drive them in-process.
//
// Keep this module free of heavy imports: `tubectl version` loads it.
import { readFileSync, statSync } from 'node:fs';
import { release } from 'node:os';
import path from 'node:path';
import { WRITER_CAPABILITIES } from '../capabilities.js';
import type { Dispatcher } from '../dispatcher.js';
import { TubularError, isSystemError } from '../errors.js';
import { unprivilegedBpfDisabled, unprivilegedReadProblem } from '../kernel.js';
import { locate } from '../statedir.js';

export interface Output {
  write(text: string): unknown;
}

export interface Env {
  stdout: Output;
  stderr: Output;
  getenv(name: string): string | undefined;
  /** the caller's pid (LISTEN_PID is compared with it) */
  pid: number;
  /** network namespace path */
  netns: string;
  /** bpffs mount */
  bpffs: string;
  /** how long a writer waits for another writer, in ms */
  lockTimeoutMs?: number;
  /** one JSON document on stdout instead of text */
  json: boolean;
  /** tubectl with the --netns and --bpffs it was given: how a message names a command to run on the same dispatcher (default "tubectl") */
  command?: string;
}

export const DEFAULT_NETNS = '/proc/self/ns/net';

/** How messages name tubectl in a command to copy: see Env.command. */
export const tubectlAs = (env: Pick<Env, 'command'>): string => env.command ?? 'tubectl';

/**
 * Checks that --bpffs is a bpffs mount and --netns a network namespace,
 * so that a wrong path is named as such before anything else can fail in
 * a more confusing way (pinning outside bpffs reads "permission denied").
 */
export function checkPlaces(env: Pick<Env, 'netns' | 'bpffs'>): void {
  locate(env);
}

/** Opens the dispatcher of env's namespace (which checks the places, see locate()); loads the control plane on first use. */
export async function openDispatcher(env: Env, readOnly: boolean): Promise<Dispatcher> {
  const { Dispatcher } = await import('../dispatcher.js');
  try {
    return Dispatcher.open(where(env, { readOnly }));
  } catch (err) {
    throw explainDenied(env, readOnly, err);
  }
}

/** The dispatcher options every verb passes: namespace, bpffs, lock timeout. */
export function where<T extends object>(env: Env, more: T): T & { netns: string; bpffs: string; lockTimeoutMs?: number } {
  return { netns: env.netns, bpffs: env.bpffs, lockTimeoutMs: env.lockTimeoutMs, ...more };
}

/** Runs fn with an open dispatcher and closes it afterwards. */
export async function withDispatcher<T>(env: Env, readOnly: boolean, fn: (d: Dispatcher) => T | Promise<T>): Promise<T> {
  const d = await openDispatcher(env, readOnly);
  try {
    return await fn(d);
  } catch (err) {
    throw explainDenied(env, readOnly, err);
  } finally {
    d.close();
  }
}

/** The group owning the state directory, as "group NAME (gid N)", or undefined. */
function owningGroup(env: Env): { dir: string; group: string } | undefined {
  try {
    const dir = path.join(env.bpffs, `${statSync(env.netns).ino}_dispatcher`);
    const gid = statSync(dir).gid;
    const line = readFileSync('/etc/group', 'utf8').split('\n').find((l) => l.split(':')[2] === String(gid));
    return { dir, group: line ? `group ${line.split(':')[0]} (gid ${gid})` : `the group with gid ${gid}` };
  } catch {
    return undefined;
  }
}

/** Turns a permission error into one that says what the caller lacks. */
export function explainDenied(env: Env, readOnly: boolean, err: unknown): unknown {
  if (!(err instanceof TubularError) || err.code !== 'EPERM') return err;
  const detail = err.message.replace(/ \(run as root.*\)$/s, '');
  if (!readOnly) {
    return new TubularError('EPERM', `this command changes the dispatcher: run it as root (or with ${WRITER_CAPABILITIES}); ${detail}`, { cause: err });
  }
  // An older kernel refuses every bpf() call (EPERM, where file modes give EACCES).
  const kernelSays = isSystemError(err.cause, 'EPERM') && process.geteuid &&
    unprivilegedReadProblem(release(), unprivilegedBpfDisabled(), process.geteuid());
  if (kernelSays) return new TubularError('EPERM', kernelSays, { cause: err });
  const owner = owningGroup(env);
  const who = owner ? `membership of ${owner.group}, which owns ${owner.dir}` : 'membership of the group owning the state directory';
  return new TubularError('EPERM', `reading the dispatcher needs root or ${who}; ${detail}`, { cause: err });
}
