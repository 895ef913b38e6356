// The data plane's algorithm, modelled in TypeScript over the same encoded
// keys and lengths table the control plane writes, must agree with the
// reference rule for any binding set. (The real program is checked against
// the same rule in 30.dataplane.test.ts.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type Binding, matchBinding, parseBinding } from '../src/binding.js';
import { bindingKey } from '../src/bindingset.js';
import { decodeBindingKey, encodeBindingKey, IPPROTO, lengthsIndex } from '../src/layout.js';
import { WORDS, hasLength, lengthsFor } from '../src/lengths.js';
import { BLOCKS_FILTER, LENGTHS_FILTER, exactFilter, filterPatch } from '../src/filters.js';
import { maskBytes, parsePrefix } from '../src/prefix.js';
import { BLOCK_WORDS, blockBit } from '../src/blocks.js';

function modelLookup(set: Map<string, Binding>, table: Uint32Array, protocol: 'tcp' | 'udp', family: 4 | 6, addr: Uint8Array, port: number): Binding | undefined {
  for (let len = family === 4 ? 32 : 128; len >= 0; len--) {
    const masked = maskBytes(addr, len);
    for (const p of [port, 0]) {
      if (!hasLength(table, protocol, p, family, len)) continue;
      const key = bindingKey({ protocol, prefix: { family, bytes: masked, length: len }, port: p }).toString('hex');
      const hit = set.get(key);
      if (hit) return hit;
    }
  }
  return undefined;
}

const v4 = fc.tuple(fc.constantFrom(127, 10), fc.integer({ min: 0, max: 1 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 15 }));
const bindingArb = fc.record({
  protocol: fc.constantFrom('tcp', 'udp'),
  a: v4,
  len: fc.constantFrom(0, 8, 16, 24, 28, 30, 31, 32),
  port: fc.constantFrom(0, 80, 443),
  label: fc.constantFrom('a', 'b', 'c'),
}).map(({ protocol, a, len, port, label }) => parseBinding({ label, protocol, prefix: `${a.join('.')}/${len}`, port }));

test('the length walk agrees with the reference precedence (property)', () => {
  fc.assert(fc.property(fc.array(bindingArb, { maxLength: 30 }), fc.array(fc.tuple(fc.constantFrom('tcp', 'udp'), v4, fc.constantFrom(80, 443, 53)), { minLength: 1, maxLength: 20 }), (raw, probes) => {
    const byId = new Map<string, Binding>();
    for (const x of raw) byId.set(bindingKey(x).toString('hex'), x);
    const bindings = [...byId.values()];
    const table = lengthsFor(bindings);
    for (const [protocol, a, port] of probes) {
      const bytes = Uint8Array.from(a);
      assert.equal(modelLookup(byId, table, protocol as 'tcp' | 'udp', 4, bytes, port), matchBinding(bindings, protocol as 'tcp' | 'udp', 4, bytes, port));
    }
  }), { numRuns: 300 });
});

test('binding keys round-trip and keep families apart', () => {
  const k = { protocol: IPPROTO.udp, family: 6 as const, prefixlen: 64, port: 53, addr: parsePrefix('2001:db8::/64').prefix.bytes };
  const buf = encodeBindingKey(k);
  assert.equal(buf.length, 24);
  assert.deepEqual(decodeBindingKey(buf), k);
  const four = bindingKey(parseBinding({ label: 'x', protocol: 'tcp', prefix: '0.0.0.0/0', port: 0 }));
  const six = bindingKey(parseBinding({ label: 'x', protocol: 'tcp', prefix: '::/0', port: 0 }));
  assert.notDeepEqual(four, six);
});

test('lengths table: one bit per (protocol, port, family, length)', () => {
  const a = lengthsFor([parseBinding({ label: 'x', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80 })]);
  const b = lengthsFor([parseBinding({ label: 'x', protocol: 'udp', prefix: '::/128', port: 0 }), parseBinding({ label: 'x', protocol: 'udp', prefix: '::/0', port: 0 })]);
  assert.ok(hasLength(a, 'tcp', 80, 4, 24));
  assert.ok(!hasLength(a, 'tcp', 80, 6, 24));
  assert.ok(!hasLength(a, 'udp', 80, 4, 24));
  assert.ok(hasLength(b, 'udp', 0, 6, 128) && hasLength(b, 'udp', 0, 6, 0));
  const at = lengthsIndex('udp', 0) * WORDS;
  assert.equal(b[at + 2], 1);       // ::/0 -> IPv6 word 0, bit 0
  assert.equal(b[at + 6], 1);       // ::/128 -> the word of length 128
});

