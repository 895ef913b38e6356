// The common case of a bindings file (see bindings-file.ts), read straight
// from its bytes into a packed binding set: one pass, no JSON.parse, no
// string, Binding object or prefix object per entry, and no zod. It accepts
// only files that parseBindingsFile accepts, with the same bindings in the
// same order and the same notes; anything else, valid or not (an escape in
// a string, a field twice, a number spelled otherwise, a limit of
// bindings-file-limits.ts reached...), it leaves to parseBindingsFile
// (return value undefined), which is the reference and names every problem.
//
// The grammar it follows is JSON's, narrowed to the file's shape:
//   {"bindings": [{"label": "web", "prefix": "10.0.0.0/24", "port": 80, ...}, ...]}
// with white space anywhere JSON allows it, the fields of an entry in any
// order, and the fields `tubectl bindings --json` adds.
import { BINDINGS_FILE_LIMITS } from './bindings-file-limits.js';
import { type PackedBindings } from './bindingset.js';
import type { DestinationKey } from './destination.js';
import { KeyIndex, keyWords } from './keyindex.js';
import { ACTION_OBSERVE, ACTION_REJECT, ACTION_STEER, AF, BINDING_KEY_SIZE, IPPROTO, LABEL_MAX_BYTES, MAX_BINDINGS } from './layout.js';
import { INTO_IPV6, INTO_MASKED, parsePrefix, parsePrefixBytes } from './prefix.js';
import { endianness } from 'node:os';

export interface PackedBindingsFile {
  set: PackedBindings;
  /** harmless corrections, as parseBindingsFile words them */
  notes: string[];
  /** the set's keys, indexed (none appears twice) */
  index: KeyIndex;
  /** each binding's destination (as destinationSlots finds them), when worked out while reading */
  slots?: { slotOf: Int32Array; slots: DestinationKey[] };
}

const LE = endianness() === 'LE';

const QUOTE = 34;
const COMMA = 44;
const COLON = 58;
const BACKSLASH = 92;
const LBRACE = 123;
const RBRACE = 125;
const LBRACKET = 91;
const RBRACKET = 93;

/** The fields of an entry, as bits. */
const F_LABEL = 1;
const F_PREFIX = 2;
const F_PORT = 4;
const F_PROTOCOL = 8;
const F_ACTION = 16;
const F_HITS = 32;
const F_LASTHIT = 64;

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const FIELDS: Array<[Uint8Array, number]> = [
  [ascii('label'), F_LABEL], [ascii('prefix'), F_PREFIX], [ascii('port'), F_PORT], [ascii('protocol'), F_PROTOCOL],
  [ascii('action'), F_ACTION], [ascii('hits'), F_HITS], [ascii('lastHit'), F_LASTHIT],
];
const BINDINGS = ascii('bindings');
const WORDS: Array<[Uint8Array, number]> = [
  [ascii('tcp'), IPPROTO.tcp], [ascii('udp'), IPPROTO.udp],
  [ascii('steer'), ACTION_STEER], [ascii('reject'), ACTION_REJECT], [ascii('observe'), ACTION_OBSERVE],
];
const NULL = ascii('null');

/** Whether b[at..at + want.length) is `want`. */
function bytesAre(b: Uint8Array, at: number, end: number, want: Uint8Array): boolean {
  if (end - at !== want.length) return false;
  for (let k = 0; k < want.length; k++) if (b[at + k] !== want[k]) return false;
  return true;
}

/** Which of `words` b[at..end) is: its code, or -1. */
function wordOf(b: Uint8Array, at: number, end: number, words: ReadonlyArray<[Uint8Array, number]>): number {
  for (let w = 0; w < words.length; w++) if (bytesAre(b, at, end, words[w][0])) return words[w][1];
  return -1;
}

/** Which field the key b[at..end) names (F_*), or -1: a switch on its length and first letter, then one compare. */
function fieldOf(b: Uint8Array, at: number, end: number): number {
  let field: [Uint8Array, number];
  switch (end - at) {
    case 4: field = b[at] === 112 ? FIELDS[2] : FIELDS[5]; break; // port, hits
    case 5: field = FIELDS[0]; break; // label
    case 6: field = b[at] === 112 ? FIELDS[1] : FIELDS[4]; break; // prefix, action
    case 7: field = FIELDS[6]; break; // lastHit
    case 8: field = FIELDS[3]; break; // protocol
    default: return -1;
  }
  return bytesAre(b, at, end, field[0]) ? field[1] : -1;
}

const isSpace = (c: number): boolean => c === 32 || c === 10 || c === 13 || c === 9;

