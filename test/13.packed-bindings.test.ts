// Packed binding sets: the fast paths that load and list 100k bindings must
// agree exactly with the reference code they stand in for (parsePrefix,
// parseBindingsFile, comparePrecedence, bindingsTable), on valid and broken
// input alike.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type Binding, comparePrecedence, parseBinding, toJSON } from '../src/binding.js';
import { packBindingsFile } from '../src/bindings-file-packed.js';
import { parseBindingsFile } from '../src/bindings-file.js';
import {
  type PackedBindings, bindingAt, destinationSlots, diffBindingSets, indexBindingSet, labelAt, packBindingSet, packValues, precedenceOrder,
} from '../src/bindingset.js';
import { bindingsTable, packedBindingsTable } from '../src/cli/output.js';
import { keyWords } from '../src/keyindex.js';
import { standbyPatch } from '../src/standby.js';
import { BINDING_KEY_SIZE, BINDING_VALUE_SIZE, decodeBindingKey } from '../src/layout.js';
import { INTO_IPV6, INTO_MASKED, parsePrefix, parsePrefixInto } from '../src/prefix.js';

const octet = fc.oneof(fc.integer({ min: 0, max: 255 }).map(String), fc.constantFrom('00', '01', '256', '999', '1000', '', 'x'));
const group = fc.oneof(fc.integer({ min: 0, max: 0xffff }).map((v) => v.toString(16)), fc.constantFrom('0000', 'FFFF', 'aBc', '12345', '', 'g', '0:0'));
const length = fc.option(fc.oneof(fc.integer({ min: 0, max: 130 }).map(String), fc.constantFrom('024', '', '-1', '1a', '0001')), { nil: undefined });
const v4Text = fc.tuple(fc.array(octet, { minLength: 3, maxLength: 5 }), length).map(([o, l]) => o.join('.') + (l === undefined ? '' : `/${l}`));
const v6Text = fc.tuple(fc.array(group, { minLength: 1, maxLength: 9 }), fc.option(fc.nat(9), { nil: undefined }), length).map(([g, gap, l]) => {
  const parts = [...g];
  if (gap !== undefined) parts.splice(Math.min(gap, parts.length), 0, '');
  let t = parts.join(':');
  if (t.startsWith(':') && !t.startsWith('::')) t = `:${t}`;
  if (t.endsWith(':') && !t.endsWith('::')) t = `${t}:`;
  return t + (l === undefined ? '' : `/${l}`);
});
const oddText = fc.constantFrom(' 10.0.0.0/8', '10.0.0.0/8 ', '::ffff:1.2.3.4', '::ffff:102:304', '::1.2.3.4', '1::2::3', ':::', '::', '::/0', 'fe80::1%eth0', '1.2.3.4/2/4', '');
const prefixText = fc.oneof(v4Text, v6Text, oddText);

test('parsePrefixInto agrees with parsePrefix wherever it answers, and answers the common spellings', () => {
  const out = new Uint8Array(24);
  fc.assert(fc.property(prefixText, (text) => {
    out.fill(0xaa);
    const r = parsePrefixInto(text, out, 4);
    let ref: ReturnType<typeof parsePrefix> | undefined;
    try { ref = parsePrefix(text); } catch { ref = undefined; }
    if (r < 0) {
      // Declining is always allowed; it must not decline a plain valid spelling.
      const plain = ref && !/\s/.test(text) && /^[0-9a-fA-F.:]+(\/\d{1,3})?$/.test(text) && !/::ffff:/i.test(text) &&
        !(text.includes(':') && text.includes('.'));
      assert.ok(!plain, `declined ${JSON.stringify(text)}`);
      return;
    }
    assert.ok(ref, `accepted ${JSON.stringify(text)}, which parsePrefix refuses`);
    assert.equal(r & 0xff, ref.prefix.length, text);
    assert.equal((r & INTO_IPV6) !== 0, ref.prefix.family === 6, text);
    assert.equal((r & INTO_MASKED) !== 0, ref.masked !== undefined, text);
    const want = new Uint8Array(16);
    want.set(ref.prefix.bytes);
    assert.deepEqual(out.subarray(4, 20), want, text);
  }), { numRuns: 20000 });
});

