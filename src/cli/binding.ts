// Verbs over bindings: bind, unbind, bindings, load-bindings.
import { type Binding, bindingId, parseBinding, toJSON, unbindArgs } from '../binding.js';
import { BINDINGS_FILE_MAX_BYTES } from '../bindings-file-limits.js';
import {
  type PackedBindings, bindingAt, indexBindingSet, keyFamily, keyLength, keyPort, keyProtocol, packBindingSet, precedenceOrder,
} from '../bindingset.js';
import { BINDING_KEY_SIZE, MAX_BINDINGS } from '../layout.js';
import { TubularError } from '../errors.js';
import type { Verdict } from '../guard.js';
import { containsPrefix, parsePrefix, type Prefix } from '../prefix.js';
import { parsePort, parseProtocol, type Protocol } from '../protocol.js';
import { quoteIfNeeded } from '../quote.js';
import { bindingDoc } from './changes.js';
import { formatAge } from '../duration.js';
import { type Env, checkPlaces, tubectlAs, withDispatcher } from './env.js';
import { UsageError, parsing } from './errors.js';
import { type GuardFlags, guardFrom, guardedChange, guardedUnbind, warnRedirected, writeForced } from './guard.js';
import { describeBinding, labelCell, packedBindingsTable, table, writeJSON } from './output.js';
import { type ReadLimit, formatBytes, openRegularFile, readRegularBytes } from '../read-file.js';
import type { PackedBindingsFile } from '../bindings-file-packed.js';
import type { Dispatcher } from '../dispatcher.js';

export interface BindOptions extends GuardFlags {
  /** refuse matching connections instead of steering them to a label */
  reject?: boolean;
  /** count matching connections (and their sources), and let them go on */
  observe?: boolean;
}

/**
 * Reads `<label> <protocol> <prefix[/mask]> <port>`; with --reject or
 * --observe the label may be left out: `<protocol> <prefix[/mask]> <port>`.
 */
export function bindingFromArgs(verb: string, args: readonly string[], opts: BindOptions, notes: string[]): Binding {
  if (opts.reject && opts.observe) throw new UsageError(`${verb} takes --reject or --observe, not both`, verb);
  const action = opts.reject ? 'reject' : opts.observe ? 'observe' : 'steer';
  const reject = action !== 'steer';
  let label: string | undefined;
  let rest: readonly string[];
  if (reject && args.length === 3) {
    rest = args;
  } else if (args.length === 4) {
    [label, ...rest] = args;
  } else {
    const want = reject ? '[<label>] <protocol> <prefix[/mask]> <port>' : '<label> <protocol> <prefix[/mask]> <port>';
    throw new UsageError(`${verb}${reject ? ` --${action}` : ''} takes ${want}, got ${args.length} argument${args.length === 1 ? '' : 's'}`, verb);
  }
  const [protocol, prefix, port] = rest;
  return parsing(verb, () => parseBinding({ label, protocol, prefix, port, action }, notes));
}

function writeNotes(env: Env, notes: readonly string[]): void {
  for (const n of notes) env.stderr.write(`tubectl: note: ${n}\n`);
}

export async function bind(env: Env, args: readonly string[], opts: BindOptions = {}): Promise<void> {
  const notes: string[] = [];
  const b = bindingFromArgs('bind', args, opts, notes);
  const guard = guardFrom(opts, 'bind');
  writeNotes(env, notes);
  const result = await withDispatcher(env, false, (d) => d.bind(b));
  const replaced = result.replaced ? ` (was ${describeBinding(toJSON(result.replaced))})` : '';
  env.stdout.write(`bound ${describeBinding(toJSON(b))}${replaced}\n`);
  if (result.replaced && result.replacedTraffic) warnRedirected(env, guard, result.replaced, result.replacedTraffic, b);
}

export async function unbind(env: Env, args: readonly string[], opts: BindOptions = {}): Promise<void> {
  const notes: string[] = [];
  const b = bindingFromArgs('unbind', args, opts, notes);
  const guard = guardFrom(opts, 'unbind');
  writeNotes(env, notes);
  const retry = `${tubectlAs(env)} unbind --force ${unbindArgs(b.action, b.label, bindingId(b))}`;
  const removed = await withDispatcher(env, false, (d) => d.unbind(b, { check: guardedUnbind(guard, retry), command: tubectlAs(env) }));
  env.stdout.write(`removed ${describeBinding(toJSON(removed))}\n`);
}