/** A label character after the first: letters, digits and _ . : @ + - (label.ts's LABEL_PATTERN). */
const labelChar = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95 ||
  c === 46 || c === 58 || c === 64 || c === 43 || c === 45;
const labelFirst = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || (c >= 48 && c <= 57) || c === 95;

/** Growable output arrays. */
class Out {
  keys: Buffer;
  actions: Uint8Array;
  labelIndex: Int32Array;
  /** destination slot per binding (see Slots), -1: none */
  slotOf: Int32Array;
  count = 0;

  constructor(private capacity: number) {
    this.keys = Buffer.alloc(capacity * BINDING_KEY_SIZE);
    this.actions = new Uint8Array(capacity);
    this.labelIndex = new Int32Array(capacity);
    this.slotOf = new Int32Array(capacity);
  }

  /** Room for two more bindings. */
  room(): void {
    if (this.count + 2 <= this.capacity) return;
    this.capacity = Math.max(16, Math.ceil(this.capacity * 1.5));
    const keys = Buffer.alloc(this.capacity * BINDING_KEY_SIZE);
    this.keys.copy(keys, 0, 0, this.count * BINDING_KEY_SIZE);
    this.keys = keys;
    const actions = new Uint8Array(this.capacity);
    actions.set(this.actions.subarray(0, this.count));
    this.actions = actions;
    const labelIndex = new Int32Array(this.capacity);
    labelIndex.set(this.labelIndex.subarray(0, this.count));
    this.labelIndex = labelIndex;
    const slotOf = new Int32Array(this.capacity);
    slotOf.set(this.slotOf.subarray(0, this.count));
    this.slotOf = slotOf;
  }
}

/** The destinations (label, family, protocol) met so far, as destinationSlots numbers them. */
class Slots {
  readonly list: DestinationKey[] = [];
  /** (label index * 4 + IPv6 * 2 + udp) -> slot + 1; 0: not met yet */
  private byWide = new Int32Array(64);

  constructor(private readonly labels: Labels) {}

  of(li: number, v6: boolean, udp: boolean): number {
    const wide = li * 4 + (v6 ? 2 : 0) + (udp ? 1 : 0);
    if (wide >= this.byWide.length) {
      const grown = new Int32Array(Math.max(this.byWide.length * 2, wide + 4));
      grown.set(this.byWide);
      this.byWide = grown;
    }
    let slot = this.byWide[wide] - 1;
    if (slot < 0) {
      slot = this.list.push({ label: this.labels.list[li], domain: v6 ? 'ipv6' : 'ipv4', protocol: udp ? 'udp' : 'tcp' }) - 1;
      this.byWide[wide] = slot + 1;
    }
    return slot;
  }
}

/** Labels met so far, found by their bytes without making a string of each. */
class Labels {
  readonly list: string[] = [];
  /** the labels' bytes, one after the other (the file itself goes by in a window) */
  private arena = new Uint8Array(1024);
  private used = 0;
  /** per label: where its bytes are in the arena, [start, end) */
  private where: number[] = [];
  /** open addressing: label index + 1; 0 is empty */
  private slots = new Int32Array(256);

  /** The index of the label b[start..end), added when new; -1 when it is not a valid label. */
  find(b: Uint8Array, start: number, end: number): number {
    let h = 0x811c9dc5;
    for (let k = start; k < end; k++) h = Math.imul(h ^ b[k], 0x01000193);
    const arena = this.arena;
    for (let s = h & (this.slots.length - 1); ; s = (s + 1) & (this.slots.length - 1)) {
      const v = this.slots[s];
      if (v === 0) break;
      const at = this.where[2 * (v - 1)];
      const len = this.where[2 * (v - 1) + 1] - at;
      if (len === end - start) {
        let same = true;
        for (let k = 0; k < len && same; k++) same = arena[at + k] === b[start + k];
        if (same) return v - 1;
      }
    }
    // New: check it (labelProblem, on bytes) before keeping it.
    if (end - start === 0 || end - start > LABEL_MAX_BYTES || !labelFirst(b[start])) return -1;
    for (let k = start + 1; k < end; k++) if (!labelChar(b[k])) return -1;
    const li = this.list.push(String.fromCharCode(...b.subarray(start, end))) - 1;
    if (this.used + (end - start) > this.arena.length) {
      const grown = new Uint8Array(this.arena.length * 2 + LABEL_MAX_BYTES);
      grown.set(this.arena.subarray(0, this.used));
      this.arena = grown;
    }
    this.arena.set(b.subarray(start, end), this.used);
    this.where.push(this.used, this.used + (end - start));
    this.used += end - start;
    if (this.list.length * 2 > this.slots.length) this.rehash();
    else this.place(li, h);
    return li;
  }

