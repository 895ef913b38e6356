// What JSON.parse does not check, checked in one pass over the text before
// it is parsed:
//
// - limits: nesting depth, items per array, fields per object and values in
//   all, so a hostile file cannot exhaust the stack or the heap (JSON.parse
//   of 100 million nested arrays takes gigabytes);
// - a key twice in one object: JSON.parse silently keeps the last one, so
//   {"bindings": [...], "bindings": []} would load an empty set;
// - numbers not written as plain digits (a sign, fraction or exponent):
//   JSON.parse reads 80.0 and 1e2 as 80 and 100, and -0 as 0.
//
// The scan trusts nothing: on text that is not JSON it still ends, and its
// answer is then meaningless (JSON.parse reports the syntax error).
import { quote } from './quote.js';

export interface JSONLimits {
  /** arrays and objects inside each other */
  maxDepth: number;
  /** items of one array */
  maxItems: number;
  /** fields of one object */
  maxKeys: number;
  /** values in the whole document: arrays, objects, strings, numbers, literals (keys not counted) */
  maxValues: number;
}

export type JSONPath = readonly (string | number)[];

/** A limit the text exceeds. */
export interface JSONLimitProblem {
  limit: keyof JSONLimits;
  /** where: the array or object that is too long, or the first one too deep */
  path: JSONPath;
  /** 0-based offset in the text */
  offset: number;
}

export interface JSONScan {
  /** set when a limit was exceeded: then the scan stopped there and nothing else is known */
  exceeded?: JSONLimitProblem;
  /** the first key that appears twice in one object */
  duplicate?: { path: JSONPath; key: string };
  /** numbers not written as plain digits (0, or 1-9 then digits): jsonPath text -> the number as written (cut); at most UNPLAIN_KEPT */
  unplain: Map<string, string>;
  /** how many such numbers there are in all */
  unplainCount: number;
}

/** Paths of unplain numbers kept; the count goes on. */
const UNPLAIN_KEPT = 100;
/** Characters of an unplain number kept. */
const SPELLING_KEPT = 32;
/** Keys of one object compared one by one; above this, a Set. */
const LINEAR_KEYS = 16;

/**
 * A path as messages show it: bindings[3].port; a key that is not a plain
 * identifier is quoted (and cut): bindings[3]["a b"].
 */
