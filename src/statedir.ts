// The state directory of one dispatcher, <bpffs>/<netns inode>_dispatcher,
// opened safely on a bpffs that anyone may write to (a plain bpffs mount is
// mode 1777). Everything inside is reached through the directory fd
// verified at open (/proc/self/fd/N/name), never through the path again,
// so a symlink or a rename of the name cannot redirect it. The directory
// must be a real directory owned by root and writable by root only.
//
// Writers serialise on `lock`, a directory inside that only root can open:
// readers cannot hold the lock against them. Temporary directories (a
// create in progress, an unload in progress) get unpredictable names and
// are locked by their owner, so leftovers of a dead process are told apart
// from work in progress, in any pid namespace.
import { chmodSync, chownSync, closeSync, constants, fstatSync, mkdirSync, openSync, readdirSync, rmdirSync, type Stats, unlinkSync } from 'node:fs';
import path from 'node:path';
import { randomHex } from './digest.js';
import { assertBpffs } from './bpffs.js';
import { TubularError, context, isSystemError } from './errors.js';
import { DEFAULT_LOCK_TIMEOUT_MS, withWriteLock } from './lock.js';
import type { Native } from './native.js';
import { DEFAULT_BPFFS, DEFAULT_NETNS, netnsInode } from './netns.js';
import { PIN } from './layout.js';
import { withPinned } from './links.js';

export const STATE_MODE = 0o750;
export const PIN_MODE = 0o640;
const LOCK_MODE = 0o700;
const O_DIR = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const LOCK_EX = 2;
const LOCK_NB = 4;
/** A leftover without a lock (its creator died before locking it) is removed once this old. */
const UNLOCKED_GRACE_MS = 60_000;

export interface Location {
  netns: string;
  bpffs: string;
  ino: number;
  /** the state directory's name in bpffs */
  name: string;
  /** its path, for messages */
  dir: string;
}

/**
 * Where a dispatcher's state is, after checking that `netns` is a network
 * namespace and `bpffs` a bpf file system (in that order): every command
 * that touches state comes through here.
 */
export function locate(opts: { netns?: string; bpffs?: string }): Location {
  const netns = opts.netns ?? DEFAULT_NETNS;
  const bpffs = opts.bpffs ?? DEFAULT_BPFFS;
  const ino = netnsInode(netns);
  assertBpffs(bpffs);
  const name = `${ino}_dispatcher`;
  return { netns, bpffs, ino, name, dir: path.join(bpffs, name) };
}

const fdPath = (fd: number, name = ''): string => (name ? `/proc/self/fd/${fd}/${name}` : `/proc/self/fd/${fd}`);

export const notLoaded = (loc: Location): TubularError =>
  new TubularError('ENOTLOADED', `no dispatcher is loaded in network namespace ${loc.netns} (no ${loc.dir}): run tubectl load`);

/** Why a directory that should be ours is not, or undefined when it is. */
function unsafe(st: Stats, what: string): string | undefined {
  if (!st.isDirectory()) return `${what} is not a directory`;
  if (st.uid !== 0) return `${what} is owned by uid ${st.uid}, not root`;
  if ((st.mode & 0o022) !== 0) return `${what} is writable by others (mode ${(st.mode & 0o777).toString(8)})`;
  return undefined;
}

/** Opens name inside the directory fd without following a symlink; explains what is wrong with it. */
function openVerified(parentFd: number, name: string, display: string, loc?: Location): number {
  return openVerifiedStat(parentFd, name, display, loc).fd;
}

/** openVerified, with the stat it checked. */
function openVerifiedStat(parentFd: number, name: string, display: string, loc?: Location): { fd: number; st: Stats } {
  let fd: number;
  try {
    fd = openSync(fdPath(parentFd, name), O_DIR);
  } catch (err) {
    if (isSystemError(err, 'ENOENT') && loc) throw notLoaded(loc);
    if (isSystemError(err, 'ELOOP') || isSystemError(err, 'ENOTDIR')) {
      throw new TubularError('EUNSAFE', `${display} is not a directory root created (a symbolic link or a file): ` +
        'it is not a dispatcher\'s state and nothing was changed; find out who made it, remove it, and try again');
    }
    return context(`open ${display}`, () => { throw err; });
  }
  const st = fstatSync(fd);
  const problem = unsafe(st, display);
  if (problem) {
    closeSync(fd);
    throw new TubularError('EUNSAFE', `${problem}: it is not a dispatcher's state (someone may be squatting the name) and nothing was changed; ` +
      `find out who made it, remove it (rm -r ${display}), and try again`);
  }
  return { fd, st };
}