  private place(li: number, h: number): void {
    for (let s = h & (this.slots.length - 1); ; s = (s + 1) & (this.slots.length - 1)) {
      if (this.slots[s] === 0) {
        this.slots[s] = li + 1;
        return;
      }
    }
  }

  private rehash(): void {
    this.slots = new Int32Array(this.slots.length * 2);
    for (let li = 0; li < this.list.length; li++) {
      let h = 0x811c9dc5;
      for (let k = this.where[2 * li]; k < this.where[2 * li + 1]; k++) h = Math.imul(h ^ this.arena[k], 0x01000193);
      this.place(li, h);
    }
  }
}

/** Where a file's bytes come from when it is read a window at a time: `count` bytes at `position` into `into` (0: the end). */
export type ByteSource = (into: Uint8Array, at: number, count: number, position: number) => number;

/** The longest stretch the window always holds from the position of an entry on: an entry longer than this is left to the reference parser. */
const ENTRY_MOST = 1 << 16;

/**
 * A window onto the file: the bytes from `offset` on, `b` being the valid
 * part. Moving it keeps the bytes from a position on, and reads more.
 */
class Window {
  b: Uint8Array;
  private readonly room: Uint8Array;
  /** where b[0] is in the file */
  offset = 0;
  eof = false;

  constructor(private readonly source: ByteSource | undefined, size: number, private readonly seen?: (bytes: Uint8Array) => void) {
    this.room = new Uint8Array(source ? Math.max(size, 2 * ENTRY_MOST) : 0);
    this.b = this.room.subarray(0, 0);
  }

  /** A window that is the whole file. */
  static of(bytes: Uint8Array): Window {
    const w = new Window(undefined, 0);
    w.b = bytes;
    w.eof = true;
    return w;
  }

  /** Makes b hold at least ENTRY_MOST bytes from i on (fewer only at the end); returns where i is then. */
  from(i: number): number {
    if (this.eof || this.b.length - i >= ENTRY_MOST) return i;
    const keep = this.b.length - i;
    this.room.copyWithin(0, i, this.b.length);
    this.offset += i;
    let n = keep;
    while (n < this.room.length) {
      const got = this.source!(this.room, n, this.room.length - n, this.offset + n);
      if (got === 0) {
        this.eof = true;
        break;
      }
      this.seen?.(this.room.subarray(n, n + got));
      n += got;
    }
    this.b = this.room.subarray(0, n);
    return 0;
  }
}

/** The address of a prefix only parsePrefix understands, written like parsePrefixBytes; -1 if it is invalid. */
function slowPrefix(text: string, out: Buffer, off: number): number {
  try {
    const { prefix, masked } = parsePrefix(text);
    out.fill(0, off, off + 16);
    out.set(prefix.bytes, off);
    return prefix.length | (prefix.family === 6 ? INTO_IPV6 : 0) | (masked ? INTO_MASKED : 0);
  } catch {
    return -1;
  }
}

/** The first position from i on that is not white space. */
function skip(b: Uint8Array, i: number): number {
  while (i < b.length && isSpace(b[i])) i++;
  return i;
}

/** The end (closing quote) of the string at b[i], which has no escape and no control character; -1 for any other. */
function stringEnd(b: Uint8Array, i: number): number {
  if (b[i] !== QUOTE) return -1;
  for (let k = i + 1; k < b.length; k++) {
    const c = b[k];
    if (c === QUOTE) return k;
    if (c === BACKSLASH || c < 32) return -1;
  }
  return -1;
}

/** The fields of one entry, as readEntry found them (reused from entry to entry). */
interface Fields {
  /** which fields it has (F_*) */
  seen: number;
  labelStart: number;
  labelEnd: number;
  prefixStart: number;
  prefixEnd: number;
  port: number;
  /** IPPROTO_*, or 0: both */
  protocol: number;
  action: number;
}

/**
 * Reads the entry at b[i] ('{'), into f; returns the position after its
 * '}', or -1 for anything the fast path does not take.
 */
