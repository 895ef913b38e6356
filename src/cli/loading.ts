// Verbs over the dispatcher's life: load, unload, upgrade.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Dispatcher } from '../dispatcher.js';
import { TubularError, isSystemError } from '../errors.js';
import { PROGRAM_CHOICES, type ProgramChoice } from '../kernel.js';
import { quote, quoteIfNeeded } from '../quote.js';
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
  /** a dispatcher already loaded, of this version's layout, is success (exit 0), not an error: for boot units */
  ifNotLoaded?: boolean;
  /** --program: auto, full or compat */
  program?: string;
}

/** Reads --program: auto (the default), full or compat. */
export function parseProgramChoice(text: string | undefined, verb: string): ProgramChoice {
  if (text === undefined) return 'auto';
  const choice = PROGRAM_CHOICES.find((c) => c === text);
  if (choice === undefined) throw new UsageError(`invalid --program ${quote(text)}: use ${PROGRAM_CHOICES.join(', ')}`, verb);
  return choice;
}

function denied<T>(env: Env, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw explainDenied(env, false, err);
  }
}

/** The largest gid: (gid_t)-1 means "no change" to chown. */
const MAX_GID = 2 ** 32 - 2;

/** Refuses a --group that cannot name a group: an option for getent, an overlong name, a gid out of range. */
function checkGroup(group: string): void {
  const bad = /^\d+$/.test(group)
    ? (/^0\d/.test(group) || Number(group) > MAX_GID) && `a gid is 0-${MAX_GID}, without leading zeros`
    : (group === '' || group.startsWith('-') || group.length > 256) && 'a group name is 1-256 characters and does not start with -';
  if (bad) throw new UsageError(`invalid group ${quote(group)}: ${bad}`, 'load');
}

export async function load(env: Env, opts: LoadOptions = {}): Promise<void> {
  if (opts.group !== undefined) checkGroup(opts.group);
  const program = parseProgramChoice(opts.program, 'load');
  const name = opts.group ?? DEFAULT_GROUP;
  const gid = resolveGroup(name);
  if (gid === undefined && opts.group !== undefined) {
    throw new UsageError(`group ${quote(opts.group)} does not exist: create it (groupadd ${quoteIfNeeded(opts.group, 64)}) or name another`, 'load');
  }
  let d: Dispatcher;
  try {
    d = denied(env, () => Dispatcher.create(where(env, { group: gid, program })));
  } catch (err) {
    if (!opts.ifNotLoaded || !(err instanceof TubularError && err.code === 'ELOADED')) throw err;
    // "Nothing to do" only for state this version can run: a boot unit must
    // not report success over state of another layout, which every verb refuses.
    // Nor over a dispatcher an interrupted unload left detached.
    const open = denied(env, () => Dispatcher.open(where(env, { readOnly: true })));
    try {
      open.runningProgram();
    } finally {
      open.close();
    }
    env.stdout.write(`dispatcher already loaded in ${env.netns}: nothing to do\n`);
    return;
  }
  try {
    const s = d.status();
    const readers = gid === undefined ? 'the group of its creator' : `group ${/^\d+$/.test(name) ? gid : `${name} (gid ${gid})`}`;
    const chosen = d.created ? ` (${d.created.variant}: ${d.created.why})` : '';
    env.stdout.write(`loaded dispatcher into ${env.netns}: program ${s.programId}${chosen}, link ${s.linkId}\n` +
      `state in ${s.stateDir}, readable by ${readers}\n`);
    const others = d.otherLinks ?? [];
    if (others.length > 0) {
      const shown = others.slice(0, 5).map((l) => `link ${l.id}, program ${l.progId}`).join('; ');
      env.stderr.write(`tubectl: warning: ${others.length === 1 ? 'another sk_lookup program was' : `${others.length} other sk_lookup programs were`} ` +
        `already attached to this namespace (${shown}${others.length > 5 ? '; ...' : ''}): the kernel runs it on every new connection too, before this one. ` +
        'If it is a dispatcher loaded under another bpffs (TUBULAR_BPFFS, --bpffs), unload one of the two: ' +
        'bpftool link show lists them, and tubectl --bpffs PATH status finds the dispatcher of a path\n');
    }
  } finally {
    d.close();
  }
}

export async function unload(env: Env): Promise<void> {
  const { leftovers } = denied(env, () => Dispatcher.unload(where(env, {})));
  const finished = leftovers > 0 ? ` (also finished ${leftovers} interrupted load or unload)` : '';
  env.stdout.write(`unloaded dispatcher from ${env.netns}: bindings and registrations are gone${finished}\n`);
}

export async function upgrade(env: Env, opts: { program?: string } = {}): Promise<void> {
  const program = parseProgramChoice(opts.program, 'upgrade');
  const d = denied(env, () => Dispatcher.open(where(env, {})));
  try {
    const { from, to, variant, previous, why } = denied(env, () => d.upgrade({ program }));
    const change = previous === variant ? variant : `${previous ?? 'unknown'} -> ${variant}`;
    env.stdout.write(`upgraded dispatcher in ${env.netns}: program ${from} -> ${to} (${change}: ${why})\n`);
  } finally {
    d.close();
  }
}