// Entries of a bindings file: mostly valid, sometimes broken in one field.
const entryArb = fc.record({
  label: fc.option(fc.constantFrom('web', 'dns', 'a', 'svc-1', '', 'a b', 'x'.repeat(65)), { nil: undefined }),
  prefix: fc.oneof(fc.constantFrom('127.0.0.0/24', '127.0.0.9/24', '127.0.0.1', '10.0.0.0/8', '::1', '2001:db8::/32', '2001:db8::1/32', '2001:DB8:0:0:0:0:0:0/48', ' ::1', '1.2.3'), prefixText),
  port: fc.oneof(fc.constantFrom(0, 53, 80, 443), fc.constantFrom(-1, 65536, 8.5, '80' as unknown as number)),
  protocol: fc.option(fc.constantFrom('tcp', 'udp', 'sctp'), { nil: undefined }),
  action: fc.option(fc.constantFrom('steer', 'reject', 'drop'), { nil: undefined }),
  extra: fc.option(fc.constant(true), { nil: undefined, freq: 20 }),
  // What bindings --json adds: ignored when well-formed.
  hits: fc.option(fc.constantFrom('0', '12', '18446744073709551615', 12 as unknown as string, '-1', '1e3', ''), { nil: undefined }),
  lastHit: fc.option(fc.constantFrom(null, '2025-07-14T21:52:03Z', 0 as unknown as string), { nil: undefined }),
}, { requiredKeys: [] });

const toFile = (entries: readonly Record<string, unknown>[]): string => JSON.stringify({ bindings: entries });

function samePacked(a: PackedBindings, b: PackedBindings): void {
  assert.equal(a.count, b.count);
  assert.deepEqual(a.keys, b.keys);
  assert.deepEqual(a.actions, b.actions);
  for (let i = 0; i < a.count; i++) assert.equal(labelAt(a, i), labelAt(b, i));
}

test('packBindingsFile accepts only what parseBindingsFile accepts, with the same bindings and notes', () => {
  let fast = 0;
  fc.assert(fc.property(fc.array(entryArb, { maxLength: 8 }), (entries) => {
    const text = toFile(entries);
    const packed = packBindingsFile(text);
    let ref: ReturnType<typeof parseBindingsFile> | undefined;
    try { ref = parseBindingsFile(text, 'f.json'); } catch { ref = undefined; }
    if (!packed) return;
    fast++;
    assert.ok(ref, `fast path accepted a file the reference refuses: ${text}`);
    samePacked(packed.set, packBindingSet(ref.bindings));
    assert.deepEqual(packed.notes, ref.notes);
    // The destinations it works out while reading are destinationSlots'.
    assert.deepEqual(packed.slots, destinationSlots(packed.set));
  }), { numRuns: 5000 });
  assert.ok(fast > 100, `the fast path answered only ${fast} files`);
});

test('packBindingsFile answers every valid file of common spellings', () => {
  const valid = fc.array(fc.record({
    label: fc.constantFrom('web', 'dns', 'svc_2'),
    prefix: fc.constantFrom('127.0.0.0/24', '127.0.0.9/24', '10.1.2.3', '::1', '2001:db8::/32', '2001:db8:0:0:1:0:0:0/64', 'fe80::/10'),
    port: fc.integer({ min: 0, max: 65535 }),
  }), { maxLength: 10 });
  fc.assert(fc.property(valid, (entries) => {
    const text = toFile(entries);
    let ref: ReturnType<typeof parseBindingsFile> | undefined;
    try { ref = parseBindingsFile(text, 'f.json'); } catch { return; } // duplicates
    const packed = packBindingsFile(text);
    assert.ok(packed, text);
    samePacked(packed.set, packBindingSet(ref.bindings));
    assert.deepEqual(packed.notes, ref.notes);
  }), { numRuns: 2000 });
  // The output of bindings --json: its traffic fields are accepted and ignored.
  const listed = '{"bindings": [{"label": "web", "protocol": "tcp", "prefix": "127.0.0.0/24", "port": 80, "action": "steer", "hits": "12", "lastHit": "2025-07-14T21:52:03Z"},' +
    ' {"label": "", "protocol": "udp", "prefix": "::1/128", "port": 53, "action": "reject", "hits": "0", "lastHit": null}]}';
  const fast = packBindingsFile(listed);
  assert.ok(fast);
  samePacked(fast.set, packBindingSet(parseBindingsFile(listed, 'f.json').bindings));
  assert.equal(fast.set.count, 2);
  for (const bad of ['{"bindings": [', '{}', '[]', '{"bindings": {}}', '{"bindings": [], "x": 1}', '{"bindings": [null]}', '{"bindings": [[]]}',
    '{"bindings": [{"label": "a", "prefix": "::1", "port": 1, "hits": 5}]}', '{"bindings": [{"label": "a", "prefix": "::1", "port": 1, "lastHit": 5}]}']) {
    assert.equal(packBindingsFile(bad), undefined, bad);
  }
});

