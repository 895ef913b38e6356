// Exercises the native addon against the real kernel (needs root).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { intercept } from './lib/intercept.js';
import { BpfMap } from '../src/bpfmap.js';
import { BINDING_KEY_SIZE, BINDING_VALUE_SIZE } from '../src/layout.js';
import { native } from '../src/native.js';

const n = native();
const HASH = 1, PERCPU_ARRAY = 6;
const O_RDONLY = 0, O_RDWR = 2, O_CREAT = 0o100;
const LOCK_EX = 2, LOCK_NB = 4, LOCK_UN = 8;
const AF_INET = 2, AF_INET6 = 10, SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5;

const u32 = (i: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(i); return b; };
const u64 = (i: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(i) * 3n + 7n); return b; };

function tmpDir(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'tubular-native-'));
}

function assertSysError(fn: () => unknown, codes: string[], syscall: string) {
  assert.throws(fn, (thrown: unknown) => {
    assert.ok(thrown instanceof Error);
    const err = thrown as NodeJS.ErrnoException;
    assert.ok(codes.includes(err.code!), `unexpected code ${err.code}`);
    assert.equal(typeof err.errno, 'number');
    assert.ok(err.errno! > 0);
    assert.equal(err.syscall, syscall);
    assert.ok(err.message.startsWith(`${syscall}: `), err.message);
    return true;
  });
}

test('hash map: single element operations', () => {
  const fd = n.mapCreate(HASH, 'tst_hash', 4, 8, 64, 0);
  try {
    const info = n.mapInfo(fd);
    assert.deepEqual([info.type, info.keySize, info.valueSize, info.maxEntries, info.name],
      [HASH, 4, 8, 64, 'tst_hash']);
    assert.equal(n.mapNextKey(fd, null, Buffer.alloc(4)), false);
    n.mapUpdate(fd, u32(1), u64(1), 0);
    const v = Buffer.alloc(8);
    assert.equal(n.mapLookup(fd, u32(1), v), true);
    assert.deepEqual(v, u64(1));
    assert.equal(n.mapLookup(fd, u32(2), v), false);
    assertSysError(() => n.mapUpdate(fd, u32(1), u64(5), 1 /* BPF_NOEXIST */), ['EEXIST'], 'bpf_map_update_elem');
    const next = Buffer.alloc(4);
    assert.equal(n.mapNextKey(fd, null, next), true);
    assert.deepEqual(next, u32(1));
    assert.equal(n.mapNextKey(fd, next, Buffer.alloc(4)), false);
    assert.equal(n.mapDelete(fd, u32(1)), true);
    assert.equal(n.mapDelete(fd, u32(1)), false);
    assert.throws(() => n.mapLookup(fd, u32(1), Buffer.alloc(4)), RangeError);
  } finally {
    n.close(fd);
  }
});

test('hash map: batch update, dump and delete of 10k elements', () => {
  const N = 10_000;
  const fd = n.mapCreate(HASH, 'tst_batch', 4, 8, N, 0);
  try {
    const keys = Buffer.concat(Array.from({ length: N }, (_, i) => u32(i)));
    const values = Buffer.concat(Array.from({ length: N }, (_, i) => u64(i)));
    assert.equal(n.mapUpdateBatch(fd, keys, values, N, 0), N);
    const dump = n.mapDump(fd, 4, 8);
    assert.equal(dump.count, N);
    assert.equal(dump.keys.length, N * 4);
    assert.equal(dump.values.length, N * 8);
    const seen = new Set<number>();
    for (let i = 0; i < dump.count; i++) {
      const k = dump.keys.readUInt32LE(i * 4);
      assert.deepEqual(dump.values.subarray(i * 8, i * 8 + 8), u64(k));
      seen.add(k);
    }
    assert.equal(seen.size, N);
    // Delete the even keys, with some absent keys mixed in: they are skipped.
    const del = [...Array.from({ length: N / 2 }, (_, i) => u32(i * 2)), u32(N + 1), u32(N + 2)];
    del.splice(100, 0, u32(N + 3));
    assert.equal(n.mapDeleteBatch(fd, Buffer.concat(del), del.length), N / 2);
    const rest = n.mapDump(fd, 4, 8);
    assert.equal(rest.count, N / 2);
    for (let i = 0; i < rest.count; i++) assert.equal(rest.keys.readUInt32LE(i * 4) % 2, 1);
    assert.throws(() => n.mapDump(fd, 4, 4), RangeError);
  } finally {
    n.close(fd);
  }
});