function readEntry(b: Uint8Array, i: number, f: Fields): number {
  f.seen = 0;
  f.labelStart = -1;
  f.protocol = 0;
  f.action = ACTION_STEER;
  i = skip(b, i + 1);
  if (b[i] === RBRACE) return i + 1;
  for (;;) {
    let end = stringEnd(b, i);
    if (end < 0) return -1;
    const field = fieldOf(b, i + 1, end);
    if (field < 0 || (f.seen & field) !== 0) return -1;
    f.seen |= field;
    i = skip(b, end + 1);
    if (b[i] !== COLON) return -1;
    i = skip(b, i + 1);
    if (field === F_PORT) {
      i = readPort(b, i, f);
      if (i < 0) return -1;
    } else if (field === F_LASTHIT && b[i] !== QUOTE) {
      if (!bytesAre(b, i, Math.min(b.length, i + 4), NULL)) return -1;
      i += 4;
    } else {
      end = stringEnd(b, i);
      if (end < 0 || !stringField(b, i + 1, end, field, f)) return -1;
      i = end + 1;
    }
    i = skip(b, i);
    if (b[i] === COMMA) {
      i = skip(b, i + 1);
    } else if (b[i] === RBRACE) {
      return i + 1;
    } else {
      return -1;
    }
  }
}

/** A port: plain digits only (no sign, fraction or exponent, no leading zero), 0-65535. */
function readPort(b: Uint8Array, i: number, f: Fields): number {
  const start = i;
  let v = 0;
  while (i < b.length && b[i] >= 48 && b[i] <= 57) v = v * 10 + (b[i++] - 48);
  const digits = i - start;
  if (digits === 0 || digits > 5 || (digits > 1 && b[start] === 48) || v > 65535) return -1;
  const c = b[i];
  if (c === 46 || c === 101 || c === 69 || c === 43 || c === 45) return -1;
  f.port = v;
  return i;
}

/** A field whose value is the string b[start..end); false when the fast path does not take it. */
function stringField(b: Uint8Array, start: number, end: number, field: number, f: Fields): boolean {
  switch (field) {
    case F_LABEL:
      f.labelStart = start;
      f.labelEnd = end;
      return true;
    case F_PREFIX:
      f.prefixStart = start;
      f.prefixEnd = end;
      return true;
    case F_PROTOCOL:
      f.protocol = wordOf(b, start, end, WORDS);
      return f.protocol === IPPROTO.tcp || f.protocol === IPPROTO.udp;
    case F_ACTION:
      f.action = wordOf(b, start, end, WORDS);
      return f.action === ACTION_STEER || f.action === ACTION_REJECT || f.action === ACTION_OBSERVE;
    case F_HITS:
      // Traffic, as bindings --json writes it: a decimal string, ignored.
      if (end === start) return false;
      for (let k = start; k < end; k++) if (b[k] < 48 || b[k] > 57) return false;
      return true;
    default:
      // lastHit: any string, ignored
      return true;
  }
}

const text = (b: Uint8Array, start: number, end: number): string => Buffer.from(b.buffer, b.byteOffset + start, end - start).toString('utf8');

/** Adds the bindings of entry e (one, or tcp and udp); false when the fast path does not take it. */
function addEntry(b: Uint8Array, f: Fields, e: number, out: Out, labels: Labels, slots: Slots, notes: string[]): boolean {
  if ((f.seen & (F_PREFIX | F_PORT)) !== (F_PREFIX | F_PORT)) return false;
  // Reject and observe bindings may go without a label.
  const labelled = f.action === ACTION_STEER;
  let li = -1;
  if (f.labelStart >= 0 ? f.labelEnd > f.labelStart || labelled : labelled) {
    if (f.labelStart < 0) return false;
    li = labels.find(b, f.labelStart, f.labelEnd);
    if (li < 0) return false;
  }
  out.room();
  const keys = out.keys;
  const off = out.count * BINDING_KEY_SIZE;
  let parsed = parsePrefixBytes(b, f.prefixStart, f.prefixEnd, keys, off + 8);
  if (parsed < 0) parsed = slowPrefix(text(b, f.prefixStart, f.prefixEnd), keys, off + 8);
  if (parsed < 0) return false;
  if (parsed & INTO_MASKED) notes.push(`bindings[${e}]: ${parsePrefix(text(b, f.prefixStart, f.prefixEnd)).masked}`);
  const port = f.port;
  keys[off] = f.protocol === IPPROTO.udp ? IPPROTO.udp : IPPROTO.tcp;
  keys[off + 1] = parsed & INTO_IPV6 ? AF[6] : AF[4];
  keys[off + 2] = parsed & 0xff;
  keys[off + 3] = 0;
  keys[off + 4] = LE ? port & 0xff : port >> 8;
  keys[off + 5] = LE ? port >> 8 : port & 0xff;
  keys[off + 6] = 0;
  keys[off + 7] = 0;
  const v6 = (parsed & INTO_IPV6) !== 0;
  out.actions[out.count] = f.action;
  out.labelIndex[out.count] = li;
  out.slotOf[out.count] = li < 0 ? -1 : slots.of(li, v6, f.protocol === IPPROTO.udp);
  out.count++;
  if (f.protocol === 0) {
    keys.copyWithin(off + BINDING_KEY_SIZE, off, off + BINDING_KEY_SIZE);
    keys[off + BINDING_KEY_SIZE] = IPPROTO.udp;
    out.actions[out.count] = f.action;
    out.labelIndex[out.count] = li;
    out.slotOf[out.count] = li < 0 ? -1 : slots.of(li, v6, true);
    out.count++;
  }
  return true;
}

