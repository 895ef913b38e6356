// Which bindings can never decide a connection, exactly, for IPv4 and IPv6.
//
// Precedence (binding.ts): the longest prefix wins; at equal length a
// specific port beats port 0. So what beats a binding B = (P, port) is:
// - for a specific port q: the bindings strictly inside P with port q or 0
//   (at P itself, port 0 loses to B and other ports never match q);
// - for port 0, on a connection to port q: the bindings strictly inside P
//   with port q or 0, and the binding (P, q) itself.
// B is unreachable when, for every port it serves, the bindings that beat
// it cover all of P. In the prefix forest (prefix-forest.ts) "cover all of
// node x with bindings of ports C" is full_C(x): x has a binding with a
// port in C, or its children cover it and each is full_C. For B at x that
// is strict_C(x): the children cover x and each is full_C.
//
// full_{0} is one bottom-up pass. full_{q,0} differs from it only on the
// ancestors of the nodes with a port-q binding, so each port gets a pass
// over those nodes alone: O(bindings x nesting depth) in all.
import { type PackedBindings, keyPort } from './bindingset.js';
import { BINDING_KEY_SIZE } from './layout.js';
import { type PrefixForest, bindingWithPort } from './prefix-forest.js';

/** The ports a connection can have: 1-65535. Tests pass fewer. */
export const PORT_COUNT = 65535;

export interface Reachability {
  /** per binding: 1 when no connection can ever pick it */
  readonly unreachable: Uint8Array;
  /** per node: 1 when its strictly longer port-0 bindings cover it */
  readonly strictAny: Uint8Array;
}

export function reachability(set: PackedBindings, f: PrefixForest, portCount = PORT_COUNT): Reachability {
  const k = set.keys;
  const n = f.nodes;
  const unreachable = new Uint8Array(set.count);
  const any = new Int32Array(n).fill(-1);   // the port-0 binding of a node
  const byPort = new Map<number, number[]>();
  for (let i = 0; i < set.count; i++) {
    const port = keyPort(k, i * BINDING_KEY_SIZE);
    if (port === 0) {
      any[f.nodeOf[i]] = i;
    } else {
      const list = byPort.get(port);
      if (list) list.push(i); else byPort.set(port, [i]);
    }
  }
  // full_{0}, and how many children of each node are not full_{0}.
  const full0 = new Uint8Array(n);
  const notFull = new Int32Array(n);
  for (let x = n - 1; x >= 0; x--) {
    full0[x] = any[x] >= 0 || (f.tiled[x] === 1 && notFull[x] === 0) ? 1 : 0;
    if (f.parent[x] >= 0 && !full0[x]) notFull[f.parent[x]]++;
  }
  const strictAny = new Uint8Array(n);
  for (let x = 0; x < n; x++) strictAny[x] = f.tiled[x] === 1 && notFull[x] === 0 ? 1 : 0;
  // One pass per specific port q over the nodes whose subtree binds q.
  const stamp = new Int32Array(n).fill(-1);
  const fixed = new Int32Array(n);        // children not full_{0} but full_{q,0}
  const atQ = new Int32Array(n);          // the port-q binding of a node, this pass
  const portsCovered = new Int32Array(n); // for port-0 bindings: ports on which they are beaten everywhere
  let pass = 0;
  for (const list of byPort.values()) {
    pass++;
    const marked: number[] = [];
    for (const i of list) {
      for (let x = f.nodeOf[i]; x >= 0 && stamp[x] !== pass; x = f.parent[x]) {
        stamp[x] = pass;
        fixed[x] = 0;
        atQ[x] = -1;
        marked.push(x);
      }
    }
    for (const i of list) atQ[f.nodeOf[i]] = i;
    marked.sort((a, b) => b - a); // children before parents
    for (const x of marked) {
      const strict = f.tiled[x] === 1 && notFull[x] - fixed[x] === 0;
      const own = atQ[x];
      if (own >= 0 && strict) unreachable[own] = 1;
      if (any[x] >= 0 && !strictAny[x] && (own >= 0 || strict)) portsCovered[x]++;
      const p = f.parent[x];
      if (p >= 0 && !full0[x] && (own >= 0 || any[x] >= 0 || strict)) fixed[p]++;
    }
  }
  for (let x = 0; x < n; x++) {
    if (any[x] >= 0 && (strictAny[x] || portsCovered[x] >= portCount)) unreachable[any[x]] = 1;
  }
  return { unreachable, strictAny };
}

/**
 * Up to `limit` bindings that beat binding i, found nearest first, for a
 * message; `more` says whether there are others.
 */
export function bindingsInFront(set: PackedBindings, f: PrefixForest, r: Reachability, i: number, limit: number): { found: number[]; more: boolean } {
  const x = f.nodeOf[i];
  const port = keyPort(set.keys, i * BINDING_KEY_SIZE);
  const found: number[] = [];
  let more = false;
  const add = (b: number): boolean => {
    if (found.length >= limit) {
      more = true;
      return false;
    }
    found.push(b);
    return true;
  };
  if (port === 0 && !r.strictAny[x]) {
    // Beaten on every port: by a binding for each port, most at this very prefix.
    for (let j = f.first[x]; j < f.first[x + 1]; j++) if (f.byNode[j] !== i && !add(f.byNode[j])) break;
    return { found, more: more || f.first[x + 1] - f.first[x] - 1 > found.length };
  }
  const walk = (node: number): boolean => {
    for (let c = f.childFirst[node]; c < f.childFirst[node + 1]; c++) {
      const child = f.children[c];
      const b = port !== 0 ? bindingWithPort(f, set, child, port) : -1;
      const beats = b >= 0 ? b : bindingWithPort(f, set, child, 0);
      if (beats >= 0 ? !add(beats) : !walk(child)) return false;
    }
    return true;
  };
  walk(x);
  return { found, more };
}