test('a batch update on threads: every element written, on a duplicate of the fd, errors at the finish', () => {
  const N = 40_000;
  const fd = n.mapCreate(HASH, 'tst_bthread', 4, 8, N, 0);
  const starts: number[] = [];
  const counting = intercept(n, (name, call, args) => {
    if (name === 'mapUpdateBatchStart') starts.push(args[3] as number);
    return call();
  });
  const map = BpfMap.adopt(counting, 'tst_bthread', fd);
  try {
    const keys = Buffer.concat(Array.from({ length: N }, (_, i) => u32(i)));
    const values = Buffer.concat(Array.from({ length: N }, (_, i) => u64(i)));
    // N is past BpfMap's split: two threads, half each.
    map.startUpdateBatch(keys, values, N)();
    assert.deepEqual(starts, [N / 2, N / 2]);
    const dump = n.mapDump(fd, 4, 8);
    assert.equal(dump.count, N);
    for (let i = 0; i < dump.count; i++) assert.deepEqual(dump.values.subarray(i * 8, i * 8 + 8), u64(dump.keys.readUInt32LE(i * 4)));
    // One thread through the addon: the count written comes back; a handle is finished once, by its own kind.
    const one = n.mapUpdateBatchStart(fd, u32(5), u64(9), 1, 0);
    assert.throws(() => n.mapUpdateFinish(one as never), /must come from mapUpdateStart/);
    assert.equal(n.mapUpdateBatchFinish(one), 1);
    assert.throws(() => n.mapUpdateBatchFinish(one), /already finished/);
    // A full map: the error comes at the finish, with how far it got.
    const full = map.startUpdateBatch(Buffer.concat([u32(N + 1), u32(N + 2)]), Buffer.concat([u64(1), u64(2)]), 2);
    let failure: unknown;
    try {
      full();
    } catch (err) {
      failure = err;
    }
    assertSysError(() => { throw failure; }, ['E2BIG', 'ENOSPC'], 'bpf_map_update_batch');
    assert.match(String(failure), /\(after 0 elements\)/);
    // Buffers too short for the count are refused before any thread starts.
    assert.throws(() => n.mapUpdateBatchStart(fd, u32(1), u64(1), 2, 0), RangeError);
  } finally {
    map.close();
  }
  // The thread writes through a duplicate of the fd: the caller may close its own at once.
  // (Passes also when the thread was done before the close: it cannot fail for that.)
  const fd2 = n.mapCreate(HASH, 'tst_bthread2', 4, 8, 16, 0);
  const pinDir = tmpDir();
  execFileSync('mount', ['-t', 'bpf', 'bpf', pinDir]);
  try {
    n.pin(fd2, path.join(pinDir, 'm'));
    const h = n.mapUpdateBatchStart(fd2, Buffer.concat([u32(1), u32(2)]), Buffer.concat([u64(1), u64(2)]), 2, 0);
    n.close(fd2);
    assert.equal(n.mapUpdateBatchFinish(h), 2);
    const again = n.getPinned(path.join(pinDir, 'm'), 0);
    try {
      assert.equal(n.mapDump(again, 4, 8).count, 2);
    } finally {
      n.close(again);
    }
  } finally {
    execFileSync('umount', [pinDir]);
    rmdirSync(pinDir);
  }
});