function openRoot(loc: Location): number {
  return context(`open ${loc.bpffs}`, () => openSync(loc.bpffs, constants.O_RDONLY | constants.O_DIRECTORY));
}

export class StateDir {
  private closed = false;
  /** the lock directory, opened (and verified) at the first write and kept for the next ones */
  private lockFd = -1;

  private constructor(readonly loc: Location, private readonly rootFd: number, readonly fd: number, private readonly st: Stats) {}

  /** Opens and verifies the state directory of a loaded dispatcher. */
  static open(loc: Location): StateDir {
    const rootFd = openRoot(loc);
    try {
      const { fd, st } = openVerifiedStat(rootFd, loc.name, loc.dir, loc);
      return new StateDir(loc, rootFd, fd, st);
    } catch (err) {
      closeSync(rootFd);
      throw err;
    }
  }

  static exists(loc: Location): boolean {
    try {
      StateDir.open(loc).close();
      return true;
    } catch (err) {
      if (err instanceof TubularError && err.code === 'ENOTLOADED') return false;
      throw err;
    }
  }

  /** A path that reaches `name` inside the verified directory. */
  at(name: string): string {
    return fdPath(this.fd, name);
  }

  get gid(): number {
    return fstatSync(this.fd).gid;
  }

  names(): string[] {
    return readdirSync(fdPath(this.fd));
  }

  /**
   * Runs fn holding the writers' lock, after checking that the name still
   * leads to this directory (an unload and a load may have happened while
   * this process waited, or since its last write). The lock directory is
   * opened once: it goes only with the whole directory, which that check
   * then finds replaced or gone.
   */
  withLock<T>(timeoutMs: number, fn: () => T): T {
    if (this.lockFd < 0) this.lockFd = openVerified(this.fd, PIN.lock, path.join(this.loc.dir, PIN.lock));
    return withWriteLock(this.lockFd, timeoutMs, () => {
      let now: { fd: number; st: Stats };
      try {
        now = openVerifiedStat(this.rootFd, this.loc.name, this.loc.dir, this.loc);
      } catch (err) {
        if (err instanceof TubularError && err.code === 'ENOTLOADED') {
          throw new TubularError('ENOTLOADED', `the dispatcher in ${this.loc.dir} was unloaded while this command waited: run tubectl load`);
        }
        throw err;
      }
      closeSync(now.fd);
      if (!sameFile(now.st, this.st)) {
        throw new TubularError('EBUSY', `the dispatcher in ${this.loc.dir} was unloaded and loaded again while this command waited: run it again`);
      }
      return fn();
    });
  }

  /**
   * Moves the directory away under an unpredictable name (from then on it
   * is not loaded), then removes its pins and the directory. A process
   * that dies in between leaves a leftover that removeStale finishes.
   */
  retire(sys: Native): void {
    const doomed = `${this.loc.name}_unload_${randomHex(8)}`;
    context(`remove ${this.loc.dir}`, () => sys.renameNoReplace(fdPath(this.rootFd, this.loc.name), fdPath(this.rootFd, doomed)));
    emptyDir(this.fd);
    rmdirSync(fdPath(this.rootFd, doomed));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.lockFd >= 0) closeSync(this.lockFd);
    closeSync(this.fd);
    closeSync(this.rootFd);
  }
}

const sameFile = (a: Stats, b: Stats): boolean => a.dev === b.dev && a.ino === b.ino;

/**
 * Unlinks the pins, then removes the lock directory of a directory open as
 * fd. The lock goes last: a leftover without one (its owner died right
 * after removing it) holds no pin, so the grace removeStale gives such
 * directories leaks nothing.
 */
function emptyDir(fd: number): void {
  const names = readdirSync(fdPath(fd));
  for (const name of names) if (name !== PIN.lock) unlinkSync(fdPath(fd, name));
  if (names.includes(PIN.lock)) rmdirSync(fdPath(fd, PIN.lock));
}

/**
 * Builds a new state directory: `build` fills a temporary directory
 * (unpredictable name, locked for its lifetime), which is then renamed into
 * place without replacing anything. Any failure removes it.
 */
