// A replace patches the standby generation (only what differs from the set
// it held), guided by the journal when the journal is whole. Random runs of
// replaces, binds, unbinds, rollbacks and interrupted writers over a small
// universe of bindings, on a real dispatcher; after every step:
//   - the set in force and the previous generation are exactly the model's;
//   - the program (BPF_PROG_TEST_RUN) finds every binding in force and
//     nothing else, so the filters in force are right too;
//   - while meta says the journal is whole, it holds every key whose binding
//     differs between the two generations.
// Among the steps: nonsense written into every binding's place.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import fc from 'fast-check';
import { BIG_SET, bigSet, bigSetAddress } from './lib/crash-replace.js';
import { intercept } from './lib/intercept.js';
import { isolate } from './lib/isolate.js';
import { readMeta, writeMeta } from './lib/meta.js';
import { type Binding, bindingId, parseBinding } from '../src/binding.js';
import { bindingKey, packBindingSet } from '../src/bindingset.js';
import { Dispatcher } from '../src/dispatcher.js';
import { BINDING_KEY_SIZE, BINDING_VALUE_SIZE, META_INTENT, META_JOURNAL, META_UNSETTLED, PIN } from '../src/layout.js';
import { native } from '../src/native.js';
import { netnsInode } from '../src/netns.js';
import { probe } from '../src/probe.js';
import { patchable } from '../src/standby.js';

const { bpffs } = isolate();
const opts = { bpffs };
const sys = native();
const stateDir = path.join(bpffs, `${netnsInode('/proc/self/ns/net')}_dispatcher`);

// 24 keys: /32s on distinct ports, so that a probe of a key finds only that key.
const KEYS = Array.from({ length: 24 }, (_, k) => ({ host: 1 + (k % 6), port: 7000 + k }));
const LABELS = ['a', 'b', 'c'];
const binding = (k: number, label: number): Binding =>
  parseBinding(label < LABELS.length ? { label: LABELS[label], protocol: 'tcp', prefix: `127.0.0.${KEYS[k].host}`, port: KEYS[k].port }
    : { protocol: 'tcp', prefix: `127.0.0.${KEYS[k].host}`, port: KEYS[k].port, action: 'reject' });

type Op =
  | { op: 'replace'; set: Array<[number, number]> }
  | { op: 'bind'; key: number; label: number }
  | { op: 'unbind'; key: number }
  | { op: 'rollback' }
  | { op: 'crash' }
  | { op: 'forge'; seed: number };