export interface BindingFilter {
  protocol?: Protocol;
  prefix?: Prefix;
  /** bindings for this port and for every port (0); 0 filters nothing */
  port?: number;
}

/** Reads `[protocol|any] [prefix] [port]`. */
export function parseFilter(args: readonly (string | undefined)[], notes: string[] = []): BindingFilter {
  const [protocol, prefix, port] = args;
  return parsing('bindings', () => {
    const f: BindingFilter = {};
    if (protocol !== undefined && protocol.toLowerCase() !== 'any') f.protocol = parseProtocol(protocol);
    if (prefix !== undefined) {
      const parsed = parsePrefix(prefix);
      if (parsed.masked) notes.push(parsed.masked);
      f.prefix = parsed.prefix;
    }
    if (port !== undefined) f.port = parsePort(port);
    return f;
  });
}

/** Like tubular: a prefix matches the bindings it contains; a port matches itself and port 0. */
export function matchesFilter(b: Binding, f: BindingFilter): boolean {
  if (f.protocol && b.protocol !== f.protocol) return false;
  if (f.prefix && !containsPrefix(f.prefix, b.prefix)) return false;
  if (f.port && b.port !== 0 && b.port !== f.port) return false;
  return true;
}

/** matchesFilter for binding i of a packed set. */
export function matchesFilterAt(set: PackedBindings, i: number, f: BindingFilter): boolean {
  const k = set.keys;
  const off = i * BINDING_KEY_SIZE;
  if (f.protocol && keyProtocol(k, off) !== f.protocol) return false;
  if (f.port) {
    const port = keyPort(k, off);
    if (port !== 0 && port !== f.port) return false;
  }
  if (f.prefix) {
    const p = f.prefix;
    if (keyFamily(k, off) !== p.family || keyLength(k, off) < p.length) return false;
    for (let bit = 0; bit < p.length; bit += 8) {
      const mask = p.length - bit >= 8 ? 0xff : (0xff << (8 - (p.length - bit))) & 0xff;
      if ((k[off + 8 + (bit >> 3)] & mask) !== p.bytes[bit >> 3]) return false;
    }
  }
  return true;
}

export interface BindingsOptions {
  /** add the columns hits and last hit */
  stats?: boolean;
}

export async function bindings(env: Env, args: readonly (string | undefined)[], opts: BindingsOptions = {}): Promise<void> {
  const notes: string[] = [];
  const filter = parseFilter(args, notes);
  writeNotes(env, notes);
  const withTraffic = env.json || (opts.stats ?? false);
  const { set, order, traffic } = await withDispatcher(env, true, (d) => {
    const set = d.packedBindings();
    const filtering = filter.protocol !== undefined || filter.prefix !== undefined || Boolean(filter.port);
    const order = precedenceOrder(set, filtering ? (i) => matchesFilterAt(set, i, filter) : undefined);
    const stats = set.stats ?? new Uint32Array(set.count);
    return { set, order, traffic: withTraffic ? d.traffic(Uint32Array.from(order, (i) => stats[i])) : [] };
  });
  if (env.json) {
    writeJSON(env, { bindings: order.map((i, r) => bindingDoc({ ...toJSON(bindingAt(set, i)), ...traffic[r] })) });
  } else if (order.length === 0) {
    env.stdout.write(set.count === 0 ? 'no bindings\n' : 'no bindings matched\n');
  } else if (opts.stats) {
    const now = Date.now();
    env.stdout.write(table(['protocol', 'prefix', 'port', 'label', 'hits', 'last hit'], order.map((i, r) => {
      const b = toJSON(bindingAt(set, i));
      return [b.protocol, b.prefix, String(b.port), labelCell(b), traffic[r].hits.toString(), formatAge(traffic[r].lastHit, now)];
    }), [2, 4]));
  } else {
    for (const chunk of packedBindingsTable(set, order)) env.stdout.write(chunk);
  }
}

/** The limit of a bindings file named on the command line. */
const BINDINGS_FILE: ReadLimit = {
  what: 'bindings file',
  maxBytes: BINDINGS_FILE_MAX_BYTES,
  advice: `${MAX_BINDINGS} bindings, the most a dispatcher holds, take less than ${formatBytes(BINDINGS_FILE_MAX_BYTES)} even as bindings --json prints them`,
};

/** Reads a bindings file named on the command line, within the size limit. */
function readBindingsBytes(env: Env, file: string): Buffer {
  checkPlaces(env); // before reading what may be a large file
  return readRegularBytes(file, BINDINGS_FILE);
}