export function jsonPath(path: JSONPath): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else if (/^[A-Za-z_$][\w$]{0,63}$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${quote(p)}]`;
  }
  return out || '(top level)';
}

interface Frame {
  array: boolean;
  /** items of an array so far, minus one */
  index: number;
  /** keys of an object so far */
  count: number;
  /** the last key read: its raw text is text[keyStart..keyEnd) */
  keyStart: number;
  keyEnd: number;
  /** the first LINEAR_KEYS keys, as [start, end) offsets: compared without a copy */
  offsets: Int32Array;
  /** the keys, decoded, once there are more or one has an escape */
  set: Set<string> | undefined;
}

function newFrame(): Frame {
  return { array: false, index: 0, count: 0, keyStart: 0, keyEnd: 0, offsets: new Int32Array(2 * LINEAR_KEYS), set: undefined };
}

const keyOf = (text: string, f: Frame): string => decodeKey(text.slice(f.keyStart, f.keyEnd));

const pathOf = (text: string, frames: readonly Frame[], depth: number): (string | number)[] =>
  frames.slice(0, depth).map((f) => (f.array ? f.index : keyOf(text, f)));

/** Whether text[a..a + len) and text[b..b + len) are the same. */
function sameText(text: string, a: number, b: number, len: number): boolean {
  for (let k = 0; k < len; k++) if (text.charCodeAt(a + k) !== text.charCodeAt(b + k)) return false;
  return true;
}

function hasEscape(text: string, start: number, end: number): boolean {
  for (let k = start; k < end; k++) if (text.charCodeAt(k) === 92) return true;
  return false;
}

/**
 * Records the key text[start..end) of frame f (f.count keys before it);
 * false when the object already has it. Keys are compared as written
 * while there are few and none has an escape, then decoded, in a Set.
 */
function addKey(text: string, f: Frame, start: number, end: number): boolean {
  const n = f.count;
  if (!f.set && (n >= LINEAR_KEYS || hasEscape(text, start, end))) {
    f.set = new Set();
    for (let k = 0; k < n; k++) f.set.add(decodeKey(text.slice(f.offsets[2 * k], f.offsets[2 * k + 1])));
  }
  if (f.set) {
    const key = decodeKey(text.slice(start, end));
    if (f.set.has(key)) return false;
    f.set.add(key);
    return true;
  }
  const len = end - start;
  for (let k = 0; k < n; k++) {
    const a = f.offsets[2 * k];
    if (f.offsets[2 * k + 1] - a === len && sameText(text, a, start, len)) return false;
  }
  f.offsets[2 * n] = start;
  f.offsets[2 * n + 1] = end;
  return true;
}

/** The index of the quote closing the string opened at `open`, or text.length. */
function stringEnd(text: string, open: number): number {
  let from = open + 1;
  for (;;) {
    const q = text.indexOf('"', from);
    if (q < 0) return text.length;
    let b = q - 1;
    while (text.charCodeAt(b) === 92) b--;
    if ((q - 1 - b) % 2 === 0) return q;
    from = q + 1;
  }
}

function decodeKey(raw: string): string {
  if (!raw.includes('\\')) return raw;
  try {
    return JSON.parse(`"${raw}"`) as string;
  } catch {
    return raw;
  }
}

const isNumberChar = (c: number): boolean => (c >= 48 && c <= 57) || c === 43 || c === 45 || c === 46 || c === 69 || c === 101;
const isLetter = (c: number): boolean => c >= 97 && c <= 122;

/** Whether text[from..to) is 0 or a digit 1-9 followed by digits. */
function plainDigits(text: string, from: number, to: number): boolean {
  if (text.charCodeAt(from) === 48) return to - from === 1;
  for (let i = from; i < to; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return false;
  }
  return true;
}

export function scanJSON(text: string, limits: JSONLimits): JSONScan {
  const frames: Frame[] = [];
  const result: JSONScan = { unplain: new Map(), unplainCount: 0 };
  let depth = 0;
  let expectKey = false;
  let values = 0;
  const n = text.length;
  const stop = (limit: keyof JSONLimits, at: number, offset: number): JSONScan =>
    ({ ...result, exceeded: { limit, path: pathOf(text, frames, at), offset } });
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 32 || c === 10 || c === 13 || c === 9 || c === 58) continue;
    if (c === 34) {
      const end = stringEnd(text, i);
      if (expectKey) {
        const f = frames[depth - 1];
        if (f.count >= limits.maxKeys) return stop('maxKeys', depth - 1, i);
        if (!addKey(text, f, i + 1, end) && !result.duplicate) {
          result.duplicate = { path: pathOf(text, frames, depth - 1), key: decodeKey(text.slice(i + 1, end)) };
        }
        f.count++;
        f.keyStart = i + 1;
        f.keyEnd = end;
        expectKey = false;
      } else if (++values > limits.maxValues) {
        return stop('maxValues', depth, i);
      }
      i = end;
    } else if (c === 123 || c === 91) {
      if (++values > limits.maxValues) return stop('maxValues', depth, i);
      if (depth >= limits.maxDepth) return stop('maxDepth', depth, i);
      const f = frames[depth] ?? (frames[depth] = newFrame());
      f.array = c === 91;
      f.index = 0;
      f.count = 0;
      f.keyStart = f.keyEnd = 0;
      f.set = undefined;
      depth++;
      expectKey = c === 123;
    } else if (c === 125 || c === 93) {
      if (depth > 0) depth--;
      expectKey = false;
    } else if (c === 44) {
      if (depth === 0) continue;
      const f = frames[depth - 1];
      if (!f.array) expectKey = true;
      else if (++f.index >= limits.maxItems) return stop('maxItems', depth - 1, i);
    } else {
      let j = i + 1;
      if (isNumberChar(c)) {
        while (j < n && isNumberChar(text.charCodeAt(j))) j++;
        if (!plainDigits(text, i, j)) {
          if (result.unplain.size < UNPLAIN_KEPT) {
            result.unplain.set(jsonPath(pathOf(text, frames, depth)), j - i > SPELLING_KEPT ? `${text.slice(i, i + SPELLING_KEPT)}... (${j - i} characters)` : text.slice(i, j));
          }
          result.unplainCount++;
        }
      } else {
        while (j < n && isLetter(text.charCodeAt(j))) j++;
      }
      if (++values > limits.maxValues) return stop('maxValues', depth, i);
      i = j - 1;
    }
  }
  return result;
}
