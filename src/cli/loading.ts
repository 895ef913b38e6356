// Verbs over the dispatcher's life: load, unload, upgrade.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Dispatcher } from '../dispatcher.js';
import { isSystemError } from '../errors.js';
import { type Env, explainDenied, where } from './env.js';
import { UsageError } from './errors.js';

/** The group that may read the state when none is named: like tubular's. */
export const DEFAULT_GROUP = 'tubular';

/** Finds a group's gid in group(5) text; undefined when it is not there. */
export function gidInGroupFile(text: string, name: string): number | undefined {
  for (const line of text.split('\n')) {
    const [group, , gid] = line.split(':');
    if (group === name && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  return undefined;
}

/** Resolves a group name (through NSS when getent exists, else /etc/group) or a numeric gid. */
export function resolveGroup(name: string): number | undefined {
  if (/^\d+$/.test(name)) return Number(name);
  try {
    const out = execFileSync('getent', ['group', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return gidInGroupFile(out, name);
  } catch (err) {
    // getent exits 2 for an unknown group; without getent, read the file.
    if (!isSystemError(err, 'ENOENT')) return undefined;
  }
  try {
    return gidInGroupFile(readFileSync('/etc/group', 'utf8'), name);
  } catch {
    return undefined;
  }
}

export interface LoadOptions {
  /** group (name or gid) that may read the state; default "tubular" when it exists */
  group?: string;
}

function denied<T>(env: Env, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw explainDenied(env, false, err);
  }
}

export async function load(env: Env, opts: LoadOptions = {}): Promise<void> {
  const name = opts.group ?? DEFAULT_GROUP;
  const gid = resolveGroup(name);
  if (gid === undefined && opts.group !== undefined) {
    throw new UsageError(`group "${opts.group}" does not exist: create it (groupadd ${opts.group}) or name another`, 'load');
  }
  const d = denied(env, () => Dispatcher.create(where(env, { group: gid })));
  try {
    const s = d.status();
    const readers = gid === undefined ? 'the group of its creator' : `group ${/^\d+$/.test(name) ? gid : `${name} (gid ${gid})`}`;
    env.stdout.write(`loaded dispatcher into ${env.netns}: program ${s.programId}, link ${s.linkId}\n` +
      `state in ${s.stateDir}, readable by ${readers}\n`);
  } finally {
    d.close();
  }
}

export async function unload(env: Env): Promise<void> {
  const { leftovers } = denied(env, () => Dispatcher.unload(where(env, {})));
  const finished = leftovers > 0 ? ` (also finished ${leftovers} interrupted load or unload)` : '';
  env.stdout.write(`unloaded dispatcher from ${env.netns}: bindings and registrations are gone${finished}\n`);
}

export async function upgrade(env: Env): Promise<void> {
  const d = denied(env, () => Dispatcher.open(where(env, {})));
  try {
    const { from, to } = denied(env, () => d.upgrade());
    env.stdout.write(`upgraded dispatcher in ${env.netns}: program ${from} -> ${to}\n`);
  } finally {
    d.close();
  }
}
