// The state is checked, not trusted: a map that is not what this version
// expects is refused at open; reject counters that overflow their table are
// still counted; stale counters go with their bindings.
import assert from 'node:assert/strict';
import path from 'node:path';
import { unlinkSync } from 'node:fs';
import { test } from 'node:test';
import { parseBinding } from '../src/binding.js';
import { Dispatcher } from '../src/dispatcher.js';
import { TubularError } from '../src/errors.js';
import { BPF_MAP_TYPE_ARRAY, MAX_REJECT_COUNTERS } from '../src/layout.js';
import { native } from '../src/native.js';
import { probe } from '../src/probe.js';
import { isolate } from './lib/isolate.js';

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

test('refusals past the per-binding counter table are counted, and counters go with their bindings', () => {
  const d = Dispatcher.create(opts);
  const prog = native().getPinned(path.join(d.stateDir, 'program'), 0);
  try {
    // One reject binding per address of a /16 plus one more: each refusal
    // of a distinct binding takes a counter.
    const count = MAX_REJECT_COUNTERS + 3;
    const bindings = Array.from({ length: count }, (_, i) =>
      parseBinding({ protocol: 'tcp', prefix: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, port: 80, action: 'reject' }));
    d.replaceBindings(bindings);
    for (const b of bindings) {
      const r = probe(prog, { protocol: 'tcp', family: 4, address: b.prefix.bytes, port: 80 });
      assert.equal(r.verdict, 'drop');
    }
    assert.equal(d.rejectCounters().length, MAX_REJECT_COUNTERS);
    assert.equal(d.uncountedRejects(), 3n);
    // Counters of bindings that are gone are dropped with them.
    d.replaceBindings(bindings.slice(0, 10));
    assert.equal(d.rejectCounters().length, 10);
    d.unbind(bindings[0]);
    assert.equal(d.rejectCounters().length, 9);
  } finally {
    native().close(prog);
    d.close();
    Dispatcher.unload(opts);
  }
});
