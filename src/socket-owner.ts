// Which processes hold a socket, given its cookie. The kernel has no
// index from cookie to process, so this looks: it lists the socket fds of
// every process in /proc, then takes one fd of each candidate socket
// (pidfd_getfd) to read its cookie. Bounded in fds, sockets and time, and
// tolerant: a process that exits, or that we may not look into, is
// skipped, and the answer says whether the search was complete.
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { type Native, native } from './native.js';

export interface SocketOwner {
  pid: number;
  /** /proc/PID/comm */
  command: string;
  /** the fd number in that process */
  fd: number;
}

export interface OwnerSearch {
  /** per cookie asked for, the processes that hold it (empty: none found) */
  owners: Map<bigint, SocketOwner[]>;
  /** false when the search stopped at a bound, or could not look into some processes */
  complete: boolean;
}

export interface OwnerLimits {
  /** fd links read, at most */
  maxFds: number;
  /** sockets whose cookie is read, at most */
  maxSockets: number;
  /** stop after this long */
  deadlineMs: number;
}

export const DEFAULT_OWNER_LIMITS: OwnerLimits = { maxFds: 200_000, maxSockets: 4096, deadlineMs: 2000 };

/**
 * Inodes of the listening TCP and the UDP sockets of the caller's network
 * namespace, from /proc/net: registered sockets are among them. Undefined
 * when they cannot be read.
 */
export function listeningInodes(): Set<number> | undefined {
  const out = new Set<number>();
  try {
    for (const file of ['tcp', 'tcp6', 'udp', 'udp6']) {
      const lines = readFileSync(`/proc/self/net/${file}`, 'utf8').split('\n').slice(1);
      for (const line of lines) {
        const f = line.trim().split(/\s+/);
        if (f.length < 10 || (file.startsWith('tcp') && f[3] !== '0A')) continue;
        out.add(Number(f[9]));
      }
    }
  } catch {
    return undefined;
  }
  return out;
}

/**
 * The processes holding sockets with these cookies. `candidates`, when
 * given, limits the search to these socket inodes (see listeningInodes).
 */
export function findSocketOwners(cookies: readonly bigint[], candidates?: Set<number>, limits: OwnerLimits = DEFAULT_OWNER_LIMITS, sys: Native = native()): OwnerSearch {
  const owners = new Map<bigint, SocketOwner[]>(cookies.map((c) => [c, []]));
  if (cookies.length === 0) return { owners, complete: true };
  const deadline = Date.now() + limits.deadlineMs;
  let complete = true;
  // inode -> the (pid, fd) pairs holding it
  const holders = new Map<number, Array<{ pid: number; fd: number }>>();
  let links = 0;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return { owners, complete: false };
  }
  scan: for (const p of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${p}/fd`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') complete = false;
      continue;
    }
    for (const fd of fds) {
      if (++links > limits.maxFds || (links % 1024 === 0 && Date.now() > deadline)) {
        complete = false;
        break scan;
      }
      let target: string;
      try {
        target = readlinkSync(`/proc/${p}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (!m) continue;
      const ino = Number(m[1]);
      if (candidates && !candidates.has(ino)) continue;
      const list = holders.get(ino);
      if (list) list.push({ pid: Number(p), fd: Number(fd) }); else holders.set(ino, [{ pid: Number(p), fd: Number(fd) }]);
    }
  }
  let left = cookies.length;
  let inspected = 0;
  for (const list of holders.values()) {
    if (left === 0) break;
    if (++inspected > limits.maxSockets || Date.now() > deadline) {
      complete = false;
      break;
    }
    const cookie = cookieOf(sys, list);
    if (cookie === undefined) {
      complete = false;
      continue;
    }
    const found = owners.get(cookie);
    if (!found || found.length > 0) continue;
    left--;
    for (const h of list) found.push({ ...h, command: command(h.pid) });
  }
  return { owners, complete: complete || left === 0 };
}

/** The cookie of a socket, read through any one of its holders; undefined if none lets us. */
function cookieOf(sys: Native, list: ReadonlyArray<{ pid: number; fd: number }>): bigint | undefined {
  for (const h of list) {
    let pidfd = -1;
    let ours = -1;
    try {
      pidfd = sys.pidfdOpen(h.pid);
      ours = sys.pidfdGetfd(pidfd, h.fd);
      return sys.socketInfo(ours).cookie;
    } catch {
      // exited, closed the fd, or not ours to look into: try the next holder
    } finally {
      if (ours >= 0) sys.close(ours);
      if (pidfd >= 0) sys.close(pidfd);
    }
  }
  return undefined;
}

function command(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}
