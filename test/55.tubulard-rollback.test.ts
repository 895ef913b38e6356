// All or nothing when the dispatcher itself fails half-way through a
// register: with one destination left, a message of two new sockets
// registers the first, fails on the second (ENOSPC), and rolls the first back.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isolate } from './lib/isolate.js';
import { startDaemon, type Daemon, workDir } from './lib/daemon.js';
import { tcpServer, type Served } from './lib/traffic.js';
import { parseBinding } from '../src/binding.js';
import { HandoffClient } from '../src/client.js';
import { Dispatcher } from '../src/dispatcher.js';
import { MAX_DESTINATIONS } from '../src/layout.js';

const { bpffs } = isolate();
const dir = workDir();
const socket = path.join(dir, 'tubulard.sock');

describe('rollback', () => {
  let d: Dispatcher;
  let daemon: Daemon;
  let v4: Served;
  let v6: Served;

  before(async () => {
    d = Dispatcher.create({ bpffs });
    // every destination but one is taken by a binding
    d.replaceBindings(Array.from({ length: MAX_DESTINATIONS - 1 }, (_, i) =>
      parseBinding({ label: `fill-${i}`, protocol: 'tcp', prefix: `127.1.${i >> 8}.${i & 255}`, port: 80 })));
    daemon = await startDaemon({ bpffs, socket });
    v4 = await tcpServer('v4', '127.0.0.1');
    v6 = await tcpServer('v6', '::1');
  });
  after(async () => {
    await daemon.stop();
    await v4.close();
    await v6.close();
    d.close();
    Dispatcher.unload({ bpffs });
  });

  test('the first socket is registered, the second fails, the first is rolled back: nothing changed', async () => {
    const before = d.destinations();
    assert.equal(before.length, MAX_DESTINATIONS - 1);
    const c = HandoffClient.connect(socket);
    try {
      const r = await c.request({ op: 'register', label: 'late' }, [v4.fd, v6.fd]);
      assert.equal(!r.ok && r.error.code, 'ENOSPC');
      assert.match(!r.ok ? r.error.message : '', /all 4096 destinations are in use/);
      assert.doesNotMatch(!r.ok ? r.error.message : '', /could not be rolled back/);
    } finally {
      c.close();
    }
    assert.deepEqual(d.destinations(), before);
  });

  test('sockets for empty destinations go first, so a failure replaces nothing', async () => {
    const c = HandoffClient.connect(socket);
    try {
      // the last destination goes; fill-0 ipv4 tcp (a binding) gets a socket
      assert.equal((await c.request({ op: 'register', label: 'last' }, [v6.fd])).ok, true);
      assert.equal((await c.request({ op: 'register', label: 'fill-0' }, [v4.fd])).ok, true);
      const before = d.destinations();
      // a message that would replace fill-0's socket and add fill-0 ipv6, for which there is no room
      const other = await tcpServer('other', '127.0.0.1');
      try {
        const r = await c.request({ op: 'register', label: 'fill-0' }, [other.fd, v6.fd]);
        assert.equal(!r.ok && r.error.code, 'ENOSPC');
        assert.doesNotMatch(!r.ok ? r.error.message : '', /could not be rolled back/);
      } finally {
        await other.close();
      }
      assert.deepEqual(d.destinations(), before);
    } finally {
      c.close();
    }
  });
});
