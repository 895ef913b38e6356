// The bindings file of `tubectl load-bindings`: tubular's format, plus two
// optional fields per entry.
//
//   {"bindings": [
//     {"label": "web", "prefix": "127.0.0.0/24", "port": 80},            <- tcp and udp, as in tubular
//     {"label": "dns", "prefix": "::1", "port": 53, "protocol": "udp"},  <- one protocol
//     {"prefix": "127.0.0.0/28", "port": 25, "action": "reject"}         <- refuse; label optional
//   ]}
//
// `tubectl bindings --json` prints this shape too (with "action": "steer"
// spelled out, and each binding's traffic as "hits" and "lastHit"), so its
// output can be loaded back: those two fields are accepted and ignored.
//
// Everything is checked before anything is returned: unknown fields, wrong
// types, bad labels and prefixes, ports out of range, and duplicates (the
// same protocol, prefix and port twice, after an entry without a protocol is
// expanded to tcp and udp and host bits are cleared). Each problem names the
// entry's index, the field and the bad value (cut short: see quote.ts).
// Before JSON.parse, the text is checked against the limits of
// bindings-file-limits.ts, and for keys given twice.
import { z } from 'zod';
import { type Binding, bindingId, parseBinding } from './binding.js';
import { PORT_SPELLING, duplicateProblem, limitProblem, scanBindingsFile } from './bindings-file-limits.js';
import { TubularError, invalid } from './errors.js';
import { jsonPath } from './json-scan.js';
import { labelProblem } from './label.js';
import { parsePrefix } from './prefix.js';
import { PROTOCOLS } from './protocol.js';
import { quote } from './quote.js';

const FIELDS = ['label', 'prefix', 'port', 'protocol', 'action'] as const;
/** What bindings --json adds to an entry: traffic, accepted and ignored. */
const IGNORED = ['hits', 'lastHit'] as const;
/** Problems reported at most, so a broken file gives a readable message. */
const MAX_PROBLEMS = 20;
/** Unknown fields of one object named at most. */
const MAX_UNKNOWN_SHOWN = 5;

function schema() {
  const entry = z.strictObject({
    label: z.string().optional(),
    prefix: z.string(),
    port: z.number().int().min(0).max(65535),
    protocol: z.enum(['tcp', 'udp']).optional(),
    action: z.enum(['steer', 'reject', 'observe']).optional(),
    hits: z.string().regex(/^\d+$/, 'expected a decimal string, as bindings --json writes it').optional(),
    lastHit: z.string().nullable().optional(),
  });
  return z.strictObject({ bindings: z.array(entry) });
}

export interface BindingsFile {
  bindings: Binding[];
  /** harmless corrections, e.g. host bits cleared from a prefix */
  notes: string[];
}

type Path = readonly PropertyKey[];

const pathText = (path: Path): string => jsonPath(path.map((p) => (typeof p === 'number' ? p : String(p))));