/** How packBindingsFile reads a file a window at a time. */
export interface StreamOptions {
  /** where the bytes come from */
  source: ByteSource;
  /** the file's size as fstat gives it (to size the output; the file is read to its end whatever it says) */
  size: number;
  /** the window, in bytes (default 256 KiB; at least 128 KiB) */
  window?: number;
  /** called with every byte read, in order (a digest of what was parsed) */
  seen?: (bytes: Uint8Array) => void;
}

/**
 * The bindings of a valid file (its bytes, its text, or a source to read it
 * from a window at a time, so that a large file is never held whole), or
 * undefined: then parseBindingsFile decides, and explains.
 */
export function packBindingsFile(input: string | Uint8Array | StreamOptions): PackedBindingsFile | undefined {
  let win: Window;
  let size: number;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    const bytes = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
    win = Window.of(bytes);
    size = bytes.length;
  } else {
    win = new Window(input.source, input.window ?? 1 << 18, input.seen);
    size = input.size;
  }
  let i = win.from(0);
  let b = win.b;
  i = skip(b, i);
  if (b[i] !== LBRACE) return undefined;
  i = skip(b, i + 1);
  const end = stringEnd(b, i);
  if (end < 0 || !bytesAre(b, i + 1, end, BINDINGS)) return undefined;
  i = skip(b, end + 1);
  if (b[i] !== COLON) return undefined;
  i = skip(b, i + 1);
  if (b[i] !== LBRACKET) return undefined;
  i = skip(b, i + 1);

  // Entries take at least 24 bytes ({"prefix":"::","port":0}) and give at
  // most two bindings: room for all at once. (Pages never written are
  // never touched: they cost no memory.)
  const out = new Out(Math.min(2 * MAX_BINDINGS, 2 * Math.floor(size / 24)) + 2);
  const labels = new Labels();
  const slots = new Slots(labels);
  const notes: string[] = [];
  const f: Fields = { seen: 0, labelStart: -1, labelEnd: -1, prefixStart: -1, prefixEnd: -1, port: -1, protocol: 0, action: ACTION_STEER };
  // Values as scanJSON counts them: the top object and the array, then each entry and its fields.
  let values = 2;
  let entries = 0;
  if (b[i] === RBRACKET) {
    i++;
  } else {
    for (;;) {
      i = win.from(i);
      b = win.b;
      if (b[i] !== LBRACE || entries >= BINDINGS_FILE_LIMITS.maxItems) return undefined;
      i = readEntry(b, i, f);
      if (i < 0) return undefined;
      for (let s = f.seen; s !== 0; s &= s - 1) values++;
      if (++values > BINDINGS_FILE_LIMITS.maxValues) return undefined;
      if (!addEntry(b, f, entries++, out, labels, slots, notes)) return undefined;
      i = skip(b, i);
      if (b[i] === COMMA) {
        i = skip(b, i + 1);
      } else if (b[i] === RBRACKET) {
        i++;
        break;
      } else {
        return undefined;
      }
    }
  }
  i = skip(b, i);
  if (b[i] !== RBRACE) return undefined;
  i++;
  // Only white space to the end.
  for (;;) {
    i = skip(b, i);
    if (i < b.length) return undefined;
    if (win.eof) break;
    i = win.from(i);
    b = win.b;
  }

  const count = out.count;
  const keys = out.keys.subarray(0, count * BINDING_KEY_SIZE);
  // A binding twice: the reference names both entries.
  const index = new KeyIndex(keyWords(keys, count), count);
  if (index.addAll(count) >= 0) return undefined;
  return {
    set: { count, keys, actions: out.actions.subarray(0, count), labelIndex: out.labelIndex.subarray(0, count), labels: labels.list },
    notes,
    index,
    slots: { slotOf: out.slotOf.subarray(0, count), slots: slots.list },
  };
}
