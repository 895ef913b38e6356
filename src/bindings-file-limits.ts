// How large a bindings file may be, and the checks both of its parsers make
// before JSON.parse (see json-scan.ts): nothing in a file within these
// limits can exhaust the stack or the heap, or be read two ways.
import { type JSONLimitProblem, type JSONLimits, type JSONScan, jsonPath, scanJSON } from './json-scan.js';
import { MAX_BINDINGS } from './layout.js';
import { quote } from './quote.js';

/**
 * The size limit: 256 MiB (268 MB). MAX_BINDINGS (1,048,576) bindings as
 * `tubectl bindings --json` prints them take about 145 MB with short labels
 * and 240 MB with 64-character labels and the longest IPv6 prefixes (a test
 * checks this); written compactly in tubular's format, one entry per prefix
 * and port for both protocols, about 32 MB.
 */
export const BINDINGS_FILE_MAX_BYTES = 256 * 2 ** 20;

/** label, prefix, port, protocol, action */
const ENTRY_FIELDS = 5;

/**
 * Nesting, items, fields and values: {"bindings": [...]} is three levels,
 * one entry yields at least one binding, so no valid file has more entries
 * than a dispatcher has room for bindings.
 */
export const BINDINGS_FILE_LIMITS: JSONLimits = {
  maxDepth: 16,
  maxItems: MAX_BINDINGS,
  maxKeys: 64,
  maxValues: 2 + (1 + ENTRY_FIELDS) * MAX_BINDINGS,
};

export function scanBindingsFile(text: string): JSONScan {
  return scanJSON(text, BINDINGS_FILE_LIMITS);
}

/** The exceeded limit, as a problem of the file. */
export function limitProblem(p: JSONLimitProblem): string {
  const at = `at ${jsonPath(p.path)}, character ${p.offset + 1}`;
  switch (p.limit) {
    case 'maxDepth':
      return `arrays and objects nest more than ${BINDINGS_FILE_LIMITS.maxDepth} deep (${at}): the file is {"bindings": [{...}, ...]}`;
    case 'maxItems':
      return `${jsonPath(p.path)} holds more than ${BINDINGS_FILE_LIMITS.maxItems} items: a dispatcher holds at most ${MAX_BINDINGS} bindings`;
    case 'maxKeys':
      return `${jsonPath(p.path)} holds more than ${BINDINGS_FILE_LIMITS.maxKeys} fields: ` +
        'the file holds only "bindings", an entry only label, prefix, port, protocol and action';
    case 'maxValues':
      return `the file holds more than ${BINDINGS_FILE_LIMITS.maxValues} values (${at}): ` +
        `at most ${MAX_BINDINGS} entries of at most ${ENTRY_FIELDS} fields each`;
  }
}

/** A key given twice in one object, as a problem of the file. */
export function duplicateProblem(d: { path: readonly (string | number)[]; key: string }): string {
  const where = d.path.length === 0 ? 'the top level' : jsonPath(d.path);
  return `${where} holds the field ${quote(d.key)} twice (JSON keeps only the last, silently): keep one`;
}

export const PORT_SPELLING = 'a port is written as plain digits, 0-65535: no sign, fraction or exponent';
