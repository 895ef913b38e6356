// The prefixes of a binding set as a containment forest, per protocol and
// family: each distinct prefix is a node, its parent the longest other
// prefix that contains it. Prefixes nest or are disjoint, so this is a
// forest, and "the bindings that beat B" are always inside B's node (or at
// it): the questions `tubectl check` asks become walks over it.
//
// Built from the packed keys with one string sort, no object per binding:
// a set of 100k bindings takes a few tens of milliseconds.
import { type PackedBindings, keyPort } from './bindingset.js';
import { AF, BINDING_KEY_SIZE } from './layout.js';

export interface PrefixForest {
  /** how many distinct (protocol, family, prefix) nodes */
  readonly nodes: number;
  /** per node, its parent or -1; nodes are numbered in preorder, so a parent comes before its children */
  readonly parent: Int32Array;
  /** per node, the packed-key offset of one of its bindings (protocol, family, prefix) */
  readonly keyOffset: Int32Array;
  /** bindings of node n, by port (port 0 first): byNode[first[n] .. first[n + 1]) */
  readonly first: Int32Array;
  readonly byNode: Int32Array;
  /** per binding, its node */
  readonly nodeOf: Int32Array;
  /** children of node n: children[childFirst[n] .. childFirst[n + 1]), in address order */
  readonly childFirst: Int32Array;
  readonly children: Int32Array;
  /** per node, 1 when its children cover all of its addresses */
  readonly tiled: Uint8Array;
}

/** Whether the prefix at k[outer..] contains the one at k[inner..] (same protocol and family, checked by the caller). */
function containsAt(k: Uint8Array, outer: number, inner: number): boolean {
  const len = k[outer + 2];
  if (len >= k[inner + 2]) return false;
  const whole = len >> 3;
  for (let i = 0; i < whole; i++) if (k[outer + 8 + i] !== k[inner + 8 + i]) return false;
  const bits = len & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (k[inner + 8 + whole] & mask) === k[outer + 8 + whole];
}

/** The sort key of binding i: protocol, family, address, length, port (all big-endian), then the index. */
function sortKey(k: Uint8Array, i: number): string {
  const off = i * BINDING_KEY_SIZE;
  let s = String.fromCharCode(k[off], k[off + 1]);
  for (let b = 8; b < 24; b += 2) s += String.fromCharCode((k[off + b] << 8) | k[off + b + 1]);
  const port = keyPort(k, off);
  return s + String.fromCharCode(k[off + 2], port, i >>> 16, i & 0xffff);
}

const sameNode = (k: Uint8Array, a: number, b: number): boolean => {
  if (k[a] !== k[b] || k[a + 1] !== k[b + 1] || k[a + 2] !== k[b + 2]) return false;
  for (let i = 8; i < 24; i++) if (k[a + i] !== k[b + i]) return false;
  return true;
};

export function buildForest(set: PackedBindings): PrefixForest {
  const k = set.keys;
  const n = set.count;
  const sorted = new Array<string>(n);
  for (let i = 0; i < n; i++) sorted[i] = sortKey(k, i);
  sorted.sort();
  const byNode = new Int32Array(n);
  const nodeOf = new Int32Array(n);
  const firstList: number[] = [];
  const keyOffsetList: number[] = [];
  for (let j = 0; j < n; j++) {
    const s = sorted[j];
    const i = (s.charCodeAt(s.length - 2) << 16) | s.charCodeAt(s.length - 1);
    byNode[j] = i;
    const off = i * BINDING_KEY_SIZE;
    if (j === 0 || !sameNode(k, keyOffsetList[keyOffsetList.length - 1], off)) {
      firstList.push(j);
      keyOffsetList.push(off);
    }
    nodeOf[i] = keyOffsetList.length - 1;
  }
  const nodes = keyOffsetList.length;
  const first = Int32Array.from([...firstList, n]);
  const keyOffset = Int32Array.from(keyOffsetList);
  // Preorder: a stack of the nodes that contain the current one.
  const parent = new Int32Array(nodes).fill(-1);
  const stack: number[] = [];
  for (let x = 0; x < nodes; x++) {
    const off = keyOffset[x];
    while (stack.length > 0) {
      const top = keyOffset[stack[stack.length - 1]];
      if (k[top] === k[off] && k[top + 1] === k[off + 1] && containsAt(k, top, off)) break;
      stack.pop();
    }
    if (stack.length > 0) parent[x] = stack[stack.length - 1];
    stack.push(x);
  }
  const childFirst = new Int32Array(nodes + 1);
  for (let x = 0; x < nodes; x++) if (parent[x] >= 0) childFirst[parent[x] + 1]++;
  for (let x = 0; x < nodes; x++) childFirst[x + 1] += childFirst[x];
  const children = new Int32Array(childFirst[nodes]);
  const fill = childFirst.slice(0, nodes);
  for (let x = 0; x < nodes; x++) if (parent[x] >= 0) children[fill[parent[x]]++] = x;
  // Children are disjoint and inside their parent: they cover it exactly
  // when their sizes add up to its size.
  const width = (off: number): bigint => BigInt((k[off + 1] === AF[4] ? 32 : 128) - k[off + 2]);
  const covered = new Array<bigint>(nodes).fill(0n);
  for (let x = 0; x < nodes; x++) if (parent[x] >= 0) covered[parent[x]] += 1n << width(keyOffset[x]);
  const tiled = new Uint8Array(nodes);
  for (let x = 0; x < nodes; x++) tiled[x] = covered[x] === 1n << width(keyOffset[x]) ? 1 : 0;
  return { nodes, parent, keyOffset, first, byNode, nodeOf, childFirst, children, tiled };
}

/** The binding of node x with this port, or -1 (binary search: a node's bindings are sorted by port). */
export function bindingWithPort(f: PrefixForest, set: PackedBindings, x: number, port: number): number {
  let lo = f.first[x];
  let hi = f.first[x + 1];
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const p = keyPort(set.keys, f.byNode[mid] * BINDING_KEY_SIZE);
    if (p === port) return f.byNode[mid];
    if (p < port) lo = mid + 1; else hi = mid;
  }
  return -1;
}