test('a batch the kernel refuses before its loop (flags it only takes one by one) is written element by element', () => {
  // The kernel's batch takes no flag but BPF_F_LOCK; refused, it leaves the count as it was given.
  const NOEXIST = 1;
  const fd = n.mapCreate(HASH, 'tst_bnoexist', 4, 8, 64, 0);
  try {
    const keys = Buffer.concat(Array.from({ length: 10 }, (_, i) => u32(i)));
    const values = Buffer.concat(Array.from({ length: 10 }, (_, i) => u64(i)));
    assert.equal(n.mapUpdateBatch(fd, keys, values, 10, NOEXIST), 10);
    assert.equal(n.mapDump(fd, 4, 8).count, 10);
    // One by one, BPF_NOEXIST holds: the first key there already stops it, and says after how many.
    const more = Buffer.concat([u32(20), u32(3), u32(21)]);
    assert.throws(() => n.mapUpdateBatch(fd, more, Buffer.concat([u64(1), u64(2), u64(3)]), 3, NOEXIST), /bpf_map_update_elem: .*\(after 1 elements\)/);
    assert.equal(n.mapDump(fd, 4, 8).count, 11);
  } finally {
    n.close(fd);
  }
});

test('a batch split between two threads names the part that failed, and counts within it', () => {
  const N = 32_768;
  const fd = n.mapCreate(HASH, 'tst_bsplit', 4, 8, 20_000, 0);
  const map = BpfMap.adopt(n, 'tst_bsplit', fd);
  try {
    const keys = Buffer.concat(Array.from({ length: N }, (_, i) => u32(i)));
    const values = Buffer.concat(Array.from({ length: N }, (_, i) => u64(i)));
    let failure: unknown;
    try {
      map.startUpdateBatch(keys, values, N)();
    } catch (err) {
      failure = err;
    }
    const err = failure as NodeJS.ErrnoException;
    assert.ok(['E2BIG', 'ENOSPC'].includes(err.code!), `unexpected code ${err.code}`);
    assert.equal(err.syscall, 'bpf_map_update_batch');
    const m = /^Error: elements (1 to 16384|16385 to 32768) of 32768: bpf_map_update_batch: .*\(after (\d+) elements\)$/.exec(String(failure));
    assert.ok(m, String(failure));
    assert.ok(Number(m[2]) <= N / 2);
    assert.ok(n.mapDump(fd, 4, 8).count <= 20_000);
  } finally {
    map.close();
  }
});

