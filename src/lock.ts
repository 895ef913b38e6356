// Serialises writers across processes: flock(2) on the state directory.
// Readers take the lock shared, only for as long as one read takes.
import { native } from './native.js';

const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_UN = 8;

export function withLock<T>(dirFd: number, exclusive: boolean, fn: () => T): T {
  const n = native();
  n.flock(dirFd, exclusive ? LOCK_EX : LOCK_SH);
  try {
    return fn();
  } finally {
    n.flock(dirFd, LOCK_UN);
  }
}