function valueAt(data: unknown, path: Path): unknown {
  let v = data;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

function describeIssue(issue: z.core.$ZodIssue, data: unknown): string {
  const where = pathText(issue.path);
  const value = valueAt(data, issue.path);
  const field = issue.path[issue.path.length - 1];
  switch (issue.code) {
    case 'unrecognized_keys': {
      const more = issue.keys.length > MAX_UNKNOWN_SHOWN ? `\n  ... and ${issue.keys.length - MAX_UNKNOWN_SHOWN} more unknown fields` : '';
      return issue.keys.slice(0, MAX_UNKNOWN_SHOWN).map((k) => `${pathText([...issue.path, k])} = ${quote(valueAt(data, [...issue.path, k]))}: ` +
        `unknown field ${quote(k)} ` +
        (issue.path.length === 0 ? '(the file holds only "bindings")' : `(an entry holds only ${FIELDS.join(', ')}; ${IGNORED.join(' and ')} are ignored)`)).join('\n  ') + more;
    }
    case 'invalid_type':
      if (value === undefined) {
        return field === 'bindings' || issue.path.length === 0
          ? `${where} is missing: the file is {"bindings": [...]}`
          : `${where} is missing: every entry needs "${String(field)}"`;
      }
      return `${where} = ${quote(value)}: expected ${issue.expected === 'int' ? 'a whole number' : `${/^[aeiou]/.test(issue.expected) ? 'an' : 'a'} ${issue.expected}`}`;
    case 'too_big':
    case 'too_small':
      return field === 'port'
        ? `${where} = ${quote(value)}: a port is 0-65535 (0 means every port)`
        : `${where} = ${quote(value)}: ${issue.message}`;
    case 'invalid_value':
      return `${where} = ${quote(value)}: use ${issue.values.map((v) => JSON.stringify(v)).join(' or ')}`;
    default:
      return `${where} = ${quote(value)}: ${issue.message}`;
  }
}

/**
 * Parses and validates a bindings file. `source` names it in messages.
 * Throws one TubularError (EINVAL) listing every problem found.
 */
export function parseBindingsFile(text: string, source: string): BindingsFile {
  const scan = scanBindingsFile(text);
  if (scan.exceeded) throw fail(source, [limitProblem(scan.exceeded)], 1);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw invalid(`${source} is not valid JSON: ${(err as Error).message}`);
  }
  if (scan.duplicate) throw fail(source, [duplicateProblem(scan.duplicate)], 1);
  const parsed = schema().safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.slice(0, MAX_PROBLEMS).map((i) => describeIssue(i, data));
    throw fail(source, problems, parsed.error.issues.length);
  }

  const problems: string[] = [];
  const notes: string[] = [];
  const bindings: Binding[] = [];
  const first = new Map<string, number>();
  parsed.data.bindings.forEach((entry, index) => {
    const at = `bindings[${index}]`;
    const spelled = scan.unplain.get(`${at}.port`);
    if (spelled !== undefined) {
      problems.push(`${at}.port = ${spelled}: ${PORT_SPELLING}`);
      return;
    }
    const action = entry.action ?? 'steer';
    if (entry.label === undefined && action === 'steer') {
      problems.push(`${at}.label is missing: every entry needs "label" (only "action": "reject" or "observe" may omit it)`);
      return;
    }
    const labelError = action === 'steer' || entry.label ? labelProblem(entry.label ?? '') : undefined;
    if (labelError) problems.push(`${at}.label = ${quote(entry.label)}: ${labelError}`);
    let masked: string | undefined;
    try {
      masked = parsePrefix(entry.prefix).masked;
    } catch (err) {
      if (!(err instanceof TubularError)) throw err;
      problems.push(`${at}.prefix = ${quote(entry.prefix)}: ${err.message}`);
      return;
    }
    if (labelError) return;
    if (masked) notes.push(`${at}: ${masked}`);
    for (const protocol of entry.protocol ? [entry.protocol] : PROTOCOLS) {
      const b = parseBinding({ label: entry.label, protocol, prefix: entry.prefix, port: entry.port, action });
      const id = bindingId(b);
      const seen = first.get(id);
      if (seen !== undefined) {
        problems.push(`${at} = ${quote({ prefix: entry.prefix, port: entry.port, ...(entry.protocol ? { protocol } : {}) })}: ` +
          `duplicates bindings[${seen}] (both are ${id}): keep one`);
        return;
      }
      first.set(id, index);
      bindings.push(b);
    }
  });
  if (problems.length === 0 && scan.unplainCount > 0) {
    // Every number of a valid file is a port, and each is checked above;
    // this only guards against ever accepting one written otherwise.
    problems.push(`${scan.unplainCount} numbers are written with a sign, fraction or exponent: ${PORT_SPELLING}`);
  }
  if (problems.length > 0) throw fail(source, problems.slice(0, MAX_PROBLEMS), problems.length);
  return { bindings, notes };
}

/** One problem on one line; several, one per line. */
function fail(source: string, problems: string[], total: number): TubularError {
  if (total === 1 && !problems[0].includes('\n')) return invalid(`${source} is invalid, nothing was changed: ${problems[0]}`);
  const more = total > problems.length ? `\n  ... and ${total - problems.length} more` : '';
  return invalid(`${source} is invalid, nothing was changed:\n  ${problems.join('\n  ')}${more}`);
}