test('packBindingsFile reads bytes: white space anywhere JSON allows it, and declines what it does not take', () => {
  const valid = fc.array(fc.record({
    label: fc.constantFrom('web', 'dns', 'svc_2'),
    prefix: fc.constantFrom('127.0.0.0/24', '10.1.2.3', '::1', '2001:db8::/32', '10.0.0.9/24'),
    port: fc.integer({ min: 0, max: 65535 }),
    protocol: fc.option(fc.constantFrom('tcp', 'udp'), { nil: undefined }),
  }, { requiredKeys: ['label', 'prefix', 'port'] }), { maxLength: 8 });
  const space = fc.constantFrom('', ' ', '\n', '\t', '\r\n', '  \n  ');
  fc.assert(fc.property(valid, fc.array(space, { minLength: 64, maxLength: 64 }), (entries, gaps) => {
    let ref: ReturnType<typeof parseBindingsFile> | undefined;
    const compact = toFile(entries);
    try { ref = parseBindingsFile(compact, 'f.json'); } catch { return; } // duplicates
    // The same document with white space around every punctuation mark outside strings.
    let k = 0;
    let inString = false;
    let spaced = '';
    for (const c of compact) {
      if (c === '"') inString = !inString;
      spaced += !inString && '{}[]:,'.includes(c) ? `${gaps[k++ % gaps.length]}${c}${gaps[k++ % gaps.length]}` : c;
    }
    const packed = packBindingsFile(Buffer.from(spaced));
    assert.ok(packed, spaced);
    samePacked(packed.set, packBindingSet(ref.bindings));
    assert.deepEqual(packed.notes, ref.notes);
  }), { numRuns: 500 });
  // Declined (the reference parser decides, and explains): an escape, a
  // field twice, a number spelled otherwise, a byte order mark, anything
  // after the document, a trailing comma, a control character in a string.
  for (const bad of [
    '{"bindings": [{"label": "w\\u0065b", "prefix": "::1", "port": 1}]}',
    '{"bindings": [{"label": "web", "prefix": "::1", "port": 1, "port": 2}]}',
    '{"bindings": [{"label": "web", "prefix": "::1", "port": 80.0}]}',
    '{"bindings": [{"label": "web", "prefix": "::1", "port": 1e2}]}',
    '{"bindings": [{"label": "web", "prefix": "::1", "port": -0}]}',
    '{"bindings": [{"label": "web", "prefix": "::1", "port": 080}]}',
    '\ufeff{"bindings": []}',
    '{"bindings": []} x',
    '{"bindings": [{"label": "web", "prefix": "::1", "port": 1},]}',
    '{"bindings": [{"label": "web", "prefix": "::1", "port": 1, "lastHit": "a\tb"}]}',
    '{"bindings": [{"label": "web", "prefix": "::1", "port": 1, "lastHit": nul}]}',
  ]) {
    assert.equal(packBindingsFile(Buffer.from(bad)), undefined, bad);
  }
  assert.deepEqual(packBindingsFile(Buffer.from(' \n{ "bindings" : [ ] }\r\n'))?.set.count, 0);
});

test('packBindingsFile reads a large file a window at a time, with the same result and every byte seen', () => {
  const entries = Array.from({ length: 6000 }, (_, i) => ({
    label: `svc${i % 7}`, prefix: i % 2 ? `10.${i >> 8 & 255}.${i & 255}.0/24` : `2001:db8:${i.toString(16)}::/48`, port: i % 5 === 0 ? 0 : 1000 + (i % 50),
    ...(i % 3 === 0 ? { protocol: 'udp' } : {}),
  }));
  const file = Buffer.from(JSON.stringify({ bindings: entries }, null, 1));
  assert.ok(file.length > 3 * 2 ** 17, 'several windows');
  const whole = packBindingsFile(file);
  assert.ok(whole);
  fc.assert(fc.property(fc.integer({ min: 1, max: 70_000 }), (most) => {
    const seen: Buffer[] = [];
    const streamed = packBindingsFile({
      size: file.length,
      // Short reads, as a pipe or a slow disk may give them.
      source: (into, at, count, position) => {
        const got = Math.max(0, Math.min(count, most, file.length - position));
        file.copy(into, at, position, position + got);
        return got;
      },
      seen: (bytes) => seen.push(Buffer.from(bytes)),
    });
    assert.ok(streamed);
    samePacked(streamed.set, whole.set);
    assert.deepEqual(streamed.notes, whole.notes);
    assert.ok(Buffer.concat(seen).equals(file), 'every byte is seen once, in order');
  }), { numRuns: 20 });
});

