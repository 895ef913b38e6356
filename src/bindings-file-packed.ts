// The common case of a bindings file (see bindings-file.ts), read straight
// into a packed binding set: no Binding object, prefix object or string key
// per entry, and no zod. It accepts only files that parseBindingsFile
// accepts, with the same bindings in the same order and the same notes;
// anything else, valid or not, it leaves to parseBindingsFile (return value
// undefined), which is the reference and names every problem.
import { scanBindingsFile } from './bindings-file-limits.js';
import { type PackedBindings } from './bindingset.js';
import { KeyIndex, keyWords } from './keyindex.js';
import { labelProblem } from './label.js';
import { ACTION_OBSERVE, ACTION_REJECT, ACTION_STEER, AF, BINDING_KEY_SIZE, IPPROTO } from './layout.js';
import { INTO_IPV6, INTO_MASKED, parsePrefix, parsePrefixInto } from './prefix.js';
import { endianness } from 'node:os';

export interface PackedBindingsFile {
  set: PackedBindings;
  /** harmless corrections, as parseBindingsFile words them */
  notes: string[];
}

const LE = endianness() === 'LE';

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The address of a prefix only parsePrefix understands, written like parsePrefixInto; -1 if it is invalid. */
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

/** The bindings of a valid file, or undefined: then parseBindingsFile decides, and explains. */
export function packBindingsFile(text: string): PackedBindingsFile | undefined {
  const scan = scanBindingsFile(text);
  if (scan.exceeded || scan.duplicate || scan.unplainCount > 0) return undefined;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isRecord(data)) return undefined;
  for (const field in data) if (field !== 'bindings') return undefined;
  const entries = data.bindings;
  if (!Array.isArray(entries)) return undefined;

  const max = entries.length * 2;
  const keys = Buffer.alloc(max * BINDING_KEY_SIZE);
  const actions = new Uint8Array(max);
  const labelIndex = new Int32Array(max);
  const labels: string[] = [];
  const labelIds = new Map<string, number>();
  const index = new KeyIndex(keyWords(keys, max), max);
  const notes: string[] = [];
  let count = 0;
  for (let e = 0; e < entries.length; e++) {
    const entry: unknown = entries[e];
    if (!isRecord(entry)) return undefined;
    const { label, prefix, port, protocol, action, hits, lastHit } = entry;
    let fields = 0;
    for (const _ in entry) fields++;
    const given = (v: unknown): number => (v === undefined ? 0 : 1);
    if (fields !== 2 + given(label) + given(protocol) + given(action) + given(hits) + given(lastHit)) return undefined;
    // Traffic, as bindings --json writes it: ignored.
    if (hits !== undefined && (typeof hits !== 'string' || !/^\d+$/.test(hits))) return undefined;
    if (lastHit !== undefined && lastHit !== null && typeof lastHit !== 'string') return undefined;
    if (typeof prefix !== 'string' || typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) return undefined;
    if (protocol !== undefined && protocol !== 'tcp' && protocol !== 'udp') return undefined;
    if (action !== undefined && action !== 'steer' && action !== 'reject' && action !== 'observe') return undefined;
    // Reject and observe bindings may go without a label.
    const reject = action === 'reject' || action === 'observe';
    let li = -1;
    if (label !== undefined || !reject) {
      if (typeof label !== 'string') return undefined;
      if (label !== '' || !reject) {
        li = labelIds.get(label) ?? -1;
        if (li < 0) {
          if (labelProblem(label) !== undefined) return undefined;
          li = labels.push(label) - 1;
          labelIds.set(label, li);
        }
      }
    }
    const off = count * BINDING_KEY_SIZE;
    let parsed = parsePrefixInto(prefix, keys, off + 8);
    if (parsed < 0) parsed = slowPrefix(prefix, keys, off + 8);
    if (parsed < 0) return undefined;
    if (parsed & INTO_MASKED) notes.push(`bindings[${e}]: ${parsePrefix(prefix).masked}`);
    keys[off] = protocol === 'udp' ? IPPROTO.udp : IPPROTO.tcp;
    keys[off + 1] = parsed & INTO_IPV6 ? AF[6] : AF[4];
    keys[off + 2] = parsed & 0xff;
    keys[off + 4] = LE ? port & 0xff : port >> 8;
    keys[off + 5] = LE ? port >> 8 : port & 0xff;
    const both = protocol === undefined;
    if (both) {
      keys.copyWithin(off + BINDING_KEY_SIZE, off, off + BINDING_KEY_SIZE);
      keys[off + BINDING_KEY_SIZE] = IPPROTO.udp;
    }
    for (let k = 0; k < (both ? 2 : 1); k++) {
      if (index.add(count) >= 0) return undefined;
      actions[count] = action === 'reject' ? ACTION_REJECT : action === 'observe' ? ACTION_OBSERVE : ACTION_STEER;
      labelIndex[count] = li;
      count++;
    }
  }
  return {
    set: {
      count,
      keys: keys.subarray(0, count * BINDING_KEY_SIZE),
      actions: actions.subarray(0, count),
      labelIndex: labelIndex.subarray(0, count),
      labels,
    },
    notes,
  };
}