const setArb = fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: KEYS.length - 1 }), fc.integer({ min: 0, max: LABELS.length })),
  { selector: ([k]) => k, maxLength: KEYS.length });
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: setArb.map((set) => ({ op: 'replace' as const, set })) },
  // A replace that changes a little of what is in force: what the journal is for.
  { weight: 3, arbitrary: fc.constant({ op: 'replace' as const, set: [] as Array<[number, number]> }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('bind' as const), key: fc.integer({ min: 0, max: KEYS.length - 1 }), label: fc.integer({ min: 0, max: LABELS.length }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unbind' as const), key: fc.integer({ min: 0, max: KEYS.length - 1 }) }) },
  { weight: 2, arbitrary: fc.constant({ op: 'rollback' as const }) },
  { weight: 1, arbitrary: fc.constant({ op: 'crash' as const }) },
  { weight: 1, arbitrary: fc.nat().map((seed) => ({ op: 'forge' as const, seed })) },
);

/** The model: label per key (-1: no binding), for the set in force and the previous generation (null: none). */
interface Model { inForce: Int32Array; previous: Int32Array | null }

const describeSet = (set: readonly Binding[]): string[] => set.map((b) => `${b.label || '<reject>'} ${bindingId(b)}`).sort();
const modelSet = (m: Int32Array): Binding[] => [...m].flatMap((label, k) => (label < 0 ? [] : [binding(k, label)]));

const meta = (slot: number): bigint => readMeta(stateDir, slot);
const setMeta = (slot: number, value: bigint): void => writeMeta(stateDir, slot, value);

function journalKeys(): Set<string> {
  const fd = sys.getPinned(path.join(stateDir, PIN.journal), 0);
  try {
    const { keys, count } = sys.mapDump(fd, 24, 4);
    return new Set(Array.from({ length: count }, (_, i) => keys.subarray(i * 24, i * 24 + 24).toString('hex')));
  } finally {
    sys.close(fd);
  }
}

function check(d: Dispatcher, m: Model, step: string): void {
  assert.deepEqual(describeSet(d.bindings()), describeSet(modelSet(m.inForce)), `${step}: the set in force`);
  const previous = d.previousSlot();
  assert.equal(previous === null, m.previous === null, `${step}: a previous generation or none`);
  if (previous !== null) assert.deepEqual(describeSet(d.bindings(previous)), describeSet(modelSet(m.previous!)), `${step}: the previous generation`);
  const prog = sys.getPinned(path.join(stateDir, PIN.program), 0);
  try {
    KEYS.forEach((key, k) => {
      const r = probe(prog, { protocol: 'tcp', family: 4, address: Uint8Array.of(127, 0, 0, key.host), port: key.port });
      // Nothing listens: a binding refuses (its label has no socket, or it is a reject); without one the kernel passes.
      assert.equal(r.verdict, m.inForce[k] < 0 ? 'pass' : 'drop', `${step}: the program on ${bindingId(binding(k, 0))}`);
    });
  } finally {
    sys.close(prog);
  }
  if (meta(META_JOURNAL) === 1n && previous !== null) {
    const journal = journalKeys();
    m.inForce.forEach((label, k) => {
      if (label !== m.previous![k]) assert.ok(journal.has(bindingKey(binding(k, 0)).toString('hex')), `${step}: the journal lacks ${bindingId(binding(k, 0))}`);
    });
  }
}

/**
 * Whoever can write the maps writes nonsense places into both sets (a
 * place is only a guess for the next diff: see docs/ARCHITECTURE.md):
 * nothing the program or the next replace does may change.
 */
function forgePlaces(seed: number): void {
  for (const slot of [0, 1]) {
    const fd = sys.getPinned(path.join(stateDir, `binding_set_${slot}`), 0);
    try {
      const { keys, values, count } = sys.mapDump(fd, BINDING_KEY_SIZE, BINDING_VALUE_SIZE);
      for (let i = 0; i < count; i++) values.writeUInt32LE((Math.imul(seed + i, 0x9e3779b1) >>> 0) % (i % 2 === 0 ? KEYS.length + 2 : 0x100000000), i * BINDING_VALUE_SIZE + 12);
      if (count > 0) sys.mapUpdateBatch(fd, keys, values, count, 0);
    } finally {
      sys.close(fd);
    }
  }
}

/** The model of what a dispatcher holds (only bindings of KEYS). */
function read(d: Dispatcher, slot?: number): Int32Array {
  const m = new Int32Array(KEYS.length).fill(-1);
  for (const b of d.bindings(slot)) m[b.port - 7000] = b.action === 'reject' ? LABELS.length : LABELS.indexOf(b.label);
  return m;
}

/**
 * Both generations empty, the journal not trusted (as after a crash): where
 * every run starts (one dispatcher serves every run; loading the program is
 * the slow part).
 */
function reset(d: Dispatcher): void {
  d.replaceBindings([]);
  if (d.previousSlot() !== null) {
    d.rollback();
    for (const b of d.bindings()) d.unbind(b);
  }
  setMeta(META_JOURNAL, 0n);
  assert.equal(d.bindings().length, 0);
  const previous = d.previousSlot();
  if (previous !== null) assert.equal(d.bindings(previous).length, 0);
}

test('the standby is patched into the new set, with the journal or without it, through binds, rollbacks and crashes', () => {
  let runs = 0;
  let usedJournal = 0;
  let forged = 0;
  const d = Dispatcher.create(opts);
  try {
    const outcome = fc.check(fc.property(fc.array(opArb, { minLength: 4, maxLength: 16 }), (ops) => {
      reset(d);
      const m: Model = { inForce: read(d), previous: d.previousSlot() === null ? null : read(d, d.previousSlot()!) };
      ops.forEach((o, n) => {
        const step = `step ${n} (${JSON.stringify(o)})`;
        switch (o.op) {
          case 'replace': {
            const next = new Int32Array(KEYS.length).fill(-1);
            if (o.set.length === 0) {
              // 1 change to the set in force.
              next.set(m.inForce);
              const k = n % KEYS.length;
              next[k] = next[k] < 0 ? n % (LABELS.length + 1) : -1;
            } else {
              for (const [k, label] of o.set) next[k] = label;
            }
            if (meta(META_JOURNAL) === 1n) usedJournal++;
            const r = d.replaceBindings(modelSet(next));
            if (r.added + r.removed + r.changed > 0) m.previous = m.inForce;
            m.inForce = next;
            break;
          }
          case 'bind':
            d.bind(binding(o.key, o.label));
            m.inForce = Int32Array.from(m.inForce, (label, k) => (k === o.key ? o.label : label));
            break;
          case 'unbind':
            if (m.inForce[o.key] < 0) return;
            d.unbind(binding(o.key, m.inForce[o.key]));
            m.inForce = Int32Array.from(m.inForce, (label, k) => (k === o.key ? -1 : label));
            break;
          case 'rollback':
            if (m.previous === null) return;
            d.rollback();
            [m.inForce, m.previous] = [m.previous, m.inForce];
            break;
          case 'crash':
            // A writer that died part-way leaves the intent mark: the next writer reconciles.
            setMeta(META_INTENT, 1n);
            d.resetSources();
            assert.equal(meta(META_INTENT), 0n);
            assert.equal(meta(META_JOURNAL), 0n, 'after a crash the journal is not trusted');
            break;
          case 'forge':
            forgePlaces(o.seed);
            forged++;
            break;
        }
        check(d, m, step);
      });
      runs++;
    }), { numRuns: 20 });
    if (outcome.failed) assert.fail(`${fc.stringify(outcome.counterexample)}: ${outcome.errorInstance instanceof Error ? outcome.errorInstance.message : String(outcome.errorInstance)}`);
  } finally {
    d.close();
    Dispatcher.unload(opts);
  }
  assert.ok(runs >= 20);
  assert.ok(usedJournal > 20, `only ${usedJournal} replaces had the journal`);
  assert.ok(forged > 3, `places were forged only ${forged} times`);
});

test('the file the set in force was read from is recognised by its size and digest and not parsed, until a bind changes the set; a file of another size is not read for its digest', () => {
  const d = Dispatcher.create(opts);
  try {
    const set = modelSet(Int32Array.from(KEYS, (_, k) => k % (LABELS.length + 2) - 1));
    const packed = packBindingSet(set);
    let parses = 0;
    let digests = 0;
    const file = (digest: bigint, size = 1000) => ({
      size,
      digest: () => { digests++; return digest; },
      parse: () => { parses++; return { set: packed, file: { digest, size } }; },
    });
    assert.equal(d.replaceBindingsFile(file(7n))!.added, set.length);
    assert.deepEqual([parses, digests], [1, 0], 'nothing in force came from a file: the file is not read for its digest');
    assert.deepEqual(d.replaceBindingsFile(file(7n)), { added: 0, removed: 0, changed: 0, unchanged: set.length, generation: 2 });
    assert.deepEqual([parses, digests], [1, 1], 'the same file again: its digest read, and not parsed');
    d.replaceBindingsFile(file(8n));
    assert.deepEqual([parses, digests], [2, 2], 'another file of the same size: digest, then parse');
    assert.equal(d.replaceBindingsFile(file(8n))!.unchanged, set.length);
    assert.deepEqual([parses, digests], [2, 3]);
    // A file of another size is another file, even where a digest would say otherwise.
    assert.equal(d.replaceBindingsFile(file(8n, 999))!.unchanged, set.length);
    assert.deepEqual([parses, digests], [3, 3], 'another size: parsed without a first read');
    assert.equal(d.replaceBindingsFile(file(8n, 999))!.unchanged, set.length);
    assert.deepEqual([parses, digests], [3, 4], 'and recognised next time, by size and digest');
    d.bind(binding(0, 0));
    assert.deepEqual(d.replaceBindingsFile(file(8n, 999)), { added: 0, removed: 1, changed: 0, unchanged: set.length, generation: 3 });
    assert.equal(parses, 4, 'after a bind: parsed, and the bind undone');
    // A parser that does not answer changes nothing.
    assert.equal(d.replaceBindingsFile({ size: 5, digest: () => 9n, parse: () => undefined }), undefined);
    assert.equal(d.generations().inForce.number, 3);
  } finally {
    d.close();
    Dispatcher.unload(opts);
  }
});

test('a standby too small for the new set, or four times too large, is built anew; otherwise patched', () => {
  const size = (count: number) => Math.max(1024, 2 * count);
  assert.equal(patchable(1024, 1024, size), true);
  assert.equal(patchable(1024, 1025, size), false);
  assert.equal(patchable(200_000, 100_000, size), true);
  assert.equal(patchable(200_000, 50_000, size), true);
  assert.equal(patchable(200_000, 49_999, size), false);
  assert.equal(patchable(2048, 10, size), true, 'small sets are not rebuilt for shrinking');
});

/** Where a test's binding i is asked about: an address it covers, and a name for messages. */
interface Asked { family: 4 | 6; address: Uint8Array; port: number; name: string }

/** bigSet's binding i: 10.a.b.1 port 80. */
const bigSetAsked = (i: number): Asked => ({ family: 4, address: bigSetAddress(i), port: 80, name: bigSetAddress(i).join('.') });

/**
 * Whether the program answers for bindings as `bound` says (drop: a
 * binding, no socket; pass: none), each asked about where `where` says
 * (default: bigSet's).
 */
function answers(bound: (i: number) => boolean, indices: readonly number[], step: string, where: (i: number) => Asked = bigSetAsked): void {
  const prog = sys.getPinned(path.join(stateDir, PIN.program), 0);
  try {
    for (const i of indices) {
      const a = where(i);
      const r = probe(prog, { protocol: 'tcp', family: a.family, address: a.address, port: a.port });
      assert.equal(r.verdict, bound(i) ? 'drop' : 'pass', `${step}: the program on ${a.name}`);
    }
  } finally {
    sys.close(prog);
  }
}

/** About 400 indices spread over [from, to). */
const sample = (from: number, to: number): number[] => Array.from({ length: 400 }, (_, k) => from + Math.floor(((to - from) * k) / 400));

test('a large set is written on threads (its bindings by two, its filters while a new map goes into its slot), and the program finds all of it', () => {
  const calls: string[] = [];
  /** the count of each batch started on a thread, in order */
  const batches: number[] = [];
  const recorder = intercept(sys, (name, call, args) => {
    calls.push(name);
    if (name === 'mapUpdateBatchStart') batches.push(args[3] as number);
    return call();
  });
  // n bindings from `base` on: IPv4 /24s and IPv6 /64s (filed in blocks), a few short prefixes (not filed).
  const at = (i: number): Asked & { prefix: string } => {
    const b = i % 2 === 0
      ? { family: 4 as const, address: Uint8Array.of(10, (i >> 9) & 255, (i >> 1) & 255, 9), port: 80 + (i % 3), prefix: `10.${(i >> 9) & 255}.${(i >> 1) & 255}.0/24` }
      : { family: 6 as const, address: Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, (i >> 9) & 255, (i >> 1) & 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9), port: 443, prefix: `2001:db8:${((i >> 9) & 255).toString(16)}${((i >> 1) & 255).toString(16).padStart(2, '0')}::/64` };
    return { ...b, name: `${b.prefix} port ${b.port}` };
  };
  const make = (from: number, n: number, label = (_: number) => 'a'): Binding[] =>
    Array.from({ length: n }, (_, k) => { const b = at(from + k); return parseBinding({ label: label(from + k), protocol: 'tcp', prefix: b.prefix, port: b.port }); });
  const short = [parseBinding({ label: 'a', protocol: 'tcp', prefix: '11.0.0.0/8', port: 80 })];
  /** The program on `at`'s bindings, and on the short one (index -1), always bound. */
  const shortAsked: Asked = { family: 4, address: Uint8Array.of(11, 2, 3, 4), port: 80, name: '11.0.0.0/8' };
  const probeAll = (bound: (i: number) => boolean, indices: number[], step: string): void =>
    answers((i) => i < 0 || bound(i), [...indices, -1], step, (i) => (i < 0 ? shortAsked : at(i)));
  const N = 20_000;
  const d = Dispatcher.create({ ...opts, sys: recorder });
  try {
    // Into an empty dispatcher: a new map, filled by two threads while the filters are computed.
    calls.length = 0;
    d.replacePackedBindings(packBindingSet([...make(0, N), ...short]));
    const starts = calls.flatMap((c, k) => (c === 'mapUpdateBatchStart' ? [k] : []));
    const finishes = calls.flatMap((c, k) => (c === 'mapUpdateBatchFinish' ? [k] : []));
    const created = calls.lastIndexOf('mapCreate');
    assert.ok(starts.length >= 4, `two threads for the set, at least one per filter: ${starts.length}`);
    assert.ok(created < starts[0] && starts[1] < finishes[0], 'the set\'s two threads start together, after its map is made');
    const install = calls.lastIndexOf('mapUpdateStart');
    assert.ok(install > finishes[1] && install < starts[2], 'the new map goes into its slot once filled, before the filters are written');
    assert.ok(calls.lastIndexOf('mapUpdateFinish') > starts[starts.length - 1], 'and is waited for after the filters\' writes began');
    assert.equal(d.bindings().length, N + 1);
    probeAll((i) => i < N, [...sample(0, N), N + 1, N + 7, N + 500], 'loaded');
    // A change of 1% plus some arrivals and removals: the standby (empty, its map too small) is built anew.
    const changed = make(300, N, (i) => (i % 100 === 42 ? 'b' : 'a'));
    d.replacePackedBindings(packBindingSet([...changed, ...short]));
    probeAll((i) => i >= 300 && i < N + 300, [...sample(0, N + 300), 7, 299, N + 299, N + 300], '1% changed, 300 in, 300 out');
    // Wholly another set, into the standby that holds the first: 20k deleted, 20k written by two threads.
    calls.length = 0;
    batches.length = 0;
    d.replacePackedBindings(packBindingSet([...make(2 * N, N), ...short]));
    const patchStarts = calls.flatMap((c, k) => (c === 'mapUpdateBatchStart' ? [k] : []));
    assert.deepEqual(batches.slice(0, 2), [N / 2, N / 2], 'a large patch is written by two threads too, half each');
    assert.ok(patchStarts[1] < calls.indexOf('mapUpdateBatchFinish'), 'both at once');
    assert.ok(calls.lastIndexOf('mapCreate') < 0 || calls.lastIndexOf('mapCreate') > patchStarts[0], 'patched in place, not built anew');
    assert.equal(d.bindings().length, N + 1);
    probeAll((i) => i >= 2 * N, [...sample(0, N), ...sample(2 * N, 3 * N)], 'another set');
    // And back: rollback is one flip, to the set of the change before.
    d.rollback();
    probeAll((i) => i >= 300 && i < N + 300, sample(0, N + 300), 'rolled back');
  } finally {
    d.close();
    Dispatcher.unload(opts);
  }
});

test('a writer killed while its writes run on threads leaves the set in force answering; the next writer puts the rest right', () => {
  const N = BIG_SET;
  const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib', 'crash-replace.js');
  for (const what of ['a new map', 'a patch'] as const) {
    // In force before the killed replace: nothing, or bigSet(N) (its standby holding bigSet(0)).
    const before = (i: number): boolean => what === 'a patch' && i >= N && i < 2 * N;
    let killAt = 1;
    for (; ; killAt++) {
      const d = Dispatcher.create(opts);
      try {
        if (what === 'a patch') {
          d.replacePackedBindings(bigSet(0));
          d.replacePackedBindings(bigSet(N));
        }
        const r = spawnSync(process.execPath, [child, bpffs, String(killAt), String(2 * N)], { encoding: 'utf8' });
        if (r.status === 0) break;
        const step = `${what}, killed after start ${killAt}`;
        assert.equal(r.signal, 'SIGKILL', `${step}: ${r.stderr}`);
        answers(before, sample(0, 3 * N), `${step}: the set in force, before any writer recovers`);
        d.replacePackedBindings(bigSet(2 * N));
        assert.equal(d.bindings().length, N, `${step}: the next writer's set`);
        answers((i) => i >= 2 * N, sample(0, 3 * N), `${step}: the next writer's set`);
        assert.deepEqual(readdirSync(stateDir).filter((f) => f.endsWith('_new')), [], `${step}: pending pins left`);
        if (what === 'a patch') {
          d.rollback();
          answers(before, sample(0, 3 * N), `${step}: rolled back`);
        }
      } finally {
        d.close();
        Dispatcher.unload(opts);
      }
    }
    assert.ok(killAt > 4, `${what}: killed after each of ${killAt - 1} starts`);
  }
});

test('a write on a thread that fails fails the replace, after every thread is waited for; the next replace puts it right', () => {
  const N = BIG_SET;
  const set = bigSet;
  const check = (d: Dispatcher, from: number, step: string): void => {
    assert.equal(d.bindings().length, N, step);
    answers((i) => i >= from && i < from + N, sample(0, 3 * N), step);
  };
  /**
   * The addon, with the failAt-th wait for work on a thread (a batch, or an
   * update of a map-in-map: the new map put in its slot, the wait for the
   * grace period) failing once its thread ended.
   */
  const failingAt = (failAt: number) => {
    const count = { started: 0, finished: 0, waits: 0 };
    const failing = intercept(sys, (name, call) => {
      if (name === 'mapUpdateBatchStart' || name === 'mapUpdateStart') {
        const h = call();
        count.started++;
        return h;
      }
      if (name !== 'mapUpdateBatchFinish' && name !== 'mapUpdateFinish') return call();
      count.finished++;
      const r = call();
      if (++count.waits === failAt) throw Object.assign(new Error(`${name}: injected failure`), { code: 'EIO', errno: 5, syscall: 'bpf' });
      return r;
    });
    return { failing, count };
  };
  /** One attempt on a dispatcher loaded afresh; whether the injected failure was met. */
  const attempt = (what: 'a new map' | 'a patch', failAt: number): boolean => {
    const d = Dispatcher.create(opts);
    try {
      // A patch: the standby holds another 20,000 bindings, in a map with room.
      if (what === 'a patch') {
        d.replacePackedBindings(set(0));
        d.replacePackedBindings(set(N));
      }
      const { failing, count } = failingAt(failAt);
      const f = Dispatcher.open({ ...opts, sys: failing });
      let threw = false;
      try {
        f.replacePackedBindings(set(2 * N));
      } catch (err) {
        threw = true;
        assert.match(String(err), /injected failure/);
      } finally {
        f.close();
      }
      assert.equal(count.finished, count.started, `${what}, failure at wait ${failAt}: every thread started was waited for`);
      if (threw) {
        d.replacePackedBindings(set(2 * N));
        check(d, 2 * N, `${what}, after a failure at wait ${failAt}`);
      }
      return threw;
    } finally {
      d.close();
      Dispatcher.unload(opts);
    }
  };
  // Each wait in turn fails: a set built in a new map (the standby empty), then one patched into the standby.
  for (const what of ['a new map', 'a patch'] as const) {
    let failAt = 1;
    while (attempt(what, failAt)) failAt++;
    assert.ok(failAt > 5, `${what}: the set's two threads, the filters' and the slot's were each made to fail (${failAt - 1} waits)`);
  }
});

test('a flip does not wait for the programs still running with the generation it put out of force; the next replace waits, on a thread while it parses, before it writes the standby', () => {
  // Every call into the addon, in order; the state is the real one.
  const calls: string[] = [];
  const recorder = intercept(sys, (name, call) => {
    calls.push(name);
    return call();
  });
  const WRITES = new Set(['mapUpdateBatch', 'mapUpdateBatchStart', 'mapDeleteBatch', 'arrayScatter', 'mapCreate']);
  const d = Dispatcher.create({ ...opts, sys: recorder });
  try {
    const set = (label: number) => packBindingSet(KEYS.slice(0, 8).map((_, k) => binding(k, label)));
    // The first replace: nothing to wait for; its flip leaves the wait to the next writer.
    calls.length = 0;
    d.replacePackedBindings(set(0));
    assert.equal(calls.includes('mapUpdateStart'), false);
    assert.equal(readMeta(stateDir, META_UNSETTLED), 1n);
    // The next one starts the wait before reading anything, and ends it before its first write.
    let parsedAt = -1;
    calls.length = 0;
    d.replaceBindingsFile({ size: 1, digest: () => 11n, parse: () => { parsedAt = calls.length; return { set: set(1), file: { digest: 11n, size: 1 } }; } });
    const started = calls.indexOf('mapUpdateStart');
    const finished = calls.indexOf('mapUpdateFinish');
    const firstWrite = calls.findIndex((c) => WRITES.has(c));
    assert.ok(started >= 0 && started < parsedAt, `the wait starts before the parse: ${calls.join(' ')}`);
    assert.ok(finished > parsedAt && finished < firstWrite, `and ends after it, before the first write: ${calls.join(' ')}`);
    assert.equal(calls.filter((c) => c === 'mapUpdateFinish').length, 1);
    assert.equal(readMeta(stateDir, META_UNSETTLED), 1n, 'its own flip is left to the next writer');
    // A replace that changes nothing still ends the wait it began, and says so.
    calls.length = 0;
    d.replacePackedBindings(set(1));
    assert.deepEqual(calls.filter((c) => c === 'mapUpdateStart' || c === 'mapUpdateFinish'), ['mapUpdateStart', 'mapUpdateFinish']);
    assert.equal(readMeta(stateDir, META_UNSETTLED), 0n);
    // A rollback flips too; a bind does not touch the standby and does not wait.
    d.rollback();
    assert.equal(readMeta(stateDir, META_UNSETTLED), 1n);
    calls.length = 0;
    d.bind(binding(20, 0));
    assert.equal(calls.includes('mapUpdateStart'), false);
  } finally {
    d.close();
    Dispatcher.unload(opts);
  }
});