const bindingArb = fc.record({
  label: fc.constantFrom('a', 'b', 'web'),
  protocol: fc.constantFrom('tcp', 'udp'),
  prefix: fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 32 })).map(([a, b, l]) => `10.${b}.${a}.${a}/${l}`),
    fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffff }), fc.integer({ min: 0, max: 128 })).map(([a, b, l]) => `2001:db8:${a}::${b.toString(16)}:1/${l}`),
    // every pattern of zero groups, for the RFC 5952 "::"
    // (IPv4-mapped addresses are refused by parseBinding: not a binding.)
    fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 })
      .filter((g) => !(g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff))
      .map((g) => `${g.map((x) => x.toString(16)).join(':')}/128`),
  ),
  port: fc.constantFrom(0, 0, 53, 80, 443, 65535),
  action: fc.constantFrom('steer', 'steer', 'reject') as fc.Arbitrary<'steer' | 'reject'>,
});

function uniqueSet(raw: readonly Parameters<typeof parseBinding>[0][]): Binding[] {
  const seen = new Set<string>();
  return raw.map((r) => parseBinding(r)).filter((b) => {
    const id = `${b.protocol} ${toJSON(b).prefix} ${b.port}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}

test('precedenceOrder is comparePrecedence, and the packed table is bindingsTable byte for byte', () => {
  fc.assert(fc.property(fc.array(bindingArb, { maxLength: 60 }), (raw) => {
    const list = uniqueSet(raw);
    const set = packBindingSet(list);
    const order = precedenceOrder(set);
    const want = [...list].sort(comparePrecedence).map(toJSON);
    assert.deepEqual(order.map((i) => toJSON(bindingAt(set, i))), want);
    if (want.length > 0) assert.equal(packedBindingsTable(set, order).join(''), bindingsTable(want));
  }), { numRuns: 1000 });
});

test('diffBindingSets counts added, removed, changed and unchanged by key and value', () => {
  const b = (label: string, prefix: string, port: number, action?: 'reject') => parseBinding({ label, protocol: 'tcp', prefix, port, action });
  const old = packBindingSet([b('a', '10.0.0.0/8', 80), b('b', '10.0.0.0/8', 81), b('c', '10.0.0.0/8', 82, 'reject'), b('d', '::1', 1)]);
  const next = packBindingSet([b('a', '10.0.0.0/8', 80), b('x', '10.0.0.0/8', 81), b('e', '10.0.0.0/16', 80)]);
  const ids = (set: PackedBindings) => Int32Array.from(set.labels, (l) => l.charCodeAt(0));
  const slots = (set: PackedBindings) => set.labelIndex;
  const current = { keys: old.keys, values: packValues(old, slots(old), ids(old)), count: old.count };
  const { index } = indexBindingSet(next);
  const d = diffBindingSets({ index, count: next.count, slotOf: slots(next), ids: ids(next), actions: next.actions }, current);
  const { usedIds, ...rest } = d;
  assert.deepEqual(rest, { added: 1, removed: 2, changed: 1, unchanged: 1, staleRejects: [2], removedKeys: Int32Array.of(2, 3), addedKeys: Int32Array.of(2), previous: Int32Array.of(0, 1, -1), changedKeys: [1], changedTo: [1], nextStat: 1 });
  // The destinations the current set uses (ids here: the labels' char codes).
  assert.deepEqual([...usedIds.keys()].filter((id) => usedIds[id]), ['a', 'b', 'c', 'd'].map((c) => c.charCodeAt(0)));
  // The stat index is the binding's own: one given to the binding in force does not make it changed.
  const restat = { keys: old.keys, values: packValues(old, slots(old), ids(old), Uint32Array.of(7, 8, 9, 10)), count: old.count };
  assert.equal(diffBindingSets({ index, count: next.count, slotOf: slots(next), ids: ids(next), actions: next.actions }, restat).unchanged, 1);
  // A destination that does not exist yet: never unchanged.
  const pending = diffBindingSets({ index, count: next.count, slotOf: slots(next), ids: Int32Array.from(ids(next), (id, k) => (k === 0 ? -1 : id)), actions: next.actions }, current);
  assert.equal(pending.unchanged, 0);
  assert.throws(() => indexBindingSet(packBindingSet([b('a', '10.0.0.1/8', 80), b('b', '10.0.0.0/8', 80)])), /the binding tcp 10\.0\.0\.0\/8 80 appears twice/);
  assert.equal(old.keys.length, old.count * BINDING_KEY_SIZE);
});

test('a value\'s place is only a guess: diffBindingSets and KeyIndex.findNear answer the same whatever places say', () => {
  const ids = (set: PackedBindings) => Int32Array.from(set.labels, (l) => l.charCodeAt(0));
  // Places: right (each binding where the new set has it, as when a file is
  // edited in place), wrong by a run (a block inserted), anything at all.
  const placesArb = fc.oneof(fc.constant('written'), fc.constant('shifted'), fc.array(fc.oneof(fc.nat(70), fc.constant(0xffffffff)), { minLength: 60, maxLength: 60 }));
  fc.assert(fc.property(fc.array(bindingArb, { maxLength: 60 }), fc.array(bindingArb, { maxLength: 60 }), fc.nat(3), placesArb, (rawOld, rawNew, keep, places) => {
    const old = uniqueSet(rawOld);
    // The new set keeps some of the old bindings, in their order.
    const next = packBindingSet(uniqueSet([...old.filter((_, k) => k % 4 !== keep).map(toJSON), ...rawNew]));
    const oldSet = packBindingSet(old);
    const values = packValues(oldSet, oldSet.labelIndex, ids(oldSet));
    for (let j = 0; j < oldSet.count; j++) assert.equal(values.readUInt32LE(j * BINDING_VALUE_SIZE + 12), j, 'packValues writes each binding\'s place');
    const guessed = Buffer.from(values);
    for (let j = 0; j < oldSet.count; j++) {
      const place = places === 'written' ? j : places === 'shifted' ? j + 1 : places[j];
      guessed.writeUInt32LE(place, j * BINDING_VALUE_SIZE + 12);
    }
    const diff = (v: Buffer) => {
      const { index } = indexBindingSet(next);
      return diffBindingSets({ index, count: next.count, slotOf: next.labelIndex, ids: ids(next), actions: next.actions }, { keys: oldSet.keys, values: v, count: oldSet.count });
    };
    // The reference: a KeyIndex that never guesses right (every place past the set).
    const never = Buffer.from(values);
    for (let j = 0; j < oldSet.count; j++) never.writeUInt32LE(0xffffffff, j * BINDING_VALUE_SIZE + 12);
    assert.deepEqual(diff(guessed), diff(never));
    // findNear is find, for any guess, in any order of calls.
    const { index } = indexBindingSet(next);
    const words = keyWords(oldSet.keys, oldSet.count);
    for (let j = 0; j < oldSet.count; j++) {
      const guess = guessed.readUInt32LE(j * BINDING_VALUE_SIZE + 12);
      assert.equal(index.findNear(guess, words, j), index.find(words, j));
    }
  }), { numRuns: 1000 });
});

test('a patch of the standby does not rewrite a binding whose place alone differs; a changed one gets its new place', () => {
  const b = (label: string, port: number) => parseBinding({ label, protocol: 'tcp', prefix: '10.0.0.0/8', port });
  const ids = (set: PackedBindings) => Int32Array.from(set.labels, (l) => l.charCodeAt(0));
  const old = packBindingSet([b('a', 1), b('a', 2), b('b', 3)]);
  // One binding inserted in front: every place moves by one; port 3 changes label.
  const next = packBindingSet([b('z', 9), b('a', 1), b('a', 2), b('c', 3)]);
  const standby = { keys: old.keys, values: packValues(old, old.labelIndex, ids(old)), count: old.count };
  const values = packValues(next, next.labelIndex, ids(next));
  const patch = standbyPatch(standby, { keys: next.keys, values, count: next.count, index: indexBindingSet(next).index });
  assert.equal(patch.deletes.count, 0);
  assert.deepEqual([...patch.arrived], [0]);
  // Written: the new binding and the changed one, each with its place in the new set; not ports 1 and 2.
  assert.equal(patch.updates.count, 2);
  const written = Array.from({ length: 2 }, (_, k) => [decodeBindingKey(patch.updates.keys, k * BINDING_KEY_SIZE).port, patch.updates.values.readUInt32LE(k * BINDING_VALUE_SIZE + 12)]);
  assert.deepEqual(written.sort((x, y) => x[0] - y[0]), [[3, 3], [9, 0]]);
});