/**
 * A bindings file's set by the reference parser, which names every problem
 * (the fast path declined it: a mistake, or a spelling it does not take).
 */
async function parseByReference(bytes: Buffer, file: string): Promise<PackedBindingsFile> {
  const { parseBindingsFile } = await import('../bindings-file.js');
  const { bindings, notes } = parseBindingsFile(bytes.toString('utf8'), quoteIfNeeded(file));
  const set = packBindingSet(bindings);
  return { set, notes, index: indexBindingSet(set).index };
}

/** Reads and validates a bindings file, as load-bindings does; notes go to stderr. */
export async function readBindingsFile(env: Env, file: string): Promise<PackedBindings> {
  const bytes = readBindingsBytes(env, file);
  // The common case is read straight into the map's encoding; anything else
  // (including every mistake) goes through the reference parser, which
  // names each problem.
  const { packBindingsFile } = await import('../bindings-file-packed.js');
  const parsed = packBindingsFile(bytes) ?? await parseByReference(bytes, file);
  writeNotes(env, parsed.notes);
  return parsed.set;
}

export async function loadBindings(env: Env, file: string, opts: GuardFlags = {}): Promise<void> {
  const guard = guardFrom(opts, 'load-bindings');
  checkPlaces(env); // before reading what may be a large file
  // The file is read a window at a time, never held whole: once for its
  // digest when it has the size of the file the set in force was read from,
  // then (unless it is that file) by the fast path, under the writers' lock.
  const input = openRegularFile(file, BINDINGS_FILE);
  try {
    const [{ packBindingsFile }, { digestParts, fileDigest, fileDigestOf }] = await Promise.all([import('../bindings-file-packed.js'), import('../digest.js')]);
    const passed: { verdict?: Verdict } = {};
    const shown = quoteIfNeeded(file);
    const check = guardedChange(guard, { what: `load ${shown}`, retry: `${tubectlAs(env)} load-bindings --force ${shown}`, inspect: `${tubectlAs(env)} diff ${shown}` },
      (verdict) => { passed.verdict = verdict; });
    // The digest of a first read, when the dispatcher asked for one; the
    // digest of the bytes parsed, recorded with the set. Where both were
    // taken they must agree: what was parsed is what was recognised by.
    let first: bigint | undefined;
    let parsedDigest = 0n;
    const agree = (digest: bigint): void => {
      parsedDigest = digest;
      if (first !== undefined && digest !== first) {
        throw new TubularError('EBUSY', `${shown} changed while it was read, nothing was changed: run the command again`);
      }
    };
    // A file the fast path declines is parsed by the reference parser first
    // (which explains any mistake), then loaded.
    let parsed: PackedBindingsFile | undefined;
    const source = {
      size: input.size,
      digest: () => (first ??= fileDigestOf(input.read)),
      parse: () => {
        if (!parsed) {
          const read = digestParts();
          parsed = packBindingsFile({ size: input.size, source: input.read, seen: (bytes) => read.update(bytes) });
          if (parsed) agree(read.value());
        }
        return parsed && {
          set: parsed.set, index: parsed.index, slots: parsed.slots, recognisable: parsed.notes.length === 0, file: { digest: parsedDigest, size: input.size },
        };
      },
    };
    const byReference = async (): Promise<void> => {
      const bytes = input.readAll();
      parsed = await parseByReference(bytes, file);
      agree(fileDigest(bytes));
    };
    let r: Awaited<ReturnType<Dispatcher['replacePackedBindings']>>;
    try {
      r = await withDispatcher(env, false, async (d) => {
        const done = d.replaceBindingsFile(source, { check });
        if (done) return done;
        await byReference();
        return d.replaceBindingsFile(source, { check })!;
      });
    } catch (err) {
      // No dispatcher: a mistake in the file is still the first thing to say.
      if (!(err instanceof TubularError && err.code === 'ENOTLOADED') || parsed) throw err;
      if (!packBindingsFile({ size: input.size, source: input.read })) await byReference();
      throw err;
    }
    if (parsed) writeNotes(env, parsed.notes);
    if (passed.verdict) writeForced(env, passed.verdict);
    if (env.json) {
      writeJSON(env, r);
    } else {
      const what = r.added + r.removed + r.changed === 0 ? 'bindings already up to date' : 'replaced bindings';
      env.stdout.write(`${what}: ${r.added} added, ${r.removed} removed, ${r.changed} changed, ${r.unchanged} unchanged (generation ${r.generation})\n`);
    }
  } finally {
    input.close();
  }
}