test('EBUSY from a batch update is retried, 64 times at most', () => {
  // strace makes the batch's calls fail with EBUSY (the child's first bpf() call reads the map's sizes).
  // An injected call writes nothing, so each retry starts at element 0; a kernel's EBUSY part-way
  // (the count it wrote) cannot be made this way.
  const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lib', 'update-busy.js');
  const dir = tmpDir();
  const N = 1000;
  try {
    for (const [busy, ok] of [[64, true], [65, false]] as const) {
      const fd = n.mapCreate(HASH, 'tst_bbusy', 4, 8, N, 0);
      try {
        const log = path.join(dir, `strace-${busy}`);
        const r = spawnSync('strace', ['-f', '-qq', '-o', log, '-e', 'trace=bpf', '-e', `inject=bpf:error=EBUSY:when=2..${busy + 1}`,
          process.execPath, child, String(N)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe', fd] });
        const injected = readFileSync(log, 'utf8').split('\n').filter((l) => /BPF_MAP_UPDATE_BATCH.*EBUSY.*INJECTED/.test(l));
        assert.equal(injected.length, busy, readFileSync(log, 'utf8').slice(0, 2000));
        const dump = n.mapDump(fd, 4, 8);
        if (ok) {
          assert.equal(r.status, 0, r.stdout + r.stderr);
          assert.equal(r.stdout.trim(), String(N));
          assert.equal(dump.count, N);
          for (let i = 0; i < dump.count; i++) assert.deepEqual(dump.values.subarray(i * 8, i * 8 + 8), u64(dump.keys.readUInt32LE(i * 4)));
        } else {
          assert.equal(r.status, 1, r.stdout + r.stderr);
          assert.match(r.stdout, /bpf_map_update_batch: Device or resource busy \(after 0 elements\)/);
          assert.equal(dump.count, 0);
        }
      } finally {
        n.close(fd);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('per-CPU array dump uses the per-CPU value size', () => {
  const cpus = n.numPossibleCpus();
  assert.ok(cpus >= 1);
  const fd = n.mapCreate(PERCPU_ARRAY, 'tst_pcpu', 4, 4, 8, 0);
  try {
    const vs = 8 * cpus;
    const value = Buffer.alloc(vs);
    for (let c = 0; c < cpus; c++) value.writeUInt32LE(100 + c, c * 8);
    n.mapUpdate(fd, u32(3), value, 0);
    const dump = n.mapDump(fd, 4, vs);
    assert.equal(dump.count, 8);
    const idx = [...Array(8).keys()].find((i) => dump.keys.readUInt32LE(i * 4) === 3)!;
    assert.deepEqual(dump.values.subarray(idx * vs, idx * vs + vs), value);
  } finally {
    n.close(fd);
  }
});

test('errors look like Node system errors', () => {
  const devnull = n.open('/dev/null', O_RDONLY);
  try {
    assertSysError(() => n.mapLookup(devnull, u32(0), Buffer.alloc(8)), ['EBADF', 'EINVAL'], 'bpf_map_lookup_elem');
    assertSysError(() => n.socketInfo(devnull), ['ENOTSOCK'], 'getsockopt');
    assert.equal(n.socketType(devnull), -1);
  } finally {
    n.close(devnull);
  }
  assertSysError(() => n.getPinned(path.join(os.tmpdir(), 'tubular-no-such-pin'), 0), ['ENOENT'], 'bpf_obj_get');
  assertSysError(() => n.open('/nonexistent/tubular', O_RDONLY), ['ENOENT'], 'open');
  assert.throws(() => n.close('3' as unknown as number), TypeError);
  assert.throws(() => n.mapUpdate(1, 'k' as unknown as Buffer, Buffer.alloc(1), 0), /key/);
});

test('mmapable array: arrayScatter and arrayGather go through a mapping and agree with lookups; a read-only fd falls back to lookups', () => {
  const ARRAY = 2, MMAPABLE = 1 << 10, ENTRIES = 1 << 16;
  const fd = n.mapCreate(ARRAY, 'tst_mmap', 4, 16, ENTRIES, MMAPABLE);
  const dir = tmpDir();
  execFileSync('mount', ['-t', 'bpf', 'bpf', dir]);
  try {
    // Two runs far apart (other pages), out of order, and the last index.
    const idx = Uint32Array.from([5, 4, 6, 40_000, 40_001, ENTRIES - 1]);
    const values = Buffer.alloc(idx.length * 16);
    idx.forEach((k, i) => { values.writeBigUInt64LE(BigInt(k) * 1000n + 1n, i * 16); values.writeUInt32LE(k ^ 0xabcd, i * 16 + 12); });
    n.arrayScatter(fd, idx, values);
    idx.forEach((k, i) => {
      const v = Buffer.alloc(16);
      assert.ok(n.mapLookup(fd, u32(k), v));
      assert.deepEqual(v, values.subarray(i * 16, i * 16 + 16), `entry ${k}`);
    });
    // Neighbours are untouched.
    for (const k of [3, 7, 39_999, 40_002]) {
      const v = Buffer.alloc(16);
      n.mapLookup(fd, u32(k), v);
      assert.deepEqual(v, Buffer.alloc(16), `entry ${k}`);
    }
    const back = Buffer.alloc(values.length);
    n.arrayGather(fd, idx, back);
    assert.deepEqual(back, values);
    assert.throws(() => n.arrayGather(fd, Uint32Array.of(ENTRIES), Buffer.alloc(16)), /index 65536 is past the array's 65536 entries/);
    assert.throws(() => n.arrayGather(fd, Uint32Array.of(1, 2), Buffer.alloc(16)), /values/);
    const plain = n.mapCreate(ARRAY, 'tst_plain', 4, 16, 8, 0);
    assert.throws(() => n.arrayScatter(plain, Uint32Array.of(1), Buffer.alloc(16)), /not an mmapable array/);
    n.close(plain);
    // A read-only fd cannot map it at all (the kernel clears VM_SHARED); BpfMap reads it by lookups.
    n.pin(fd, path.join(dir, 'stats'));
    const spec = { type: ARRAY, keySize: 4, valueSize: 16, maxEntries: ENTRIES, flags: MMAPABLE };
    const ro = BpfMap.open(n, path.join(dir, 'stats'), 'stats', spec, { readOnly: true });
    assert.throws(() => n.arrayGather(ro.fd, idx, Buffer.alloc(values.length)));
    assert.deepEqual(ro.gather(idx), values);
    ro.close();
    const rw = BpfMap.open(n, path.join(dir, 'stats'), 'stats', spec);
    assert.deepEqual(rw.gather(idx), values);
    rw.close();
  } finally {
    n.close(fd);
    execFileSync('umount', [dir]);
    rmdirSync(dir);
  }
});

test('pin and getPinned on a private bpffs', () => {
  const dir = tmpDir();
  execFileSync('mount', ['-t', 'bpf', 'bpf', dir]);
  const fd = n.mapCreate(HASH, 'tst_pin', 4, 4, 4, 0);
  try {
    n.pin(fd, path.join(dir, 'map'));
    assertSysError(() => n.pin(fd, path.join(dir, 'map')), ['EEXIST'], 'bpf_obj_pin');
    const again = n.getPinned(path.join(dir, 'map'), 0);
    assert.equal(n.mapInfo(again).id, n.mapInfo(fd).id);
    n.close(again);
  } finally {
    n.close(fd);
    execFileSync('umount', [dir]);
    rmdirSync(dir);
  }
});

test('socketInfo on TCP and UDP sockets', async () => {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const udp = dgram.createSocket('udp6');
  udp.bind(0, '::1');
  await once(udp, 'listening');
  try {
    const tcpFd: number = (server as any)._handle.fd;
    const tcp = n.socketInfo(tcpFd);
    assert.deepEqual([tcp.domain, tcp.type, tcp.protocol, tcp.listening, tcp.address, tcp.port],
      [AF_INET, SOCK_STREAM, 6, true, '127.0.0.1', (server.address() as net.AddressInfo).port]);
    assert.equal(typeof tcp.cookie, 'bigint');
    assert.ok(tcp.cookie > 0n);
    assert.equal(n.socketType(tcpFd), SOCK_STREAM);
    const udpFd: number = (udp as any)[Object.getOwnPropertySymbols(udp).find((s) => s.description === 'state symbol')!].handle.fd;
    const u = n.socketInfo(udpFd);
    assert.deepEqual([u.domain, u.type, u.protocol, u.listening, u.address, u.port],
      [AF_INET6, SOCK_DGRAM, 17, false, '::1', udp.address().port]);
    assert.notEqual(u.cookie, tcp.cookie);
  } finally {
    server.close();
    udp.close();
  }
});

test('a hash map of 16-byte values takes the kernel no more memory than one of 12: a binding\'s place (layout 12) costs none', () => {
  const memlock = (valueSize: number): number => {
    const fd = n.mapCreate(HASH, 'memlock', BINDING_KEY_SIZE, valueSize, 1 << 17, 0);
    try {
      return Number(/^memlock:\s*(\d+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]);
    } finally {
      n.close(fd);
    }
  };
  assert.equal(BINDING_VALUE_SIZE, 16);
  assert.equal(memlock(BINDING_VALUE_SIZE), memlock(12));
  assert.ok(memlock(20) > memlock(16), 'the figure does grow with the value past 16 bytes');
});

test('clocks: the monotonic clock (the data plane\'s) and the wall clock, read together', () => {
  let fractions = 0;
  for (let k = 0; k < 100; k++) {
    const before = process.hrtime.bigint();
    const { monoNs, wallMs } = n.clocks();
    const after = process.hrtime.bigint();
    assert.ok(monoNs >= before && monoNs <= after, 'CLOCK_MONOTONIC, as process.hrtime');
    assert.ok(Math.abs(wallMs - Date.now()) < 50, `CLOCK_REALTIME in ms: ${wallMs} against ${Date.now()}`);
    if (!Number.isInteger(wallMs)) fractions++;
  }
  assert.ok(fractions > 90, 'the wall clock to a fraction of a millisecond');
});

test('fd helpers: dup, inode, pidfd, fdCount, flock', () => {
  const dir = tmpDir();
  const file = path.join(dir, 'lock');
  writeFileSync(file, 'x');
  const a = n.open(file, O_RDWR | O_CREAT);
  const b = n.open(file, O_RDWR);
  try {
    const d = n.dup(a);
    assert.equal(n.inode(d), n.inode(a));
    n.close(d);
    const pidfd = n.pidfdOpen(process.pid);
    const stolen = n.pidfdGetfd(pidfd, a);
    assert.equal(n.inode(stolen), n.inode(a));
    n.close(stolen);
    n.close(pidfd);

    const before = n.fdCount();
    for (let i = 0; i < 200; i++) n.close(n.open(file, O_RDONLY));
    assert.equal(n.fdCount(), before);

    assert.equal(n.flock(a, LOCK_EX), true);
    assert.equal(n.flock(b, LOCK_EX | LOCK_NB), false);
    assert.equal(n.flock(a, LOCK_UN), true);
    assert.equal(n.flock(b, LOCK_EX | LOCK_NB), true);
  } finally {
    n.close(a);
    n.close(b);
    rmSync(dir, { recursive: true });
  }
});

test('seqpacket: connect, accept, pass fds, peer credentials, watch', async () => {
  const dir = tmpDir();
  const sockPath = path.join(dir, 'sock');
  const listener = n.seqpacketListen(sockPath, 8);
  const client = n.seqpacketConnect(sockPath);
  const server = n.accept(listener);
  const file = n.open(dir, O_RDONLY);
  try {
    assert.ok(server >= 0);
    assert.equal(n.accept(listener), -1);
    assert.equal(n.socketType(server), SOCK_SEQPACKET);
    assert.equal(n.peerCred(server).pid, process.pid);
    assert.equal(n.peerCred(client).pid, process.pid);
    assert.equal(n.recvMessage(server, 64, 4), null);

    const readable = new Promise<void>((resolve) => {
      const w = n.watch(server, () => { w.stop(); w.stop(); resolve(); });
    });
    assert.equal(n.sendMessage(client, Buffer.from('hello'), [file]), 5);
    await readable;
    const msg = n.recvMessage(server, 64, 4)!;
    assert.equal(msg.data.toString(), 'hello');
    assert.equal(msg.fds.length, 1);
    assert.equal(n.inode(msg.fds[0]), n.inode(file));
    assert.deepEqual([msg.truncated, msg.ctrlTruncated, msg.eof], [false, false, false]);
    n.close(msg.fds[0]);

    assert.equal(n.sendMessage(client, Buffer.from('0123456789'), []), 10);
    const short = n.recvMessage(server, 4, 0)!;
    assert.deepEqual([short.data.toString(), short.truncated], ['0123', true]);

    n.setNonBlocking(client, true);
    n.close(client);
    const end = n.recvMessage(server, 64, 4)!;
    assert.deepEqual([end.eof, end.data.length, end.fds.length], [true, 0, 0]);
  } finally {
    for (const fd of [server, listener, file]) n.close(fd);
    rmSync(dir, { recursive: true });
  }
});
