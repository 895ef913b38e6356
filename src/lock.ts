// The writers' lock: flock(2) on a directory only root can open (the
// state directory's `lock`, mode 0700), so no reader can hold it against a
// writer. Readers take no lock: the binding set is swapped atomically and
// everything else they read is one map at a time.
//
// A writer waits for the lock at most `timeoutMs`, polling without
// blocking, then fails with a message naming the holder when /proc/locks
// tells who it is. tubulard passes 0 and retries on its event loop.
import { fstatSync, readFileSync, readlinkSync } from 'node:fs';
import { TubularError } from './errors.js';
import { native } from './native.js';

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

/** How long a writer waits for another writer by default. */
export const DEFAULT_LOCK_TIMEOUT_MS = 10_000;

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Waits without returning to the event loop: the dispatcher's methods are synchronous. */
export const sleep = (ms: number): void => { Atomics.wait(sleeper, 0, 0, ms); };

/** Takes the lock on `fd` (the lock directory), runs fn, releases it. */
export function withWriteLock<T>(fd: number, timeoutMs: number, fn: () => T): T {
  const n = native();
  const deadline = Date.now() + timeoutMs;
  for (let pause = 1; !n.flock(fd, LOCK_EX | LOCK_NB); pause = Math.min(pause * 2, 50)) {
    if (Date.now() >= deadline) throw busy(fd, timeoutMs);
    sleep(Math.min(pause, Math.max(1, deadline - Date.now())));
  }
  try {
    return fn();
  } finally {
    n.flock(fd, LOCK_UN);
  }
}

function busy(fd: number, timeoutMs: number): TubularError {
  const holder = lockHolder(fd);
  const who = holder ? `pid ${holder.pid}${holder.command ? ` (${holder.command})` : ''}` : 'another writer';
  const waited = timeoutMs > 0 ? `waited ${timeoutMs / 1000} s` : 'did not wait';
  return new TubularError('EBUSY', `the dispatcher's state is being changed by ${who} (${waited}): try again when it is done`);
}

/** The process holding a flock on the file open as `fd`, from /proc/locks; undefined when it cannot be told. */
export function lockHolder(fd: number): { pid: number; command: string } | undefined {
  try {
    const st = fstatSync(fd);
    const major = (st.dev >> 8) & 0xfff;
    const minor = (st.dev & 0xff) | ((st.dev >> 12) & 0xfff00);
    for (const line of readFileSync('/proc/locks', 'utf8').split('\n')) {
      // "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
      const m = /^\d+:\s+FLOCK\s+\S+\s+WRITE\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
      if (m && Number(m[4]) === st.ino && parseInt(m[2], 16) === major && parseInt(m[3], 16) === minor) {
        const pid = Number(m[1]);
        return { pid, command: commandOf(pid) };
      }
    }
  } catch { /* no /proc/locks, or the lock went away */ }
  return undefined;
}

function commandOf(pid: number): string {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    const text = argv.map((a) => a.replace(/^.*\/(?=[^/]+$)/, '')).join(' ');
    return text.length > 80 ? `${text.slice(0, 80)}…` : text;
  } catch {
    try { return readlinkSync(`/proc/${pid}/exe`); } catch { return ''; }
  }
}
