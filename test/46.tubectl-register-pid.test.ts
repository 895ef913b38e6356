// register-pid against a pid that is reused while it looks: the pidfd is
// opened first, /proc/<pid> is believed only once the pidfd's process is
// found still at that pid, and every fd comes through the pidfd. A fake
// process table stands in for the kernel, so the race is exact.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type PidSys, parsePidArgs, takeSocket } from '../src/cli/register.js';
import { TubularError } from '../src/errors.js';
import type { SocketInfo } from '../src/native.js';

const NETNS = { path: '/proc/self/ns/net', ino: 4026531840 };
const PID = 4242;

const listening = (cookie: bigint): SocketInfo => ({
  domain: 2, type: 1, protocol: 6, listening: true, reusePort: false, address: '127.0.0.1', port: 8080, cookie,
});

interface Proc { fds: Map<number, SocketInfo>; alive: boolean }

/** A process table with pidfds; `reuse` makes PID another process at a chosen call. */
class World implements PidSys {
  readonly calls: string[] = [];
  readonly open = new Map<number, SocketInfo | Proc>();
  private table = new Map<number, Proc>();
  private next = 100;
  constructor(first: Proc, private readonly reuse?: { after: string; by: Proc }) {
    this.table.set(PID, first);
  }
  private reused = false;
  private call(name: string): void {
    this.calls.push(name);
    if (this.reuse && name === this.reuse.after && !this.reused) {
      this.reused = true;
      this.table.get(PID)!.alive = false; // exits, is reaped, and its pid goes to another process
      this.table.set(PID, this.reuse.by);
    }
  }
  private fd(v: SocketInfo | Proc): number {
    this.open.set(this.next, v);
    return this.next++;
  }
  private err(code: string): Error {
    return Object.assign(new Error(code), { code });
  }
  pidfdOpen(pid: number): number {
    const p = this.table.get(pid);
    if (!p) throw this.err('ESRCH');
    const fd = this.fd(p);
    this.call('pidfdOpen');
    return fd;
  }
  pidfdGetfd(pidfd: number, target: number): number {
    this.call('pidfdGetfd');
    const p = this.open.get(pidfd) as Proc;
    if (!p.alive) throw this.err('ESRCH');
    const s = p.fds.get(target);
    if (!s) throw this.err('EBADF');
    return this.fd(s);
  }
  pidfdIsPid(pidfd: number, pid: number): boolean {
    this.call('pidfdIsPid');
    const p = this.open.get(pidfd) as Proc;
    return p.alive && this.table.get(pid) === p;
  }
  socketFds(pid: number): number[] {
    const fds = [...this.table.get(pid)!.fds.keys()];
    this.call('socketFds');
    return fds;
  }
  netnsInode(): number {
    this.call('netnsInode');
    return NETNS.ino;
  }
  socketInfo(fd: number): SocketInfo {
    return this.open.get(fd) as SocketInfo;
  }
  close(fd: number): void {
    assert.ok(this.open.delete(fd), `fd ${fd} closed twice or never opened`);
  }
}

const want = parsePidArgs([String(PID), 'web', 'tcp', '127.0.0.1', '8080']);
const service = (): Proc => ({ alive: true, fds: new Map([[3, { ...listening(1n), port: 9999 }], [5, listening(1n)]]) });
const intruder = (): Proc => ({ alive: true, fds: new Map([[5, listening(2n)]]) });

describe('register-pid takes the socket of the process it named, or nothing', () => {
  test('the pidfd is opened before /proc is read, and checked after', () => {
    const world = new World(service());
    const taken = takeSocket(want, NETNS, world);
    assert.equal(taken.fd, 5);
    assert.equal(world.socketInfo(taken.ours).cookie, 1n);
    assert.equal(world.calls[0], 'pidfdOpen');
    assert.ok(world.calls.indexOf('pidfdIsPid') > world.calls.indexOf('socketFds'));
    assert.equal(world.calls.at(-1), 'pidfdIsPid');
    world.close(taken.ours);
    assert.equal(world.open.size, 0, 'the pidfd and the fds not chosen are closed');
  });

  for (const after of ['pidfdOpen', 'netnsInode', 'socketFds']) {
    test(`a pid reused right after ${after} hands over nothing`, () => {
      const world = new World(service(), { after, by: intruder() });
      assert.throws(() => takeSocket(want, NETNS, world),
        (e: unknown) => e instanceof TubularError && e.code === 'ENOENT' && /process 4242 exited while tubectl looked at it/.test(e.message));
      assert.equal(world.open.size, 0);
    });
  }

  test('a process that exits while its fds are taken hands over nothing', () => {
    const world = new World(service(), { after: 'pidfdGetfd', by: intruder() });
    assert.throws(() => takeSocket(want, NETNS, world), /process 4242 exited while tubectl looked at it/);
    assert.equal(world.open.size, 0);
  });

  test('no process: ENOENT before anything is read', () => {
    const world = new World(service());
    const other = parsePidArgs(['77', 'web', 'tcp', '127.0.0.1', '8080']);
    assert.throws(() => takeSocket(other, NETNS, world), /there is no process 77/);
    assert.deepEqual(world.calls, []);
  });
});