test('a replace rewrites only the filter entries that the keys changed touch, exactly as the new set needs them', () => {
  const keys = (...xs: Array<[string, string, number]>) => {
    const out = Buffer.alloc(xs.length * 24);
    xs.forEach(([protocol, prefix, port], i) => bindingKey(parseBinding({ label: 'x', protocol, prefix, port }), out, i * 24));
    return { keys: out, count: xs.length };
  };
  const before = keys(['tcp', '127.0.0.0/24', 80], ['tcp', '127.0.0.7/32', 80], ['udp', '10.0.0.0/24', 53]);
  const after = keys(['tcp', '127.0.0.0/24', 80], ['udp', '127.0.0.0/28', 53], ['udp', '10.0.0.0/24', 53]);
  // Only before has the tcp /32 (gone); only after has the udp /28 (arrived: after's key 1).
  const gone = keys(['tcp', '127.0.0.7/32', 80]);
  const arrived = Int32Array.of(1);
  const lengths = filterPatch(LENGTHS_FILTER, gone, arrived, after);
  const entries = (k: Buffer) => [...new Uint32Array(k.buffer, k.byteOffset, k.length / 4)];
  assert.deepEqual(entries(lengths.keys), [lengthsIndex('tcp', 80), lengthsIndex('udp', 53)]);
  const words = new Uint32Array(lengths.values.buffer, lengths.values.byteOffset, 2 * WORDS);
  assert.equal(words[0], ((1 << 24) >>> 0));         // tcp 80: the /24 kept
  assert.equal(words[1], 0);                          // ... the /32 gone
  assert.equal(words[WORDS], ((1 << 28) | (1 << 24)) >>> 0); // udp 53: the new /28, and the /24 of 10.0.0.0 kept
  const blocks = filterPatch(BLOCKS_FILTER, gone, arrived, after);
  assert.equal(blocks.count, 2);                      // the tcp /24's block loses the /32; the udp /28's block gains it
  assert.equal(filterPatch(BLOCKS_FILTER, keys(), new Int32Array(0), after).count, 0);
  // Written over the old set's exact filter, the patch gives the new set's.
  for (const spec of [LENGTHS_FILTER, BLOCKS_FILTER]) {
    const table = new Uint32Array(spec.entries * spec.words);
    const write = (p: { keys: Buffer; values: Buffer; count: number }) => {
      const k = new Uint32Array(p.keys.buffer, p.keys.byteOffset, p.count);
      const v = new Uint32Array(p.values.buffer, p.values.byteOffset, p.count * spec.words);
      k.forEach((e, n) => { for (let w = 0; w < spec.words; w++) table[e * spec.words + w] = v[n * spec.words + w]; });
    };
    write(exactFilter(spec, before));
    write(filterPatch(spec, gone, arrived, after));
    const want = exactFilter(spec, after);
    assert.deepEqual(table, new Uint32Array(want.values.buffer, want.values.byteOffset, spec.entries * spec.words));
  }
});

test('a patch of an empty standby (every key arrives) is every non-zero entry of the exact filter, once each', () => {
  // Bindings that share lengths, blocks and halves of a block, and short ones no block files.
  const bindings: Array<[string, string, number]> = [];
  for (let i = 0; i < 600; i++) {
    const protocol = i % 3 === 0 ? 'udp' : 'tcp';
    const port = [0, 53, 80, 443][i % 4];
    const prefix = i % 2 === 0
      ? `10.${i % 7}.${(i * 13) % 256}.${(i * 8) % 256}/${[8, 16, 24, 29, 32][i % 5]}`
      : `2001:db8:${(i % 5).toString(16)}:${(i * 7).toString(16)}::/${[24, 48, 64, 96, 128][i % 5]}`;
    bindings.push([protocol, prefix, port]);
  }
  const seen = new Set<string>();
  const unique = bindings.filter(([protocol, prefix, port]) => {
    const k = bindingKey(parseBinding({ label: 'x', protocol, prefix, port })).toString('hex');
    return !seen.has(k) && seen.add(k);
  });
  const set = { keys: Buffer.alloc(unique.length * 24), count: unique.length };
  unique.forEach(([protocol, prefix, port], i) => bindingKey(parseBinding({ label: 'x', protocol, prefix, port }), set.keys, i * 24));
  const all = Int32Array.from({ length: set.count }, (_, i) => i);
  for (const spec of [LENGTHS_FILTER, BLOCKS_FILTER]) {
    const patch = filterPatch(spec, { keys: Buffer.alloc(0), count: 0 }, all, set);
    const exact = exactFilter(spec, set);
    const want = new Uint32Array(exact.values.buffer, exact.values.byteOffset, spec.entries * spec.words);
    const keys = new Uint32Array(patch.keys.buffer, patch.keys.byteOffset, patch.count);
    const values = new Uint32Array(patch.values.buffer, patch.values.byteOffset, patch.count * spec.words);
    assert.equal(new Set(keys).size, patch.count, 'each entry once');
    let nonZero = 0;
    for (let e = 0; e < spec.entries; e++) if (want.subarray(e * spec.words, (e + 1) * spec.words).some((w) => w !== 0)) nonZero++;
    assert.equal(patch.count, nonZero);
    keys.forEach((e, n) => assert.deepEqual(values.subarray(n * spec.words, (n + 1) * spec.words), want.subarray(e * spec.words, (e + 1) * spec.words)));
    assert.ok(patch.count > 1);
  }
});

test('blocks: bindings are filed under their /16 or /24 (IPv6: /32, /48, /64); short ones are not', () => {
  const at = (prefix: string, protocol = 'tcp', port = 80) => blockBit(bindingKey(parseBinding({ label: 'x', protocol, prefix, port })));
  assert.equal(at('10.0.0.0/8'), undefined);
  assert.equal(at('2001:db8::/24'), undefined);
  // Two /28s of one /24 share a block and a bit; a /32 there shares the block only.
  const a = at('10.1.2.0/28')!;
  const b = at('10.1.2.16/28')!;
  const c = at('10.1.2.77/32')!;
  assert.deepEqual(a, b);
  assert.equal(Math.floor(a.word / BLOCK_WORDS), Math.floor(c.word / BLOCK_WORDS));
  assert.notDeepEqual(a, c);
  assert.notDeepEqual(at('10.1.2.0/28'), at('10.1.2.0/28', 'udp'));
  // Port 0 takes the other half of the same block's u64.
  const wild = at('10.1.2.0/28', 'tcp', 0)!;
  assert.equal(Math.floor(wild.word / BLOCK_WORDS), Math.floor(a.word / BLOCK_WORDS));
  assert.notEqual(wild.word, a.word);
  assert.equal(wild.mask, a.mask);
  // /128 is the last bit of its /96's half.
  const host = at('2001:db8::1/128')!;
  assert.equal(host.mask >>> 0, 0x80000000);
});