export function createStateDir(loc: Location, gid: number | undefined, sys: Native, build: (at: (name: string) => string) => void): void {
  const rootFd = openRoot(loc);
  let tmpFd = -1;
  let lockFd = -1;
  const tmp = `${loc.name}_create_${randomHex(8)}`;
  try {
    removeStale(loc, rootFd, sys);
    refuseExisting(loc, rootFd);
    context(`create ${path.join(loc.bpffs, tmp)}`, () => mkdirSync(fdPath(rootFd, tmp), { mode: LOCK_MODE }));
    tmpFd = openVerified(rootFd, tmp, path.join(loc.bpffs, tmp));
    mkdirSync(fdPath(tmpFd, PIN.lock), { mode: LOCK_MODE });
    lockFd = openVerified(tmpFd, PIN.lock, PIN.lock);
    sys.flock(lockFd, LOCK_EX | LOCK_NB);
    chmodSync(fdPath(tmpFd, PIN.lock), LOCK_MODE);
    build((name) => fdPath(tmpFd, name));
    if (gid !== undefined) chownSync(fdPath(tmpFd), -1, gid);
    chmodSync(fdPath(tmpFd), STATE_MODE);
    try {
      sys.renameNoReplace(fdPath(rootFd, tmp), fdPath(rootFd, loc.name));
    } catch (err) {
      if (isSystemError(err, 'EEXIST') || isSystemError(err, 'ENOTEMPTY')) refuseExisting(loc, rootFd, true);
      throw err;
    }
  } catch (err) {
    if (tmpFd >= 0) {
      try {
        emptyDir(tmpFd);
        rmdirSync(fdPath(rootFd, tmp));
      } catch { /* the original error matters more; removeStale finds it later */ }
    }
    throw err;
  } finally {
    if (lockFd >= 0) closeSync(lockFd);
    if (tmpFd >= 0) closeSync(tmpFd);
    closeSync(rootFd);
  }
}

/** Refuses a create when the name is taken, saying by what. */
function refuseExisting(loc: Location, rootFd: number, raced = false): void {
  let fd: number;
  try {
    fd = openVerified(rootFd, loc.name, loc.dir, loc);
  } catch (err) {
    if (err instanceof TubularError && err.code === 'ENOTLOADED') return;
    throw err;
  }
  closeSync(fd);
  throw new TubularError('ELOADED', raced
    ? `a dispatcher was loaded in network namespace ${loc.netns} at the same time: use that one`
    : `a dispatcher is already loaded in network namespace ${loc.netns} (${loc.dir}): use tubectl upgrade to replace its program, or tubectl unload first`);
}

const LEFTOVER = /_(create|unload)_[0-9a-f]{16}$/;

/**
 * Finishes what creates and unloads of dead processes left behind: for
 * this namespace, temporary directories owned by root whose lock nobody
 * holds. A leftover's link is detached before its pins go. Returns how
 * many it removed.
 */
export function removeStale(loc: Location, rootFd: number, sys: Native): number {
  let removed = 0;
  for (const name of readdirSync(fdPath(rootFd))) {
    if (!name.startsWith(`${loc.name}_`) || !LEFTOVER.test(name)) continue;
    let fd: number;
    try {
      fd = openVerified(rootFd, name, name);
    } catch {
      continue; // not ours: a symlink, or another user's directory
    }
    try {
      if (!abandoned(fd, sys)) continue;
      detachLink(fdPath(fd, PIN.link), sys);
      emptyDir(fd);
      rmdirSync(fdPath(rootFd, name));
      removed++;
    } catch { /* try again next time */ } finally {
      closeSync(fd);
    }
  }
  return removed;
}

/** Whether nobody works in the directory: its lock is free (or, without one, it is old). */
function abandoned(dirFd: number, sys: Native): boolean {
  let lockFd: number;
  try {
    lockFd = openSync(fdPath(dirFd, PIN.lock), O_DIR);
  } catch {
    return Date.now() - fstatSync(dirFd).ctimeMs > UNLOCKED_GRACE_MS;
  }
  try {
    return sys.flock(lockFd, LOCK_EX | LOCK_NB);
  } finally {
    closeSync(lockFd);
  }
}

/** Detaches the link pinned at `file`, if there is one: its program stops running at once. */
export function detachLink(file: string, sys: Native): boolean {
  return withPinned(sys, file, (fd) => { sys.linkDetach(fd); return true; }) ?? false;
}

/** Removes leftovers of this namespace's creates and unloads; see removeStale. */
export function removeStaleFor(loc: Location, sys: Native): number {
  const rootFd = openRoot(loc);
  try {
    return removeStale(loc, rootFd, sys);
  } finally {
    closeSync(rootFd);
  }
}

export { DEFAULT_LOCK_TIMEOUT_MS };
