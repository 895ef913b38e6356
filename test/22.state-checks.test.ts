// The state is checked, not trusted: a map that is not what this version
// expects is refused at open; reject counters that overflow their table are
// still counted; stale counters go with their bindings.
import assert from 'node:assert/strict';
import path from 'node:path';
import { unlinkSync } from 'node:fs';
import { test } from 'node:test';
import { parseBinding } from '../src/binding.js';
import { bindingAt } from '../src/bindingset.js';
import { Dispatcher } from '../src/dispatcher.js';
import { TubularError } from '../src/errors.js';
import { BPF_MAP_TYPE_ARRAY, LAYOUT_VERSION, META_MAGIC, META_STAMP } from '../src/layout.js';
import { native } from '../src/native.js';
import { probe } from '../src/probe.js';
import { isolate } from './lib/isolate.js';
import { writeMeta } from './lib/meta.js';
import { refusedTest, variantCases } from './lib/variants.js';

const { bpffs } = isolate();
const opts = { bpffs };

test('a pinned map of another shape is refused at open, naming it', () => {
  const d = Dispatcher.create(opts);
  const dir = d.stateDir;
  d.close();
  try {
    const n = native();
    // Someone with root (or an older version) replaced `sockets` with a plain array.
    unlinkSync(path.join(dir, 'sockets'));
    const fd = n.mapCreate(BPF_MAP_TYPE_ARRAY, 'sockets', 4, 8, 4096, 0);
    n.pin(fd, path.join(dir, 'sockets'));
    n.close(fd);
    assert.throws(() => Dispatcher.open(opts),
      (e: unknown) => e instanceof TubularError && e.code === 'EINCOMPAT' && /pinned map sockets is not what this version expects \(type 2, expected 15\)/.test(e.message));
  } finally {
    Dispatcher.unload(opts);
  }
});

test('state of the layout before is refused at open, naming both layouts and the way out; unload removes it and a load starts anew', () => {
  const d = Dispatcher.create(opts);
  const dir = d.stateDir;
  d.replaceBindings([parseBinding({ label: 'web', protocol: 'tcp', prefix: '127.0.0.0/24', port: 80 })]);
  d.close();
  // What the version before wrote (layout 11: binding values of 12 bytes, no place).
  writeMeta(dir, META_STAMP, (BigInt(META_MAGIC) << 32n) | BigInt(LAYOUT_VERSION - 1));
  assert.throws(() => Dispatcher.open(opts), (e: unknown) => e instanceof TubularError && e.code === 'EINCOMPAT' &&
    e.message.includes(`has state layout ${LAYOUT_VERSION - 1}, this tubectl understands ${LAYOUT_VERSION}: use the matching version, or tubectl unload and load again`));
  Dispatcher.unload(opts);
  assert.equal(Dispatcher.isLoaded(opts), false);
  const again = Dispatcher.create(opts);
  try {
    assert.equal(again.bindings().length, 0);
  } finally {
    again.close();
    Dispatcher.unload(opts);
  }
});

for (const c of variantCases()) {
  const { program } = c;
  if (c.lacks) {
    refusedTest(c, opts);
    continue;
  }
  test(`hits belong to the binding: kept by a replace that leaves it, zero for a new one (${program} program)`, () => {
    const d = Dispatcher.create({ ...opts, program });
    const prog = native().getPinned(path.join(d.stateDir, 'program'), 0);
    try {
      const reject = (prefix: string) => parseBinding({ protocol: 'tcp', prefix, port: 80, action: 'reject' });
      const hits = (): Map<string, bigint> => {
        const set = d.packedBindings();
        const traffic = d.traffic(set.stats!);
        return new Map(Array.from({ length: set.count }, (_, i) => [bindingAt(set, i).prefix.bytes.join('.'), traffic[i].hits]));
      };
      d.replaceBindings([reject('10.0.0.1'), reject('10.0.0.2')]);
      for (let i = 0; i < 3; i++) probe(prog, { protocol: 'tcp', family: 4, address: Uint8Array.of(10, 0, 0, 1), port: 80 });
      probe(prog, { protocol: 'tcp', family: 4, address: Uint8Array.of(10, 0, 0, 2), port: 80 });
      assert.deepEqual(hits(), new Map([['10.0.0.1', 3n], ['10.0.0.2', 1n]]));
      // The last hit is now, to the second, from either program's clock.
      const stamped = d.traffic(d.packedBindings().stats!).map((t) => t.lastHit!.getTime());
      for (const at of stamped) assert.ok(Math.abs(at - Date.now()) <= 2000, `last hit ${new Date(at).toISOString()}`);
      // A quiet question is answered, and not counted: neither the binding's
      // hits nor its destination's counters move.
      assert.equal(probe(prog, { protocol: 'tcp', family: 4, address: Uint8Array.of(10, 0, 0, 2), port: 80 }, 1, { quiet: true }).verdict, 'drop');
      assert.deepEqual(hits(), new Map([['10.0.0.1', 3n], ['10.0.0.2', 1n]]));
      d.bind(parseBinding({ label: 'nosocket', protocol: 'tcp', prefix: '10.0.0.9', port: 80 }));
      const ask = (quiet: boolean) => probe(prog, { protocol: 'tcp', family: 4, address: Uint8Array.of(10, 0, 0, 9), port: 80 }, 1, { quiet }).verdict;
      assert.equal(ask(true), 'drop');
      assert.deepEqual(d.destinations().map((x) => [x.lookups, x.misses]), [[0n, 0n]]);
      assert.equal(ask(false), 'drop');
      assert.deepEqual(d.destinations().map((x) => [x.lookups, x.misses]), [[1n, 1n]]);
      d.unbind(parseBinding({ label: 'nosocket', protocol: 'tcp', prefix: '10.0.0.9', port: 80 }));
      d.replaceBindings([reject('10.0.0.1'), reject('10.0.0.3')]);
      assert.deepEqual(hits(), new Map([['10.0.0.1', 3n], ['10.0.0.3', 0n]]));
      assert.deepEqual(d.rejectCounters().map((r) => r.rejected), [3n, 0n]);
      d.unbind(reject('10.0.0.1'));
      d.bind(reject('10.0.0.1'));
      assert.deepEqual(hits(), new Map([['10.0.0.1', 0n], ['10.0.0.3', 0n]]));
    } finally {
      native().close(prog);
      d.close();
      Dispatcher.unload(opts);
    }
  });
}
